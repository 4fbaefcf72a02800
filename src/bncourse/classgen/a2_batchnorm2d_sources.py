"""The answer-cell sources of assignment 2's generated submissions (data only).

The solution's own lines inside the blanks of ``MyBatchNorm2d``, ``BatchNorm2dFunction``,
``MyLayerNorm`` and ``MyGroupNorm`` (the texts the mistakes edit), correct implementations
written differently, and the mistakes as ``(old, new)`` edits.  Which student gets which,
and which tests each must fail, is the table in ``bncourse.classgen.a2_batchnorm2d``
(``VARIANTS``).
"""

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
