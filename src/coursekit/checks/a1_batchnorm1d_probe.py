"""Probe of assignment 1 (``MyBatchNorm1d``): measurements of a batch-norm layer.

Shipped as source text to the sandboxed child, where ``Layer`` is the
student's class; the grader also runs it here with ``torch.nn.BatchNorm1d``
(``coursekit.checks.a1_batchnorm1d``) for the references.  It uses only the
``torch`` it is given and returns JSON data.  Each scenario gets its own
inputs (``spec[name]``, lists of numbers) and a fresh layer.
"""


def _t(torch, values, dtype="float32", grad=False):
    return torch.tensor(values, dtype=getattr(torch, dtype), requires_grad=grad)


def _plain(torch, value):
    """A tensor as nested lists of floats (or a description of what it is not)."""
    if not isinstance(value, torch.Tensor):
        return {"not_a_tensor": type(value).__name__}
    return value.detach().cpu().double().tolist()


def _set_affine(torch, layer, spec):
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor(spec["gamma"]))
        layer.beta.copy_(torch.tensor(spec["beta"]))


def _stats(torch, layer):
    return {"running_mean": _plain(torch, layer.running_mean), "running_var": _plain(torch, layer.running_var)}


def train(Layer, torch, spec):
    """One training step: output and running statistics."""
    layer = Layer(spec["features"])
    _set_affine(torch, layer, spec)
    layer.train()
    y = layer(_t(torch, spec["x"]))
    return {"y": _plain(torch, y), **_stats(torch, layer)}


def grads(Layer, torch, spec):
    """Gradients of a training step w.r.t. input, gamma and beta."""
    layer = Layer(spec["features"])
    _set_affine(torch, layer, spec)
    layer.train()
    x = _t(torch, spec["x"], grad=True)
    (layer(x) * _t(torch, spec["upstream"])).sum().backward()
    missing = {"missing": True}
    return {"grad_x": _plain(torch, x.grad) if x.grad is not None else missing,
            "grad_gamma": _plain(torch, layer.gamma.grad) if layer.gamma.grad is not None else missing,
            "grad_beta": _plain(torch, layer.beta.grad) if layer.beta.grad is not None else missing}


def steps(Layer, torch, spec):
    """Several training steps of different batch sizes, then evaluation."""
    layer = Layer(spec["features"])
    _set_affine(torch, layer, spec)
    layer.train()
    history = []
    for batch in spec["batches"]:
        layer(_t(torch, batch))
        history.append(_stats(torch, layer))
    layer.eval()
    y_eval = layer(_t(torch, spec["x_eval"]))
    after_eval = _stats(torch, layer)
    y_eval_again = layer(_t(torch, spec["x_eval"]))
    return {"history": history, "y_eval": _plain(torch, y_eval), "after_eval": after_eval,
            "y_eval_again": _plain(torch, y_eval_again)}


def hyper(Layer, torch, spec):
    """Non-default eps and momentum (keyword arguments, as in the API)."""
    layer = Layer(spec["features"], eps=spec["eps"], momentum=spec["momentum"])
    _set_affine(torch, layer, spec)
    layer.train()
    outputs, history = [], []
    for batch in spec["batches"]:
        outputs.append(_plain(torch, layer(_t(torch, batch))))
        history.append(_stats(torch, layer))
    layer.eval()
    return {"outputs": outputs, "history": history, "y_eval": _plain(torch, layer(_t(torch, spec["x_eval"])))}


def float64(Layer, torch, spec):
    """A float64 layer on float64 input keeps float64 and its precision."""
    layer = Layer(spec["features"]).double()
    _set_affine(torch, layer, spec)
    layer.train()
    y = layer(_t(torch, spec["x"], "float64"))
    layer.eval()
    y_eval = layer(_t(torch, spec["x_eval"], "float64"))
    return {"y": _plain(torch, y), "dtype": str(y.dtype), "y_eval": _plain(torch, y_eval),
            "dtype_eval": str(y_eval.dtype), **_stats(torch, layer)}


def constant(Layer, torch, spec):
    """A constant feature and a nearly constant one (where eps matters)."""
    layer = Layer(spec["features"])
    _set_affine(torch, layer, spec)
    layer.train()
    y = layer(_t(torch, spec["x"]))
    stats = _stats(torch, layer)
    layer.eval()
    return {"y": _plain(torch, y), "y_eval": _plain(torch, layer(_t(torch, spec["x"]))), **stats}


def buffers(Layer, torch, spec):
    """Running statistics stay registered buffers without autograd history."""
    layer = Layer(spec["features"])
    layer.train()
    for batch in spec["batches"]:
        layer(_t(torch, batch, grad=True) * 1.0)  # carries history, yet may be changed in place
    named = dict(layer.named_buffers())
    info = {}
    for name in ("running_mean", "running_var"):
        value = getattr(layer, name, None)
        is_tensor = isinstance(value, torch.Tensor)
        info[name] = {
            "registered": name in named,
            "in_state_dict": name in layer.state_dict(),
            "tensor": is_tensor,
            "requires_grad": bool(value.requires_grad) if is_tensor else None,
            "has_history": (value.grad_fn is not None) if is_tensor else None,
            "shape": list(value.shape) if is_tensor else None,
        }
    parameters = sorted(name for name, _ in layer.named_parameters())
    return {"buffers": info, "parameters": parameters}


def inplace(Layer, torch, spec):
    """The input tensor is left as it was, in training and in evaluation."""
    layer = Layer(spec["features"])
    layer.train()
    x = _t(torch, spec["x"])
    layer(x)
    x_after_train = _plain(torch, x)
    layer.eval()
    x_eval = _t(torch, spec["x_eval"])
    layer(x_eval)
    return {"x_after_train": x_after_train, "x_eval_after": _plain(torch, x_eval)}


SCENARIOS = {"train": train, "grads": grads, "steps": steps, "hyper": hyper, "float64": float64,
             "constant": constant, "buffers": buffers, "inplace": inplace}
