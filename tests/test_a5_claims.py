"""Assignment 5: what the model answers state about the evidence cells holds on several seeds and
under one and two math threads, not only on the notebook's seed 0.

The notebook's own code (source notebook, instructor's solution, fast-mode
CONFIG) is executed here cell by cell, outside nbgrader; the evidence cells
``freeze-demo``, ``exp-zero-init``, ``exp-layernorm`` and ``exp-finetune`` are re-run with other seeds:

1. with requires_grad=False on gamma and beta, one batch in train() still moves
   the running mean clearly (and counts one tracked batch);
2. at initialisation every identity-shortcut block of ResNet-18 changes its
   input clearly without zero_init_residual and not at all with it;
3. in the ConvNeXt-style block, BN's output for one image depends on its batch
   companions and differs between train() and eval(), several times more at
   batch 2 than at 64; LayerNorm's does not at all;
4. fine-tuning a pretrained ResNet with batches of 2 (fast mode: the miniature
   ResNet pretrained in the cell on generated images, 32x32 inputs so that the
   last stage is 1x1): BN left in train() ends near chance in eval(), while
   the student's freeze_bn and GroupNorm stay far above it (seeds 0-2 on one
   thread, seed 1 also on two: the cell pretrains and fine-tunes three
   models, about 8 s of CPU per seed).
(The folding claim, same outputs and no BN left, is exact and is checked on the
graded solution by test_a5_modern_architectures.)
"""
from __future__ import annotations

import contextlib
import io
import re

import nbformat
import pytest
import torch

from conftest import REPO

NOTEBOOK = REPO / "source" / "a5_modern_architectures" / "modern_architectures.ipynb"
DEFINITIONS = ("shared", "shared-course-loops", "setup", "build-block", "given-resnet", "build-resnet", "freeze-bn",
               "exp-layernorm")


@pytest.fixture(scope="module")
def notebook():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    cells = {c.get("id"): c.source for c in nb.cells if c.cell_type == "code"}
    namespace: dict = {}
    threads = torch.get_num_threads()
    import matplotlib

    matplotlib.use("Agg")  # the fine-tuning cell plots its curves
    with contextlib.redirect_stdout(io.StringIO()):
        for cell_id in DEFINITIONS:
            exec(compile(cells[cell_id], cell_id, "exec"), namespace)
    torch.set_num_threads(threads)  # the setup cell asks for one thread in fast mode; each test sets its own
    return cells, namespace


def _run(cells, namespace, cell_id: str, seed: int, threads: int) -> str:
    torch.set_num_threads(threads)
    namespace["SEED"] = seed
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(cells[cell_id], cell_id, "exec"), namespace)
    return out.getvalue()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_requires_grad_alone_does_not_freeze_bn(notebook, seed, threads):
    text = _run(*notebook, "freeze-demo", seed, threads)
    assert "[False, False]" in text
    moved = float(re.search(r"mode train\(\): ([0-9.]+)", text).group(1))
    assert moved > 0.02, text  # one batch of shifted data moves the running mean by momentum * shift
    assert "num_batches_tracked): 1" in text


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_init_blocks_start_as_the_identity(notebook, seed, threads):
    text = _run(*notebook, "exp-zero-init", seed, threads)
    rows = dict(re.findall(r"zero_init_residual=(True|False)\s*: canvi relatiu per bloc ([0-9. ]+)", text))
    plain, zeroed = ([float(v) for v in rows[k].split()] for k in ("False", "True"))
    assert len(plain) == len(zeroed) == 5
    assert all(v == 0 for v in zeroed), text
    assert min(plain) > 0.2, text  # the model answer says "of the order of 0.5-1": a clear margin over 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bn_depends_on_the_batch_and_layernorm_does_not(notebook, seed, threads):
    """The ConvNeXt-style measurement: with BN the output of one image depends on its batch companions and
    differs between train() and eval(), several times more with batches of 2 than of 64; with LN neither."""
    text = _run(*notebook, "exp-layernorm", seed, threads)
    table = {(n, int(b)): (float(d), float(g)) for n, b, d, g in re.findall(
        r"^\s*(BN|LN) \|\s+(\d+) \|\s+([0-9.]+) \|\s+([0-9.]+)$", text, flags=re.MULTILINE)}
    assert len(table) == 4, text
    (dep2, gap2), (dep64, gap64) = table[("BN", 2)], table[("BN", 64)]
    assert dep2 > 0.15 and gap2 > 0.15, text       # the model answer: "of the order of 0.2-0.3"
    assert dep2 > 2.5 * dep64 and gap2 > 2.5 * gap64, text
    assert dep64 < 0.1, text                         # "of the order of 0.05-0.08"
    assert table[("LN", 2)] == table[("LN", 64)] == (0.0, 0.0), text


@pytest.mark.parametrize(("seed", "threads"), [(0, 1), (1, 1), (2, 1), (1, 2)])
def test_small_batch_finetuning_breaks_bn_in_train_mode(notebook, seed, threads):
    """Batches of 2 with 1x1 maps in the last stage: BN in train() collapses to chance in eval();
    the student's freeze_bn and GroupNorm do not (a wide margin on every seed)."""
    text = _run(*notebook, "exp-finetune", seed, threads)
    chance = float(re.search(r"atzar: ([0-9.]+)", text).group(1))
    final = {k.strip(): float(v.split()[-1]) for k, v in re.findall(
        r"^(.+?): exactitud de validació \(eval\) per època ([0-9. ]+)$", text, flags=re.MULTILINE)}
    bn, frozen, gn = (final[k] for k in ("BN en mode entrenament", "BN congelada (freeze_bn)", "GroupNorm"))
    assert bn < chance + 0.1, text                  # the model answer: "near chance"
    assert frozen > bn + 0.3 and gn > bn + 0.2, text  # "clearly above" (measured margins 0.3-0.6)
