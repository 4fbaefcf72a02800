"""Generated submissions of assignment 1 (BatchNorm1d from scratch).

Every variant starts from the instructor's solution in ``source/`` (markers
removed, :func:`coursekit.classgen.solution_source`) and changes a few lines,
so the catalogue follows the notebook when it is edited; an edit that no
longer applies raises instead of silently producing the solution.  ``fails``
is what SHOULD happen pedagogically: the test cells whose skill the mistake
breaks.  Every other autograded test cell must pass.

The answer cell's four blanks are the lines ``RUNNING_MEAN``, ``RUNNING_VAR``,
``TRAIN_X_HAT`` and ``EVAL_X_HAT`` below (with the ``with torch.no_grad():``
and ``n = ...`` lines of the solution around them).
"""
from __future__ import annotations

from functools import lru_cache

from coursekit.classgen import Variant, solution_source
from bncourse.classgen import catalogue_course, delegation, edit_solution
from coursekit.paths import Course

ASSIGNMENT = "a1_batchnorm1d"
ANSWER = "bn1d_impl"

# Test cells (grade_id) of the notebook, in order.
TESTS = (
    "test_train_output", "test_running_mean", "test_running_var", "test_eval_output", "test_gradients",
    "test_eval_gradients", "test_momentum", "test_eps", "test_float64", "test_constant_feature", "test_buffers",
    "test_input_unmodified", "test_own_impl",
)

# The solution's lines inside the four blanks (12 spaces: body of ``if self.training`` / ``else``).
I = " " * 12
NO_GRAD = I + "with torch.no_grad():\n"
RUNNING_MEAN = I + "    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * batch_mean)\n"
N_LINE = I + "n = x.shape[0]\n"
RUNNING_VAR = I + "    self.running_var.mul_(1 - self.momentum).add_(self.momentum * n / (n - 1) * batch_var)\n"
TRAIN_X_HAT = I + "x_hat = (x - batch_mean) / torch.sqrt(batch_var + self.eps)\n"
EVAL_X_HAT = I + "x_hat = (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)\n"


def _course() -> Course:
    return catalogue_course(ASSIGNMENT)


@lru_cache(maxsize=1)
def solution() -> str:
    return solution_source(_course(), ASSIGNMENT, ANSWER)


def edit(*pairs: tuple[str, str]) -> str:
    """The solution with each ``old`` text replaced by ``new``; each ``old`` must occur exactly once."""
    return edit_solution(ASSIGNMENT, ANSWER, *pairs)


# -- correct implementations written differently ---------------------------------------------------------

REASSIGN_DETACH = (
    (NO_GRAD + RUNNING_MEAN,
     I + "self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * batch_mean.detach()\n"),
    (N_LINE + NO_GRAD + RUNNING_VAR,
     I + "self.running_var = (1 - self.momentum) * self.running_var + self.momentum * x.detach().var(dim=0)\n"),
    (TRAIN_X_HAT, I + "x_hat = (x - batch_mean) * torch.rsqrt(batch_var + self.eps)\n"),
    (EVAL_X_HAT, I + "x_hat = (x - self.running_mean) * torch.rsqrt(self.running_var + self.eps)\n"),
)

LERP = (
    (NO_GRAD + RUNNING_MEAN, I + "self.running_mean.lerp_(batch_mean.detach(), self.momentum)\n"),
    (NO_GRAD + RUNNING_VAR,
     I + "unbiased_var = batch_var.detach() * (n / (n - 1))\n" + I + "self.running_var.lerp_(unbiased_var, self.momentum)\n"),
    (TRAIN_X_HAT, I + "centered = x - batch_mean\n" + I + "x_hat = centered / (batch_var + self.eps).sqrt()\n"),
    (EVAL_X_HAT, I + "x_hat = (x - self.running_mean) / (self.running_var + self.eps) ** 0.5\n"),
)

# A student who rewrote the whole cell in their own style (sums instead of mean/var, a no_grad helper).
REWRITTEN = '''\
import torch
from torch import nn


class MyBatchNorm1d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @torch.no_grad()
    def _track(self, mean, unbiased_var):
        m = self.momentum
        self.running_mean.copy_((1 - m) * self.running_mean + m * mean)
        self.running_var.copy_((1 - m) * self.running_var + m * unbiased_var)

    def forward(self, x):
        if self.training:
            n = x.size(0)
            mean = x.sum(dim=0) / n
            centered = x - mean
            var = (centered * centered).sum(dim=0) / n
            self._track(mean, var * n / (n - 1))
            x_hat = centered / (var + self.eps).sqrt()
        else:
            x_hat = (x - self.running_mean) / (self.running_var + self.eps).sqrt()
        return x_hat * self.gamma + self.beta
'''

# -- mistakes ------------------------------------------------------------------------------------------------

EPS_OUTSIDE = (
    (TRAIN_X_HAT, I + "x_hat = (x - batch_mean) / (torch.sqrt(batch_var) + self.eps)\n"),
    (EVAL_X_HAT, I + "x_hat = (x - self.running_mean) / (torch.sqrt(self.running_var) + self.eps)\n"),
)
REVERSED_MOMENTUM = (
    (RUNNING_MEAN, I + "    self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * batch_mean)\n"),
    (RUNNING_VAR, I + "    self.running_var.mul_(self.momentum).add_((1 - self.momentum) * n / (n - 1) * batch_var)\n"),
)

_DELEGATION = delegation.sources("MyBatchNorm1d", "BatchNorm1d")
_IMPORTS = "import torch\nimport torch.nn as nn\n\n\n"
SUBCLASS = _IMPORTS + _DELEGATION["SUBCLASS"]
WRAPPER = _IMPORTS + _DELEGATION["WRAPPER"]
PATCH_COMPARISONS = _DELEGATION["PATCH_COMPARISONS"]
PATCH_REFERENCE = _DELEGATION["PATCH_REFERENCE"]


def _variants() -> list[Variant]:
    running = {"test_running_mean", "test_running_var", "test_momentum"}
    # The convention of momentum (which value keeps the weight m) is judged by test_momentum alone: the tests of
    # running_mean / running_var judge what is accumulated, so the Keras convention costs only test_momentum.
    return [
        Variant("solution", "the instructor's solution", {ANSWER: solution()}),
        Variant("blank", "the release handed in untouched", {}, fails="all"),
        Variant("correct_reassign", "correct: buffers reassigned from detached stats, rsqrt",
                {ANSWER: edit(*REASSIGN_DETACH)}),
        Variant("correct_lerp", "correct: lerp_ on the buffers, ** 0.5", {ANSWER: edit(*LERP)}),
        Variant("correct_inplace_on_a_copy", "correct: centres a copy of x in place (x = x.clone(); x -= mean)",
                {ANSWER: edit((TRAIN_X_HAT, I + "x = x.clone()\n" + I + "x -= batch_mean\n" + I + "x_hat = x / torch.sqrt(batch_var + self.eps)\n"),
                              (EVAL_X_HAT, I + "x = x - self.running_mean\n" + I + "x_hat = x / torch.sqrt(self.running_var + self.eps)\n"))}),
        Variant("correct_rewritten", "correct: whole cell rewritten (sums, no_grad helper)", {ANSWER: REWRITTEN}),
        Variant("eps_outside_sqrt", "eps outside the square root: sqrt(var) + eps",
                {ANSWER: edit(*EPS_OUTSIDE)}, fails={"test_eps", "test_constant_feature"}),
        Variant("biased_running_var", "running_var accumulates the biased variance (no n/(n-1))",
                {ANSWER: edit((RUNNING_VAR, I + "    self.running_var.mul_(1 - self.momentum).add_(self.momentum * batch_var)\n"))},
                fails={"test_running_var"}),
        Variant("reversed_momentum", "momentum weighs the old value (Keras convention)",
                {ANSWER: edit(*REVERSED_MOMENTUM)}, fails={"test_momentum"}),
        Variant("batch_stats_in_eval", "eval normalises with the batch statistics",
                {ANSWER: edit((EVAL_X_HAT, I + "x_hat = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, unbiased=False) + self.eps)\n"))},
                fails={"test_eval_output"}),
        Variant("stats_never_updated", "running statistics never updated",
                {ANSWER: edit((RUNNING_MEAN, I + "    pass\n"), (RUNNING_VAR, I + "    pass\n"))}, fails=running),
        Variant("unbiased_var_normalise", "normalises the batch with the unbiased variance",
                {ANSWER: edit((TRAIN_X_HAT, I + "x_hat = (x - batch_mean) / torch.sqrt(x.var(dim=0, unbiased=True) + self.eps)\n"))},
                fails={"test_train_output"}),
        Variant("hardcoded_momentum", "momentum 0.1 written as a constant",
                {ANSWER: edit((RUNNING_MEAN, I + "    self.running_mean.mul_(0.9).add_(0.1 * batch_mean)\n"),
                              (RUNNING_VAR, I + "    self.running_var.mul_(0.9).add_(0.1 * n / (n - 1) * batch_var)\n"))},
                fails={"test_momentum"}),
        Variant("hardcoded_eps", "eps 1e-5 written as a constant",
                {ANSWER: edit((TRAIN_X_HAT, TRAIN_X_HAT.replace("self.eps", "1e-5")),
                              (EVAL_X_HAT, EVAL_X_HAT.replace("self.eps", "1e-5")))},
                fails={"test_eps"}),
        Variant("running_stats_history", "running statistics keep autograd history (no no_grad/detach)",
                {ANSWER: edit((NO_GRAD + RUNNING_MEAN,
                               I + "self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * batch_mean\n"),
                              (NO_GRAD + RUNNING_VAR,
                               I + "self.running_var = (1 - self.momentum) * self.running_var + self.momentum * n / (n - 1) * batch_var\n"))},
                fails={"test_buffers"}),
        # Modifying x in place also breaks the training-mode gradient (x is saved for the backward of batch_var,
        # and a leaf that requires grad cannot be modified in place); nothing else.
        Variant("input_modified_inplace", "x -= mean: the input is modified in place",
                {ANSWER: edit((TRAIN_X_HAT, I + "x -= batch_mean\n" + I + "x_hat = x / torch.sqrt(batch_var + self.eps)\n"),
                              (EVAL_X_HAT, I + "x -= self.running_mean\n" + I + "x_hat = x / torch.sqrt(self.running_var + self.eps)\n"))},
                fails={"test_input_unmodified", "test_gradients"}),
        Variant("eval_no_grad", "eval branch computed under torch.no_grad() (the gradient is cut in eval)",
                {ANSWER: edit((EVAL_X_HAT, I + "with torch.no_grad():\n    " + EVAL_X_HAT))},
                fails={"test_eval_gradients"}),
        Variant("eval_detach", "eval branch normalises x.detach() (the gradient is cut in eval)",
                {ANSWER: edit((EVAL_X_HAT, EVAL_X_HAT.replace("(x - ", "(x.detach() - ")))},
                fails={"test_eval_gradients"}),
        Variant("keras_momentum_written_out", "Keras convention in the running_mean update only (m keeps the old value)",
                {ANSWER: edit((RUNNING_MEAN, I + "    keep = self.momentum\n" + I
                               + "    self.running_mean.copy_(keep * self.running_mean + (1 - keep) * batch_mean)\n"))},
                fails={"test_momentum"}),
        Variant("detached_batch_stats", "x_hat from detached batch statistics (wrong gradient)",
                {ANSWER: edit((TRAIN_X_HAT, I + "x_hat = (x - batch_mean.detach()) / torch.sqrt(batch_var.detach() + self.eps)\n"))},
                fails={"test_gradients"}),
        Variant("float32_cast", "x_hat computed in float32 whatever the input's dtype",
                {ANSWER: edit((TRAIN_X_HAT, I + "x_hat = (x.float() - batch_mean.float()) / torch.sqrt(batch_var.float() + self.eps)\n"),
                              (EVAL_X_HAT, I + "x_hat = (x.float() - self.running_mean.float()) / torch.sqrt(self.running_var.float() + self.eps)\n"))},
                fails={"test_float64"}),
        Variant("delegates_f_batch_norm", "x_hat from F.batch_norm (delegation)",
                {ANSWER: edit((TRAIN_X_HAT, I + "x_hat = torch.nn.functional.batch_norm(x, None, None, training=True, eps=self.eps)\n"),
                              (EVAL_X_HAT, I + "x_hat = torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)\n"))},
                fails="all"),
        Variant("eval_delegates_torch_batch_norm", "own training code, torch.batch_norm in eval only",
                {ANSWER: edit((EVAL_X_HAT, I + "x_hat = torch.batch_norm(x, None, None, self.running_mean, self.running_var, "
                                           "False, 0.0, self.eps, False)\n"))},
                fails="all"),
        Variant("subclass_batchnorm1d", "subclass of nn.BatchNorm1d", {ANSWER: SUBCLASS}, fails="all"),
        Variant("wraps_batchnorm1d", "wraps an nn.BatchNorm1d", {ANSWER: WRAPPER}, fails="all"),
        Variant("patched_allclose", "eps outside sqrt, plus torch.allclose/equal/testing patched to pass",
                {ANSWER: edit(*EPS_OUTSIDE) + PATCH_COMPARISONS}, fails={"test_eps", "test_constant_feature"}),
        Variant("patched_reference", "reversed momentum, plus nn.BatchNorm1d replaced by the student's class",
                {ANSWER: edit(*REVERSED_MOMENTUM) + PATCH_REFERENCE}, fails="all"),
    ]


def __getattr__(name: str):
    # VARIANTS is built on first use (it reads the source notebook), so importing this module is cheap.
    if name == "VARIANTS":
        return _variants()
    raise AttributeError(name)
