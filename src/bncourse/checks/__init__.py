"""The course's trusted re-checks: one module per assignment (``<assignment>.py`` with ``CHECKS``
and its child-side ``<assignment>_probe.py``), read by the engine's :mod:`coursekit.trusted`.

Here, what the whole course shares: what counts as handing the exercise to PyTorch's own
normalisation layers, and the Catalan details of a failed comparison.
"""
from __future__ import annotations

import math
import re

from coursekit.checks import KernelGuard, as_array, field_of
from coursekit.checks.scan import BuiltinNames

# aten operators that *are* a normalisation layer: using them is delegation
NORM_OPS = re.compile(r"(batch|layer|group|instance)_norm|_norm_legit")

# the names the static reading looks for: the layers and functions (any spelling of
# batch / layer / group / instance norm), their modules, PyTorch's base class of them
NORM_NAMES = BuiltinNames(names=re.compile(r"(?i)^_*(native_)?(batch|layer|group|instance)_?norm\w*$"),
                          modules=re.compile(r"(?i)(batchnorm|normalization)"),
                          bases=("_NormBase",))

# in the from-scratch assignments, every aten normalisation kernel (and rms norm) raises in the
# child while the student's code runs; the built-in batch norm must then raise the guard's error
NORM_GUARD = KernelGuard(ops=r"(batch|layer|group|instance|rms)_norm|_norm_legit",
                         probe="torch.nn.functional.batch_norm(torch.ones(2, 1), None, None, training=True)")

# what the notebooks' given code imports (started before the student's code in the child: matplotlib's
# font cache starts a process and a thread the first time)
PRELOAD = ("matplotlib", "matplotlib.pyplot", "matplotlib.font_manager", "tqdm", "tqdm.auto", "torchvision")

__all__ = ["PRELOAD", "NORM_OPS", "NORM_NAMES", "NORM_GUARD", "close", "scenario_error", "as_array", "field_of"]


def close(student, reference, atol: float, rtol: float) -> str | None:
    """None when ``student`` matches ``reference`` (nested dicts / lists of
    numbers, compared elementwise), else a Catalan detail."""
    import numpy as np

    if isinstance(reference, dict):
        if not isinstance(student, dict):
            return "falten resultats"
        for key, value in reference.items():
            detail = close(student.get(key), value, atol, rtol)
            if detail:
                return f"{key}: {detail}"
        return None
    if isinstance(reference, list) and not _regular(reference):
        if not isinstance(student, list) or len(student) != len(reference):
            return f"s'esperaven {len(reference)} resultats"
        for index, (got, want) in enumerate(zip(student, reference)):
            detail = close(got, want, atol, rtol)
            if detail:
                return f"pas {index + 1}: {detail}"
        return None
    ref = np.asarray(reference, dtype=np.float64)
    got = as_array(student, ref.shape)
    if got is None:
        return f"s'esperava un tensor de forma {tuple(ref.shape)} i no n'hi ha cap de vàlid"
    both_nan = np.isnan(got) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.abs(got - ref))
    bound = atol + rtol * np.abs(ref)
    bad = ~(diff <= bound)  # NaN in diff counts as bad
    if bad.any():
        worst = float(np.nanmax(np.where(np.isnan(diff), math.inf, diff)))
        return f"diferència màxima {worst:.3g} (tolerància {atol:g} + {rtol:g}·|referència|)"
    return None


def _regular(value) -> bool:
    """True for a number or a rectangular nested list of numbers (the reference's own data)."""
    import numpy as np

    try:
        np.asarray(value, dtype=np.float64)
        return True
    except (ValueError, TypeError):
        return False


def scenario_error(probe: dict, scenario: str) -> str | None:
    """The error a scenario raised in the student's code, if any (Catalan detail)."""
    entry = field_of(probe, scenario)
    if not isinstance(entry, dict):
        return "no s'ha pogut executar"
    if entry.get("error") is not None:
        return f"ha fallat amb {str(entry['error'])[:200]}"
    return None
