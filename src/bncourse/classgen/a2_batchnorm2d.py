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

# -- the solution's lines inside the blanks of MyBatchNorm2d (12 spaces: body of if/else) --------------------
I = " " * 12
STATS = (I + "m = x.shape[0] * x.shape[2] * x.shape[3]\n"
         + I + "batch_mean = x.mean(dim=(0, 2, 3))\n"
         + I + "batch_var = x.var(dim=(0, 2, 3), unbiased=False)\n")
M_LINE = I + "m = x.shape[0] * x.shape[2] * x.shape[3]\n"
NO_GRAD = I + "with torch.no_grad():\n"
RUNNING_MEAN = I + "    self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * batch_mean\n"
RUNNING_VAR = I + "    self.running_var = (1 - self.momentum) * self.running_var + self.momentum * batch_var * m / (m - 1)\n"
UPDATE = NO_GRAD + RUNNING_MEAN + RUNNING_VAR
TRAIN_X_HAT = I + "x_hat = (x - batch_mean.view(1, -1, 1, 1)) / torch.sqrt(batch_var.view(1, -1, 1, 1) + self.eps)\n"
EVAL_X_HAT = (I + "x_hat = (x - self.running_mean.view(1, -1, 1, 1)) / "
              "torch.sqrt(self.running_var.view(1, -1, 1, 1) + self.eps)\n")

# -- the solution's lines inside the blanks of BatchNorm2dFunction (8 spaces: method bodies) ---------------
J = " " * 8
FORWARD_INV_STD = J + "inv_std = 1.0 / torch.sqrt(var + eps)\n"
FORWARD_SAVE = J + "ctx.save_for_backward(x_hat, gamma, inv_std)\n"
BACKWARD_M = J + "m = grad_out.numel() // grad_out.shape[1]\n"
BACKWARD_DGAMMA = J + "dgamma = (grad_out * x_hat).sum(dim=dims)\n"
BACKWARD_DX = (J + "dx = inv_std / m * (m * d - d.sum(dim=dims, keepdim=True) "
               "- x_hat * (d * x_hat).sum(dim=dims, keepdim=True))\n")
FORWARD = (J + "mean = x.mean(dim=(0, 2, 3), keepdim=True)\n"
           + J + "var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)\n"
           + FORWARD_INV_STD
           + J + "x_hat = (x - mean) * inv_std\n"
           + FORWARD_SAVE)
BACKWARD = (J + "x_hat, gamma, inv_std = ctx.saved_tensors\n"
            + BACKWARD_M
            + J + "dims = (0, 2, 3)\n"
            + J + "dbeta = grad_out.sum(dim=dims)\n"
            + BACKWARD_DGAMMA
            + J + "d = grad_out * gamma.view(1, -1, 1, 1)\n"
            + BACKWARD_DX)

# -- the solution's lines inside the blanks of MyLayerNorm and MyGroupNorm (8 spaces: forward bodies) -------
LN_DIMS = J + "dims = tuple(range(x.dim() - len(self.normalized_shape), x.dim()))\n"
LN_VAR = J + "var = x.var(dim=dims, unbiased=False, keepdim=True)\n"
LN_X_HAT = J + "x_hat = (x - mean) / torch.sqrt(var + self.eps)\n"
LN_BODY = LN_DIMS + J + "mean = x.mean(dim=dims, keepdim=True)\n" + LN_VAR + LN_X_HAT
GN_GROUPS = J + "groups = x.reshape(x.shape[0], self.num_groups, -1)\n"
GN_VAR = J + "var = groups.var(dim=2, unbiased=False, keepdim=True)\n"
GN_X_HAT = J + "x_hat = ((groups - mean) / torch.sqrt(var + self.eps)).reshape(x.shape)\n"
GN_BODY = GN_GROUPS + J + "mean = groups.mean(dim=2, keepdim=True)\n" + GN_VAR + GN_X_HAT


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


# -- correct implementations written differently ---------------------------------------------------------

# keepdim statistics (shape (1, C, 1, 1)), buffers updated in place with lerp_ from detached values, rsqrt;
# backward by the staged chain rule (through var and mean) instead of the compact form.
KEEPDIM_LAYER = (
    (STATS, I + "m = x.numel() // x.size(1)\n"
            + I + "batch_mean = x.mean(dim=(0, 2, 3), keepdim=True)\n"
            + I + "batch_var = ((x - batch_mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)\n"),
    (UPDATE, I + "self.running_mean.lerp_(batch_mean.detach().flatten(), self.momentum)\n"
             + I + "self.running_var.lerp_(batch_var.detach().flatten() * (m / (m - 1)), self.momentum)\n"),
    (TRAIN_X_HAT, I + "x_hat = (x - batch_mean) * torch.rsqrt(batch_var + self.eps)\n"),
    (EVAL_X_HAT, I + "shape = (1, self.num_features, 1, 1)\n"
                 + I + "x_hat = (x - self.running_mean.reshape(shape)) * torch.rsqrt(self.running_var.reshape(shape) + self.eps)\n"),
)
STAGED_FUNCTION = (
    (FORWARD, J + "mean = x.mean(dim=(0, 2, 3), keepdim=True)\n"
              + J + "xc = x - mean\n"
              + J + "var = (xc * xc).mean(dim=(0, 2, 3), keepdim=True)\n"
              + J + "std = torch.sqrt(var + eps)\n"
              + J + "x_hat = xc / std\n"
              + J + "ctx.save_for_backward(xc, std, gamma)\n"),
    (BACKWARD, J + "xc, std, gamma = ctx.saved_tensors\n"
               + J + "n, c, h, w = xc.shape\n"
               + J + "m = n * h * w\n"
               + J + "x_hat = xc / std\n"
               + J + "dbeta = grad_out.sum(dim=(0, 2, 3))\n"
               + J + "dgamma = (grad_out * x_hat).sum(dim=(0, 2, 3))\n"
               + J + "dx_hat = grad_out * gamma.reshape(1, c, 1, 1)\n"
               + J + "# regla de la cadena pas a pas: per la variància i per la mitjana\n"
               + J + "dvar = (dx_hat * xc).sum(dim=(0, 2, 3), keepdim=True) * -0.5 / std ** 3\n"
               + J + "dmean = -(dx_hat / std).sum(dim=(0, 2, 3), keepdim=True) - 2 * dvar * xc.mean(dim=(0, 2, 3), keepdim=True)\n"
               + J + "dx = dx_hat / std + dvar * 2 * xc / m + dmean / m\n"),
)

# statistics from a (C, N·H·W) matrix with sums; buffers copied with copy_ under no_grad;
# backward in the compact form written with means, recomputing x_hat from the saved input.
MATRIX_LAYER = (
    (STATS, I + "flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N·H·W)\n"
            + I + "m = flat.shape[1]\n"
            + I + "batch_mean = flat.sum(dim=1) / m\n"
            + I + "batch_var = ((flat - batch_mean[:, None]) ** 2).sum(dim=1) / m\n"),
    (UPDATE, NO_GRAD
             + I + "    self.running_mean.copy_(self.momentum * batch_mean + (1 - self.momentum) * self.running_mean)\n"
             + I + "    self.running_var.copy_(self.momentum * batch_var * m / (m - 1) + (1 - self.momentum) * self.running_var)\n"),
    (TRAIN_X_HAT, I + "x_hat = (x - batch_mean[None, :, None, None]) / (batch_var[None, :, None, None] + self.eps) ** 0.5\n"),
    (EVAL_X_HAT, I + "x_hat = (x - self.running_mean[None, :, None, None]) / (self.running_var[None, :, None, None] + self.eps).sqrt()\n"),
)
MEANS_FUNCTION = (
    (FORWARD, J + "mean = x.mean(dim=(0, 2, 3), keepdim=True)\n"
              + J + "inv_std = torch.rsqrt(x.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + eps)\n"
              + J + "x_hat = (x - mean) * inv_std\n"
              + J + "ctx.save_for_backward(x, gamma, mean, inv_std)\n"),
    (BACKWARD, J + "x, gamma, mean, inv_std = ctx.saved_tensors\n"
               + J + "x_hat = (x - mean) * inv_std\n"
               + J + "d = grad_out * gamma[None, :, None, None]\n"
               + J + "dx = inv_std * (d - d.mean(dim=(0, 2, 3), keepdim=True)\n"
               + J + "                - x_hat * (d * x_hat).mean(dim=(0, 2, 3), keepdim=True))\n"
               + J + "dgamma = (grad_out * x_hat).sum(dim=(0, 2, 3))\n"
               + J + "dbeta = grad_out.sum(dim=(0, 2, 3))\n"),
)

# -- correct MyLayerNorm / MyGroupNorm written differently ---------------------------------------------------

# LayerNorm on the values flattened per sample, rsqrt; GroupNorm with var_mean on a 5-d view (N, G, C/G, ...)
FLAT_NORMS = (
    (LN_BODY, J + "k = len(self.normalized_shape)\n"
              + J + "flat = x.reshape(*x.shape[:x.dim() - k], -1)\n"
              + J + "mu = flat.mean(dim=-1, keepdim=True)\n"
              + J + "x_hat = ((flat - mu) * torch.rsqrt(((flat - mu) ** 2).mean(dim=-1, keepdim=True) + self.eps)).reshape(x.shape)\n"),
    (GN_BODY, J + "n, c = x.shape[0], x.shape[1]\n"
              + J + "g = x.reshape(n, self.num_groups, c // self.num_groups, -1)\n"
              + J + "var, mean = torch.var_mean(g, dim=(2, 3), unbiased=False, keepdim=True)\n"
              + J + "x_hat = ((g - mean) / (var + self.eps).sqrt()).reshape(x.shape)\n"),
)
# sums divided by the count; GroupNorm through the channels moved last and a mask-free loop over groups
SUMS_NORMS = (
    (LN_BODY, J + "dims = [-(i + 1) for i in range(len(self.normalized_shape))]\n"
              + J + "count = 1\n"
              + J + "for size in self.normalized_shape:\n"
              + J + "    count *= size\n"
              + J + "mean = x.sum(dim=dims, keepdim=True) / count\n"
              + J + "centred = x - mean\n"
              + J + "x_hat = centred / ((centred * centred).sum(dim=dims, keepdim=True) / count + self.eps) ** 0.5\n"),
    (GN_BODY, J + "size = self.num_channels // self.num_groups\n"
              + J + "parts = []\n"
              + J + "for chunk in torch.split(x, size, dim=1):\n"
              + J + "    dims = tuple(range(1, chunk.dim()))\n"
              + J + "    mean = chunk.mean(dim=dims, keepdim=True)\n"
              + J + "    var = ((chunk - mean) ** 2).mean(dim=dims, keepdim=True)\n"
              + J + "    parts.append((chunk - mean) / torch.sqrt(var + self.eps))\n"
              + J + "x_hat = torch.cat(parts, dim=1)\n"),
)

# -- mistakes in MyBatchNorm2d ---------------------------------------------------------------------------

EPS_OUTSIDE = (
    (TRAIN_X_HAT, I + "x_hat = (x - batch_mean.view(1, -1, 1, 1)) / (torch.sqrt(batch_var.view(1, -1, 1, 1)) + self.eps)\n"),
    (EVAL_X_HAT, I + "x_hat = (x - self.running_mean.view(1, -1, 1, 1)) / "
                 "(torch.sqrt(self.running_var.view(1, -1, 1, 1)) + self.eps)\n"),
)
# statistics of each image over (H, W) (instance norm), the running statistics their average over N
PER_IMAGE_STATS = (
    (STATS, I + "m = x.shape[2] * x.shape[3]\n"
            + I + "batch_mean = x.mean(dim=(2, 3), keepdim=True)\n"
            + I + "batch_var = x.var(dim=(2, 3), unbiased=False, keepdim=True)\n"),
    (UPDATE, NO_GRAD
             + I + "    self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * batch_mean.mean(dim=(0, 2, 3))\n"
             + I + "    self.running_var = (1 - self.momentum) * self.running_var + self.momentum * batch_var.mean(dim=(0, 2, 3)) * m / (m - 1)\n"),
    (TRAIN_X_HAT, I + "x_hat = (x - batch_mean) / torch.sqrt(batch_var + self.eps)\n"),
)

_DELEGATION = delegation.sources("MyBatchNorm2d", "BatchNorm2d")
SUBCLASS, WRAPPER = _DELEGATION["SUBCLASS"], _DELEGATION["WRAPPER"]
PATCH_COMPARISONS, PATCH_REFERENCE = _DELEGATION["PATCH_COMPARISONS"], _DELEGATION["PATCH_REFERENCE"]

# -- mistakes in BatchNorm2dFunction ---------------------------------------------------------------------

AUTOGRAD_BACKWARD = (
    (FORWARD_SAVE, J + "ctx.save_for_backward(x, gamma, beta)\n" + J + "ctx.eps = eps\n"),
    (BACKWARD, J + "x, gamma, beta = ctx.saved_tensors\n"
               + J + "with torch.enable_grad():\n"
               + J + "    x, gamma, beta = (t.detach().requires_grad_() for t in (x, gamma, beta))\n"
               + J + "    mean = x.mean(dim=(0, 2, 3), keepdim=True)\n"
               + J + "    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)\n"
               + J + "    y = gamma.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + ctx.eps) + beta.view(1, -1, 1, 1)\n"
               + J + "    dx, dgamma, dbeta = torch.autograd.grad(y, (x, gamma, beta), grad_out)\n"),
)
# the graph is built in forward (under enable_grad) and differentiated in backward: no enable_grad there
GRAPH_FROM_FORWARD = (
    (FORWARD, J + "with torch.enable_grad():\n"
              + J + "    xg = x.detach().requires_grad_()\n"
              + J + "    mean = xg.mean(dim=(0, 2, 3), keepdim=True)\n"
              + J + "    x_hat_graph = (xg - mean) / torch.sqrt(xg.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + eps)\n"
              + J + "ctx.graph = (xg, x_hat_graph)\n"
              + J + "x_hat = x_hat_graph.detach()\n"
              + J + "ctx.save_for_backward(x_hat, gamma)\n"),
    (BACKWARD, J + "x_hat, gamma = ctx.saved_tensors\n"
               + J + "xg, x_hat_graph = ctx.graph\n"
               + J + "(dx,) = torch.autograd.grad(x_hat_graph, xg, grad_out * gamma.view(1, -1, 1, 1), retain_graph=True)\n"
               + J + "dgamma = (grad_out * x_hat).sum(dim=(0, 2, 3))\n"
               + J + "dbeta = grad_out.sum(dim=(0, 2, 3))\n"),
)
BUILTIN_BACKWARD = (
    (FORWARD, J + "mean = x.mean(dim=(0, 2, 3))\n"
              + J + "inv_std = 1.0 / torch.sqrt(x.var(dim=(0, 2, 3), unbiased=False) + eps)\n"
              + J + "x_hat = (x - mean.view(1, -1, 1, 1)) * inv_std.view(1, -1, 1, 1)\n"
              + J + "ctx.save_for_backward(x, gamma, mean, inv_std)\n"
              + J + "ctx.eps = eps\n"),
    (BACKWARD, J + "x, gamma, mean, inv_std = ctx.saved_tensors\n"
               + J + "dx, dgamma, dbeta = torch.ops.aten.native_batch_norm_backward(\n"
               + J + "    grad_out, x, gamma, None, None, mean, inv_std, True, ctx.eps, [True, True, True])\n"),
)


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
