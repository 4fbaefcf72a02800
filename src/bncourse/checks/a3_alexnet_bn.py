"""Trusted checks of assignment 3: the student's ``train_one_epoch`` and ``evaluate``, out of the kernel.

Here students must USE PyTorch's normalisation layers, so the child runs with
the built-in kernels enabled (no ``guard``); everything else of the
re-check holds (fresh sandboxed child, processes refused, threads counted,
answer channel held by the grader, inputs drawn from a per-submission seed).
The probe (``a3_alexnet_bn_probe.py``) drives the two loops with small models
and loaders built from those inputs; the references are the same probe run
here on the loops as the notebook asks for them.

A correct ``train_one_epoch`` may compute its accuracy with a second forward
pass (without gradients, before or after the step): the log of forward calls
is judged on the calls that compute gradients, and the accuracy may be the one
of the weights before or after each step.

Not re-checked out of the kernel (the kernel's hidden tests decide them):
``test_features``, ``test_classifier``, ``test_alexnet_shape`` and
``test_alexnet_freeze`` (the model's structure), the written answers, and the
"loss goes down over 15 epochs" part of ``test_train_one_epoch``.
"""
from __future__ import annotations

from pathlib import Path

from coursekit.checks import AssignmentChecks, Check, field_of

from bncourse.checks import NORM_NAMES, NORM_OPS, PRELOAD, close, scenario_error

PROBE = Path(__file__).with_name("a3_alexnet_bn_probe.py")


def spec(seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)

    def data(n, d, classes, batch_size):
        return {"d": d, "classes": classes, "batch_size": batch_size,
                "x": torch.randn(n, d, generator=g).tolist(),
                "y": torch.randint(0, classes, (n,), generator=g).tolist(),
                "weight": (0.3 * torch.randn(classes, d, generator=g)).tolist(),
                "bias": (0.1 * torch.randn(classes, generator=g)).tolist()}

    # the last batch is smaller: averages must be per sample
    return {"train": {**data(50, 12, 3, 16), "lr": 0.05},
            "evaluate": {**data(42, 10, 4, 16), "running_mean": 0.3, "running_var": 2.0},
            "graphs": {**data(70, 8, 3, 16), "lr": 0.05}}


def _reference_train(model, loader, optimizer, criterion, device):
    model.train()
    total, correct, seen = 0.0, 0, 0
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        total += loss.item() * y.size(0)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += y.size(0)
    return total / seen, correct / seen


def _reference_train_second_pass(model, loader, optimizer, criterion, device):
    """The same loop counting the hits with a second forward pass after the step (also correct)."""
    import torch

    model.train()
    total, correct, seen = 0.0, 0, 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * y.size(0)
        with torch.no_grad():
            correct += (model(x).argmax(dim=1) == y).sum().item()
        seen += y.size(0)
    return total / seen, correct / seen


def _reference_evaluate(model, loader, criterion, device):
    import torch

    model.eval()
    total, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            total += criterion(logits, y).item() * y.size(0)
            correct += (logits.argmax(dim=1) == y).sum().item()
            seen += y.size(0)
    return total / seen, correct / seen


def reference(spec: dict) -> dict:
    import runpy

    import torch

    probe = runpy.run_path(str(PROBE))
    target = {"train_one_epoch": _reference_train, "evaluate": _reference_evaluate}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {name: {"error": None, **scenario(target, torch, spec[name])}
               for name, scenario in probe["SCENARIOS"].items()}
        second = probe["SCENARIOS"]["train"]({**target, "train_one_epoch": _reference_train_second_pass}, torch,
                                             spec["train"])
        out["train"]["acc_after_step"] = second["result"]["acc"]
        return out
    finally:
        torch.set_num_threads(threads)


def _train(student, ref) -> str | None:
    error = scenario_error(student, "train")
    if error:
        return error
    got, want = student["train"], ref["train"]
    log = field_of(got, "log")
    if not isinstance(log, list) or len(log) > 100 or not all(isinstance(e, list) and len(e) == 2 for e in log):
        return "el registre de crides al model no és vàlid"
    # the calls that compute gradients train; a further pass without gradients (for the accuracy) is free
    training = [mode for mode, grad in log if grad is True]
    if len(training) < len(want["log"]):
        return (f"el model ha calculat gradients {len(training)} vegades; hi ha {len(want['log'])} lots per "
                "entrenar")
    if not all(mode is True for mode in training):
        return "el model calcula els gradients en mode avaluació: cal posar-lo en mode entrenament"
    grads = field_of(got, "grads")
    if not isinstance(grads, list) or len(grads) != len(want["grads"]):
        return "cal un optimizer.step() per lot"
    for step, (g, w) in enumerate(zip(grads, want["grads"])):
        if close(g, w, 1e-5, 1e-4):
            return (f"el gradient del pas {step + 1} no és el del seu lot: falta optimizer.zero_grad(), "
                    "o la pèrdua no és CrossEntropyLoss sobre els logits")
    detail = close(field_of(got, "result", "loss"), want["result"]["loss"], 1e-5, 1e-5)
    if detail:
        return f"la pèrdua retornada no és la mitjana per mostra ({detail})"
    acc = field_of(got, "result", "acc")
    if close(acc, want["result"]["acc"], 1e-5, 1e-5) and close(acc, want["acc_after_step"], 1e-5, 1e-5):
        return f"l’exactitud retornada no és la fracció d'encerts per mostra ({close(acc, want['result']['acc'], 1e-5, 1e-5)})"
    if close(field_of(got, "weight"), want["weight"], 1e-5, 1e-4):
        return "els pesos finals no són els esperats després d'un pas d'SGD per lot"
    return None


def _graphs(student, ref) -> str | None:
    error = scenario_error(student, "graphs")
    if error:
        return error
    got = student["graphs"]
    calls, kept, alive = field_of(got, "calls"), field_of(got, "kept"), field_of(got, "alive_after")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (calls, kept, alive)):
        return "el recompte de grafs no és vàlid"
    if calls < ref["graphs"]["calls"]:
        return "la pèrdua de cada lot s'ha de calcular amb el criterion rebut"
    if kept or alive:
        return ("els grafs de càlcul de lots anteriors continuen vius: alguna cosa que es guarda d'un lot al "
                "següent depèn de la pèrdua")
    return None


def _evaluate(student, ref) -> str | None:
    error = scenario_error(student, "evaluate")
    if error:
        return error
    got, want = student["evaluate"], ref["evaluate"]
    log = field_of(got, "log")
    if not isinstance(log, list) or not log or any(entry != [False, False] for entry in log):
        return "cal model.eval() i torch.no_grad() en avaluar"
    for key in ("running_mean", "running_var"):
        if close(field_of(got, key), want[key], 0.0, 0.0):
            return "avaluar no pot modificar les estadístiques de BatchNorm"
    if field_of(got, "grads") != [False] * len(want["grads"]) or close(field_of(got, "weight"), want["weight"], 0.0, 0.0):
        return "avaluar no ha de deixar gradients ni modificar els pesos"
    for key in ("loss", "acc"):
        detail = close(field_of(got, "result", key), want["result"][key], 1e-5, 1e-5)
        if detail:
            return f"{'la pèrdua' if key == 'loss' else 'l’exactitud'} retornada no és la mitjana per mostra ({detail})"
    if field_of(got, "again") != field_of(got, "result"):
        return "dues avaluacions seguides han de donar el mateix resultat"
    return None


CHECKS = AssignmentChecks(
    assignment="a3_alexnet_bn",
    target=["train_one_epoch", "evaluate"],
    probe_file=PROBE,
    spec=spec,
    reference=reference,
    notebook="alexnet_bn",
    # PyTorch's norm layers run untouched (using them is the exercise); their names are only recorded
    forbidden_ops=NORM_OPS, builtin=NORM_NAMES, preload=PRELOAD,
    checks=[
        # implementation=False: here delegating to nn.BatchNorm is the exercise, not a fault
        Check("test_train_one_epoch", "train_one_epoch", _train, implementation=False),
        Check("test_train_graphs", "train_one_epoch", _graphs, implementation=False),
        Check("test_evaluate", "evaluate", _evaluate, implementation=False),
    ],
)
