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
   models, about 8 s of CPU per seed);
5. transfer learning, the ResNet against AlexNet+BN: the given AlexNetBN takes
   torchvision's AlexNet state_dict with strict=False and only the keys of its
   new BN missing; the full-size models have the parameter counts, the share in
   linear layers and the multiply-adds per image the model answer cites, and
   the ResNet has fewer parameters in both modes; in the fast-mode run both
   miniatures learn well above chance (seeds 0-3 on one thread, seed 1 also on
   two; about 5 s of CPU per seed).
(The folding claim, same outputs and no BN left, is exact and is checked on the
graded solution by test_a5_modern_architectures.)

The one-thread runs happen in this process; the two-thread runs in one subprocess (this module run as a script,
``python tests/test_a5_claims.py --threads 2 CELL:SEED ...``) whose OpenMP threads wait passively, started ahead
so that it computes on the other core meanwhile: in this process two spinning threads made a fine-tuning run
with batches of 2 take minutes on a machine whose cores were busy with other work.

Tiers (tests/tiers.py): every evidence cell re-run on seeds and thread counts is ``thorough``; the full-size
facts of the transfer answer, computed on the meta device from the notebook's definitions, are ``quick``.
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
from pathlib import Path

import pytest
import torch

# (the notebook is read with claims_support.read_notebook, not nbformat: the script starts without its import)
from claims_support import FLOAT_ORDER_VARIANTS, StreamedRuns, read_notebook, stream_main
from conftest import REPO
from tiers import thorough

NOTEBOOK = REPO / "source" / "a5_modern_architectures" / "modern_architectures.ipynb"
DEFINITIONS = ("shared", "shared-course-loops", "setup", "build-block", "given-resnet", "build-resnet", "freeze-bn")
# cells whose imports, constants, functions and classes (not their runs, which the tests make) the tests or later
# cells use: the ConvNeXt-style block of 5.3, the miniature ResNet of 5.4, the AlexNet+BN builder and loaders of 5.5
DEFINITIONS_ONLY = ("exp-layernorm", "exp-finetune", "exp-transfer")
# the evidence cell that each test on seeds and threads re-runs
CELL_OF_TEST = {"test_requires_grad_alone_does_not_freeze_bn": "freeze-demo",
                "test_zero_init_blocks_start_as_the_identity": "exp-zero-init",
                "test_bn_depends_on_the_batch_and_layernorm_does_not": "exp-layernorm",
                "test_small_batch_finetuning_breaks_bn_in_train_mode": "exp-finetune",
                "test_transfer_comparison_runs_and_both_networks_learn": "exp-transfer"}
# the environment of the two-thread runs: claims_support's two-thread variant (OpenMP threads wait passively)
TWO_THREADS = next(env for name, env, threads in FLOAT_ORDER_VARIANTS if name == "two-threads")


def _definitions(source: str, name: str):
    """The cell's imports, assignments of constants, functions and classes, without the statements that run."""
    tree = ast.parse(source)
    kinds = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    tree.body = [n for n in tree.body if isinstance(n, kinds) or (
        isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets))]
    return compile(tree, name, "exec")


def notebook_namespace():
    """(the notebook's code cells by id, its namespace after the definitions): fast mode, solution code."""
    import matplotlib

    matplotlib.use("Agg")  # the fine-tuning cell plots its curves
    nb = read_notebook(NOTEBOOK)
    cells = {c.get("id"): c.source for c in nb.cells if c.cell_type == "code"}
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell_id in DEFINITIONS:
            exec(compile(cells[cell_id], cell_id, "exec"), namespace)
        for cell_id in DEFINITIONS_ONLY:
            exec(_definitions(cells[cell_id], cell_id), namespace)
    return cells, namespace


def _run(cells, namespace, cell_id: str, seed: int) -> str:
    """What the cell prints, run with the notebook's SEED = ``seed`` (with the math threads as they are)."""
    namespace["SEED"] = seed
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(cells[cell_id], cell_id, "exec"), namespace)
    return out.getvalue()


@pytest.fixture(scope="module")
def notebook():
    """The notebook's definitions (about a second): quick."""
    threads = torch.get_num_threads()
    cells, namespace = notebook_namespace()
    torch.set_num_threads(threads)  # the setup cell asks for one thread in fast mode
    return cells, namespace


@pytest.fixture(scope="module")
@thorough
def evidence(request, notebook):
    """``run(cell_id, seed, threads) -> printed text``: an evidence cell re-run with the notebook's SEED = seed
    under ``threads`` math threads (up to tens of seconds each).  One thread: in this process, in the `notebook`
    namespace.  Two threads: in one subprocess (:class:`claims_support.StreamedRuns`), started here with the
    two-thread runs of this session's selected tests, in the order they run."""
    script = Path(__file__).resolve()
    two_threads = [f"{CELL_OF_TEST[item.originalname]}:{item.callspec.params['seed']}"
                   for item in request.session.items
                   if Path(str(item.path)).resolve() == script and getattr(item, "originalname", None) in CELL_OF_TEST
                   and item.callspec.params.get("threads") == 2]
    streamed = StreamedRuns(script, two_threads, TWO_THREADS, 2) if two_threads else None
    threads_before = torch.get_num_threads()
    cells, namespace = notebook

    def run(cell_id: str, seed: int, threads: int) -> str:
        if threads == 1:
            torch.set_num_threads(1)
            return _run(cells, namespace, cell_id, seed)
        assert threads == 2 and streamed is not None, threads
        return streamed.get(f"{cell_id}:{seed}")

    yield run
    import matplotlib.pyplot as plt

    plt.close("all")
    torch.set_num_threads(threads_before)  # later modules of the session run as they would have
    if streamed is not None:
        streamed.stop()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_requires_grad_alone_does_not_freeze_bn(evidence, seed, threads):
    text = evidence("freeze-demo", seed, threads)
    assert "[False, False]" in text
    moved = float(re.search(r"mode train\(\): ([0-9.]+)", text).group(1))
    assert moved > 0.02, text  # one batch of shifted data moves the running mean by momentum * shift
    assert "num_batches_tracked): 1" in text


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_init_blocks_start_as_the_identity(evidence, seed, threads):
    text = evidence("exp-zero-init", seed, threads)
    rows = dict(re.findall(r"zero_init_residual=(True|False)\s*: canvi relatiu per bloc ([0-9. ]+)", text))
    plain, zeroed = ([float(v) for v in rows[k].split()] for k in ("False", "True"))
    assert len(plain) == len(zeroed) == 5
    assert all(v == 0 for v in zeroed), text
    assert min(plain) > 0.2, text  # the model answer says "of the order of 0.5-1": a clear margin over 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bn_depends_on_the_batch_and_layernorm_does_not(evidence, seed, threads):
    """The ConvNeXt-style measurement: with BN the output of one image depends on its batch companions and
    differs between train() and eval(), several times more with batches of 2 than of 64; with LN neither."""
    text = evidence("exp-layernorm", seed, threads)
    table = {(n, int(b)): (float(d), float(g)) for n, b, d, g in re.findall(
        r"^\s*(BN|LN) \|\s+(\d+) \|\s+([0-9.]+) \|\s+([0-9.]+)$", text, flags=re.MULTILINE)}
    assert len(table) == 4, text
    (dep2, gap2), (dep64, gap64) = table[("BN", 2)], table[("BN", 64)]
    assert dep2 > 0.15 and gap2 > 0.15, text       # the model answer: "of the order of 0.2-0.3"
    assert dep2 > 2.5 * dep64 and gap2 > 2.5 * gap64, text
    assert dep64 < 0.1, text                         # "of the order of 0.05-0.08"
    assert table[("LN", 2)] == table[("LN", 64)] == (0.0, 0.0), text


@pytest.mark.parametrize(("seed", "threads"), [(0, 1), (1, 1), (2, 1), (1, 2)])
def test_small_batch_finetuning_breaks_bn_in_train_mode(evidence, seed, threads):
    """Batches of 2 with 1x1 maps in the last stage: BN in train() collapses to chance in eval();
    the student's freeze_bn and GroupNorm do not (a wide margin on every seed)."""
    text = evidence("exp-finetune", seed, threads)
    chance = float(re.search(r"atzar: ([0-9.]+)", text).group(1))
    final = {k.strip(): float(v.split()[-1]) for k, v in re.findall(
        r"^(.+?): exactitud de validació \(eval\) per època ([0-9. ]+)$", text, flags=re.MULTILINE)}
    bn, frozen, gn = (final[k] for k in ("BN en mode entrenament", "BN congelada (freeze_bn)", "GroupNorm"))
    assert bn < chance + 0.1, text                  # the model answer: "near chance"
    assert frozen > bn + 0.3 and gn > bn + 0.2, text  # "clearly above" (measured margins 0.3-0.6)


def _count(model, linear_only=False):
    if linear_only:
        return sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters())
    return sum(p.numel() for p in model.parameters())


def test_transfer_models_full_size_facts(notebook):
    """The full-mode facts of the model answer, computed with the notebook's own builders (on the meta device:
    no memory, no weights): AlexNet+BN takes torchvision's keys with only the 28 of its 7 BN missing; with 10
    classes the ResNet-18 has 11,181,642 parameters and a 5,130-parameter head, AlexNet+BN 57,063,498 (about 5.1
    times more), 96 % of them in linear layers; per 224x224 image AlexNet does about 0.7 G multiply-adds, the
    ResNet-18 about 1.8 G, more than 2.5 times more (and more than twice as many at the notebook's 128x128)."""
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    _, ns = notebook
    out = io.StringIO()
    with contextlib.redirect_stdout(out), torch.device("meta"):
        ns["load_alexnet_weights"](ns["AlexNetBN"](1000), weights=None)
        resnet, alexnet = ns["make_resnet18"](10), ns["AlexNetBN"](10)
    assert "AlexNet+BN: 28 claus sense pes preentrenat, totes de les 7 BN noves; cap clau sobrera" in out.getvalue()
    with torch.device("meta"):
        reference = set(torchvision.models.alexnet(weights=None).state_dict())
    extra = set(alexnet.state_dict()) - reference
    assert reference <= set(alexnet.state_dict()) and all(k.split(".")[1].startswith("bn") for k in extra)
    assert _count(resnet) == 11_181_642 and _count(resnet.fc) == 5_130
    assert _count(alexnet) == 57_063_498 and _count(alexnet, linear_only=True) == 54_575_114
    assert 5.0 < _count(alexnet) / _count(resnet) < 5.2 and round(100 * 54_575_114 / 57_063_498) == 96

    def multiply_adds(model, size):
        with torch.device("meta"), FlopCounterMode(display=False) as counter:
            model.eval()(torch.randn(1, 3, size, size))
        return counter.get_total_flops() / 2

    a224, r224 = multiply_adds(alexnet, 224), multiply_adds(resnet, 224)
    assert 0.65e9 < a224 < 0.75e9 and 1.75e9 < r224 < 1.85e9 and r224 > 2.5 * a224, (a224, r224)
    assert multiply_adds(resnet, 128) > 2 * multiply_adds(alexnet, 128)


@pytest.mark.parametrize(("seed", "threads"), [(0, 1), (1, 1), (2, 1), (3, 1), (1, 2)])
def test_transfer_comparison_runs_and_both_networks_learn(evidence, seed, threads):
    """The fast-mode run of 5.5: the ResNet has fewer parameters than AlexNet+BN, the whole network trains, and
    both end well above chance (measured finals 0.74-0.99 on seeds 0-7 against a chance of 0.5)."""
    text = evidence("exp-transfer", seed, threads)
    chance = float(re.search(r"atzar: ([0-9.]+)", text).group(1))
    rows = {name: [int(n.replace(",", "")) for n in numbers] for name, *numbers in re.findall(
        r"^\s*(ResNet|AlexNet\+BN) \(miniatura\) \|\s+([0-9,]+) \|\s+([0-9,]+) \|\s+([0-9,]+) \|", text,
        flags=re.MULTILINE)}
    assert set(rows) == {"ResNet", "AlexNet+BN"}, text
    assert rows["ResNet"][0] < rows["AlexNet+BN"][0], text
    assert all(total == trainable for total, trainable, _ in rows.values()), text
    assert rows["AlexNet+BN"][2] > 0.5 * rows["AlexNet+BN"][0] > rows["ResNet"][2], text  # most of AlexNet is linear
    final = {k: float(v.split()[-1]) for k, v in re.findall(
        r"^\s*(.+?) \(miniatura\): exactitud de validació per època ([0-9. ]+)$", text, flags=re.MULTILINE)}
    assert set(final) == {"ResNet", "AlexNet+BN"}, text
    assert min(final.values()) > chance + 0.15, text  # the prose: "the two networks learn"


# ---------------------------------------------------------------------------------------------------------
# run as a script: ``--threads N CELL:SEED ...``, what each run of an evidence cell prints, one JSON line per run

def _run_named(state, name: str) -> str:
    cell_id, seed = name.rsplit(":", 1)
    return _run(*state, cell_id, int(seed))


if __name__ == "__main__":
    stream_main(sys.argv[1:], notebook_namespace, _run_named)
