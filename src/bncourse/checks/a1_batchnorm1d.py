"""Trusted checks of assignment 1 (BatchNorm1d from scratch).

Inputs are drawn here from a per-submission seed (different shapes and values
from the notebook's visible tests, so hard-coded outputs do not help); the
student's ``MyBatchNorm1d`` is probed in the sandboxed child
(``a1_batchnorm1d_probe.py``) and the same probe runs here on
``torch.nn.BatchNorm1d`` for the references.  Each test cell of the notebook
maps to the measurements that decide it.
"""
from __future__ import annotations

from pathlib import Path

from coursekit.checks import AssignmentChecks, Check, as_array, field_of

from bncourse.checks import NORM_GUARD, NORM_NAMES, NORM_OPS, PRELOAD, close, scenario_error

PROBE = Path(__file__).with_name("a1_batchnorm1d_probe.py")
BIG = 2048   # big batches (where the notebook uses 8192): Bessel's n/(n-1) stays under the tolerance
FORBIDDEN_AUTOGRAD = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm")


def spec(seed: int) -> dict:
    """Inputs of every scenario, drawn from ``seed`` (lists of numbers)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def batch(n, f, std=(0.8, 3.0), dtype=torch.float32):
        # columns of exactly mean 0 / std 1, then scaled within std and shifted (as the notebook's tests)
        z = torch.randn(n, f, generator=g, dtype=torch.float64)
        if n > 1:
            z = (z - z.mean(0)) / z.std(0, unbiased=False)
        s = std[0] + (std[1] - std[0]) * torch.rand(f, generator=g, dtype=torch.float64)
        return (z * s + 4 * torch.randn(f, generator=g, dtype=torch.float64)).to(dtype)

    def affine(f):
        return {"features": f, "gamma": (1 + 0.5 * torch.randn(f, generator=g)).tolist(),
                "beta": (0.5 * torch.randn(f, generator=g)).tolist()}

    def stats_of(x):
        return {"mean": x.double().mean(0).float().tolist(), "var": x.double().var(0, unbiased=False).float().tolist()}

    out = {}
    out["train"] = {"cases": [{"x": batch(n, 6).tolist(), **affine(6)} for n in (2, 16, 5, 64)]}
    out["running"] = {"cases": [{"batches": [batch(n, 5).tolist() for n in sizes], **affine(5)}
                                for sizes in ((2, 7, 2, 13, 4), (32, 2, 3))]}
    out["evaluation"] = {"cases": [{"x": (batch(n, 4) if n > 1 else 3 * torch.randn(1, 4, generator=g)).tolist(),
                                    "mean": (2 * torch.randn(4, generator=g)).tolist(),
                                    "var": (0.5 + 4 * torch.rand(4, generator=g)).tolist(), **affine(4)}
                                   for n in (7, 1, 32)]}
    out["gradients"] = {"cases": [{"x": batch(BIG, f, std=(1.0, 3.0)).tolist(),
                                   "w": (2 + torch.randn(BIG, f, generator=g)).tolist(), **affine(f)}
                                  for f in (3, 5)]}
    eval_grad_cases = []
    for n, f in ((12, 4), (40, 3)):
        x = batch(n, f)
        centred = x - x.mean(0)
        # upstream gradient with no component along the mean or x_hat: an eval branch that normalises with the
        # batch's statistics (judged by test_eval_output) gets the same gradient; only a cut graph differs
        w = torch.randn(n, f, generator=g)
        w = w - w.mean(0)
        w = w - centred * (w * centred).sum(0) / (centred * centred).sum(0)
        eval_grad_cases.append({"x": x.tolist(), "w": w.tolist(), **stats_of(x), **affine(f)})
    out["eval_gradients"] = {"cases": eval_grad_cases}
    out["momentum"] = {"cases": [{"momentum": m, "batches": [batch(n, 4).tolist() for n in sizes], **affine(4)}
                                 for m, sizes in ((0.3, (BIG, 1500, 1024)), (0.75, (1200, BIG)))]}
    eps_cases = []
    for value in (0.5, 0.05):
        x = batch(BIG, 4, std=(0.1, 1.0))
        eps_cases.append({"eps": value, "x": x.tolist(), **stats_of(x), **affine(4)})
    out["eps"] = {"cases": eps_cases}
    x64, x64_eval = 1e7 + batch(BIG, 4, std=(1.0, 3.0), dtype=torch.float64), 1e7 + batch(16, 4, dtype=torch.float64)
    # eval with the statistics of the very batch: only dtype and precision count here
    out["float64"] = {"x": x64.tolist(), "x_eval": x64_eval.tolist(), "mean": x64_eval.mean(0).tolist(),
                      "var": x64_eval.var(0, unbiased=False).tolist(), **affine(4)}
    constant_cases = []
    for n, value in ((2, 0.0), (16, -7.0), (5, 1.5)):
        # variances far below eps: only where eps goes matters (not n vs n-1)
        x = torch.stack([torch.full((n,), value), 0.5 + 1e-4 * torch.randn(n, generator=g),
                         -0.25 + 2e-4 * torch.randn(n, generator=g)], dim=1)
        constant_cases.append({"x": x.tolist(), "w": torch.randn(n, 3, generator=g).tolist(), **affine(3)})
    out["constant"] = {"cases": constant_cases}
    out["buffers"] = {"seed": seed % 10007, "inputs": 6, "features": 4,
                      "batches": [torch.randn(n, 6, generator=g).tolist() for n in (16, 2, 9)],
                      "x_eval": torch.randn(3, 6, generator=g).tolist()}
    out["inplace"] = {"cases": [{"features": 3, "training": training,
                                 "x": (batch(n, 3) if n > 1 else torch.randn(1, 3, generator=g)).tolist()}
                                for training, n in ((True, 2), (True, 12), (False, 1), (False, 12))]}
    out["own"] = {"features": 4, "x": batch(6, 4).tolist()}
    return out


def reference(spec: dict) -> dict:
    """The probe run here on torch.nn.BatchNorm1d (the grader's own, untouched torch)."""
    import runpy

    import torch

    class Reference(torch.nn.BatchNorm1d):
        gamma = property(lambda self: self.weight)
        beta = property(lambda self: self.bias)

    class ReferenceOther(Reference):
        def __init__(self, num_features, **kwargs):
            super().__init__(num_features, **{**kwargs, "momentum": 1 - kwargs.get("momentum", 0.1)})

    probe = runpy.run_path(str(PROBE))
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a thread pool only costs time (10x on a busy machine)
    try:
        for name, scenario in probe["SCENARIOS"].items():
            if name in ("buffers", "own"):   # judged on their own, not against the reference
                continue
            out[name] = {"error": None, **scenario(Reference, torch, spec[name])}
        # the opposite convention of momentum (Keras: m weighs the old value) is PyTorch's with 1 - m; the tests
        # of running_mean / running_var accept it, test_momentum alone judges the convention
        out["running_other"] = {"error": None, **probe["SCENARIOS"]["running"](ReferenceOther, torch, spec["running"])}
    finally:
        torch.set_num_threads(threads)
    return out


# ------------------------------------------------------------ comparisons
# The notebook's hidden tests measure |mine - ref| / (1 + |ref|): atol = rtol = tol.

def _cases(scenario: str, key: str, tol: float, what: str, by_max: bool = False):
    def compare(student: dict, ref: dict) -> str | None:
        error = scenario_error(student, scenario)
        if error:
            return error
        got_cases, want_cases = field_of(student, scenario, "cases"), field_of(ref, scenario, "cases")
        if not isinstance(got_cases, list) or len(got_cases) != len(want_cases):
            return "falten resultats"
        for index, (got, want) in enumerate(zip(got_cases, want_cases)):
            got_value = field_of(got, key) if isinstance(got, dict) else None
            want_value = want[key]
            if by_max:  # gradients: relative to the largest reference value, as the notebook does
                scale = 1 + max((abs(v) for v in _flat(want_value)), default=0.0)
                got_arr = as_array(got_value)
                if got_arr is None:
                    return f"{what}: no s'ha obtingut cap tensor vàlid (cas {index + 1})"
                got_value = (got_arr / scale).tolist()
                want_value = (as_array(want_value) / scale).tolist()
            detail = close(got_value, want_value, tol, tol)
            if detail:
                return f"{what} no coincideix amb nn.BatchNorm1d (cas {index + 1}: {detail})"
        return None
    return compare


def _flat(value):
    if isinstance(value, list):
        for v in value:
            yield from _flat(v)
    else:
        yield value


def _all(*compares):
    def compare(student, ref):
        for c in compares:
            detail = c(student, ref)
            if detail:
                return detail
        return None
    return compare


def _running(key: str, what: str, tol: float = 1e-5):
    def compare(student, ref):
        error = scenario_error(student, "running")
        if error:
            return error
        got_cases, want_cases = field_of(student, "running", "cases"), ref["running"]["cases"]
        if not isinstance(got_cases, list) or len(got_cases) != len(want_cases):
            return "falten resultats"
        for got, want in zip(got_cases, want_cases):
            got_steps = field_of(got, "steps") if isinstance(got, dict) else None
            if not isinstance(got_steps, list) or len(got_steps) != len(want["steps"]):
                return "falten resultats"
            for step, (g, w) in enumerate(zip(got_steps, want["steps"])):
                detail = close(field_of(g, key) if isinstance(g, dict) else None, w[key], tol, tol)
                if detail:
                    return f"{what} no coincideix amb nn.BatchNorm1d després del pas {step + 1} ({detail})"
        return None

    def either_convention(student, ref):
        # the convention of momentum is judged by test_momentum alone
        other = {**ref, "running": ref["running_other"]}
        detail = compare(student, ref)
        return detail if detail and compare(student, other) else None
    return either_convention


def _eval_buffers_unchanged(student, ref):
    error = scenario_error(student, "evaluation")
    if error:
        return error
    for got, want in zip(field_of(student, "evaluation", "cases") or [], ref["evaluation"]["cases"]):
        for key in ("mean", "var"):
            if close(field_of(got, key) if isinstance(got, dict) else None, want[key], 0.0, 0.0):
                return "en mode eval no s'han de modificar running_mean ni running_var"
    return None


def _float64(student, ref):
    error = scenario_error(student, "float64")
    if error:
        return error
    if field_of(student, "float64", "dtypes") != ["torch.float64"] * 5:
        return "després de .double() la sortida, els buffers i gamma han de ser float64"
    for key, what in (("y", "la sortida"), ("y_eval", "la sortida en mode eval")):
        detail = close(field_of(student, "float64", key), ref["float64"][key], 1e-3, 1e-3)
        if detail:
            return f"en float64 {what} no coincideix amb nn.BatchNorm1d ({detail})"
    return None


def _finite_grads(student, ref):
    import numpy as np

    for index, case in enumerate(field_of(student, "constant", "cases") or []):
        for key in ("gamma", "beta"):
            array = as_array(field_of(case, key) if isinstance(case, dict) else None)
            if array is None or not np.isfinite(array).all():
                return f"amb columnes (gairebé) constants els gradients de gamma i beta no són finits (cas {index + 1})"
    return None


def _buffers(student, ref) -> str | None:
    error = scenario_error(student, "buffers")
    if error:
        return error
    for name in ("running_mean", "running_var"):
        info = field_of(student, "buffers", name)
        if not isinstance(info, dict):
            return f"{name} no s'ha pogut examinar"
        if info.get("registered") is not True or info.get("parameter") is not False:
            return f"{name} ha de continuar sent un buffer registrat (register_buffer), no un paràmetre"
        if info.get("in_state_dict") is not True:
            return f"{name} ha d'aparèixer a state_dict() amb el seu valor actual"
        if info.get("history") is not False:
            return f"{name} arrossega historial d'autograd (secció 2, buffers sense historial)"
    if field_of(student, "buffers", "double") != ["torch.float64", "torch.float64"]:
        return "running_mean i running_var han de seguir la capa quan es converteix (.double())"
    return None


def _inplace(student, ref) -> str | None:
    error = scenario_error(student, "inplace")
    if error:
        return error
    got_cases, want_cases = field_of(student, "inplace", "cases"), ref["inplace"]["cases"]
    if not isinstance(got_cases, list) or len(got_cases) != len(want_cases):
        return "falten resultats"
    for got, want in zip(got_cases, want_cases):
        if not isinstance(got, dict) or got.get("version_changed") is not False \
                or close(got.get("x"), want["x"], 0.0, 0.0):
            return "forward ha modificat l'entrada x: la capa no ha de canviar el tensor que rep (secció 2)"
    return None


def _own(student, ref) -> str | None:
    error = scenario_error(student, "own")
    if error:
        return error
    names = field_of(student, "own", "autograd")
    modules = field_of(student, "own", "modules")
    if not isinstance(names, list) or not names or not isinstance(modules, list):
        return "no s'ha pogut examinar la implementació"
    if any(k in str(n) for n in names for k in FORBIDDEN_AUTOGRAD):
        return "la sortida ve d'una normalització de PyTorch"
    if any(str(m).startswith("torch.") and "norm" in str(m) for m in modules):
        return "MyBatchNorm1d hereta o conté una capa de normalització de PyTorch"
    return None


# grade_id of the notebook's test cell -> what decides it
CHECKS = AssignmentChecks(
    assignment="a1_batchnorm1d",
    # built from scratch: PyTorch's norm layers are disabled in the child, naming them costs points
    forbidden_ops=NORM_OPS, builtin=NORM_NAMES, preload=PRELOAD, own_implementation=True, guard=NORM_GUARD,
    target="MyBatchNorm1d",
    probe_file=PROBE,
    spec=spec,
    reference=reference,
    notebook="batchnorm1d",
    checks=[
        Check("test_train_output", "Sortida en mode train", _cases("train", "y", 1e-4, "la sortida en mode train")),
        Check("test_running_mean", "running_mean", _running("mean", "running_mean")),
        Check("test_running_var", "running_var", _running("var", "running_var")),
        Check("test_eval_output", "Sortida en mode eval",
              _all(_cases("evaluation", "y", 1e-4, "la sortida en mode eval"), _eval_buffers_unchanged)),
        Check("test_gradients", "Gradients", _all(
            _cases("gradients", "x", 1e-3, "el gradient respecte de l'entrada", by_max=True),
            _cases("gradients", "gamma", 1e-3, "el gradient respecte de gamma", by_max=True),
            _cases("gradients", "beta", 1e-3, "el gradient respecte de beta", by_max=True))),
        Check("test_eval_gradients", "Gradients en mode eval", _all(
            _cases("eval_gradients", "x", 1e-3, "en mode eval, el gradient respecte de l'entrada", by_max=True),
            _cases("eval_gradients", "gamma", 1e-3, "en mode eval, el gradient respecte de gamma", by_max=True),
            _cases("eval_gradients", "beta", 1e-3, "en mode eval, el gradient respecte de beta", by_max=True))),
        Check("test_momentum", "momentum", _all(
            _cases("momentum", "mean", 1e-3, "amb un momentum no per defecte, running_mean"),
            _cases("momentum", "var", 1e-3, "amb un momentum no per defecte, running_var"))),
        Check("test_eps", "eps", _all(
            _cases("eps", "train", 1e-3, "amb un eps no per defecte, la sortida en mode train"),
            _cases("eps", "eval", 1e-3, "amb un eps no per defecte, la sortida en mode eval"))),
        Check("test_float64", "float64", _float64),
        Check("test_constant_feature", "Columnes constants", _all(
            _cases("constant", "y", 1e-3, "amb columnes (gairebé) constants la sortida"), _finite_grads,
            _cases("constant", "gamma", 1e-3, "amb columnes (gairebé) constants el gradient de gamma"),
            _cases("constant", "beta", 1e-3, "amb columnes (gairebé) constants el gradient de beta"))),
        Check("test_buffers", "Buffers", _buffers),
        Check("test_input_unmodified", "Entrada sense modificar", _inplace),
        Check("test_own_impl", "Implementació pròpia", _own),
    ],
)
