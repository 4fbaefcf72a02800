"""notebooks/course_utils.py: the generated data set, the data splits, the loops and the plots.

The module is imported directly (the notebooks carry it inline); everything
runs on small generated data, never downloads.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from conftest import REPO, shared_module


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # small models on a shared 2-core machine: several torch threads only wait on each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cu():
    return shared_module("course_utils.py", "course_loops.py")


def tiny_cnn(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


# --- generated data set ----------------------------------------------------

def test_synthetic_images_are_deterministic_and_independent_of_global_rng(cu):
    torch.manual_seed(123)
    a = cu.make_synthetic_images(50, 5, 16, seed=7)
    torch.manual_seed(999)
    b = cu.make_synthetic_images(50, 5, 16, seed=7)
    c = cu.make_synthetic_images(50, 5, 16, seed=8)
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert not torch.equal(a.tensors[0], c.tensors[0])
    x, y = a.tensors
    assert x.shape == (50, 3, 16, 16) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(5))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("n,classes", [(100, 10), (103, 10), (7, 3)])
def test_synthetic_images_are_class_balanced(cu, n, classes):
    y = cu.make_synthetic_images(n, classes, 8, seed=0).tensors[1]
    counts = torch.bincount(y, minlength=classes)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert y[: classes * 2].tolist() != list(range(classes)) * 2  # shuffled, not in label order


def test_synthetic_images_reject_nonsense(cu):
    with pytest.raises(ValueError):
        cu.make_synthetic_images(10, 1, 16)


def test_synthetic_images_need_a_cnn_not_a_linear_model(cu):
    """A small CNN learns the set in a few epochs; a linear model stays near chance (not trivial)."""
    train, val, test = cu.get_datasets(fast=True, image_size=32, num_classes=4, synthetic_sizes=(800, 200, 10))
    tl, vl, _ = cu.make_loaders(train, val, test, batch_size=32)
    cu.seed_everything(0)
    cnn = cu.fit(tiny_cnn(4), tl, vl, epochs=5, lr=0.05)
    cu.seed_everything(0)
    linear = cu.fit(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)), tl, vl, epochs=5, lr=0.001)
    assert max(cnn["val_acc"]) >= 0.8, cnn["val_acc"]
    assert max(linear["val_acc"]) <= 0.45, linear["val_acc"]


# --- splits and loaders ------------------------------------------------------

def test_fast_datasets_are_three_distinct_splits_without_download(cu, tmp_path):
    train, val, test = cu.get_datasets("cifar10", fast=True, root=str(tmp_path), image_size=16,
                                       num_classes=3, synthetic_sizes=(30, 12, 9))
    assert (len(train), len(val), len(test)) == (30, 12, 9)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or written
    assert train.classes == val.classes == test.classes and len(train.classes) == 3
    xs = [ds.tensors[0] for ds in (train, val, test)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not any(torch.equal(a, b) for a in xs[i][:5] for b in xs[j][:5])


def test_unknown_dataset_and_missing_folder_give_clear_errors(cu, tmp_path):
    with pytest.raises(ValueError, match="desconegut"):
        cu.get_datasets("mnist", fast=False, root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="root="):
        cu.get_datasets("imagefolder", fast=False, root=str(tmp_path / "nowhere"))


def test_imagefolder_splits_are_disjoint_and_transformed(cu, tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (20, 24), (i * 20, 0, 0) if c == "a" else (0, i * 20, 0)).save(
                tmp_path / "train" / c / f"{i}.png")
    train, val, test = cu.get_datasets("imagefolder", fast=False, root=str(tmp_path), image_size=16,
                                       val_fraction=0.2, augment=False)
    assert (len(train), len(val), len(test)) == (12, 4, 4)
    assert not set(train.indices) & set(val.indices) and not set(val.indices) & set(test.indices)
    x, y = train[0]
    assert x.shape == (3, 16, 16) and train.classes == ["a", "b"]


def test_loaders_shuffle_only_training_reproducibly(cu):
    train, val, test = cu.get_datasets(fast=True, image_size=8, num_classes=2, synthetic_sizes=(40, 20, 20))
    first = [y.tolist() for _, y in cu.make_loaders(train, val, test, batch_size=8, seed=3)[0]]
    again = [y.tolist() for _, y in cu.make_loaders(train, val, test, batch_size=8, seed=3)[0]]
    assert first == again
    val_order = torch.cat([y for _, y in cu.make_loaders(train, val, test, batch_size=8)[1]])
    assert torch.equal(val_order, val.tensors[1])


# --- loops -------------------------------------------------------------------

class ModeSpy(nn.Module):
    """A linear classifier that records the mode and grad state of every forward call."""

    def __init__(self, d, c):
        super().__init__()
        self.lin = nn.Linear(d, c)
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.lin(x.flatten(1))


def small_loaders(cu, n=48):
    train, val, test = cu.get_datasets(fast=True, image_size=8, num_classes=3, synthetic_sizes=(n, n, n))
    return cu.make_loaders(train, val, test, batch_size=16)


def test_train_one_epoch_trains_in_train_mode_and_returns_metrics(cu):
    tl, _, _ = small_loaders(cu)
    model = ModeSpy(3 * 8 * 8, 3)
    model.eval()
    before = model.lin.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, acc = cu.train_one_epoch(model, tl, opt, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert model.calls == [(True, True)] * 3
    assert not torch.equal(before, model.lin.weight)
    assert math.isfinite(loss) and loss > 0 and 0 <= acc <= 1


def test_train_one_epoch_zeroes_gradients_every_step(cu):
    """With lr=0 and plain SGD, the gradient left after the epoch is the last batch's alone."""
    _, vl, _ = small_loaders(cu)  # not shuffled: the last batch is known
    model = ModeSpy(3 * 8 * 8, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cu.train_one_epoch(model, vl, opt, nn.CrossEntropyLoss(), torch.device("cpu"))
    x, y = list(vl)[-1]
    want = torch.autograd.grad(nn.CrossEntropyLoss()(model(x), y), model.lin.weight)[0]
    assert torch.allclose(model.lin.weight.grad, want, atol=1e-6)


def test_evaluate_uses_eval_mode_no_grad_and_exact_metrics(cu):
    _, vl, _ = small_loaders(cu)
    model = ModeSpy(3 * 8 * 8, 3)
    criterion = nn.CrossEntropyLoss()
    loss, acc = cu.evaluate(model, vl, criterion, torch.device("cpu"))
    assert model.calls == [(False, False)] * 3 and not model.training
    assert model.lin.weight.grad is None
    x, y = vl.dataset.tensors
    with torch.no_grad():
        logits = model.lin(x.flatten(1))
    assert loss == pytest.approx(criterion(logits, y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_fit_history_and_custom_loops(cu):
    tl, vl, _ = small_loaders(cu)
    calls = []

    def my_train(model, loader, optimizer, criterion, device):
        calls.append("train")
        return cu.train_one_epoch(model, loader, optimizer, criterion, device)

    cu.seed_everything(0)
    h = cu.fit(ModeSpy(3 * 8 * 8, 3), tl, vl, epochs=3, lr=0.05, train_fn=my_train)
    assert calls == ["train"] * 3
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "time"):
        assert len(h[key]) == 3
    assert h["diverged"] is False
    assert cu.epochs_to_reach(h, -1.0) == 1 and cu.epochs_to_reach(h, 2.0) is None


def test_fit_stops_when_training_diverges(cu):
    tl, vl, _ = small_loaders(cu)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 3))
    h = cu.fit(model, tl, vl, epochs=10, lr=1e8)
    assert h["diverged"] is True and len(h["train_loss"]) < 10


def test_fit_optimises_only_trainable_parameters(cu):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = cu.make_optimizer(model, "adam", lr=0.1)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 10
    with pytest.raises(ValueError):
        cu.make_optimizer(model, "rmsprop")


def test_kaiming_init_resets_layers(cu):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    nn.init.constant_(model[1].weight, 5.0)
    cu.kaiming_init(model)
    assert torch.all(model[0].bias == 0) and torch.all(model[1].weight == 1) and torch.all(model[3].bias == 0)


def test_plot_curves_draws_train_and_validation(cu):
    import matplotlib

    matplotlib.use("Agg")
    hist = {"train_loss": [2.0, 1.0], "train_acc": [0.3, 0.6], "val_loss": [2.1, 1.2], "val_acc": [0.3, 0.5]}
    fig = cu.plot_curves({"base": hist, "BN": hist}, title="prova")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["base", "BN"]


# --- progress bars over DataLoaders with worker processes ------------------------------------------

def test_progress_starts_one_set_of_workers_per_pass_and_leaves_none_running(cu, monkeypatch):
    """A bar that called iter() on the loader itself (tqdm.auto's class does, in its constructor) starts a
    second set of worker processes per pass that nobody reads nor stops; in full mode (two workers, every
    epoch) they pile up until the kernel hangs."""
    import multiprocessing

    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4, num_workers=2)
    iterators = []
    real = DataLoader._get_iterator
    monkeypatch.setattr(DataLoader, "_get_iterator", lambda self: iterators.append(1) or real(self))
    for disable in (True, False):
        batches = [b[0].tolist() for b in cu.progress(loader, disable=disable)]
        assert batches == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    assert len(iterators) == 2, f"{len(iterators)} iterators (and sets of workers) for 2 passes"
    assert not multiprocessing.active_children(), "worker processes still running after the passes"
