"""Generated submissions of assignment 2 (BatchNorm2d, the backward pass by hand).

Every variant starts from the instructor's solution in ``source/`` (markers
removed, :func:`coursekit.classgen.solution_source`) and changes a few lines,
so the catalogue follows the notebook when it is edited; an edit that no
longer applies raises instead of silently producing the solution.  ``fails``
is what SHOULD happen pedagogically: the test cells whose skill the mistake
breaks.  Every other autograded test cell must pass.

The notebook has three autograded answer cells:

- ``bn2d_impl`` (``MyBatchNorm2d``), four blanks: the batch statistics
  (``STATS``), the running-statistics update (``UPDATE``), ``x_hat`` in
  training (``TRAIN_X_HAT``) and in evaluation (``EVAL_X_HAT``);
- ``bn2d_backward_impl`` (``BatchNorm2dFunction``), two blanks: the body of
  ``forward`` (``FORWARD``) and of ``backward`` (``BACKWARD``);
- ``norms_impl`` (``MyLayerNorm`` and ``MyGroupNorm``), one blank in each ``forward``
  (``LN_BODY``, ``GN_BODY``).
"""
from __future__ import annotations

from functools import lru_cache

from coursekit.classgen import Variant, solution_source
from bncourse.classgen import catalogue_course, delegation, edit_solution
from coursekit.paths import Course
from bncourse.classgen.a2_batchnorm2d_sources import (
    AUTOGRAD_BACKWARD, BACKWARD_DGAMMA, BACKWARD_DX, BACKWARD_M, BUILTIN_BACKWARD, EPS_OUTSIDE, EVAL_X_HAT,
    FLAT_NORMS, GN_GROUPS, GN_VAR, GN_X_HAT, GRAPH_FROM_FORWARD, I, J, KEEPDIM_LAYER, LN_DIMS, LN_VAR,
    LN_X_HAT, MATRIX_LAYER, MEANS_FUNCTION, M_LINE, NO_GRAD, PER_IMAGE_STATS, RUNNING_MEAN, RUNNING_VAR,
    STAGED_FUNCTION, SUMS_NORMS, TRAIN_X_HAT,
)

ASSIGNMENT = "a2_batchnorm2d"
LAYER = "bn2d_impl"
FUNCTION = "bn2d_backward_impl"
NORMS = "norms_impl"

# Test cells (grade_id) of the notebook, in order: MyBatchNorm2d, then BatchNorm2dFunction.
LAYER_TESTS = (
    "test_bn2d_train_output", "test_bn2d_running_stats", "test_bn2d_eval_output", "test_bn2d_gradients",
    "test_bn2d_eval_gradients", "test_bn2d_momentum_eps", "test_bn2d_channels_last", "test_bn2d_single_image", "test_bn2d_buffers_input",
    "test_bn2d_own_impl",
)
FUNCTION_TESTS = (
    "test_function_forward", "test_function_gradcheck", "test_function_vs_autograd", "test_function_no_autograd",
)
NORM_TESTS = (
    "test_layernorm_output", "test_layernorm_gradients", "test_groupnorm_output", "test_groupnorm_gradients",
    "test_norms_no_lot",
)
TESTS = LAYER_TESTS + FUNCTION_TESTS + NORM_TESTS


def _course() -> Course:
    return catalogue_course(ASSIGNMENT)


@lru_cache(maxsize=2)
def solution(cell: str = LAYER) -> str:
    return solution_source(_course(), ASSIGNMENT, cell)


def edit(cell: str, *pairs: tuple[str, str]) -> str:
    """The solution of ``cell`` with each ``old`` text replaced by ``new``; each ``old`` must occur once."""
    return edit_solution(ASSIGNMENT, cell, *pairs)


def layer(*pairs) -> dict[str, str]:
    """Answers with MyBatchNorm2d edited and the other answer cells as in the solution."""
    return {LAYER: edit(LAYER, *pairs), FUNCTION: solution(FUNCTION), NORMS: solution(NORMS)}


def function(*pairs) -> dict[str, str]:
    """Answers with BatchNorm2dFunction edited and the other answer cells as in the solution."""
    return {LAYER: solution(LAYER), FUNCTION: edit(FUNCTION, *pairs), NORMS: solution(NORMS)}


def norms(*pairs) -> dict[str, str]:
    """Answers with MyLayerNorm/MyGroupNorm edited and the other answer cells as in the solution."""
    return {LAYER: solution(LAYER), FUNCTION: solution(FUNCTION), NORMS: edit(NORMS, *pairs)}


# MyBatchNorm2d handing its work to PyTorch, or patching what the tests compare with (built by classgen.delegation)
_DELEGATION = delegation.sources("MyBatchNorm2d", "BatchNorm2d")
SUBCLASS, WRAPPER = _DELEGATION["SUBCLASS"], _DELEGATION["WRAPPER"]
PATCH_COMPARISONS, PATCH_REFERENCE = _DELEGATION["PATCH_COMPARISONS"], _DELEGATION["PATCH_REFERENCE"]


# -- the catalogue ------------------------------------------------------------------------------------------
# A mistake in one answer cell is seen only by that cell's test cells (the three sets are disjoint), so most
# generated students carry one mistake in MyBatchNorm2d, one in BatchNorm2dFunction AND one in
# MyLayerNorm/MyGroupNorm: each mistake is still checked cell by cell, and the class (graded in every test
# run) stays small.

GRADIENT_WRONG = {"test_function_gradcheck", "test_function_vs_autograd", "test_function_no_autograd"}


def _layer_mistakes() -> dict[str, tuple[str, dict, set[str]]]:
    """name -> (description, answer of bn2d_impl, the LAYER_TESTS it must fail)."""
    return {
        "per_image_stats": ("statistics of each image over (H, W) instead of over (N, H, W)",
                            edit(LAYER, *PER_IMAGE_STATS),
                            {"test_bn2d_train_output", "test_bn2d_running_stats", "test_bn2d_gradients",
                             "test_bn2d_momentum_eps", "test_bn2d_channels_last"}),
        "eps_outside_sqrt": ("eps outside the square root: sqrt(var) + eps", edit(LAYER, *EPS_OUTSIDE),
                             {"test_bn2d_train_output", "test_bn2d_eval_output", "test_bn2d_momentum_eps"}),
        "biased_running_var": ("running_var accumulates the biased variance (no m/(m-1))",
                               edit(LAYER, (RUNNING_VAR, RUNNING_VAR.replace(" * m / (m - 1)", ""))),
                               {"test_bn2d_running_stats"}),
        "bessel_with_batch_size": ("Bessel correction with m = N instead of N·H·W",
                                   edit(LAYER, (M_LINE, I + "m = x.shape[0]\n")),
                                   # only running_var uses m: the other cells set the buffers themselves
                                   {"test_bn2d_running_stats"}),
        "unbiased_var_normalise": ("normalises the batch with the unbiased variance",
                                   edit(LAYER, (TRAIN_X_HAT, I + "x_hat = (x - batch_mean.view(1, -1, 1, 1)) / "
                                                "torch.sqrt(x.var(dim=(0, 2, 3)).view(1, -1, 1, 1) + self.eps)\n")),
                                   {"test_bn2d_train_output"}),
        "batch_stats_in_eval": ("eval normalises with the batch statistics",
                                edit(LAYER, (EVAL_X_HAT, I + "x_hat = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / "
                                             "torch.sqrt(x.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + self.eps)\n")),
                                # in eval the gradient then also flows through the batch statistics
                                {"test_bn2d_eval_output", "test_bn2d_momentum_eps", "test_bn2d_eval_gradients"}),
        "hardcoded_eps": ("eps 1e-5 written as a constant",
                          edit(LAYER, (TRAIN_X_HAT, TRAIN_X_HAT.replace("self.eps", "1e-5")),
                               (EVAL_X_HAT, EVAL_X_HAT.replace("self.eps", "1e-5"))),
                          {"test_bn2d_momentum_eps"}),
    }


def _function_mistakes() -> dict[str, tuple[str, dict, set[str]]]:
    """name -> (description, answer of bn2d_backward_impl, the FUNCTION_TESTS it must fail)."""
    return {
        "dx_missing_xhat_term": ("dx without the term along x_hat",
                                 edit(FUNCTION, (BACKWARD_DX, J + "dx = inv_std / m * (m * d - d.sum(dim=dims, keepdim=True))\n")),
                                 GRADIENT_WRONG),
        "dgamma_not_summed_over_hw": ("dgamma summed over N only (shape (C, H, W))",
                                      edit(FUNCTION, (BACKWARD_DGAMMA, J + "dgamma = (grad_out * x_hat).sum(dim=0)\n")),
                                      GRADIENT_WRONG),
        "backward_calls_autograd": ("backward recomputes the forward and calls torch.autograd.grad",
                                    edit(FUNCTION, *AUTOGRAD_BACKWARD), {"test_function_no_autograd"}),
        "dx_with_batch_size": ("m = N instead of N·H·W in dx",
                               edit(FUNCTION, (BACKWARD_M, J + "m = grad_out.shape[0]\n")), GRADIENT_WRONG),
        "forward_delegates_f_batch_norm": ("Function forward computes x_hat with F.batch_norm",
                                           edit(FUNCTION, (J + "x_hat = (x - mean) * inv_std\n",
                                                           J + "x_hat = F.batch_norm(x, None, None, training=True, eps=eps)\n")),
                                           {"test_function_forward"}),
        "backward_graph_from_forward": ("graph built in forward, torch.autograd.grad in backward",
                                        edit(FUNCTION, *GRAPH_FROM_FORWARD), {"test_function_no_autograd"}),
        "backward_builtin": ("backward delegates to aten native_batch_norm_backward",
                             edit(FUNCTION, *BUILTIN_BACKWARD), {"test_function_no_autograd"}),
    }


def _norm_mistakes() -> dict[str, tuple[str, str, set[str]]]:
    """name -> (description, answer of norms_impl, the NORM_TESTS it must fail)."""
    eps_out = (LN_X_HAT, J + "x_hat = (x - mean) / (torch.sqrt(var) + self.eps)\n")
    return {
        "ln_last_dim_only": ("LayerNorm over the last dimension only, whatever normalized_shape says",
                             edit(NORMS, (LN_DIMS, J + "dims = (x.dim() - 1,)\n")), {"test_layernorm_output"}),
        "ln_unbiased_var": ("LayerNorm normalises with the unbiased variance",
                            edit(NORMS, (LN_VAR, LN_VAR.replace("unbiased=False, ", ""))), {"test_layernorm_output"}),
        # channel k in group k % G instead of k // (C/G): the groups mix channels that are not consecutive
        "gn_interleaved_groups": ("GroupNorm groups channels k, k+G, k+2G... instead of consecutive ones",
                                  edit(NORMS, (GN_GROUPS, J + "groups = x.reshape(x.shape[0], x.shape[1] // self.num_groups, "
                                                          "self.num_groups, -1).transpose(1, 2).reshape(x.shape[0], self.num_groups, -1)\n"),
                                       (GN_X_HAT, J + "x_hat = ((groups - mean) / torch.sqrt(var + self.eps)).reshape("
                                                      "x.shape[0], self.num_groups, x.shape[1] // self.num_groups, -1)"
                                                      ".transpose(1, 2).reshape(x.shape)\n")),
                                  {"test_groupnorm_output"}),
        "gn_unbiased_var": ("GroupNorm normalises with the unbiased variance",
                            edit(NORMS, (GN_VAR, GN_VAR.replace("unbiased=False, ", ""))), {"test_groupnorm_output"}),
        "norms_eps_outside_sqrt": ("eps outside the square root in LayerNorm and GroupNorm",
                                   edit(NORMS, eps_out, (GN_X_HAT, J + "x_hat = ((groups - mean) / (torch.sqrt(var) + self.eps)).reshape(x.shape)\n")),
                                   {"test_layernorm_output", "test_groupnorm_output"}),
        "norms_detached_stats": ("LayerNorm and GroupNorm statistics detached from the graph",
                                 edit(NORMS, (LN_X_HAT, LN_X_HAT.replace("(x - mean) / torch.sqrt(var + self.eps)",
                                                                         "(x - mean.detach()) / torch.sqrt(var.detach() + self.eps)")),
                                      (GN_X_HAT, GN_X_HAT.replace("(groups - mean) / torch.sqrt(var + self.eps)",
                                                                  "(groups - mean.detach()) / torch.sqrt(var.detach() + self.eps)"))),
                                 {"test_layernorm_gradients", "test_groupnorm_gradients"}),
        "ln_delegates_f_layer_norm": ("MyLayerNorm computes x_hat with F.layer_norm (delegation)",
                                      edit(NORMS, (LN_X_HAT, J + "x_hat = F.layer_norm(x, self.normalized_shape, eps=self.eps)\n")),
                                      {"test_layernorm_output", "test_layernorm_gradients", "test_norms_no_lot"}),
    }


# (mistake in MyBatchNorm2d, mistake in BatchNorm2dFunction, mistake in MyLayerNorm/MyGroupNorm) handed in by
# one generated student
PAIRS = (
    ("per_image_stats", "dx_missing_xhat_term", "ln_last_dim_only"),
    ("eps_outside_sqrt", "dgamma_not_summed_over_hw", "norms_eps_outside_sqrt"),
    ("biased_running_var", "backward_calls_autograd", "ln_unbiased_var"),
    ("bessel_with_batch_size", "dx_with_batch_size", "gn_interleaved_groups"),  # N instead of N·H·W everywhere
    ("unbiased_var_normalise", "forward_delegates_f_batch_norm", "gn_unbiased_var"),
    ("batch_stats_in_eval", "backward_graph_from_forward", "norms_detached_stats"),
    ("hardcoded_eps", "backward_builtin", "ln_delegates_f_layer_norm"),
)


def _variants() -> list[Variant]:
    layer_all = set(LAYER_TESTS)
    layer_mistakes, function_mistakes, norm_mistakes = _layer_mistakes(), _function_mistakes(), _norm_mistakes()
    assert set(layer_mistakes) == {a for a, _, _ in PAIRS} and set(function_mistakes) == {b for _, b, _ in PAIRS}
    assert set(norm_mistakes) == {c for _, _, c in PAIRS}
    paired = []
    for a, b, c in PAIRS:
        (da, la, fa), (db, lb, fb), (dc, lc, fc) = layer_mistakes[a], function_mistakes[b], norm_mistakes[c]
        paired.append(Variant(f"{a}__{b}__{c}", f"{da}; {db}; {dc}", {LAYER: la, FUNCTION: lb, NORMS: lc},
                              fails=fa | fb | fc))
    sol = {LAYER: solution(LAYER), FUNCTION: solution(FUNCTION), NORMS: solution(NORMS)}
    return [
        Variant("solution", "the instructor's solution", sol),
        Variant("blank", "the release handed in untouched", {}, fails="all"),
        Variant("correct_keepdim_staged", "correct: keepdim stats, lerp_, rsqrt; staged chain-rule backward",
                {LAYER: edit(LAYER, *KEEPDIM_LAYER), FUNCTION: edit(FUNCTION, *STAGED_FUNCTION),
                 NORMS: edit(NORMS, *FLAT_NORMS)}),
        Variant("correct_matrix_means", "correct: (C, N·H·W) matrix with sums, copy_; compact backward with means",
                {LAYER: edit(LAYER, *MATRIX_LAYER), FUNCTION: edit(FUNCTION, *MEANS_FUNCTION),
                 NORMS: edit(NORMS, *SUMS_NORMS)}),
        Variant("only_layer", "MyBatchNorm2d done, the other answer cells left blank",
                {LAYER: solution(LAYER)}, fails=set(FUNCTION_TESTS) | set(NORM_TESTS)),
        Variant("only_function", "BatchNorm2dFunction done, the other answer cells left blank",
                {FUNCTION: solution(FUNCTION)}, fails=layer_all | set(NORM_TESTS)),
        Variant("only_norms", "MyLayerNorm and MyGroupNorm done, the other answer cells left blank",
                {NORMS: solution(NORMS)}, fails=layer_all | set(FUNCTION_TESTS)),
        # statistics without keepdim: x - mean cannot broadcast, so MyLayerNorm raises a shape error; the
        # tests that build a MyLayerNorm fail with the notebook's Catalan message, every other test passes
        Variant("ln_stats_without_keepdim", "MyLayerNorm statistics without keepdim=True (shape error in forward)",
                norms((J + "mean = x.mean(dim=dims, keepdim=True)\n", J + "mean = x.mean(dim=dims)\n"),
                      (LN_VAR, LN_VAR.replace(", keepdim=True", ""))),
                fails={"test_layernorm_output", "test_layernorm_gradients", "test_norms_no_lot"}),
        Variant("gn_delegates_f_group_norm", "MyGroupNorm computes x_hat with F.group_norm (delegation)",
                norms((GN_X_HAT, J + "x_hat = F.group_norm(x, self.num_groups, eps=self.eps)\n")),
                fails={"test_groupnorm_output", "test_groupnorm_gradients", "test_norms_no_lot"}),
        *paired,
        # -- one mistake in MyBatchNorm2d, BatchNorm2dFunction right
        Variant("reversed_momentum", "momentum weighs the old value (Keras convention)",
                layer((RUNNING_MEAN, I + "    self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * batch_mean\n"),
                      (RUNNING_VAR, I + "    self.running_var = self.momentum * self.running_var + (1 - self.momentum) * batch_var * m / (m - 1)\n")),
                fails={"test_bn2d_running_stats", "test_bn2d_momentum_eps", "test_bn2d_single_image"}),
        Variant("hardcoded_momentum", "momentum 0.1 written as a constant",
                layer((RUNNING_MEAN, RUNNING_MEAN.replace("self.momentum", "0.1")),
                      (RUNNING_VAR, RUNNING_VAR.replace("self.momentum", "0.1"))),
                fails={"test_bn2d_momentum_eps"}),
        Variant("running_stats_history", "running statistics keep autograd history (no no_grad/detach)",
                layer((NO_GRAD + RUNNING_MEAN + RUNNING_VAR, (RUNNING_MEAN + RUNNING_VAR).replace(I + "    ", I))),
                fails={"test_bn2d_buffers_input"}),
        # frozen-BN fine-tuning needs the gradient in eval mode: cutting it there costs only that test
        Variant("eval_no_grad", "the eval branch computes x_hat under torch.no_grad()",
                layer((EVAL_X_HAT, I + "with torch.no_grad():\n" + EVAL_X_HAT.replace(I, I + "    ", 1))),
                fails={"test_bn2d_eval_gradients"}),
        Variant("eval_detached", "the eval branch detaches its input: x.detach()",
                layer((EVAL_X_HAT, EVAL_X_HAT.replace("x_hat = (x - ", "x_hat = (x.detach() - "))),
                fails={"test_bn2d_eval_gradients"}),
        Variant("detached_batch_stats", "x_hat from detached batch statistics (wrong gradient)",
                layer((TRAIN_X_HAT, TRAIN_X_HAT.replace("batch_mean.view", "batch_mean.detach().view")
                                               .replace("batch_var.view", "batch_var.detach().view"))),
                fails={"test_bn2d_gradients"}),
        # modifying x in place also breaks autograd (x is a leaf that requires grad in those tests)
        Variant("input_modified_inplace", "x -= mean: the input is modified in place",
                layer((TRAIN_X_HAT, I + "x -= batch_mean.view(1, -1, 1, 1)\n"
                                    + I + "x_hat = x / torch.sqrt(batch_var.view(1, -1, 1, 1) + self.eps)\n")),
                fails={"test_bn2d_buffers_input", "test_bn2d_gradients", "test_bn2d_channels_last"}),
        # -- delegation and patching: no point of MyBatchNorm2d
        Variant("delegates_f_batch_norm", "x_hat from F.batch_norm (delegation)",
                layer((TRAIN_X_HAT, I + "x_hat = F.batch_norm(x, None, None, training=True, eps=self.eps)\n"),
                      (EVAL_X_HAT, I + "x_hat = F.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)\n")),
                fails=layer_all),
        Variant("eval_delegates_torch_batch_norm", "own training code, torch.batch_norm in eval only",
                layer((EVAL_X_HAT, I + "x_hat = torch.batch_norm(x, None, None, self.running_mean, self.running_var, "
                                   "False, 0.0, self.eps, False)\n")),
                fails=layer_all),
        Variant("subclass_batchnorm2d", "subclass of nn.BatchNorm2d",
                {**sol, LAYER: SUBCLASS}, fails=layer_all),
        Variant("wraps_batchnorm2d", "wraps an nn.BatchNorm2d",
                {**sol, LAYER: WRAPPER}, fails=layer_all),
        Variant("patched_allclose", "eps outside sqrt, plus torch.allclose/equal/testing patched to pass",
                {**sol, LAYER: edit(LAYER, *EPS_OUTSIDE) + PATCH_COMPARISONS},
                fails={"test_bn2d_train_output", "test_bn2d_eval_output", "test_bn2d_momentum_eps"}),
        Variant("patched_reference", "biased running var, plus nn.BatchNorm2d replaced by the student's class",
                {LAYER: edit(LAYER, (RUNNING_VAR, RUNNING_VAR.replace(" * m / (m - 1)", ""))) + PATCH_REFERENCE,
                 FUNCTION: solution(FUNCTION), NORMS: solution(NORMS)},
                # the visible tests now compare with the student's class (or fail on its missing .weight);
                # the hidden ones use references written from scratch: it loses at least its honest points
                # (the tests of MyLayerNorm/MyGroupNorm never use nn.BatchNorm2d)
                fails=set(LAYER_TESTS + FUNCTION_TESTS) - {"test_bn2d_buffers_input", "test_bn2d_own_impl",
                                                           "test_function_gradcheck"}),
    ]


def __getattr__(name: str):
    # VARIANTS is built on first use (it reads the source notebook), so importing this module is cheap.
    if name == "VARIANTS":
        return _variants()
    raise AttributeError(name)
