"""What the model answers of A1 state about the notebook (A2's: tests/test_a2_claims.py), computed with the notebooks' own code.

The model answers are written for the student's full-mode run in Colab.  What
they say about the notebook (what the inputs are, how the scale of the signal
changes through the default-initialised MLP, what BN makes of it, how many
values enter each BatchNorm statistic, what a BatchNorm over two values outputs,
that LayerNorm/GroupNorm do not look at the batch) is checked here by running
the source notebook's cells (the instructor's solution where a cell has one);
the full-mode data loaders run on generated stand-ins for the downloads (no
machine here reaches the internet). Each answer carries its rubric.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from assignment_checks import nbg, read_nb
from conftest import REPO, shared_module

from coursekit import classgen

A1 = REPO / "source" / "a1_batchnorm1d" / "batchnorm1d.ipynb"


def cell(nb, cell_id: str) -> str:
    return classgen.SOLUTION_RE.sub("", next(c for c in nb.cells if c.get("id") == cell_id).source)


def answer(nb, grade_id: str) -> str:
    return classgen.cell_by_grade_id(nb, grade_id).source


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
def a1(monkeypatch_module):
    """A1's namespace after the shared cells, the solution of MyBatchNorm1d and part 2's data and model
    cells (fast mode), plus its full-mode data loaded through the notebook's own loader."""
    import torchvision.datasets

    nb = read_nb(A1)
    ns = dict(vars(shared_module("course_utils.py", "course_loops.py")))
    torch.set_num_threads(1)
    for cell_id in ("bn1d-impl", "part2-data", "part2-model"):
        exec(compile(cell(nb, cell_id), cell_id, "exec"), ns)
    monkeypatch_module.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    ns["full"] = ns["load_tabular"](fast=False, root="unused")
    return nb, ns


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_a1_full_mode_inputs_are_pixels_in_0_1(a1):
    """Answer 2: in Colab the inputs are Fashion-MNIST pixels in [0, 1], all non-negative, not centred."""
    nb, ns = a1
    train, val, test, features, classes = ns["full"]
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


def test_a1_default_init_shrinks_the_signal_and_bn_restores_it(a1):
    """Answer 2: with nn.Linear's default initialisation and inputs in [0, 1], the part of each unit that
    varies across examples (its std over the batch) falls below half at every linear layer, and each unit
    carries a common offset of the same size or larger; after MyBatchNorm1d every unit has mean 0, std 1."""
    nb, ns = a1
    train = ns["full"][0]
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


def test_a1_bn_lowers_the_loss_sooner_on_pixel_data(a1):
    """Answer 1: with BN the training loss is lower after the first epoch and at the end, and the final
    validation and test accuracies are higher, on [0, 1] pixel data through the notebook's own
    run_experiment and summary cell (full-mode batch size and learning rate, 2 epochs on a subset)."""
    import contextlib
    import io

    nb, ns = a1
    train, val, test, features, classes = ns["full"]
    ns.update(train_set=torch.utils.data.Subset(train, range(12800)), val_set=torch.utils.data.Subset(val, range(2000)),
              test_set=torch.utils.data.Subset(test, range(2000)), NUM_FEATURES=features, NUM_CLASSES=classes,
              EPOCHS=2, BATCH_SIZE=128, plot_curves=lambda *a, **k: None)
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


@pytest.mark.parametrize("path,grade_ids", [(A1, ["answer_mlp"])])
def test_model_answers_carry_a_rubric_that_adds_up(path, grade_ids):
    """Every manually graded answer ends with a hidden rubric whose points add up to the cell's points."""
    nb = read_nb(path)
    for gid in grade_ids:
        c = classgen.cell_by_grade_id(nb, gid)
        body = re.search(r"### BEGIN SOLUTION(.*)### END SOLUTION", c.source, re.DOTALL)
        assert body, gid
        head = re.search(r"\*\*Rúbrica \((\d+(?:\.\d+)?) punts?\)\*\*\n((?:- .*\n?)+)", body.group(1))
        assert head and float(head.group(1)) == nbg(c)["points"], gid
        bullets = re.findall(r"^- \*\*([0-9.]+) punts?\*\*", head.group(2), re.MULTILINE)
        assert len(bullets) >= 2 and np.isclose(sum(map(float, bullets)), nbg(c)["points"]), (gid, bullets)
