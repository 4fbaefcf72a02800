"""Generated submissions of assignment 5 (BatchNorm in modern architectures).

Most variants start from the instructor's solution in ``source/`` (markers
removed, :func:`coursekit.classgen.solution_source`) and change a few lines, so
the catalogue follows the notebook when it is edited; an edit that no longer
applies raises instead of silently producing the solution.  ``fails`` is what
SHOULD happen pedagogically: the test cells whose skill the mistake breaks.
Every other autograded test cell must pass.  A wrong variant carries one
classic mistake plus at most two more, each in another answer cell and caught
by another test, so that the catalogue stays short to grade.

The test cells are independent by construction: ``test_resnet18`` swaps the
student's ``BasicBlock`` for torchvision's, ``test_fold_resnet`` swaps
``fold_bn`` for PyTorch's fuser and folds a torchvision ResNet-18, so a mistake
in the block or in ``fold_bn`` costs only the points of its own tests.

Answer cells: ``build_block`` (BasicBlock), ``build_resnet`` (make_resnet18),
``fold_bn``, ``fold_resnet``, ``freeze_bn``; written answers
``answer_zero_init``, ``answer_folding``, ``answer_freeze``, ``answer_layernorm``, ``answer_finetune``,
``answer_transfer`` (graded by hand).
"""
from __future__ import annotations

import nbformat

from coursekit.classgen import Variant
from bncourse.classgen import catalogue_course, catalogue_solution, edit_solution, filled, with_edits
from coursekit.paths import Course
from bncourse.classgen.a5_modern_architectures_sources import (
    ALWAYS_FLOAT32, ALWAYS_PROJECTED, BN_KEPT_AFTER_FOLD, CONV_BIAS, DELEGATE_BLOCK, DELEGATE_FUSER,
    DELEGATE_FUSER_IMPORTED, DELEGATE_RESNET, DETECTS_TESTS, DOWNSAMPLE_WITHOUT_BN, EPS_OUTSIDE_SQRT,
    EVAL_BUT_TRAINABLE, EVAL_ONCE, FOLD_IN_PLACE, FOLD_RESNET_IN_PLACE, FORGET_DOWNSAMPLE, FORGET_STEM,
    FREEZE_EVERYTHING, IGNORE_CONV_BIAS, LOSES_CONV_GEOMETRY, MOMENTUM_ZERO, NEUTER_TESTS, NO_EPS,
    NO_RUNNING_STATS, PATCH_ALLCLOSE, RELU_BEFORE_SUM, REQUIRES_GRAD_ONLY, STRIDE_ON_CONV2,
    STRIDE_ON_SECOND_BLOCK, STYLE_A, STYLE_B, VARIANCE_NOT_STD, WRITTEN, ZERO_INIT_BN1, ZERO_INIT_EVERY_BN,
    ZERO_INIT_IGNORED, ZERO_INIT_NOT_PASSED,
)

ASSIGNMENT = "a5_modern_architectures"
CODE_ANSWERS = ("build_block", "build_resnet", "fold_bn", "fold_resnet", "freeze_bn")
WRITTEN_ANSWERS = ("answer_zero_init", "answer_folding", "answer_freeze", "answer_layernorm", "answer_finetune",
                   "answer_transfer")

# Test cells (grade_id) of the notebook, in order.
TESTS = ("test_block_structure", "test_block_torchvision", "test_zero_init", "test_resnet18", "test_fold_bn",
         "test_fold_resnet", "test_freeze_bn_stats", "test_freeze_bn_params")


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


def mistakes(*changes, **whole: str) -> dict[str, str]:
    """Answers with the given (grade_id, (old, new), ...) edits applied to the solution, cell by cell, and
    the cells in ``whole`` replaced entirely."""
    return with_edits(ASSIGNMENT, CODE_ANSWERS, WRITTEN, changes, whole)


def _variants() -> list[Variant]:
    return [
        Variant("solution", "the instructor's solution", full()),
        Variant("blank", "the release handed in untouched", {}, fails="all"),
        Variant("correct_style_a", "correct: conditional downsample, in-place sum, stage loop with comprehension, "
                "fold_bn on a deepcopy with new Parameters, generic conv-BN pair walk, FrozenBatchNorm2d",
                full(**STYLE_A)),
        Variant("correct_style_b", "correct: step-by-step forward, Sequential.append shortcut, four stages written "
                "out, rsqrt and .to(conv.weight), explicit pair list, model.train wrapped",
                full(**STYLE_B)),
        Variant("only_block", "BasicBlock done, everything else left blank", {"build_block": solution("build_block")},
                fails=set(TESTS) - {"test_block_structure", "test_block_torchvision", "test_zero_init"}),
        Variant("relu_before_sum", "ReLU before the sum (on the residual branch) instead of after; fold_resnet "
                "forgets the downsample pairs; freeze_bn with requires_grad=False only",
                mistakes(RELU_BEFORE_SUM, FORGET_DOWNSAMPLE, freeze_bn=REQUIRES_GRAD_ONLY),
                fails={"test_block_torchvision", "test_fold_resnet", "test_freeze_bn_stats"}),
        Variant("shortcut_without_bn", "downsample shortcut without its BN; folding without eps; BN in eval() "
                "but gamma/beta left trainable", mistakes(DOWNSAMPLE_WITHOUT_BN, NO_EPS, EVAL_BUT_TRAINABLE),
                fails={"test_block_torchvision", "test_fold_bn", "test_freeze_bn_params"}),
        Variant("bn_eval_once", "freeze_bn calls bn.eval() once (undone by model.train()); zero-init on bn1 "
                "instead of bn2; stride on the second block of each stage",
                mistakes(ZERO_INIT_BN1, STRIDE_ON_SECOND_BLOCK, freeze_bn=EVAL_ONCE),
                fails={"test_freeze_bn_stats", "test_zero_init", "test_resnet18"}),
        Variant("fold_ignores_conv_bias", "fold_bn ignores the conv bias; fold_resnet modifies the original "
                "model; zero_init_residual ignored", mistakes(IGNORE_CONV_BIAS, FOLD_RESNET_IN_PLACE, ZERO_INIT_IGNORED),
                fails={"test_fold_bn", "test_fold_resnet", "test_zero_init"}),
        Variant("stride_on_conv2", "stride on conv2 instead of conv1; BN momentum 0 (batch statistics still "
                "used in train()); folded conv always float32",
                mistakes(STRIDE_ON_CONV2, ALWAYS_FLOAT32, freeze_bn=MOMENTUM_ZERO),
                fails={"test_block_torchvision", "test_freeze_bn_stats", "test_fold_bn"}),
        Variant("always_projected", "1x1 projection shortcut even where the identity fits; freeze_bn freezes "
                "every parameter of the model", mistakes(ALWAYS_PROJECTED, FREEZE_EVERYTHING),
                fails={"test_block_structure", "test_block_torchvision", "test_freeze_bn_params"}),
        Variant("wrong_names", "module names not torchvision's (shortcut instead of downsample); eps added "
                "outside the square root",
                mistakes(EPS_OUTSIDE_SQRT, build_block=solution("build_block").replace("downsample", "shortcut")),
                fails={"test_block_structure", "test_block_torchvision", "test_fold_bn"}),
        Variant("conv_bias", "convolutions with bias before BN (state_dict does not load); zero-init on every "
                "BN; folding divides by the variance instead of the standard deviation",
                mistakes(CONV_BIAS, ZERO_INIT_EVERY_BN, VARIANCE_NOT_STD),
                fails={"test_block_torchvision", "test_zero_init", "test_fold_bn"}),
        Variant("delegates", "BasicBlock subclasses torchvision's; fold_bn calls torch's fuse_conv_bn_eval; "
                "make_resnet18 takes the stages of torchvision's resnet18",
                full(build_block=DELEGATE_BLOCK, fold_bn=DELEGATE_FUSER, build_resnet=DELEGATE_RESNET),
                fails={"test_block_torchvision", "test_fold_bn", "test_resnet18"}),
        Variant("delegates_imported_fuser", "fold_bn calls an imported fuse_conv_bn_eval; zero_init_residual "
                "not passed to the blocks", mistakes(ZERO_INIT_NOT_PASSED, fold_bn=DELEGATE_FUSER_IMPORTED),
                fails={"test_fold_bn", "test_resnet18"}),
        Variant("fold_in_place", "fold_bn modifies and returns the given conv; fold_resnet forgets the stem; "
                "freeze_bn sets track_running_stats=False",
                mistakes(FORGET_STEM, fold_bn=FOLD_IN_PLACE, freeze_bn=NO_RUNNING_STATS),
                fails={"test_fold_bn", "test_fold_resnet", "test_freeze_bn_stats"}),
        Variant("loses_geometry", "folded conv loses stride, dilation and groups; fold_resnet folds the convs "
                "but keeps the block BNs", mistakes(LOSES_CONV_GEOMETRY, BN_KEPT_AFTER_FOLD),
                fails={"test_fold_bn", "test_fold_resnet"}),
    ]


def _insert_after(grade_id: str, source: str):
    def mutate(nb):
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source))
    return mutate


def faked() -> list[Variant]:
    """Submissions whose kernel passes every test cell by cheating; ``fails``: the cells their work fails."""
    answers = full()
    del answers["fold_resnet"]  # left as the release's stub
    return [
        Variant("fake_patched_allclose", "ReLU before the sum and folding without eps, hidden by a patched "
                "torch.allclose; freeze_bn right only inside the notebook's test cells",
                mistakes(RELU_BEFORE_SUM, NO_EPS, freeze_bn=DETECTS_TESTS),
                fails={"test_block_torchvision", "test_fold_bn", "test_freeze_bn_stats"},
                mutate=_insert_after("build_block", PATCH_ALLCLOSE)),
        Variant("fake_neutered_tests", "fold_resnet left blank; an input transformer empties every test cell",
                answers, fails={"test_fold_resnet"}, mutate=_insert_after("build_block", NEUTER_TESTS)),
    ]


def __getattr__(name: str):
    # VARIANTS is built on first use (it reads the source notebook), so importing this module is cheap.
    if name == "VARIANTS":
        return _variants()
    raise AttributeError(name)
