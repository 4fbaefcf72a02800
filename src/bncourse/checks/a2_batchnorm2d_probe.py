"""Probe of assignment 2 (``MyBatchNorm2d``, ``BatchNorm2dFunction``, ``MyLayerNorm``, ``MyGroupNorm``):
measurements as JSON data.

Shipped as source text to the sandboxed child, where ``target`` is
``{"MyBatchNorm2d": class, "BatchNorm2dFunction": class, "MyLayerNorm": class, "MyGroupNorm": class}``
from the student's code; the grader runs the same scenarios on references of its own
(``bncourse.checks.a2_batchnorm2d``).  It uses only the ``torch`` it is given.
Each scenario mirrors one test cell of the notebook, with inputs of its own
(``spec[name]``).  In the child every built-in normalisation kernel raises
(``_harness.py``): a layer or Function that delegates fails here.
"""


def _t(torch, values, dtype="float32"):
    return torch.tensor(values, dtype=getattr(torch, dtype))


def _plain(torch, value):
    if not isinstance(value, torch.Tensor):
        return {"not_a_tensor": type(value).__name__}
    return value.detach().cpu().double().tolist()


def _grad(torch, tensor):
    return _plain(torch, tensor.grad) if tensor.grad is not None else {"missing": True}


def _layer(target, torch, case, **kwargs):
    layer = target["MyBatchNorm2d"](case["channels"], **kwargs)
    with torch.no_grad():
        layer.gamma.copy_(_t(torch, case["gamma"]))
        layer.beta.copy_(_t(torch, case["beta"]))
    return layer


def train(target, torch, spec):
    return {"cases": [{"y": _plain(torch, _layer(target, torch, c).train()(_t(torch, c["x"])))}
                      for c in spec["cases"]]}


def running(target, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(target, torch, case).train()
        steps = []
        for batch in case["batches"]:
            layer(_t(torch, batch))
            steps.append({"mean": _plain(torch, layer.running_mean), "var": _plain(torch, layer.running_var)})
        out.append({"steps": steps})
    return {"cases": out}


def evaluation(target, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(target, torch, case)
        with torch.no_grad():
            layer.running_mean.copy_(_t(torch, case["mean"]))
            layer.running_var.copy_(_t(torch, case["var"]))
        layer.eval()
        y = layer(_t(torch, case["x"]))
        out.append({"y": _plain(torch, y), "mean": _plain(torch, layer.running_mean),
                    "var": _plain(torch, layer.running_var)})
    return {"cases": out}


def gradients(target, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(target, torch, case).train()
        x = _t(torch, case["x"]).requires_grad_()
        (layer(x) * _t(torch, case["w"])).sum().backward()
        out.append({"x": _grad(torch, x), "gamma": _grad(torch, layer.gamma), "beta": _grad(torch, layer.beta)})
    return {"cases": out}


def eval_gradients(target, torch, spec):
    """Gradients in evaluation mode, with the running statistics set here."""
    out = []
    for case in spec["cases"]:
        layer = _layer(target, torch, case)
        with torch.no_grad():
            layer.running_mean.copy_(_t(torch, case["mean"]))
            layer.running_var.copy_(_t(torch, case["var"]))
        layer.eval()
        x = _t(torch, case["x"]).requires_grad_()
        y = layer(x)
        if not (isinstance(y, torch.Tensor) and y.requires_grad):
            out.append({"x": {"missing": True}, "gamma": {"missing": True}, "beta": {"missing": True}})
            continue
        (y * _t(torch, case["w"])).sum().backward()
        out.append({"x": _grad(torch, x), "gamma": _grad(torch, layer.gamma), "beta": _grad(torch, layer.beta)})
    return {"cases": out}


def momentum_eps(target, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(target, torch, case, eps=case["eps"], momentum=case["momentum"]).train()
        ys = [_plain(torch, layer(_t(torch, batch))) for batch in case["batches"]]
        stats = {"mean": _plain(torch, layer.running_mean)}
        # the evaluation output with buffers set here: running_var (Bessel) belongs to another cell
        with torch.no_grad():
            layer.running_mean.copy_(_t(torch, case["eval_mean"]))
            layer.running_var.copy_(_t(torch, case["eval_var"]))
        layer.eval()
        out.append({"train": ys, **stats, "eval": _plain(torch, layer(_t(torch, case["x_eval"])))})
    return {"cases": out}


def channels_last(target, torch, spec):
    """The same input as channels_last (layer b) and contiguous (layer a): b must agree with a."""
    out = []
    for case in spec["cases"]:
        a, b = _layer(target, torch, case).train(), _layer(target, torch, case).train()
        x = _t(torch, case["x"])
        y_a, y_b = a(x.clone()), b(x.clone().to(memory_format=torch.channels_last))
        entry = {"y_a": _plain(torch, y_a), "y": _plain(torch, y_b), "mean_a": _plain(torch, a.running_mean),
                 "mean": _plain(torch, b.running_mean), "var_a": _plain(torch, a.running_var),
                 "var": _plain(torch, b.running_var)}
        a.eval()
        b.eval()
        entry["eval_a"] = _plain(torch, a(x.clone()))
        entry["eval"] = _plain(torch, b(x.clone().to(memory_format=torch.channels_last)))
        out.append(entry)
    return {"cases": out}


def single_image(target, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(target, torch, case).train()
        ys = [_plain(torch, layer(_t(torch, batch))) for batch in case["batches"]]
        out.append({"y": ys, "mean": _plain(torch, layer.running_mean)})
    return {"cases": out}


def buffers_input(target, torch, spec):
    layer = target["MyBatchNorm2d"](spec["channels"])
    x = _t(torch, spec["x"]).requires_grad_()
    before = x.detach().clone()
    for _ in range(2):
        layer(x).pow(2).sum().backward()
    named, state = dict(layer.named_buffers()), layer.state_dict()
    info = {"params": sorted(name for name, _ in layer.named_parameters()),
            "x_unchanged": bool(torch.equal(x.detach(), before))}
    for name in ("running_mean", "running_var"):
        value = named.get(name)
        tensor = isinstance(value, torch.Tensor)
        info[name] = {"registered": tensor and getattr(layer, name, None) is value, "in_state_dict": name in state,
                      "shape": list(value.shape) if tensor else None,
                      "history": (value.grad_fn is not None or bool(value.requires_grad)) if tensor else True}
    layer.eval()
    x_eval = _t(torch, spec["x_eval"])
    eval_before = x_eval.clone()
    layer(x_eval)
    info["eval_unchanged"] = bool(torch.equal(x_eval, eval_before))
    return info


def own(target, torch, spec):
    names = set()
    for training in (True, False):
        layer = target["MyBatchNorm2d"](spec["channels"]).train(training)
        x = _t(torch, spec["x"]).requires_grad_() * 1.0
        pending, seen = [layer(x).grad_fn], set()
        while pending:
            fn = pending.pop()
            if fn is not None and fn not in seen:
                seen.add(fn)
                names.add(type(fn).__name__)
                pending.extend(next_fn for next_fn, _ in fn.next_functions)
    layer = target["MyBatchNorm2d"](spec["channels"])
    modules = {str(c.__module__) for c in type(layer).__mro__} | {str(type(m).__module__) for m in layer.modules()}
    return {"autograd": sorted(names), "modules": sorted(modules)}


def function_forward(target, torch, spec):
    function = target["BatchNorm2dFunction"]
    return {"cases": [{"y": _plain(torch, function.apply(_t(torch, c["x"]), _t(torch, c["gamma"]),
                                                          _t(torch, c["beta"]), c["eps"]))}
                      for c in spec["cases"]]}


def function_backward(target, torch, spec):
    """Gradients from the Function's own backward, called directly under no_grad (the
    reference's comes from autograd).  ``forward_error``: the forward failed, so the
    backward could not be judged here."""
    function = target["BatchNorm2dFunction"]
    out = []
    for case in spec["cases"]:
        x, gamma, beta = (_t(torch, case[k]).requires_grad_() for k in ("x", "gamma", "beta"))
        upstream = _t(torch, case["w"])
        try:
            y = function.apply(x, gamma, beta, case["eps"])
        except Exception as exc:
            out.append({"forward_error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        if target.get("reference"):
            grads = torch.autograd.grad(y, (x, gamma, beta), upstream)
        else:
            with torch.no_grad():
                grads = function.backward(y.grad_fn, upstream)
        if not isinstance(grads, (tuple, list)) or len(grads) < 3:
            out.append({"x": {"missing": True}})
            continue
        out.append({"x": _plain(torch, grads[0]), "gamma": _plain(torch, grads[1]), "beta": _plain(torch, grads[2])})
    return {"cases": out}


# ------------------------------------------------------------ MyLayerNorm and MyGroupNorm

def _norm_layer(target, torch, case):
    """MyLayerNorm (case["normalized"]) or MyGroupNorm (case["groups"]) with the case's weight and bias."""
    if "normalized" in case:
        layer = target["MyLayerNorm"](tuple(case["normalized"]), eps=case["eps"], elementwise_affine=case["affine"])
    else:
        layer = target["MyGroupNorm"](case["groups"], case["channels"], eps=case["eps"], affine=case["affine"])
    if case["affine"]:
        with torch.no_grad():
            layer.weight.copy_(_t(torch, case["weight"]))
            layer.bias.copy_(_t(torch, case["bias"]))
    return layer


def norm_output(target, torch, spec):
    return {"cases": [{"y": _plain(torch, _norm_layer(target, torch, c)(_t(torch, c["x"])))} for c in spec["cases"]]}


def norm_gradients(target, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _norm_layer(target, torch, case)
        x = _t(torch, case["x"]).requires_grad_()
        (layer(x) * _t(torch, case["w"])).sum().backward()
        out.append({"x": _grad(torch, x), "weight": _grad(torch, layer.weight), "bias": _grad(torch, layer.bias)})
    return {"cases": out}


def norms_no_lot(target, torch, spec):
    """Each sample alone, the whole lot in train() and in eval(), and the number of buffers."""
    out = []
    for case in spec["cases"]:
        layer = _norm_layer(target, torch, case).train()
        x = _t(torch, case["x"])
        together = layer(x)
        alone = [_plain(torch, layer(x[k:k + 1]))[0] for k in range(x.shape[0])]
        layer.eval()
        out.append({"together": _plain(torch, together), "alone": alone, "eval": _plain(torch, layer(x)),
                    "buffers": len(list(layer.buffers()))})
    return {"cases": out}


SCENARIOS = {"train": train, "running": running, "evaluation": evaluation, "gradients": gradients,
             "eval_gradients": eval_gradients, "momentum_eps": momentum_eps, "channels_last": channels_last, "single_image": single_image,
             "buffers_input": buffers_input, "own": own, "function_forward": function_forward,
             "function_backward": function_backward, "ln_output": norm_output, "ln_gradients": norm_gradients,
             "gn_output": norm_output, "gn_gradients": norm_gradients, "norms_no_lot": norms_no_lot}
