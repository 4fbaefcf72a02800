"""Generated submissions of assignment 3 (BatchNorm in AlexNet).

Most variants start from the instructor's solution in ``source/`` (markers
removed, :func:`coursekit.classgen.solution_source`) and change a few lines, so
the catalogue follows the notebook when it is edited; an edit that no longer
applies raises instead of silently producing the solution.  ``fails`` is what
SHOULD happen pedagogically: the test cells whose skill the mistake breaks.
Every other autograded test cell must pass.  To keep the autograde run short
(every submission runs the notebook's experiments), a wrong variant carries
one classic mistake plus at most two more, each caught by a different test.

Answer cells: ``build_features`` (make_features), ``build_classifier``
(make_classifier), ``build_alexnet``, ``train_one_epoch``, ``evaluate``; written
answers ``answer_comparison``, ``answer_learning_rate``, ``answer_activations``,
``answer_transfer`` (graded by hand, not by these tests).
"""
from __future__ import annotations

from coursekit.classgen import Variant
from bncourse.classgen import catalogue_course, catalogue_solution, edit_solution, filled, with_edits
from coursekit.paths import Course
from bncourse.classgen.a3_alexnet_bn_sources import (
    BN1D_AFTER_RELU, BN_AFTER_RELU, BN_ON_LOGITS, FREEZE_ALL_FEATURES, HARDCODED_IN_FEATURES, INIT_AFTER_LOAD,
    LOSS_AS_TENSOR, MEAN_OF_BATCH_MEANS, NOT_FROZEN, NO_BIAS_WITHOUT_BN, NO_EVAL_MODE, NO_NO_GRAD,
    NO_TRAIN_MODE, NO_ZERO_GRAD, OWN_DOWNLOAD, PERCENT_ACCURACY, SOFTMAX_EVAL, SOFTMAX_HEAD, SOFTMAX_TRAIN,
    STYLE_A, STYLE_B, STYLE_C, WRITTEN,
)

ASSIGNMENT = "a3_alexnet_bn"
CODE_ANSWERS = ("build_features", "build_classifier", "build_alexnet", "train_one_epoch", "evaluate")
WRITTEN_ANSWERS = ("answer_comparison", "answer_learning_rate", "answer_activations", "answer_transfer")

# Test cells (grade_id) of the notebook, in order.
TESTS = ("test_features", "test_classifier", "test_alexnet_shape", "test_alexnet_freeze",
         "test_train_one_epoch", "test_train_graphs", "test_evaluate")


def _course() -> Course:
    return catalogue_course(ASSIGNMENT)


def solution(grade_id: str) -> str:
    return catalogue_solution(ASSIGNMENT, grade_id)


def edit(grade_id: str, *pairs: tuple[str, str]) -> str:
    """The solution of one answer cell with each ``old`` replaced by ``new``; each ``old`` must occur once."""
    return edit_solution(ASSIGNMENT, grade_id, *pairs)


def full(**answers: str) -> dict[str, str]:
    """Every answer cell filled: the solution, except the cells given here."""
    return filled(ASSIGNMENT, CODE_ANSWERS, WRITTEN, **answers)


def mistakes(*changes) -> dict[str, str]:
    """Answers with the given (grade_id, (old, new), ...) edits applied to the solution, cell by cell."""
    return with_edits(ASSIGNMENT, CODE_ANSWERS, WRITTEN, changes)


def _variants() -> list[Variant]:
    return [
        Variant("solution", "the instructor's solution", full()),
        Variant("blank", "the release handed in untouched", {}, fails="all"),
        Variant("correct_style_a", "correct: block lists, in_features from ALEXNET_CONVS, zero_grad after step, "
                "inference_mode", full(**STYLE_A)),
        Variant("correct_style_b", "correct: Sequential.append, named layers (OrderedDict), apply() to freeze, "
                "model.zero_grad(), @torch.no_grad() evaluate restoring the mode", full(**STYLE_B)),
        Variant("correct_style_c", "correct: bias=False before every BatchNorm, accuracy from a second forward "
                "pass without gradients (train and evaluate), freezing through a list", full(**STYLE_C)),
        Variant("only_builder", "the three builders done, the two loops left blank",
                {g: solution(g) for g in CODE_ANSWERS[:3]},
                fails={"test_train_one_epoch", "test_train_graphs", "test_evaluate"}),
        # Each of the classic mistakes has its own variant, with at most one further, independent mistake
        # in another answer cell (or another part of the same cell, caught by another test).
        Variant("eval_in_train_mode", "evaluate without model.eval(); BatchNorm1d also after the last Linear",
                mistakes(NO_EVAL_MODE, BN_ON_LOGITS), fails={"test_evaluate", "test_classifier"}),
        Variant("no_zero_grad", "no optimizer.zero_grad(); BatchNorm2d after the ReLU",
                mistakes(NO_ZERO_GRAD, BN_AFTER_RELU), fails={"test_train_one_epoch", "test_features"}),
        Variant("softmax_before_ce", "Softmax applied to the logits before CrossEntropyLoss (train and evaluate); "
                "classifier input hard-coded as 256*pool*pool (ignores width)",
                mistakes(SOFTMAX_TRAIN, SOFTMAX_EVAL, HARDCODED_IN_FEATURES),
                fails={"test_train_one_epoch", "test_evaluate", "test_alexnet_shape"}),
        Variant("eval_with_grad", "evaluate without torch.no_grad(); freeze_features ignored",
                mistakes(NO_NO_GRAD, NOT_FROZEN), fails={"test_evaluate", "test_alexnet_freeze"}),
        Variant("no_train_mode", "train_one_epoch never calls model.train(); evaluate averages the batch means; "
                "freezes the new BatchNorm2d too", mistakes(NO_TRAIN_MODE, MEAN_OF_BATCH_MEANS, FREEZE_ALL_FEATURES),
                fails={"test_train_one_epoch", "test_evaluate", "test_alexnet_freeze"}),
        Variant("bn1d_after_relu", "BatchNorm1d after the ReLU in the head; accuracy in percent; downloads the "
                "pretrained weights itself instead of load_pretrained_convs",
                mistakes(BN1D_AFTER_RELU, PERCENT_ACCURACY, OWN_DOWNLOAD),
                fails={"test_classifier", "test_evaluate", "test_alexnet_freeze"}),
        Variant("loss_as_tensor", "the epoch's loss accumulated as a tensor (total += loss * n), keeping every "
                "batch's graph alive; bias=False in the convolutions even without BatchNorm",
                mistakes(LOSS_AS_TENSOR, NO_BIAS_WITHOUT_BN), fails={"test_train_graphs", "test_features"}),
        Variant("softmax_head", "Softmax as the head's last layer; re-initialises the model after loading the "
                "pretrained weights", mistakes(SOFTMAX_HEAD, INIT_AFTER_LOAD),
                fails={"test_classifier", "test_alexnet_freeze"}),
    ]


def __getattr__(name: str):
    # VARIANTS is built on first use (it reads the source notebook), so importing this module is cheap.
    if name == "VARIANTS":
        return _variants()
    raise AttributeError(name)
