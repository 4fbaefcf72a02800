"""Trusted checks of assignment 5: the residual block, ResNet-18, BN folding and freezing, out of the kernel.

Here students must USE PyTorch's layers (``nn.Conv2d``, ``nn.BatchNorm2d``), so,
as in A3, the child runs with the built-in kernels enabled (no ``guard``);
everything else of the re-check holds (fresh sandboxed child, processes refused,
answer channel held by the grader, inputs drawn from a per-submission seed).
Every one of the eight test cells is re-checked, each by its own scenario of
``a5_modern_architectures_probe.py``, with inputs the student never saw:

- ``test_block_structure``: module names and types, ``downsample`` only where
  the shortcut cannot be the identity, output shapes, for random channel counts;
- ``test_block_torchvision``: a random state_dict of torchvision's
  ``BasicBlock`` (random weights, BN affine parameters and running statistics)
  loads with ``strict=True`` and the block's outputs in eval() and train() and
  its updated running statistics equal those of torchvision's block, computed
  here; the block neither subclasses, contains nor calls torchvision's block;
- ``test_zero_init``: bn2's gamma is zero and the other BNs are (1, 0) with
  ``zero_init_residual``, one without it, and an identity block returns its
  (non-negative, random) input in train() and eval();
- ``test_resnet18`` (the student's ``BasicBlock`` swapped for torchvision's,
  as the notebook does): 11,689,512 parameters, an instance of the given
  ``ResNet``, a state_dict drawn from the seed (full size, once) loads strictly
  and gives torchvision's logits, ``num_classes`` and ``zero_init_residual``
  reach the model; torchvision's ``resnet18`` and ``ResNet`` may not be used;
- ``test_fold_bn``: random conv + BN pairs (with and without bias, random eps
  and statistics, stride / padding / dilation / groups, float32 and float64)
  folded into a new ``Conv2d`` of the same dtype that gives the unfused pair's
  eval() output computed here, without modifying the pair and without
  PyTorch's fusion helpers;
- ``test_fold_resnet`` (``fold_bn`` swapped for a reference fold): a
  torchvision ResNet-18 with a random state_dict, handed over in train(), folds
  into a copy without BatchNorm that gives the original's eval() logits computed
  here, and the original is left as it was;
- ``test_freeze_bn_stats``: after ``freeze_bn`` and ``model.train()`` the model
  gives the eval() output computed here, and the running statistics do not
  move in a few training steps;
- ``test_freeze_bn_params``: in those steps gamma and beta do not change and
  the convolutions and the linear layer do.

Not re-checked, and why: the written answers (graded by hand); the exact
torchvision error messages and the visible tests' fixed inputs (the random
inputs here cover them); the "no change" and "changed" comparisons of
``freeze_bn`` are between the child's own before/after values (the grader
cannot know how a correct freeze_bn leaves the model before fine-tuning), as
in the notebook.  As everywhere, code that shares the child's process could
forge the numbers it answers; forged numbers only score when they equal the
grader's references for inputs drawn after the code was written.

This module draws the inputs (``spec``), computes the reference and holds ``CHECKS``;
the comparisons, one per test cell, are in ``a5_modern_architectures_compare``.
"""
from __future__ import annotations

import runpy
from functools import lru_cache
from pathlib import Path

from coursekit.checks import AssignmentChecks, Check

from bncourse.checks import NORM_NAMES, NORM_OPS, PRELOAD
from bncourse.checks.a5_modern_architectures_compare import (
    _fold_bn, _fold_resnet, _freeze_params, _freeze_stats, _resnet18, _structure, _torchvision, _zero_init,
)

PROBE = Path(__file__).with_name("a5_modern_architectures_probe.py")


@lru_cache(maxsize=1)
def _probe() -> dict:
    return runpy.run_path(str(PROBE))


def _kind(name: str, shape) -> str:
    if name.endswith("num_batches_tracked"):
        return "count"
    if name.endswith("running_mean"):
        return "mean"
    if name.endswith("running_var"):
        return "var"
    if name.startswith("fc."):
        return "fc_weight" if name.endswith("weight") else "fc_bias"
    if len(shape) == 4:
        return "conv"
    return "bn_weight" if name.endswith("weight") else "bn_bias"


def _shapes(model) -> list:
    return [[k, list(v.shape), _kind(k, v.shape)] for k, v in model.state_dict().items()]


def _tv_block(nn, cin, cout, stride):
    from torchvision.models.resnet import BasicBlock

    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride, downsample=shortcut)


@lru_cache(maxsize=4)
def _resnet_shapes(num_classes: int) -> list:
    import torchvision

    return _shapes(torchvision.models.resnet18(weights=None, num_classes=num_classes))


def spec(seed: int) -> dict:
    import torch
    import torch.nn as nn

    g = torch.Generator().manual_seed(seed)

    def randint(low, high):
        return int(torch.randint(low, high + 1, (1,), generator=g))

    def randn(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=g, dtype=torch.float64)).tolist()

    def rand(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.rand(*shape, generator=g, dtype=torch.float64)).tolist()

    # structure: an identity shortcut and the three ways of needing a projection, random channel counts
    c, d = randint(3, 8), randint(9, 14)
    structure = {"cases": [[c, c, 1, 2 * randint(4, 6)], [c, d, 2, 2 * randint(4, 6)],
                           [d, c, 1, 2 * randint(4, 6)], [c, c, 2, 2 * randint(4, 6)]]}

    # torchvision: random state_dicts of torchvision's block (identity, projection with and without stride)
    cases = []
    for cin, cout, stride in ((c, c, 1), (c, d, 2), (d, c, 1)):
        state = {}
        for name, value in _tv_block(nn, cin, cout, stride).state_dict().items():
            shape = tuple(value.shape)
            if name.endswith("num_batches_tracked"):
                state[name] = 0
            elif len(shape) == 4:
                state[name] = randn(*shape, scale=0.3)
            elif name.endswith("running_var"):
                state[name] = rand(*shape, shift=0.5)
            elif name.endswith("running_mean"):
                state[name] = randn(*shape, scale=0.2)
            elif name.endswith("weight"):
                state[name] = rand(*shape, shift=0.5)
            else:
                state[name] = randn(*shape, scale=0.3)
        cases.append({"cin": cin, "cout": cout, "stride": stride, "state": state,
                      "x": randn(3, cin, 8, 8)})

    zero_init = {"c": c, "c2": d, "x": rand(3, c, 8, 8, scale=2.0)}

    resnet18 = {"shapes": _resnet_shapes(1000), "seed": randint(0, 2 ** 30), "x": randn(2, 3, 32, 32),
                "classes": randint(2, 9), "classes2": randint(10, 20)}

    folds = []
    layouts = [(False, "float32", {}), (True, "float32", {"stride": 2, "padding": 1}),
               (True, "float64", {"padding": 2, "dilation": 2}), (False, "float64", {"groups": 2, "padding": 1}),
               (True, "float32", {"stride": 3})]
    for bias, dtype, conv_kwargs in layouts:
        cin, cout = 2 * randint(1, 3), 2 * randint(2, 4)
        groups = conv_kwargs.get("groups", 1)
        folds.append({"cin": cin, "cout": cout, "bias": bias, "dtype": dtype, "conv_kwargs": conv_kwargs,
                      "eps": [1e-5, 1e-3, 0.05, 0.2][randint(0, 3)],
                      "weight": randn(cout, cin // groups, 3, 3, scale=0.3), "conv_bias": randn(cout),
                      "gamma": rand(cout, scale=2.0, shift=0.5), "beta": randn(cout), "mean": randn(cout, scale=2.0),
                      # small variances: eps counts
                      "var": rand(cout, scale=0.05, shift=0.01), "x": randn(3, cin, 11, 11)})

    fold_resnet = {"shapes": _resnet_shapes(5), "seed": randint(0, 2 ** 30), "classes": 5, "x": randn(2, 3, 32, 32)}

    def model_state(random_bn):
        state = {}
        for name, value in _bn_model_template().items():
            shape = tuple(value.shape)
            if name.endswith("num_batches_tracked"):
                state[name] = 0
            elif not random_bn and name.startswith(("1.", "4.")):
                state[name] = value.tolist()
            elif name.endswith("running_var"):
                state[name] = rand(*shape, shift=0.5)
            elif name.endswith("running_mean"):
                state[name] = randn(*shape, scale=0.5)
            elif name.startswith(("1.", "4.")) and name.endswith("weight"):
                state[name] = rand(*shape, shift=0.5)
            else:
                state[name] = randn(*shape, scale=0.3)
        return state

    def steps(n):
        return [[randn(4, 3, 8, 8, scale=3.0, shift=2.0), [randint(0, 2) for _ in range(4)]] for _ in range(n)]

    freeze_stats = {"state": model_state(True), "x": randn(4, 3, 8, 8, scale=3.0, shift=2.0), "steps": steps(3)}
    freeze_params = {"state": model_state(False), "steps": steps(3)}
    return {"structure": structure, "torchvision": {"cases": cases}, "zero_init": zero_init, "resnet18": resnet18,
            "fold_bn": {"cases": folds}, "fold_resnet": fold_resnet, "freeze_stats": freeze_stats,
            "freeze_params": freeze_params}


@lru_cache(maxsize=1)
def _bn_model_template() -> dict:
    """The state_dict layout of the freeze_bn model (values of a fresh model: BN gamma 1, beta 0, stats 0/1)."""
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    return {k: v.clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ references, computed here

def reference(spec: dict) -> dict:
    import torch
    import torch.nn as nn
    import torchvision

    probe = _probe()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict = {}
        out["structure"] = {"cases": [
            {"config": [cin, cout, stride], "kinds": [True] * 5, "shortcut": "none" if stride == 1 and cin == cout else "module",
             "shape": [2, cout, -(-size // stride), -(-size // stride)]}
            for cin, cout, stride, size in spec["structure"]["cases"]]}

        cases = []
        for case in spec["torchvision"]["cases"]:
            block = _tv_block(nn, case["cin"], case["cout"], case["stride"])
            block.load_state_dict({k: torch.tensor(v, dtype=torch.int64 if k.endswith("num_batches_tracked")
                                                   else torch.float32) for k, v in case["state"].items()})
            x = torch.tensor(case["x"], dtype=torch.float32)
            outputs = {}
            for mode in ("eval", "train"):
                block.train(mode == "train")
                with torch.no_grad():
                    outputs[mode] = block(x.clone()).double().tolist()
            stats = {k: v.double().tolist() for k, v in block.state_dict().items() if "running" in k}
            cases.append({"outputs": outputs, "stats": stats})
        out["torchvision"] = {"cases": cases}

        zero = spec["zero_init"]
        out["zero_init"] = {"plain_bn2": [1.0] * zero["c"], "bn2": [[0.0] * zero["c"], [0.0] * zero["c2"]],
                            "x": torch.tensor(zero["x"], dtype=torch.float32).double().tolist()}

        r = spec["resnet18"]
        net = torchvision.models.resnet18(weights=None)
        net.load_state_dict(probe["random_state"](torch, r["shapes"], r["seed"]), strict=True)
        with torch.no_grad():
            logits = net.eval()(torch.tensor(r["x"], dtype=torch.float32))
        out["resnet18"] = {"params": int(sum(p.numel() for p in net.parameters())),
                           "logits": logits.double().tolist(), "out_features": r["classes"],
                           "shape": [1, r["classes2"]]}
        del net

        folds = []
        for case in spec["fold_bn"]["cases"]:
            conv, bn, x = probe["pair"](torch, case)
            with torch.no_grad():
                folds.append({"dtype": case["dtype"], "out": bn(conv(x)).double().tolist()})
        out["fold_bn"] = {"cases": folds}

        f = spec["fold_resnet"]
        net = torchvision.models.resnet18(weights=None, num_classes=f["classes"])
        net.load_state_dict(probe["random_state"](torch, f["shapes"], f["seed"]), strict=True)
        with torch.no_grad():
            out["fold_resnet"] = {"out": net.eval()(torch.tensor(f["x"], dtype=torch.float32)).double().tolist()}
        del net

        s = spec["freeze_stats"]
        model = probe["bn_model"](torch, s["state"]).eval()
        with torch.no_grad():
            out["freeze_stats"] = {"out": model(torch.tensor(s["x"], dtype=torch.float32)).double().tolist()}
        return out
    finally:
        torch.set_num_threads(threads)


CHECKS = AssignmentChecks(
    assignment="a5_modern_architectures",
    target=["BasicBlock", "make_resnet18", "fold_bn", "fold_resnet", "freeze_bn", "ResNet"],
    probe_file=PROBE,
    spec=spec,
    reference=reference,
    notebook="modern_architectures",
    # PyTorch's norm layers run untouched (using them is the exercise); their names are only recorded
    forbidden_ops=NORM_OPS, builtin=NORM_NAMES, preload=PRELOAD,
    checks=[
        # implementation=False: the built-in layers are the exercise here, not delegation
        Check("test_block_structure", "BasicBlock (noms, tipus i formes)", _structure, implementation=False),
        Check("test_block_torchvision", "BasicBlock (intercanviable amb el de torchvision)", _torchvision,
              implementation=False),
        Check("test_zero_init", "BasicBlock (zero_init_residual)", _zero_init, implementation=False),
        Check("test_resnet18", "make_resnet18", _resnet18, implementation=False),
        Check("test_fold_bn", "fold_bn", _fold_bn, implementation=False),
        Check("test_fold_resnet", "fold_resnet", _fold_resnet, implementation=False),
        Check("test_freeze_bn_stats", "freeze_bn (estadístiques)", _freeze_stats, implementation=False),
        Check("test_freeze_bn_params", "freeze_bn (gamma i beta)", _freeze_params, implementation=False),
    ],
)
