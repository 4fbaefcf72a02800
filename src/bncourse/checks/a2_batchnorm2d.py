"""Trusted checks of assignment 2 (``MyBatchNorm2d``, ``BatchNorm2dFunction``, ``MyLayerNorm``, ``MyGroupNorm``).

Inputs are drawn here from a per-submission seed; the student's classes are
probed in the sandboxed child (``a2_batchnorm2d_probe.py``), where every
built-in normalisation kernel raises, and the same probe runs here on
references: ``nn.BatchNorm2d`` for the layer, for the Function a
from-scratch BatchNorm whose gradient autograd computes, and ``nn.LayerNorm`` /
``nn.GroupNorm`` for ``MyLayerNorm`` / ``MyGroupNorm`` (same parameter names).

Which test cells are re-checked, and what delegation costs where, follows the
notebook's own rules:

- the ten tests of ``MyBatchNorm2d``: a layer that delegates scores none of them;
- ``test_function_forward``: a forward that delegates scores 0 there;
- ``test_function_no_autograd``: the Function's backward, called directly, must
  give the right gradients without any normalisation kernel (a backward that
  delegates scores 0 there).  When the forward itself cannot run here (it
  delegates: that already costs ``test_function_forward``), the backward cannot
  be judged out of the kernel and this cell keeps the kernel's result;
- ``test_function_gradcheck`` and ``test_function_vs_autograd`` are not
  re-checked: the notebook lets a backward that delegates keep them, and their
  result comes from the kernel's own hidden tests;
- the five tests of ``MyLayerNorm`` / ``MyGroupNorm``: a class that delegates
  scores none of its own tests, nor ``test_norms_no_lot``, which runs both.
"""
from __future__ import annotations

from pathlib import Path

from coursekit.checks import AssignmentChecks, Check, as_array, field_of

from bncourse.checks import NORM_GUARD, NORM_NAMES, NORM_OPS, PRELOAD, close, scenario_error

PROBE = Path(__file__).with_name("a2_batchnorm2d_probe.py")
LAYER_CELL = ("bn2d_impl",)
FORBIDDEN_AUTOGRAD = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm")


def spec(seed: int) -> dict:
    """Inputs of every scenario, drawn from ``seed`` (lists of numbers)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def images(shape, spread=(0.5, 2.5), tiny=False):
        c = shape[1]
        scale = spread[0] + (spread[1] - spread[0]) * torch.rand(c, generator=g)
        if tiny:  # one channel of very small variance: where eps goes matters
            scale[0] = 0.01
        view = (1, -1) + (1,) * (len(shape) - 2)   # (N, C, ...): images, or (N, C) / (N, C, L) for the norms
        return (torch.randn(*shape, generator=g) * scale.view(view)
                + 2 * torch.randn(c, generator=g).view(view))

    def affine(c):
        return {"channels": c, "gamma": (0.5 + torch.rand(c, generator=g)).tolist(),
                "beta": torch.randn(c, generator=g).tolist()}

    out = {}
    # small m = N·H·W on purpose: biased / unbiased variance and m = N vs N·H·W differ by percents
    out["train"] = {"cases": [{"x": images(s, tiny=True).tolist(), **affine(s[1])}
                              for s in ((2, 3, 2, 2), (4, 2, 3, 3), (3, 4, 1, 2), (4, 3, 5, 5))]}
    out["running"] = {"cases": [{"batches": [images(s).tolist() for s in shapes], **affine(shapes[0][1])}
                                for shapes in (((2, 3, 2, 2), (5, 3, 3, 2), (3, 3, 1, 4)), ((4, 2, 2, 3), (2, 2, 1, 2)))]}
    out["evaluation"] = {"cases": [{"x": images(s).tolist(), "mean": (2 * torch.randn(s[1], generator=g)).tolist(),
                                    "var": torch.cat([torch.tensor([1e-4]), 0.05 + 3 * torch.rand(s[1] - 1, generator=g)]).tolist(),
                                    **affine(s[1])}
                                   for s in ((6, 3, 2, 2), (1, 2, 3, 3))]}
    out["gradients"] = {"cases": [{"x": images(s).tolist(), "w": torch.randn(*s, generator=g).tolist(), **affine(s[1])}
                                  for s in ((4, 3, 5, 5), (3, 2, 6, 6))]}
    out["momentum_eps"] = {"cases": [{"eps": eps, "momentum": m, **affine(3),
                                      "batches": [images((4, 3, 4, 4), (0.2, 0.6)).tolist() for _ in range(3)],
                                      "x_eval": images((3, 3, 2, 2)).tolist(),
                                      "eval_mean": torch.randn(3, generator=g).tolist(),
                                      "eval_var": (0.05 + 2 * torch.rand(3, generator=g)).tolist()}
                                     for eps, m in ((0.1, 0.3), (0.05, 0.2))]}
    out["eval_gradients"] = {"cases": [{"x": images(s).tolist(), "w": torch.randn(*s, generator=g).tolist(),
                                        "mean": torch.randn(s[1], generator=g).tolist(),
                                        "var": (0.2 + 2 * torch.rand(s[1], generator=g)).tolist(), **affine(s[1])}
                                       for s in ((4, 3, 3, 3), (1, 2, 4, 4))]}
    out["channels_last"] = {"cases": [{"x": images(s).tolist(), **affine(s[1])} for s in ((3, 4, 5, 8), (2, 3, 8, 8))]}
    out["single_image"] = {"cases": [{"batches": [images((1, 3, 10, 12)).tolist() for _ in range(2)], **affine(3)}]}
    out["buffers_input"] = {"channels": 4, "x": images((3, 4, 2, 3)).tolist(), "x_eval": images((2, 4, 2, 2)).tolist()}
    out["own"] = {"channels": 3, "x": images((4, 3, 2, 2)).tolist()}
    fn_cases = []
    for s, eps in (((3, 2, 4, 4), 1e-5), ((1, 3, 2, 5), 0.1), ((5, 4, 1, 3), 1e-3)):
        case = {"x": images(s).tolist(), "eps": eps, **affine(s[1])}
        case.pop("channels")
        fn_cases.append(case)
    out["function_forward"] = {"cases": fn_cases}
    bw_cases = []
    for s, eps in (((3, 2, 3, 4), 1e-5), ((1, 3, 2, 2), 0.1)):
        case = {"x": images(s).tolist(), "w": torch.randn(*s, generator=g).tolist(), "eps": eps, **affine(s[1])}
        case.pop("channels")
        bw_cases.append(case)
    out["function_backward"] = {"cases": bw_cases}

    def norm_case(shape, tiny=False, **kw):
        """A LayerNorm case (normalized=...) or a GroupNorm one (groups=...), weight shaped accordingly."""
        affine_shape = kw["normalized"] if "normalized" in kw else [shape[1]]
        case = {"x": images(shape, tiny=tiny).tolist(), "eps": kw.pop("eps", 1e-5), "affine": kw.pop("affine", True),
                "channels": shape[1], **kw}
        case["weight"] = (0.5 + torch.rand(*affine_shape, generator=g)).tolist()
        case["bias"] = torch.randn(*affine_shape, generator=g).tolist()
        return case

    out["ln_output"] = {"cases": [norm_case((3, 4, 3, 5), tiny=True, normalized=[4, 3, 5]),
                                  norm_case((2, 3, 4, 6), normalized=[6], eps=1e-3),
                                  norm_case((4, 2, 3, 3), tiny=True, normalized=[3, 3], affine=False),
                                  norm_case((2, 5, 8), normalized=[5, 8], eps=0.05)]}
    out["gn_output"] = {"cases": [norm_case((3, 8, 3, 5), tiny=True, groups=4),
                                  norm_case((2, 6, 4, 4), groups=2, eps=1e-3),
                                  norm_case((4, 6, 3, 3), tiny=True, groups=3, affine=False),
                                  norm_case((3, 9, 5), groups=3, eps=0.05)]}
    ln_grad = [norm_case(s, normalized=[s[-1]]) for s in ((5, 160), (3, 2, 90))]
    gn_grad = [norm_case(s, groups=k) for s, k in (((3, 4, 7, 7), 1), ((2, 3, 10, 10), 3))]
    for case, shape in zip(ln_grad + gn_grad, ((5, 160), (3, 2, 90), (3, 4, 7, 7), (2, 3, 10, 10))):
        case["w"] = torch.randn(*shape, generator=g).tolist()
    out["ln_gradients"], out["gn_gradients"] = {"cases": ln_grad}, {"cases": gn_grad}
    out["norms_no_lot"] = {"cases": [norm_case((5, 3, 2, 4), normalized=[3, 2, 4]), norm_case((5, 3, 2, 4), groups=3),
                                     norm_case((5, 4, 2, 4), groups=2)]}
    return out


def reference(spec: dict) -> dict:
    """The probe run here on nn.BatchNorm2d and on a from-scratch Function (the grader's own torch)."""
    import runpy

    import torch

    class Layer(torch.nn.BatchNorm2d):
        gamma = property(lambda self: self.weight)
        beta = property(lambda self: self.bias)

    class Function:
        @staticmethod
        def apply(x, gamma, beta, eps):
            x, gamma, beta = x.double(), gamma.double(), beta.double()
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
            return gamma.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + eps) + beta.view(1, -1, 1, 1)

    probe = runpy.run_path(str(PROBE))
    target = {"MyBatchNorm2d": Layer, "BatchNorm2dFunction": Function, "MyLayerNorm": torch.nn.LayerNorm,
              "MyGroupNorm": torch.nn.GroupNorm, "reference": True}
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, scenario in probe["SCENARIOS"].items():
            if name in ("buffers_input", "own"):   # judged on their own
                continue
            out[name] = {"error": None, **scenario(target, torch, spec[name])}
    finally:
        torch.set_num_threads(threads)
    return out


# ------------------------------------------------------------ comparisons
# The notebook's check_close: |mine - ref| <= atol + rtol · max|ref|, per tensor.

def _scaled(got, want, atol: float, rtol: float) -> str | None:
    import numpy as np

    ref = np.asarray(want, dtype=np.float64)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return close(got, want, atol + rtol * scale, 0.0)


def _cases(scenario: str, key: str, what: str, atol: float = 1e-5, rtol: float = 1e-4):
    def compare(student: dict, ref: dict) -> str | None:
        error = scenario_error(student, scenario)
        if error:
            return error
        got_cases, want_cases = field_of(student, scenario, "cases"), ref[scenario]["cases"]
        if not isinstance(got_cases, list) or len(got_cases) != len(want_cases):
            return "falten resultats"
        for index, (got, want) in enumerate(zip(got_cases, want_cases)):
            got_value = field_of(got, key) if isinstance(got, dict) else None
            want_value = want[key]
            if isinstance(want_value, list) and want_value and isinstance(want_value[0], list) \
                    and key in ("train", "y") and scenario in ("momentum_eps", "single_image"):
                pairs = list(zip(got_value, want_value)) if isinstance(got_value, list) \
                    and len(got_value) == len(want_value) else None
                if pairs is None:
                    return f"{what}: falten resultats (cas {index + 1})"
                details = [_scaled(g, w, atol, rtol) for g, w in pairs]
                detail = next((d for d in details if d), None)
            else:
                detail = _scaled(got_value, want_value, atol, rtol)
            if detail:
                return f"{what} no coincideix amb la referència (cas {index + 1}: {detail})"
        return None
    return compare


def _all(*compares):
    def compare(student, ref):
        for c in compares:
            detail = c(student, ref)
            if detail:
                return detail
        return None
    return compare


def _running(student, ref):
    error = scenario_error(student, "running")
    if error:
        return error
    got_cases, want_cases = field_of(student, "running", "cases"), ref["running"]["cases"]
    if not isinstance(got_cases, list) or len(got_cases) != len(want_cases):
        return "falten resultats"
    for got, want in zip(got_cases, want_cases):
        steps = field_of(got, "steps") if isinstance(got, dict) else None
        if not isinstance(steps, list) or len(steps) != len(want["steps"]):
            return "falten resultats"
        for step, (g, w) in enumerate(zip(steps, want["steps"])):
            for key in ("mean", "var"):
                detail = _scaled(field_of(g, key) if isinstance(g, dict) else None, w[key], 1e-5, 1e-4)
                if detail:
                    return f"running_{key} no coincideix amb nn.BatchNorm2d després del pas {step + 1} ({detail})"
    return None


def _eval_buffers_unchanged(student, ref):
    for got, want in zip(field_of(student, "evaluation", "cases") or [], ref["evaluation"]["cases"]):
        for key in ("mean", "var"):
            if _scaled(field_of(got, key) if isinstance(got, dict) else None, want[key], 1e-6, 1e-5):
                return "en mode avaluació no s'han de modificar running_mean ni running_var"
    return None


def _same_layout(student, ref) -> str | None:
    """channels_last must give what the contiguous input gives, with the student's own layer."""
    error = scenario_error(student, "channels_last")
    if error:
        return error
    cases = field_of(student, "channels_last", "cases")
    if not isinstance(cases, list) or len(cases) != len(ref["channels_last"]["cases"]):
        return "falten resultats"
    for index, case in enumerate(cases):
        if not isinstance(case, dict):
            return "falten resultats"
        for key, what in (("y", "la sortida"), ("mean", "running_mean"), ("var", "running_var"),
                          ("eval", "la sortida en avaluació")):
            contiguous = as_array(case.get(f"{key}_a"))
            if contiguous is None:
                return f"amb channels_last, {what}: no s'ha obtingut cap tensor vàlid"
            detail = _scaled(case.get(key), contiguous.tolist(), 1e-5, 1e-4)
            if detail:
                return f"amb channels_last, {what} no és la mateixa que amb l'entrada contigua (cas {index + 1}: {detail})"
    return None


def _buffers_input(student, ref) -> str | None:
    error = scenario_error(student, "buffers_input")
    if error:
        return error
    info = field_of(student, "buffers_input")
    for name in ("running_mean", "running_var"):
        entry = field_of(info, name)
        if not isinstance(entry, dict) or entry.get("registered") is not True or entry.get("in_state_dict") is not True:
            return f"{name} ha de continuar sent un buffer registrat (register_buffer)"
        if entry.get("shape") != [4]:
            return f"{name} ha de tenir forma (C,)"
        if entry.get("history") is not False:
            return f"{name} arrossega historial d'autograd: actualitzeu-lo dins de torch.no_grad() o amb .detach()"
    if field_of(info, "params") != ["beta", "gamma"]:
        return "els paràmetres han de ser gamma i beta"
    if field_of(info, "x_unchanged") is not True or field_of(info, "eval_unchanged") is not True:
        return "la capa ha modificat l'entrada x"
    return None


def _own(student, ref) -> str | None:
    error = scenario_error(student, "own")
    if error:
        return error
    names, modules = field_of(student, "own", "autograd"), field_of(student, "own", "modules")
    if not isinstance(names, list) or not names or not isinstance(modules, list):
        return "no s'ha pogut examinar la implementació"
    if any(k in str(n) for n in names for k in FORBIDDEN_AUTOGRAD):
        return "la sortida ve d'una normalització de PyTorch"
    if any(str(m).startswith("torch.") and "norm" in str(m) for m in modules):
        return "MyBatchNorm2d hereta o conté una capa de normalització de PyTorch"
    return None


def _backward(student, ref) -> str | None:
    error = scenario_error(student, "function_backward")
    if error:
        return error
    got_cases, want_cases = field_of(student, "function_backward", "cases"), ref["function_backward"]["cases"]
    if not isinstance(got_cases, list) or len(got_cases) != len(want_cases):
        return "falten resultats"
    for index, (got, want) in enumerate(zip(got_cases, want_cases)):
        if isinstance(got, dict) and "forward_error" in got:
            return None   # the forward cannot run here: test_function_forward already says why
        for key, what in (("x", "dx"), ("gamma", "dgamma"), ("beta", "dbeta")):
            detail = _scaled(field_of(got, key) if isinstance(got, dict) else None, want[key], 1e-4, 1e-2)
            if detail:
                return f"{what} calculat pel vostre backward no coincideix amb el gradient correcte (cas {index + 1}: {detail})"
    return None


def _layer_check(grade_id, what, compare, *scenarios):
    return Check(grade_id, what, compare, scenarios=scenarios, cells=LAYER_CELL)


def _norms_check(grade_id, what, compare, *scenarios):
    # MyLayerNorm and MyGroupNorm share one answer cell: a static finding there may belong to either class,
    # so only the operators each scenario ran count (and code outside the answer cells), as for the Function
    return Check(grade_id, what, compare, scenarios=scenarios, cells=())


def _no_lot(student, ref) -> str | None:
    """Each sample alone gives what it gives in the lot, eval() what train() gives, and no buffers."""
    error = scenario_error(student, "norms_no_lot")
    if error:
        return error
    cases = field_of(student, "norms_no_lot", "cases")
    if not isinstance(cases, list) or len(cases) != len(ref["norms_no_lot"]["cases"]):
        return "falten resultats"
    for index, case in enumerate(cases):
        together = as_array(case.get("together")) if isinstance(case, dict) else None
        alone = case.get("alone") if isinstance(case, dict) else None
        if together is None or not isinstance(alone, list) or len(alone) != len(together):
            return f"no s'ha obtingut cap tensor vàlid (cas {index + 1})"
        if _scaled(alone, together.tolist(), 1e-5, 1e-4):
            return f"la sortida d'una mostra depèn de la resta del lot (cas {index + 1})"
        if _scaled(case.get("eval"), together.tolist(), 1e-5, 1e-4):
            return f"la sortida en eval() no és la de train() (cas {index + 1})"
        if case.get("buffers") != 0:
            return f"la capa té estadístiques acumulades (buffers) (cas {index + 1})"
    return None   # the values themselves are the output tests' skill, as in the notebook


CHECKS = AssignmentChecks(
    assignment="a2_batchnorm2d",
    # built from scratch: PyTorch's norm layers are disabled in the child, naming them costs points
    forbidden_ops=NORM_OPS, builtin=NORM_NAMES, preload=PRELOAD, own_implementation=True, guard=NORM_GUARD,
    target=["MyBatchNorm2d", "BatchNorm2dFunction", "MyLayerNorm", "MyGroupNorm"],
    probe_file=PROBE,
    spec=spec,
    reference=reference,
    notebook="batchnorm2d",
    checks=[
        _layer_check("test_bn2d_train_output", "Sortida en mode entrenament",
                     _cases("train", "y", "la sortida en mode entrenament"), "train"),
        _layer_check("test_bn2d_running_stats", "Estadístiques acumulades", _running, "running"),
        _layer_check("test_bn2d_eval_output", "Sortida en mode avaluació",
                     _all(_cases("evaluation", "y", "la sortida en mode avaluació"), _eval_buffers_unchanged),
                     "evaluation"),
        _layer_check("test_bn2d_gradients", "Gradients", _all(
            _cases("gradients", "x", "el gradient respecte de x", 1e-4, 1e-2),
            _cases("gradients", "gamma", "el gradient respecte de gamma", 1e-4, 1e-2),
            _cases("gradients", "beta", "el gradient respecte de beta", 1e-4, 1e-2)), "gradients"),
        _layer_check("test_bn2d_eval_gradients", "Gradients en mode avaluació", _all(
            _cases("eval_gradients", "x", "en avaluació, el gradient respecte de x", 1e-5, 1e-3),
            _cases("eval_gradients", "gamma", "en avaluació, el gradient respecte de gamma", 1e-5, 1e-3),
            _cases("eval_gradients", "beta", "en avaluació, el gradient respecte de beta", 1e-5, 1e-3)),
            "eval_gradients"),
        _layer_check("test_bn2d_momentum_eps", "Momentum i eps", _all(
            _cases("momentum_eps", "train", "amb eps i momentum propis, la sortida en entrenament", 1e-3, 1e-2),
            _cases("momentum_eps", "mean", "amb eps i momentum propis, running_mean", 1e-3, 1e-2),
            _cases("momentum_eps", "eval", "amb eps i momentum propis, la sortida en avaluació", 1e-3, 1e-2)),
            "momentum_eps"),
        _layer_check("test_bn2d_channels_last", "Entrada channels_last", _all(
            _cases("channels_last", "y", "amb channels_last, la sortida", 1e-3, 1e-2), _same_layout),
            "channels_last"),
        _layer_check("test_bn2d_single_image", "Batch d'una sola imatge", _all(
            _cases("single_image", "y", "amb N = 1, la sortida", 1e-3, 1e-2),
            _cases("single_image", "mean", "amb N = 1, running_mean", 1e-3, 1e-2)), "single_image"),
        _layer_check("test_bn2d_buffers_input", "Buffers i entrada", _buffers_input, "buffers_input"),
        _layer_check("test_bn2d_own_impl", "Implementació pròpia", _own,
                     "train", "running", "evaluation", "gradients", "eval_gradients", "momentum_eps", "channels_last",
                     "single_image", "buffers_input", "own"),
        _norms_check("test_layernorm_output", "Sortida de MyLayerNorm",
                     _cases("ln_output", "y", "la sortida de MyLayerNorm"), "ln_output"),
        _norms_check("test_layernorm_gradients", "Gradients de MyLayerNorm", _all(
            _cases("ln_gradients", "x", "el gradient de MyLayerNorm respecte de x", 1e-4, 1e-2),
            _cases("ln_gradients", "weight", "el gradient respecte de weight", 1e-4, 1e-2),
            _cases("ln_gradients", "bias", "el gradient respecte de bias", 1e-4, 1e-2)), "ln_gradients"),
        _norms_check("test_groupnorm_output", "Sortida de MyGroupNorm",
                     _cases("gn_output", "y", "la sortida de MyGroupNorm"), "gn_output"),
        _norms_check("test_groupnorm_gradients", "Gradients de MyGroupNorm", _all(
            _cases("gn_gradients", "x", "el gradient de MyGroupNorm respecte de x", 1e-4, 1e-2),
            _cases("gn_gradients", "weight", "el gradient respecte de weight", 1e-4, 1e-2),
            _cases("gn_gradients", "bias", "el gradient respecte de bias", 1e-4, 1e-2)), "gn_gradients"),
        _norms_check("test_norms_no_lot", "LayerNorm i GroupNorm no miren el lot", _no_lot, "norms_no_lot"),
        # The Function's cell holds forward and backward: a finding there may belong to
        # either, so only the operators each scenario ran (and code outside the answer
        # cells) count; the built-in kernels raise here anyway.
        Check("test_function_forward", "Forward de BatchNorm2dFunction",
              _cases("function_forward", "y", "la sortida de BatchNorm2dFunction", 1e-5, 1e-4),
              scenarios=("function_forward",), cells=()),
        Check("test_function_no_autograd", "Backward sense autograd", _backward, scenarios=(), cells=()),
    ],
)
