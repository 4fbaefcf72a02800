"""Probe of assignment 5 (``BasicBlock``, ``make_resnet18``, ``fold_bn``, ``fold_resnet``, ``freeze_bn``).

Shipped as source text to the sandboxed child, where ``target`` is a dict of
the student's objects by name (``BasicBlock``, ``make_resnet18``, ``fold_bn``,
``fold_resnet``, ``freeze_bn``, ``ResNet``); each scenario answers with
measurements as JSON data, one scenario per test cell, so that an error in one
function costs only its own cells.  The grader computes the references itself
(``bncourse.checks.a5_modern_architectures``) from the same inputs, with its
own torch and torchvision; it reuses the input builders defined here
(``pair``, ``random_state``, ``bn_model``), never the measurements.

This module is executed before the student's code runs, so the torchvision
classes and functions it names below are the genuine ones.  Like the
notebook's hidden tests, a scenario makes torchvision's ``BasicBlock.forward``,
``resnet18`` and ``ResNet.__init__`` and PyTorch's fusion helpers raise while
the student's function runs (delegation), and swaps the student's
``BasicBlock`` (for ``make_resnet18``) and ``fold_bn`` (for ``fold_resnet``)
for references, so that a mistake in one exercise is paid once.
"""
import copy as _copy

import torch.ao.nn.intrinsic as _intrinsic
import torch.nn.utils.fusion as _fusion
import torchvision.models as _tv_models
import torchvision.models.resnet as _tv_resnet

_TVBlock = _tv_resnet.BasicBlock
_TVResNet = _tv_resnet.ResNet
_tv_resnet18 = _tv_resnet.resnet18
_MISSING = object()


def _forbidden(*args, **kwargs):
    raise AssertionError("cal fer servir el vostre codi, no el de torchvision ni les funcions de fusió de PyTorch")


class _Patched:
    """Set attributes for the duration of a block, restoring them afterwards (also on errors)."""

    def __init__(self, *triples):
        self.triples, self.saved = triples, []

    def __enter__(self):
        for owner, name, value in self.triples:
            self.saved.append((owner, name, owner.get(name, _MISSING) if isinstance(owner, dict)
                               else getattr(owner, name, _MISSING)))
            if isinstance(owner, dict):
                owner[name] = value
            else:
                setattr(owner, name, value)
        return self

    def __exit__(self, *exc):
        for owner, name, value in reversed(self.saved):
            if isinstance(owner, dict):
                if value is _MISSING:
                    owner.pop(name, None)
                else:
                    owner[name] = value
            elif value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        return False


def _globals_of(fn):
    ns = getattr(fn, "__globals__", None)
    return ns if isinstance(ns, dict) else {}


def _t(torch, values, dtype="float32"):
    return torch.tensor(values, dtype=getattr(torch, dtype))


def _plain(torch, value):
    if not isinstance(value, torch.Tensor):
        return {"not_a_tensor": type(value).__name__}
    return value.detach().cpu().double().tolist()


# ------------------------------------------------------------------ input builders (also used by the grader)

def random_state(torch, shapes, seed):
    """A state_dict drawn from ``seed``: ``shapes`` is [[name, shape, kind], ...] (kind: conv, fc_weight,
    fc_bias, bn_weight, bn_bias, mean, var, count).  The same values in the child and in the grader."""
    g = torch.Generator().manual_seed(int(seed))
    state = {}
    for name, shape, kind in shapes:
        shape = tuple(shape)
        if kind == "count":
            state[name] = torch.tensor(0, dtype=torch.int64)
        elif kind == "conv" or kind == "fc_weight":
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            state[name] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        elif kind == "bn_weight":
            state[name] = 0.5 + 0.5 * torch.rand(shape, generator=g)
        elif kind == "var":
            state[name] = 0.5 + torch.rand(shape, generator=g)
        else:  # fc_bias, bn_bias, mean
            state[name] = 0.2 * torch.randn(shape, generator=g)
    return state


def pair(torch, case):
    """The conv + BN pair (eval mode) and the input of one fold_bn case."""
    nn = torch.nn
    dtype = getattr(torch, case["dtype"])
    conv = nn.Conv2d(case["cin"], case["cout"], 3, bias=case["bias"], **case["conv_kwargs"]).to(dtype)
    bn = nn.BatchNorm2d(case["cout"], eps=case["eps"]).to(dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(case["weight"], dtype=dtype))
        if case["bias"]:
            conv.bias.copy_(torch.tensor(case["conv_bias"], dtype=dtype))
        bn.weight.copy_(torch.tensor(case["gamma"], dtype=dtype))
        bn.bias.copy_(torch.tensor(case["beta"], dtype=dtype))
        bn.running_mean.copy_(torch.tensor(case["mean"], dtype=dtype))
        bn.running_var.copy_(torch.tensor(case["var"], dtype=dtype))
    return conv.eval(), bn.eval(), torch.tensor(case["x"], dtype=dtype)


def bn_model(torch, state):
    """The small conv-BN model of the freeze_bn tests, with the given state_dict (lists)."""
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    model.load_state_dict({k: torch.tensor(v, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                           for k, v in state.items()}, strict=True)
    return model


def _reference_fold(torch, conv, bn):
    """conv + bn (eval) as one new Conv2d: what the notebook's test_fold_resnet uses as fold_bn."""
    nn = torch.nn
    conv, bn = _copy.deepcopy(conv).eval(), _copy.deepcopy(bn).eval()
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused = _copy.deepcopy(conv)
        fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _reference_block_class(torch):
    nn = torch.nn

    class ReferenceBlock(_TVBlock):
        """torchvision's block with the notebook's signature (what test_resnet18 swaps in)."""

        def __init__(self, in_channels, out_channels, stride=1, zero_init_residual=False):
            shortcut = None
            if stride != 1 or in_channels != out_channels:
                shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                         nn.BatchNorm2d(out_channels))
            super().__init__(in_channels, out_channels, stride, downsample=shortcut)
            if zero_init_residual:
                nn.init.zeros_(self.bn2.weight)
    return ReferenceBlock


# ------------------------------------------------------------------ scenarios (one per test cell)

def structure(target, torch, spec):
    nn = torch.nn
    Block = target["BasicBlock"]
    out = []
    for index, (cin, cout, stride, size) in enumerate(spec["cases"]):
        # the notebook's tests pass the stride by position and by name
        block = Block(cin, cout, stride) if index % 2 == 0 else Block(cin, cout, stride=stride)
        kinds = [isinstance(getattr(block, name, None), kind) for name, kind in
                 (("conv1", nn.Conv2d), ("bn1", nn.BatchNorm2d), ("relu", nn.ReLU), ("conv2", nn.Conv2d),
                  ("bn2", nn.BatchNorm2d))]
        if not hasattr(block, "downsample"):
            shortcut = "missing"
        elif block.downsample is None:
            shortcut = "none"
        else:
            shortcut = "module" if isinstance(block.downsample, nn.Module) else "other"
        y = block(torch.zeros(2, cin, size, size).uniform_(-1, 1))
        out.append({"kinds": kinds, "shortcut": shortcut, "shape": list(y.shape)})
    return {"cases": out}


def block_torchvision(target, torch, spec):
    Block = target["BasicBlock"]
    result = {"subclass": bool(isinstance(Block, type) and issubclass(Block, _TVBlock)), "cases": []}
    with _Patched((_TVBlock, "forward", _forbidden)):
        for case in spec["cases"]:
            block = Block(case["cin"], case["cout"], case["stride"])
            contains = any(isinstance(m, _TVBlock) for m in block.modules())
            state = {k: torch.tensor(v, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                     for k, v in case["state"].items()}
            block.load_state_dict(state, strict=True)
            x = _t(torch, case["x"])
            outputs = {}
            for mode in ("eval", "train"):
                block.train(mode == "train")
                with torch.no_grad():
                    outputs[mode] = _plain(torch, block(x.clone()))
            mine = block.state_dict()
            stats = {k: _plain(torch, mine[k]) if k in mine else None for k in case["state"] if "running" in k}
            result["cases"].append({"contains": contains, "outputs": outputs, "stats": stats})
    return result


def zero_init(target, torch, spec):
    nn = torch.nn
    Block = target["BasicBlock"]
    c, c2 = spec["c"], spec["c2"]
    plain = Block(c, c, 1, zero_init_residual=False)
    result = {"plain_bn2": _plain(torch, plain.bn2.weight), "cases": []}
    for cin, cout, stride in ((c, c, 1), (c, c2, 2)):
        block = Block(cin, cout, stride, zero_init_residual=True)
        others = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d) and m is not block.bn2]
        result["cases"].append({
            "bn2": _plain(torch, block.bn2.weight),
            "others_ok": all(bool(torch.all(m.weight == 1)) and bool(torch.all(m.bias == 0)) for m in others)})
    block = Block(c, c, 1, zero_init_residual=True)
    x = _t(torch, spec["x"])
    result["outputs"] = {}
    for mode in (True, False):
        block.train(mode)
        with torch.no_grad():
            y = block(x.clone())
            shortcut = getattr(block, "downsample", None)
            want = None if shortcut is None else torch.relu(shortcut(x.clone()))
        result["outputs"]["train" if mode else "eval"] = {"y": _plain(torch, y),
                                                          "shortcut": None if want is None else _plain(torch, want)}
    return result


def resnet18(target, torch, spec):
    make, ResNet = target["make_resnet18"], target["ResNet"]
    Reference = _reference_block_class(torch)
    result = {}
    with _Patched((_globals_of(make), "BasicBlock", Reference), (_tv_models, "resnet18", _forbidden),
                  (_tv_resnet, "resnet18", _forbidden), (_TVResNet, "__init__", _forbidden)):
        net = make(1000)
        result["is_resnet"] = bool(isinstance(ResNet, type) and isinstance(net, ResNet))
        result["params"] = int(sum(p.numel() for p in net.parameters()))
        net.load_state_dict(random_state(torch, spec["shapes"], spec["seed"]), strict=True)
        with torch.no_grad():
            result["logits"] = _plain(torch, net.eval()(_t(torch, spec["x"])))
        del net
        result["out_features"] = make(num_classes=spec["classes"]).fc.out_features
        zeroed = make(spec["classes2"], zero_init_residual=True)
        blocks = [m for m in zeroed.modules() if isinstance(m, _TVBlock)]
        result["blocks"] = len(blocks)
        result["zeroed"] = all(bool(torch.all(b.bn2.weight == 0)) for b in blocks)
        del zeroed
        plain = make(spec["classes2"])
        result["ones"] = all(bool(torch.all(b.bn2.weight == 1)) for b in plain.modules() if isinstance(b, _TVBlock))
        with torch.no_grad():
            result["shape"] = list(plain.eval()(torch.zeros(1, 3, 32, 32).uniform_(-1, 1)).shape)
    return result


def fold_bn(target, torch, spec):
    fold = target["fold_bn"]
    result = {"cases": []}
    forbidden = [(_fusion, name, _forbidden) for name in dir(_fusion) if name.startswith("fuse")]
    with _Patched(*forbidden, (_intrinsic, "ConvBn2d", _forbidden)):
        for case in spec["cases"]:
            conv, bn, x = pair(torch, case)
            before = {k: v.clone() for k, v in {**conv.state_dict(),
                                                  **{"bn." + k: v for k, v in bn.state_dict().items()}}.items()}
            fused = fold(conv, bn)
            after = {**conv.state_dict(), **{"bn." + k: v for k, v in bn.state_dict().items()}}
            entry = {"is_conv": isinstance(fused, torch.nn.Conv2d), "is_new": fused is not conv,
                     "unchanged": set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)}
            if entry["is_conv"]:
                entry["dtype"] = str(fused.weight.dtype).replace("torch.", "")
                with torch.no_grad():
                    entry["out"] = _plain(torch, fused(x))
            result["cases"].append(entry)
    return result


def fold_resnet(target, torch, spec):
    fn = target["fold_resnet"]
    net = _tv_resnet18(weights=None, num_classes=spec["classes"])
    net.load_state_dict(random_state(torch, spec["shapes"], spec["seed"]), strict=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()  # fold_resnet must work in eval() even when the model comes in train()
    with _Patched((_globals_of(fn), "fold_bn", lambda conv, bn: _reference_fold(torch, conv, bn))):
        folded = fn(net)
    after = net.state_dict()
    result = {
        "left": [name for name, m in folded.named_modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)][:5],
        "copy": folded is not net, "original_training": bool(net.training),
        "original_unchanged": set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)}
    with torch.no_grad():
        result["out"] = _plain(torch, folded(_t(torch, spec["x"])))
    return result


def _stats(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _fine_tune(torch, model, steps, require_params):
    params = [p for p in model.parameters() if p.requires_grad]
    if require_params and not params:
        raise AssertionError("després de freeze_bn no queda cap paràmetre per entrenar")
    opt = torch.optim.SGD(params, lr=0.1) if params else None
    for x, y in steps:
        model.train()  # as every training loop does
        loss = torch.nn.functional.cross_entropy(model(_t(torch, x)), torch.tensor(y, dtype=torch.int64))
        if opt:
            opt.zero_grad()
            loss.backward()
            opt.step()


def freeze_stats(target, torch, spec):
    model = bn_model(torch, spec["state"])
    frozen = target["freeze_bn"](model)
    if frozen is None:
        raise AssertionError("freeze_bn ha de retornar el model")
    frozen.train(True)
    frozen.train()
    with torch.no_grad():
        out = _plain(torch, frozen(_t(torch, spec["x"])))
    before = _stats(frozen)
    _fine_tune(torch, frozen, spec["steps"], require_params=False)
    after = _stats(frozen)
    return {"out": out, "before": {k: _plain(torch, v) for k, v in before.items()},
            "after": {k: _plain(torch, v) for k, v in after.items()}}


def freeze_params(target, torch, spec):
    frozen = target["freeze_bn"](bn_model(torch, spec["state"]))
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    _fine_tune(torch, frozen, spec["steps"], require_params=True)
    after = frozen.state_dict()
    keys = ("1.weight", "1.bias", "4.weight", "4.bias", "0.weight", "3.weight", "8.weight", "8.bias")
    return {"before": {k: _plain(torch, before[k]) for k in keys if k in before},
            "after": {k: _plain(torch, after[k]) for k in keys if k in after}}


SCENARIOS = {"structure": structure, "torchvision": block_torchvision, "zero_init": zero_init,
             "resnet18": resnet18, "fold_bn": fold_bn, "fold_resnet": fold_resnet,
             "freeze_stats": freeze_stats, "freeze_params": freeze_params}
