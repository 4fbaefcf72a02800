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

from coursekit.checks import AssignmentChecks, Check, close, field_of, scenario_error

PROBE = Path(__file__).with_name("a1_batchnorm1d_probe.py")
FEATURES = 5
# float32 results: tolerance of honest float32 arithmetic, far below every
# mistake the assignment teaches about (see tests/test_trusted.py)
ATOL, RTOL = 1e-4, 1e-4
ATOL64, RTOL64 = 1e-9, 1e-9


def spec(seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)

    def batch(n, features=FEATURES, dtype=torch.float32):
        scale = torch.rand(features, generator=g, dtype=torch.float64) * 2.5 + 0.5
        shift = torch.rand(features, generator=g, dtype=torch.float64) * 4 - 2
        x = torch.randn(n, features, generator=g, dtype=torch.float64) * scale + shift
        return x.to(dtype).tolist()

    def affine():
        return {"gamma": (torch.rand(FEATURES, generator=g) + 0.5).tolist(),
                "beta": (torch.randn(FEATURES, generator=g) * 0.5).tolist()}

    sizes = [7, 2, 13, 4]
    nearly = torch.randn(9, generator=g) * 1e-4
    const_x = torch.tensor(batch(9))
    const_x[:, 0] = 3.0            # a constant feature: only eps keeps x_hat finite
    const_x[:, 1] = nearly         # a nearly constant one: eps dominates the variance
    return {
        "train": {"features": FEATURES, "x": batch(11), **affine()},
        "grads": {"features": FEATURES, "x": batch(10), "upstream": batch(10), **affine()},
        "steps": {"features": FEATURES, "batches": [batch(n) for n in sizes], "x_eval": batch(6), **affine()},
        "hyper": {"features": FEATURES, "eps": 0.25, "momentum": 0.37, "batches": [batch(6), batch(3)],
                  "x_eval": batch(5), **affine()},
        "float64": {"features": FEATURES, "x": batch(10, dtype=torch.float64),
                    "x_eval": batch(4, dtype=torch.float64), **affine()},
        "constant": {"features": FEATURES, "x": const_x.tolist(), **affine()},
        "buffers": {"features": FEATURES, "batches": [batch(8), batch(5)]},
        "inplace": {"features": FEATURES, "x": batch(8), "x_eval": batch(5)},
    }


def reference(spec: dict) -> dict:
    """The probe run here on torch.nn.BatchNorm1d (the grader's own, untouched torch)."""
    import runpy

    import torch

    class Reference(torch.nn.BatchNorm1d):
        gamma = property(lambda self: self.weight)
        beta = property(lambda self: self.bias)

    probe = runpy.run_path(str(PROBE))
    return {name: {"error": None, **fn(Reference, torch, spec[name])} for name, fn in probe["SCENARIOS"].items()}


# ------------------------------------------------------------ comparisons

def _compare(scenario: str, *paths, atol=ATOL, rtol=RTOL):
    """A comparison of several measurements of one scenario with the reference's."""
    def compare(student: dict, ref: dict) -> str | None:
        error = scenario_error(student, scenario)
        if error:
            return error
        for path in paths:
            keys = (scenario, *path) if isinstance(path, tuple) else (scenario, path)
            detail = close(field_of(student, *keys), field_of(ref, *keys), atol, rtol)
            if detail:
                return f"{_label(keys[1:])}: {detail}"
        return None
    return compare


def _label(keys) -> str:
    names = {"y": "sortida", "y_eval": "sortida en avaluació", "running_mean": "running_mean",
             "running_var": "running_var", "grad_x": "gradient respecte de l'entrada",
             "grad_gamma": "gradient respecte de gamma", "grad_beta": "gradient respecte de beta",
             "history": "estadístiques acumulades", "outputs": "sortida en entrenament",
             "after_eval": "estadístiques després d'avaluar", "y_eval_again": "segona sortida en avaluació"}
    return " / ".join(names.get(str(k), str(k)) for k in keys if not isinstance(k, int))


def _all(*compares):
    def compare(student, ref):
        for c in compares:
            detail = c(student, ref)
            if detail:
                return detail
        return None
    return compare


def _dtype(scenario: str, *keys):
    def compare(student, ref):
        error = scenario_error(student, scenario)
        if error:
            return error
        for key in keys:
            if field_of(student, scenario, key) != "torch.float64":
                return "amb entrada float64 la sortida ha de ser float64"
        return None
    return compare


def _buffers(student, ref) -> str | None:
    error = scenario_error(student, "buffers")
    if error:
        return error
    for name in ("running_mean", "running_var"):
        info = field_of(student, "buffers", "buffers", name)
        if not isinstance(info, dict) or info.get("tensor") is not True:
            return f"{name} ha de ser un tensor"
        if info.get("registered") is not True or info.get("in_state_dict") is not True:
            return f"{name} ha de continuar registrat com a buffer (register_buffer) i sortir a state_dict()"
        if info.get("requires_grad") is not False or info.get("has_history") is not False:
            return f"{name} no pot guardar historial d'autograd: fes servir .detach() o torch.no_grad()"
        if info.get("shape") != [FEATURES]:
            return f"{name} ha de tenir forma ({FEATURES},)"
    if field_of(student, "buffers", "parameters") != field_of(ref, "buffers", "parameters"):
        pass  # parameter names differ by design (gamma/beta vs weight/bias); the API is checked elsewhere
    return None


def _inplace(student, ref) -> str | None:
    error = scenario_error(student, "inplace")
    if error:
        return error
    for key in ("x_after_train", "x_eval_after"):
        if close(field_of(student, "inplace", key), field_of(ref, "inplace", key), 0.0, 0.0):
            return "l'entrada x s'ha modificat: no facis operacions in situ sobre x"
    return None


TRAIN_OUTPUT = _compare("train", "y")
RUNNING = _all(_compare("steps", "history"), _compare("train", "running_mean", "running_var"))
EVAL = _compare("steps", "y_eval", "after_eval", "y_eval_again")
GRADIENTS = _compare("grads", "grad_x", "grad_gamma", "grad_beta", atol=1e-4, rtol=1e-3)
HYPER = _compare("hyper", "outputs", "history", "y_eval")
FLOAT64 = _all(_dtype("float64", "dtype", "dtype_eval"),
               _compare("float64", "y", "y_eval", "running_mean", "running_var", atol=ATOL64, rtol=RTOL64))
CONSTANT = _compare("constant", "y", "y_eval", "running_mean", "running_var", atol=1e-3, rtol=1e-3)

# grade_id of the notebook's test cell -> what decides it
CHECKS = AssignmentChecks(
    assignment="a1_batchnorm1d",
    target="MyBatchNorm1d",
    probe_file=PROBE,
    spec=spec,
    reference=reference,
    notebook="batchnorm1d",
    checks=[
        Check("test_train_output", "Sortida en mode entrenament", TRAIN_OUTPUT),
        Check("test_running_stats", "Estadístiques acumulades", RUNNING),
        Check("test_eval_output", "Sortida en mode avaluació", EVAL),
        Check("test_gradients", "Gradients", GRADIENTS),
        Check("test_momentum_eps", "momentum i eps", HYPER),
        Check("test_float64", "Entrada float64", FLOAT64),
        Check("test_constant_feature", "Característica constant", CONSTANT),
        Check("test_buffers", "Buffers", _buffers),
        Check("test_input_unmodified", "Entrada sense modificar", _inplace),
    ],
)
