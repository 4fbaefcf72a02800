"""What the model answers of A2 state about the notebook, computed with the notebook's own code (A1's: test_a1_claims.py).

The model answers are written for the student's full-mode run in Colab.  What
they say about the notebook (how many
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

A2 = REPO / "source" / "a2_batchnorm2d" / "batchnorm2d.ipynb"


def answer(nb, grade_id: str) -> str:
    return classgen.cell_by_grade_id(nb, grade_id).source


# ---------------------------------------------------------------------------------------------------------
# A2

@pytest.fixture(scope="module")
def a2():
    nb = read_nb(A2)
    ns = dict(vars(shared_module("course_utils.py", "course_loops.py")))
    ns.update(torch=torch, nn=torch.nn, plt=None)
    exec(classgen.cell_by_grade_id(nb, "experiment_code").source, ns)
    return nb, ns


def _norm_inputs(model, x):
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append((tuple(i[0].shape), o.detach())))
             for m in model if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))]
    model(x)
    for h in hooks:
        h.remove()
    return sizes


def test_a2_values_per_statistic_and_the_1x1_layer(a2):
    """Answer 2: with batches of 2 CIFAR-10 images (32x32, the full-mode run's size), the first BatchNorm
    averages 2·32·32 = 2048 values per channel, the one after the global pooling 2, and there x_hat is ±1."""
    nb, ns = a2
    run = classgen.cell_by_grade_id(nb, "experiment_run").source
    assert re.search(r'get_datasets\("cifar10", image_size=32', run)
    torch.manual_seed(0)
    model = ns["small_cnn"]("BatchNorm", 10).train()
    seen = _norm_inputs(model, torch.randn(2, 3, 32, 32))
    per_stat = [n * h * w for (n, c, h, w), _ in seen]
    assert per_stat[0] == 2048 and per_stat[-1] == 2, per_stat
    (shape, last), x = seen[-1], None  # gamma = 1, beta = 0 at initialisation: the output is x_hat
    assert torch.allclose(last[0], -last[1], atol=1e-6)            # the two images get opposite values
    assert last.abs().max() <= 1 and last.abs().median() > 0.9     # ±1 but where the two values nearly agree
    text = answer(nb, "answer_small_batches")
    assert f"2·32·32 = {per_stat[0]}" in text and "m = N = 2" in text and "x̂ oposats, ±1" in text


def test_a2_layer_and_group_norm_do_not_look_at_the_batch(a2):
    """Answer 3: an image's output under LayerNorm/GroupNorm does not depend on the rest of the batch, and
    train() and eval() give the same output; under BatchNorm both differ."""
    nb, ns = a2
    x = torch.randn(8, 16, 6, 6)
    for kind, independent in (("LayerNorm", True), ("GroupNorm", True), ("BatchNorm", False)):
        layer = ns["make_norm"](kind, 16).train()
        alone, together = layer(x[:2])[0], layer(x)[0]
        train_out = layer(x)
        same_eval = torch.allclose(layer.eval()(x), train_out, atol=1e-5)
        assert torch.allclose(alone, together, atol=1e-5) == independent, kind
        assert same_eval == independent, kind


def test_a2_fast_mode_prose_says_what_it_is_for():
    text = "\n".join(c.source for c in read_nb(A2).cells if c.cell_type == "markdown")
    assert "no és significativa" not in text
    assert "comprovar en pocs segons que l'experiment s'executa sencer" in text


def test_a2_question_asks_for_the_table_the_experiment_prints(a2):
    nb, ns = a2
    run = classgen.cell_by_grade_id(nb, "experiment_run").source
    question = classgen.cell_by_grade_id(nb, "question_small_batches").source
    assert "print(" in run and "Copieu la taula" in question and "Colab" in question


@pytest.mark.parametrize("path,grade_ids", [(A2, ["answer_small_batches"])])
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
