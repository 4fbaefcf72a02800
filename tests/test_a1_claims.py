"""Assignment 1: the claims the notebook makes, and the facts its model answers state, hold with a margin.

The notebook's own code (source notebook, instructor's solution of MyBatchNorm1d,
its data, model and experiment cells) is executed here cell by cell, outside
nbgrader, with the notebook's ``SEED`` set to several values:

1. part 2 (fast mode, what the autograder shows): with MyBatchNorm1d the MLP ends
   with less than half the training loss of the plain MLP and a higher
   validation accuracy, on every seed;
2. initialisation scale (weights ~ N(0, s²), s in ``INIT_SCALES``): without BN
   the MLP does not learn at the two small scales (its training loss stays at
   log C), with BN it learns at every scale (loss far below log C, validation
   accuracy clearly above the plain MLP's), on every seed; in full mode (stand-in Fashion-MNIST), the plain MLP learns at s = 0.1
   only, as the model answer says;
3. BN before or after the ReLU: both learn, and the gap between them is small
   next to the gap between BN and no BN at a small scale, on every seed.

Float order must not decide a claim: the fast-mode claims are judged again in
subprocesses with two math threads and with other CPU kernels
(``ATEN_CPU_CAPABILITY=default`` / ``avx2``), two seeds each
(``claims_support``).

The facts the model answers state are computed with the same code: the
full-mode inputs are pixels in [0, 1]; nn.Linear's default initialisation
shrinks the signal while BN restores it; BN's output does not change when the
weights before it are scaled; train() with a batch of one example outputs
beta. The full-mode data loaders run on a generated stand-in for the download
(no machine here reaches the internet). Every written answer carries its rubric.

Tiers (tests/tiers.py): the runs on seeds, the float-order variants and everything computed on the stand-in
full-mode data (70,000 generated images, trainings) are ``thorough``; what reads the notebook's text, or
computes a fact on fast mode's small data in a fraction of a second, is ``quick``.

Run as a script (``python tests/test_a1_claims.py [--threads N] SEED ...``) it
prints the fast-mode runs of those seeds as JSON: that is what the subprocesses do.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: the helpers beside it

# (the notebook is read with claims_support.read_notebook, not nbformat: the script starts without its import)
from claims_support import (FLOAT_ORDER_VARIANTS, SOLUTION_RE, VARIANT_IDS, cell_by_grade_id,  # noqa: E402
                            float_orders, notebook_fixture, notebook_runs, read_notebook, script_main)
from conftest import REPO, shared_module  # noqa: E402
from tiers import thorough  # noqa: E402

assert float_orders  # a fixture of this module's tests, imported from claims_support

A1 = REPO / "source" / "a1_batchnorm1d" / "batchnorm1d.ipynb"
# cells that define the layer, the data, the models and the experiments, in notebook order
CELLS = ("bn1d-impl", "part2-data", "part2-model", "part3-code")
SEEDS = (0, 1, 2, 3)
VARIANT_SEEDS = (0, 1)


def cell(nb, cell_id: str) -> str:
    return SOLUTION_RE.sub("", next(c for c in nb.cells if c.get("id") == cell_id).source)


def answer(nb, grade_id: str) -> str:
    return cell_by_grade_id(nb, grade_id).source


def nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def notebook_namespace() -> dict:
    """The notebook's namespace after the shared cells and CELLS (fast mode, solution code), one math thread."""
    import matplotlib

    matplotlib.use("Agg")
    os.environ["COURSE_MODE"] = "fast"
    nb = read_notebook(A1)
    ns = dict(vars(shared_module("course_utils.py", "course_loops.py")))
    assert ns["FAST"], "the claims are checked in fast mode"
    for cell_id in CELLS:
        exec(compile(cell(nb, cell_id), cell_id, "exec"), ns)
    torch.set_num_threads(1)
    return ns


def claim_runs(ns: dict, seeds) -> dict:
    """{"seed/experiment/run": history} of part 2, the init-scale sweep and the BN placement, per seed."""
    out = {}
    quiet = io.StringIO()
    for seed in seeds:
        ns["SEED"] = seed
        with contextlib.redirect_stderr(quiet):
            for batch_norm in (False, True):
                out[f"{seed}/part2/{batch_norm}"] = ns["run_experiment"](batch_norm=batch_norm)[1]
            for scale in ns["INIT_SCALES"]:
                for batch_norm in (False, True):
                    out[f"{seed}/scale {scale:g}/{batch_norm}"] = ns["run_variant"]("", batch_norm, init_scale=scale)
            for after in (False, True):
                out[f"{seed}/placement/{after}"] = ns["run_variant"]("", True, bn_after_activation=after)
    ns["SEED"] = 0
    return out


def table(runs) -> str:
    return "\n".join(f"{key:<24} val acc " + " ".join(f"{a:.2f}" for a in h["val_acc"])
                     + " | train loss " + " ".join(f"{x:.2f}" for x in h["train_loss"]) for key, h in sorted(runs.items()))


def _last(history, key):
    return math.nan if history["diverged"] else history[key][-1]


def judge(runs, num_classes: int, scales) -> list[str]:
    """Every claim on every seed of ``runs``; the failures, one line each."""
    log_c, chance = math.log(num_classes), 1 / num_classes
    failures = []
    for seed in sorted({int(k.split("/")[0]) for k in runs}):
        def run(name, flag):
            return runs[f"{seed}/{name}/{flag}"]
        # part 2: BN ends with less than half the training loss, and a higher validation accuracy
        plain, bn = run("part2", False), run("part2", True)
        if not (_last(bn, "train_loss") < 0.5 * _last(plain, "train_loss") and _last(bn, "val_acc") > _last(plain, "val_acc")):
            failures.append(f"seed {seed}: part 2, BN does not train clearly better")
        # init scale: without BN nothing is learnt at the small scales; with BN every scale learns
        for scale in scales:
            plain, bn = run(f"scale {scale:g}", False), run(f"scale {scale:g}", True)
            if scale < 0.05 and not min(plain["train_loss"]) >= 0.95 * log_c:
                failures.append(f"seed {seed}: at s={scale:g} the plain MLP learns")
            # (validation accuracy: clearly above the plain MLP's; after few epochs from a tiny scale the running
            # statistics still lag behind weights that move fast, so it is the training loss that shows learning)
            if not (_last(bn, "train_loss") <= 0.5 * log_c and _last(bn, "val_acc") >= _last(plain, "val_acc") + 0.1):
                failures.append(f"seed {seed}: at s={scale:g} the MLP with BN does not learn")
        # placement: both learn; their gap is small next to BN vs no BN at s=0.01
        before, after = run("placement", False), run("placement", True)
        if not all(_last(h, "train_loss") <= 0.5 * log_c and _last(h, "val_acc") >= chance + 0.4 for h in (before, after)):
            failures.append(f"seed {seed}: BN before or after the ReLU does not learn")
        gap = abs(_last(before, "val_acc") - _last(after, "val_acc"))
        bn_gain = _last(run("scale 0.01", True), "val_acc") - _last(run("scale 0.01", False), "val_acc")
        if not (gap <= 0.1 and gap <= 0.25 * bn_gain):
            failures.append(f"seed {seed}: BN before vs after differ by {gap:.2f} (BN vs none at s=0.01: {bn_gain:.2f})")
    return failures


# ---------------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def notebook():
    """The notebook's namespace (definitions and fast mode's small data: about a second): quick."""
    yield from notebook_fixture(notebook_namespace)


@pytest.fixture(scope="module")
@thorough
def runs(notebook, float_orders):
    """The claim runs of SEEDS in this process (one thread): minutes.  float_orders is set up first, so that the
    one-thread variants this session selected compute on the other core meanwhile."""
    out = claim_runs(notebook, SEEDS)
    print("\n" + table(out))  # shown with pytest -s: the numbers behind the claims
    return out


# ---------------------------------------------------------------------------------------------------------
# the claims, fast mode

def test_the_claims_hold_on_every_seed(notebook, runs):
    failures = judge(runs, notebook["NUM_CLASSES"], notebook["INIT_SCALES"])
    assert not failures, "\n".join(failures) + "\n" + table(runs)


@pytest.mark.parametrize("name,env,threads", FLOAT_ORDER_VARIANTS, ids=VARIANT_IDS)
def test_the_claims_do_not_hinge_on_float_order(notebook, float_orders, name, env, threads):
    runs = float_orders(env, threads)
    failures = judge(runs, notebook["NUM_CLASSES"], notebook["INIT_SCALES"])
    print(f"\n{name}:\n" + table(runs))
    assert not failures, f"{name}:\n" + "\n".join(failures) + "\n" + table(runs)


def test_the_question_names_the_scales_the_notebook_runs(notebook):
    nb = read_notebook(A1)
    intro = next(c for c in nb.cells if c.get("id") == "part3-intro").source
    assert "(" + ", ".join(f"{s:g}" for s in notebook["INIT_SCALES"][:-1]) + f" i {notebook['INIT_SCALES'][-1]:g})" in intro
    text = answer(nb, "answer_experiments")
    assert "totes tres" in text and "només aprèn amb s = 0.1" in text


# ---------------------------------------------------------------------------------------------------------
# full mode: stand-in Fashion-MNIST
class FakeFashionMNIST:
    """torchvision's FashionMNIST as the notebook uses it (uint8 images 28x28, targets), generated with
    Fashion-MNIST's pixel statistics (about half the pixels black; mean about 0.27 and std about 0.34 once
    divided by 255): a shared silhouette, a class-specific pattern on it, and pixel noise."""

    def __init__(self, root, train=True, download=False):
        n = 60000 if train else 10000
        shared = torch.Generator().manual_seed(0)
        mask = (torch.rand(28 * 28, generator=shared) < 0.55).float()
        base = torch.rand(28 * 28, generator=shared)
        templates = mask * (0.8 * base + 0.2 * torch.rand(10, 28 * 28, generator=shared))
        g = torch.Generator().manual_seed(1 if train else 2)
        self.targets = torch.randint(0, 10, (n,), generator=g)
        pixels = (templates[self.targets] + 0.3 * torch.randn(n, 28 * 28, generator=g) * mask).clamp(0, 1)
        self.data = (255 * pixels).round().to(torch.uint8).reshape(n, 28, 28)


@pytest.fixture(scope="module")
def a1(notebook):
    """A1's notebook and the `notebook` fixture's namespace (the shared cells, the solution of MyBatchNorm1d,
    part 2's data and model cells and part 3's code, fast mode): the tests leave it as they found it."""
    return read_notebook(A1), notebook


@pytest.fixture(scope="module")
@thorough
def full_data(notebook, monkeypatch_module):
    """A1's full-mode data, loaded through the notebook's own loader from the stand-in Fashion-MNIST (70,000
    generated images: seconds)."""
    import torchvision.datasets

    monkeypatch_module.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    return notebook["load_tabular"](fast=False, root="unused")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_a1_full_mode_inputs_are_pixels_in_0_1(a1, full_data):
    """Answer 2: in Colab the inputs are Fashion-MNIST pixels in [0, 1], all non-negative, not centred."""
    nb, ns = a1
    train, val, test, features, classes = full_data
    x = torch.stack([train[i][0] for i in range(2000)])
    assert (features, classes) == (784, 10) and x.shape[1] == 784
    assert x.min() >= 0 and x.max() <= 1 and 0.2 < x.mean() < 0.35 and 0.4 < (x == 0).float().mean() < 0.6
    assert "píxels entre 0 i 1" in answer(nb, "answer_mlp")


def test_a1_fast_mode_inputs_are_far_from_zero(a1):
    """The answer says the "far from zero, different scales" explanation is true of fast mode's data."""
    nb, ns = a1
    x = torch.stack([ns["train_set"][i][0] for i in range(len(ns["train_set"]))])
    assert x.mean(0).abs().median() > 5 and x.std(0).max() / x.std(0).min() > 3
    assert "mode ràpid" in answer(nb, "answer_mlp")


def _linear_outputs(model, x):
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o.detach()))
             for m in model if isinstance(m, torch.nn.Linear)]
    model(x)
    for h in hooks:
        h.remove()
    return outs


def test_a1_default_init_shrinks_the_signal_and_bn_restores_it(a1, full_data):
    """Answer 2: with nn.Linear's default initialisation and inputs in [0, 1], the part of each unit that
    varies across examples (its std over the batch) falls below half at every linear layer, and each unit
    carries a common offset of the same size or larger; after MyBatchNorm1d every unit has mean 0, std 1."""
    nb, ns = a1
    train = full_data[0]
    x = torch.stack([train[i][0] for i in range(1024)])
    ns["seed_everything"](0)
    plain = ns["make_mlp"](784, 10, batch_norm=False)
    stds = [float(o.std(0).mean()) for o in _linear_outputs(plain, x)]
    offsets = [float(o.mean(0).abs().mean()) for o in _linear_outputs(plain, x)]
    assert all(b < 0.5 * a for a, b in zip(stds, stds[1:])), stds
    assert all(off > 0.5 * s for off, s in zip(offsets, stds)), (offsets, stds)
    ns["seed_everything"](0)
    bn = ns["make_mlp"](784, 10, batch_norm=True).train()
    norms = []
    hooks = [m.register_forward_hook(lambda m, i, o: norms.append(o.detach()))
             for m in bn if type(m).__name__ == "MyBatchNorm1d"]
    bn(x)
    for h in hooks:
        h.remove()
    assert len(norms) == 2
    for o in norms:
        assert o.mean(0).abs().max() < 1e-4 and (o.std(0, unbiased=False) - 1).abs().max() < 1e-2
    text = answer(nb, "answer_mlp")
    assert "menys de la meitat a cada capa" in text and "inicialització per defecte" in text


def test_a1_bn_lowers_the_loss_sooner_on_pixel_data(a1, full_data):
    """Answer 1: with BN the training loss is lower after the first epoch and at the end, and the final
    validation and test accuracies are higher, on [0, 1] pixel data through the notebook's own
    run_experiment and summary cell (full-mode batch size and learning rate, 2 epochs on a subset)."""
    import contextlib
    import io

    nb, ns = a1
    train, val, test, features, classes = full_data
    # part 2's model cell again, in a copy of the namespace with full mode's data: run_experiment reads them there
    ns = dict(ns, train_set=torch.utils.data.Subset(train, range(12800)), val_set=torch.utils.data.Subset(val, range(2000)),
              test_set=torch.utils.data.Subset(test, range(2000)), NUM_FEATURES=features, NUM_CLASSES=classes,
              EPOCHS=2, BATCH_SIZE=128, plot_curves=lambda *a, **k: None)
    exec(compile(cell(nb, "part2-model"), "part2-model", "exec"), ns)
    for name, batch_norm in (("sense BN", False), ("amb BN", True)):
        ns["models"][name], ns["histories"][name] = ns["run_experiment"](batch_norm=batch_norm)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(cell(nb, "part2-results"), "part2-results", "exec"), ns)
    line = (r"^(sense BN|amb BN): pèrdua d'entrenament final ([0-9.]+) · exactitud de validació ([0-9.]+) · "
            r"exactitud de test ([0-9.]+) · pèrdua d'entrenament després de la 1a època ([0-9.]+)$")
    rows = {m[0]: [float(v) for v in m[1:]] for m in re.findall(line, printed.getvalue(), re.MULTILINE)}
    assert set(rows) == {"sense BN", "amb BN"}, printed.getvalue()
    (loss, val_acc, test_acc, first), (bn_loss, bn_val, bn_test, bn_first) = rows["sense BN"], rows["amb BN"]
    assert bn_first < first and bn_loss < loss and bn_val > val_acc and bn_test > test_acc, rows


def test_a1_train_mode_at_evaluation(a1):
    """Answer 3: in train() a batch of one example normalises to x_hat = 0 (the layer outputs beta, or the
    n/(n-1) correction divides by zero; nn.BatchNorm1d refuses it); with a large batch an example's output
    depends on the others and the running statistics move; in eval() neither happens."""
    nb, ns = a1
    torch.manual_seed(0)
    layer = ns["MyBatchNorm1d"](5)
    with torch.no_grad():
        layer.beta.copy_(torch.arange(5.0))
    x = torch.randn(64, 5) * 3 + 1
    try:
        out = layer.train()(x[:1])
        assert torch.allclose(out, layer.beta.detach().unsqueeze(0))
    except ZeroDivisionError:
        pass
    with pytest.raises(ValueError):
        torch.nn.BatchNorm1d(5).train()(x[:1])
    before = layer.running_mean.clone()
    a, b = layer(x[:32])[0], layer(torch.cat([x[:1], x[32:]]))[0]
    assert not torch.allclose(a, b) and not torch.allclose(layer.running_mean, before)
    layer.eval()
    frozen = layer.running_mean.clone()
    assert torch.allclose(layer(x[:32])[0], layer(torch.cat([x[:1], x[32:]]))[0])
    assert torch.equal(layer.running_mean, frozen)
    text = answer(nb, "answer_mlp")
    assert "x̂ = 0" in text and "la sortida de la capa és β" in text and "n/(n-1) divideix per zero" in text


def test_a1_question_asks_for_the_numbers_the_summary_prints(a1):
    nb, ns = a1
    summary = cell(nb, "part2-results")
    question = next(c for c in nb.cells if c.get("id") == "question-md").source
    for printed, asked in (("pèrdua d'entrenament final", "al final"), ("1a època", "primera època"),
                           ("exactitud de validació", "validació"), ("exactitud de test", "test")):
        assert printed in summary and asked in question
    assert "Colab" in question




def test_a1_full_mode_init_scale_plain_learns_only_at_0_1(a1, full_data):
    """Answer 2, part 1, in full mode: on 784 pixel features the plain MLP learns at s = 0.1 only (its loss stays at
    log 10 at s = 0.001 and 0.01), the MLP with BN at every scale; same code, fewer examples."""
    nb, ns = a1
    train, val, test, features, classes = full_data
    full = dict(ns, train_set=torch.utils.data.Subset(train, range(6400)), val_set=torch.utils.data.Subset(val, range(2000)),
                test_set=test, NUM_FEATURES=features, NUM_CLASSES=classes, BATCH_SIZE=128, EXTRA_EPOCHS=4, SEED=0)
    exec(compile(cell(nb, "part3-code").replace("EXTRA_EPOCHS = 2 if FAST else 4", ""), "part3-code", "exec"), full)
    log_c = math.log(classes)
    results = {}
    with contextlib.redirect_stderr(io.StringIO()):
        for scale in full["INIT_SCALES"]:
            for batch_norm in (False, True):
                results[scale, batch_norm] = full["run_variant"]("", batch_norm, init_scale=scale)
    rows = {k: (round(h["train_loss"][-1], 3), round(h["val_acc"][-1], 3)) for k, h in results.items()}
    for scale in full["INIT_SCALES"]:
        plain, bn = results[scale, False], results[scale, True]
        if scale < 0.05:
            assert min(plain["train_loss"]) >= 0.95 * log_c, rows
        else:
            assert plain["train_loss"][-1] <= 0.6 * log_c and plain["val_acc"][-1] >= 0.5, rows
        assert bn["train_loss"][-1] <= 0.6 * log_c and bn["val_acc"][-1] >= 0.5, rows


def test_a1_bn_output_ignores_the_scale_of_the_weights_before_it(a1, full_data):
    """Answer 2, part 2: multiplying the weights (and bias) of the Linear before MyBatchNorm1d by c > 0 leaves its
    output unchanged while the variance stays far above eps, so the hidden layers see values of scale 1 whatever s; the last Linear has no BN
    after it and its logits scale with s; without BN each hidden layer shrinks the signal at s = 0.01."""
    nb, ns = a1
    train = full_data[0]
    x = torch.stack([train[i][0] for i in range(512)])
    layer = ns["scale_init"](torch.nn.Linear(784, 128), 0.1)  # the experiment's s = 0.1
    bn = ns["MyBatchNorm1d"](128).train()
    with torch.no_grad():
        out = bn(layer(x))
        for c in (0.1, 10.0):  # (far smaller, the variance nears eps and x_hat shrinks, as the answer says)
            scaled = torch.nn.Linear(784, 128)
            scaled.weight.copy_(c * layer.weight)
            scaled.bias.copy_(c * layer.bias)
            assert torch.allclose(bn(scaled(x)), out, atol=2e-2)
    ns["seed_everything"](0)
    plain = ns["scale_init"](ns["make_mlp"](784, 10, batch_norm=False), 0.01)
    stds = [float(o.std(0).mean()) for o in _linear_outputs(plain, x)]
    assert stds[0] < 0.5 * float(x.std(0).mean()) and all(b < a / 3 for a, b in zip(stds, stds[1:])), stds
    text = answer(nb, "answer_experiments")
    assert "$\\hat{x}$ no canvia" in text and "l'última `Linear`" in text
    assert "cada capa oculta el fa més de tres vegades més petit" in text


@pytest.mark.parametrize("grade_id", ["answer_mlp", "answer_experiments"])
def test_model_answers_carry_a_rubric_that_adds_up(grade_id):
    """Every manually graded answer ends with a hidden rubric whose points add up to the cell's points, and the
    experiment cells it discusses are tagged evidence."""
    nb = read_notebook(A1)
    c = cell_by_grade_id(nb, grade_id)
    body = re.search(r"### BEGIN SOLUTION(.*)### END SOLUTION", c.source, re.DOTALL)
    assert body, grade_id
    head = re.search(r"\*\*Rúbrica \((\d+(?:\.\d+)?) punts?\)\*\*\n((?:- .*\n?)+)", body.group(1))
    assert head and float(head.group(1)) == nbg(c)["points"], grade_id
    bullets = re.findall(r"^- \*\*([0-9.]+) punts?\*\*", head.group(2), re.MULTILINE)
    assert len(bullets) >= 2 and np.isclose(sum(map(float, bullets)), nbg(c)["points"]), (grade_id, bullets)
    ids = [x.get("id") for x in nb.cells]
    evidence = {"answer_mlp": ("part2-train-plain", "part2-train-bn", "part2-results"),
                "answer_experiments": ("part3-init-scale", "part3-placement")}[grade_id]
    for cid in evidence:
        assert "evidence" in nb.cells[ids.index(cid)].metadata.get("tags", []), cid


def test_the_scripts_read_the_notebooks_as_nbformat_does():
    """claims_support.read_notebook, with which the claims scripts read their notebook without importing nbformat,
    gives every source notebook as nbformat.read does, and its SOLUTION_RE is coursekit.classgen's."""
    import nbformat

    from coursekit import classgen

    assert (SOLUTION_RE.pattern, SOLUTION_RE.flags) == (classgen.SOLUTION_RE.pattern, classgen.SOLUTION_RE.flags)
    paths = sorted((REPO / "source").glob("*/*.ipynb"))
    assert len(paths) >= 5
    for path in paths:
        assert read_notebook(path) == nbformat.read(str(path), as_version=4), path


# ---------------------------------------------------------------------------------------------------------
# run as a script: the fast-mode claim runs of the given seeds, as JSON on the last line

if __name__ == "__main__":
    script_main(sys.argv[1:], notebook_runs(notebook_namespace, claim_runs))
