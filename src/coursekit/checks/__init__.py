"""Registry of trusted checks: what each autograded test cell is re-checked against.

A module ``coursekit.checks.<assignment>`` exposes ``CHECKS``, an
:class:`AssignmentChecks`: the class the tests exercise (``target``), a *probe*
module (child side: builds the student's layer, feeds it the inputs of
``spec(seed)``, returns measurements as JSON data), the same probe run by the
grader on the reference layer (``reference(spec)``), and one :class:`Check`
per test cell ``grade_id`` that compares the two.  ``coursekit.trusted`` runs
all of it once per submission, outside the student's kernel.

Everything that arrives from the child is student-controlled: comparisons go
through :func:`as_array`, which accepts only well-formed lists of numbers of the
expected shape.
"""
from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# aten operators that *are* a normalisation layer: using them is delegation
NORM_OPS = re.compile(r"(batch|layer|group|instance)_norm|_norm_legit")


@dataclass(frozen=True)
class Check:
    grade_id: str
    what: str        # Catalan, what the test cell checks ("la sortida en mode entrenament")
    # compare(student_probe, reference_probe) -> None when right, else a Catalan detail
    compare: Callable[[dict, dict], str | None]
    implementation: bool = True   # delegating to the built-in layer costs this cell's points
    # where delegation counts against this cell (None: anywhere): the probe's scenarios whose
    # aten operators are read, and the answer cells (grade_id) whose static findings are;
    # code the student added outside every answer cell always counts
    scenarios: tuple[str, ...] | None = None
    cells: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AssignmentChecks:
    assignment: str
    target: str | list[str]               # the class the probe exercises (several: a dict of them)
    probe_file: Path                      # child-side module defining probe(Layer, torch, spec)
    spec: Callable[[int], dict]           # seed -> JSON-able inputs
    reference: Callable[[dict], dict]     # spec -> the reference layer's probe, computed here
    checks: list[Check] = field(default_factory=list)
    notebook: str | None = None           # which notebook of the assignment (None: any)
    forbidden_ops: re.Pattern = NORM_OPS
    # disable the built-in normalisation kernels while the student's code runs (the
    # from-scratch assignments); False where using nn.BatchNorm2d is the exercise
    guard_norm: bool = True

    @property
    def probe_source(self) -> str:
        return self.probe_file.read_text(encoding="utf-8")

    def by_grade_id(self) -> dict[str, Check]:
        return {c.grade_id: c for c in self.checks}


def load(assignment: str) -> AssignmentChecks | None:
    """The trusted checks of an assignment, or None when it has none."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", assignment or ""):
        return None
    try:
        module = importlib.import_module(f"coursekit.checks.{assignment}")
    except ModuleNotFoundError as exc:
        if exc.name == f"coursekit.checks.{assignment}":
            return None
        raise
    return getattr(module, "CHECKS", None)


# ---------------------------------------------------------------- comparisons

def as_array(value, shape: tuple[int, ...] | None = None, limit: int = 1 << 20):
    """A float64 numpy array from student-controlled JSON, or None if malformed."""
    import numpy as np

    def count(v, depth=0):
        if depth > 8:
            raise ValueError
        if isinstance(v, list):
            return sum(count(e, depth + 1) for e in v) or 1
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError
        return 1

    try:
        if count(value) > limit:
            return None
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return None
    if shape is not None and tuple(array.shape) != tuple(shape):
        return None
    return array


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


def field_of(probe: dict, *keys):
    """probe[k1][k2]... or None when any level is missing or not a dict."""
    value = probe
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def scenario_error(probe: dict, scenario: str) -> str | None:
    """The error a scenario raised in the student's code, if any (Catalan detail)."""
    entry = field_of(probe, scenario)
    if not isinstance(entry, dict):
        return "no s'ha pogut executar"
    if entry.get("error") is not None:
        return f"ha fallat amb {str(entry['error'])[:200]}"
    return None
