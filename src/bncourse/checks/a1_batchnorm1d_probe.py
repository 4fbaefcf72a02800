"""Probe of assignment 1 (``MyBatchNorm1d``): measurements of a batch-norm layer.

Shipped as source text to the sandboxed child, where ``Layer`` is the
student's class; the grader also runs it here on ``torch.nn.BatchNorm1d``
(``bncourse.checks.a1_batchnorm1d``) for the references.  It uses only the
``torch`` it is given, and returns JSON data.  Each scenario mirrors one test
cell of the notebook, with inputs of its own (``spec[name]``, lists of
numbers) and fresh layers.
"""


def _t(torch, values, dtype="float32"):
    return torch.tensor(values, dtype=getattr(torch, dtype))


def _plain(torch, value):
    """A tensor as nested lists of floats (or a note saying what it is instead)."""
    if not isinstance(value, torch.Tensor):
        return {"not_a_tensor": type(value).__name__}
    return value.detach().cpu().double().tolist()


def _layer(Layer, torch, case, **kwargs):
    layer = Layer(case["features"], **kwargs)
    if "gamma" in case:
        with torch.no_grad():
            layer.gamma.copy_(_t(torch, case["gamma"]))
            layer.beta.copy_(_t(torch, case["beta"]))
    return layer


def _set_stats(torch, layer, mean, var):
    with torch.no_grad():
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)


def _grad(torch, tensor):
    return _plain(torch, tensor.grad) if tensor.grad is not None else {"missing": True}


def train(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case).train()
        out.append({"y": _plain(torch, layer(_t(torch, case["x"])))})
    return {"cases": out}


def running(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case).train()
        steps = []
        for batch in case["batches"]:
            layer(_t(torch, batch))
            steps.append({"mean": _plain(torch, layer.running_mean), "var": _plain(torch, layer.running_var)})
        out.append({"steps": steps})
    return {"cases": out}


def evaluation(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case)
        _set_stats(torch, layer, _t(torch, case["mean"]), _t(torch, case["var"]))
        layer.eval()
        y = layer(_t(torch, case["x"]))
        out.append({"y": _plain(torch, y), "mean": _plain(torch, layer.running_mean),
                    "var": _plain(torch, layer.running_var)})
    return {"cases": out}


def gradients(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case).train()
        x = _t(torch, case["x"]).requires_grad_()
        w = _t(torch, case["w"])
        y = layer(x)
        (w * y + y ** 2).sum().backward()
        out.append({"x": _grad(torch, x), "gamma": _grad(torch, layer.gamma), "beta": _grad(torch, layer.beta)})
    return {"cases": out}


def momentum(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case, momentum=case["momentum"]).train()
        for batch in case["batches"]:
            layer(_t(torch, batch))
        out.append({"mean": _plain(torch, layer.running_mean), "var": _plain(torch, layer.running_var)})
    return {"cases": out}


def eps(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case, eps=case["eps"]).train()
        x = _t(torch, case["x"])
        y_train = layer(x.clone())
        _set_stats(torch, layer, _t(torch, case["mean"]), _t(torch, case["var"]))
        layer.eval()
        out.append({"train": _plain(torch, y_train), "eval": _plain(torch, layer(x.clone()))})
    return {"cases": out}


def float64(Layer, torch, spec):
    layer = _layer(Layer, torch, spec).double().train()
    y = layer(_t(torch, spec["x"], "float64"))
    dtypes = [str(getattr(getattr(layer, name, None), "dtype", None)) for name in ("running_mean", "running_var", "gamma")]
    _set_stats(torch, layer, _t(torch, spec["mean"], "float64"), _t(torch, spec["var"], "float64"))
    layer.eval()
    y_eval = layer(_t(torch, spec["x_eval"], "float64"))
    return {"y": _plain(torch, y), "y_eval": _plain(torch, y_eval),
            "dtypes": [str(y.dtype), str(y_eval.dtype)] + dtypes}


def eval_gradients(Layer, torch, spec):
    """Gradients in eval mode, running statistics set to the batch's own (as the notebook's test)."""
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case)
        _set_stats(torch, layer, _t(torch, case["mean"]), _t(torch, case["var"]))
        layer.eval()
        x = _t(torch, case["x"]).requires_grad_()
        y = layer(x * 1.0)  # not a leaf, as inside a network: changing x in place is judged elsewhere
        (_t(torch, case["w"]) * y).sum().backward()
        out.append({"x": _grad(torch, x), "gamma": _grad(torch, layer.gamma), "beta": _grad(torch, layer.beta)})
    return {"cases": out}


def constant(Layer, torch, spec):
    # the input does not require grad: the gradient with respect to x is test_gradients' business
    out = []
    for case in spec["cases"]:
        layer = _layer(Layer, torch, case).train()
        y = layer(_t(torch, case["x"]))
        (_t(torch, case["w"]) * y).sum().backward()
        out.append({"y": _plain(torch, y), "gamma": _grad(torch, layer.gamma), "beta": _grad(torch, layer.beta)})
    return {"cases": out}


def buffers(Layer, torch, spec):
    torch.manual_seed(spec["seed"])
    linear = torch.nn.Linear(spec["inputs"], spec["features"])
    layer = Layer(spec["features"])
    layer.train()
    for batch in spec["batches"]:
        layer(linear(_t(torch, batch).requires_grad_()))
    layer.eval()
    layer(linear(_t(torch, spec["x_eval"])))
    named, params, state = dict(layer.named_buffers()), dict(layer.named_parameters()), layer.state_dict()
    info = {}
    for name in ("running_mean", "running_var"):
        value = getattr(layer, name, None)
        tensor = isinstance(value, torch.Tensor)
        info[name] = {
            "registered": named.get(name) is value and tensor,
            "parameter": name in params,
            "in_state_dict": name in state and tensor and bool(torch.equal(state[name], value.detach())),
            "history": (value.grad_fn is not None or bool(value.requires_grad)) if tensor else True,
        }
    layer.double()
    info["double"] = [str(getattr(getattr(layer, n, None), "dtype", None)) for n in ("running_mean", "running_var")]
    return info


def inplace(Layer, torch, spec):
    out = []
    for case in spec["cases"]:
        x = _t(torch, case["x"])
        before = x._version
        Layer(case["features"]).train(case["training"])(x)
        out.append({"x": _plain(torch, x), "version_changed": x._version != before})
    return {"cases": out}


def own(Layer, torch, spec):
    """Names of the autograd nodes behind the output and of the classes involved."""
    names = set()
    for training in (True, False):
        layer = Layer(spec["features"]).train(training)
        x = _t(torch, spec["x"]).requires_grad_() * 1.0  # not a leaf: changing x in place is judged elsewhere
        pending, seen = [layer(x).grad_fn], set()
        while pending:
            fn = pending.pop()
            if fn is not None and fn not in seen:
                seen.add(fn)
                names.add(type(fn).__name__)
                pending.extend(next_fn for next_fn, _ in fn.next_functions)
    layer = Layer(spec["features"])
    modules = {str(c.__module__) for c in type(layer).__mro__} | {str(type(m).__module__) for m in layer.modules()}
    return {"autograd": sorted(names), "modules": sorted(modules)}


SCENARIOS = {"train": train, "running": running, "evaluation": evaluation, "gradients": gradients,
             "eval_gradients": eval_gradients, "momentum": momentum, "eps": eps, "float64": float64, "constant": constant,
             "buffers": buffers, "inplace": inplace, "own": own}
