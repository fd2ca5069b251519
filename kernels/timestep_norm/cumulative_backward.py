"""The cumulative timestep norm's backward, written out (forward: kernels/timestep_norm/cumulative.py).

Left to autograd, the ~25 operations of the forward and their saved intermediates took ~8 ms of backward
per (1, 2048, 256) call on one CPU thread. By hand, with per token t and group (g features):
    normed = (x - mean_t) rstd_t,  y = normed (w + 1) + b,  rstd_t = (var_t + eps)^(-1/2)
    mean_t = c + S1_t / n_t,  var_t = S2_t / n_t - (S1_t / n_t)^2   (c a constant: the result does not
        depend on it)
    S1_t = n0 (mean0 - c) + sum_(s<=t) (m_s - c),  S2_t = n0 (var0 + (mean0 - c)^2) + sum_(s<=t) (v_s + (m_s - c)^2)
    m_s, v_s the token's own group mean and population variance.
Backward, gn = g_y (w + 1):
    g_mean_t = -rstd_t sum_g gn,  g_var_t = -rstd_t^2 / 2 sum_g gn normed  (0 where var_t was clamped at 0)
    g_S1_t = (g_mean_t - 2 (S1_t / n_t) g_var_t) / n_t,  g_S2_t = g_var_t / n_t
    R1, R2 = reverse cumulative sums of g_S1, g_S2 over time
    g_m_s = R1_s + 2 (m_s - c) R2_s,  g_v_s = R2_s
    g_x = gn rstd_t + g_m_s / g + 2 (x - m_s) g_v_s / g
    g_mean0 = n0 (R1_0 + 2 (mean0 - c) R2_0),  g_var0 = n0 R2_0
with the final statistics' gradients added at t = L-1. Tested against autograd through the float64
Welford loop and by gradcheck (tests/model/test_timestep_norm.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..autocast_off import backward_without_autocast
from .cumulative_forward import forward_statistics


class TimestepNormFunction(torch.autograd.Function):
    """(x (B, L, D), weight, bias (D,), mean0, var0 (B, G) float64, count0 (B,), num_groups, eps)
    -> (y (B, L, D), final mean, final var (B, G))."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean0, var0, count0, num_groups, eps):
        out = forward_statistics(x, weight, bias, num_groups, eps, count0, mean0, var0)
        ctx.num_groups = num_groups
        ctx.x_dtype = x.dtype
        ctx.save_for_backward(weight, mean0, count0, out.normed, out.centred, out.rstd, out.dm, out.d1,
                              out.n_t, out.raw_var, out.shift)
        return out.y, out.mean, out.var

    @staticmethod
    @backward_without_autocast
    @once_differentiable  # the saved statistics carry no graph: no second derivative
    def backward(ctx, g_y, g_mean, g_var):
        weight, mean0, count0, normed, centred, rstd, dm, d1, n_t, raw_var, shift = ctx.saved_tensors
        B, L, G, g = normed.shape
        work = normed.dtype
        g_y = g_y.to(work).view(B, L, G, g)  # (B, L, G, g)
        scale = (weight.to(work) + 1.0).view(G, g)
        g_normed = g_y * normed  # (B, L, G, g)
        g_weight = g_normed.sum((0, 1)).view(-1).to(weight.dtype)
        g_bias = g_y.sum((0, 1)).view(-1).to(weight.dtype)
        gn = g_y * scale  # (B, L, G, g): gradient on normed
        sum_gn = gn.sum(-1).to(torch.float64)  # (B, L, G)
        sum_gn_normed = (g_normed * scale).sum(-1).to(torch.float64)
        r = rstd.to(torch.float64)
        g_mean_t = -r * sum_gn
        g_var_t = -0.5 * r * r * sum_gn_normed
        g_mean_t[:, -1] += g_mean.to(torch.float64)  # gradients are materialized: zeros when unused
        g_var_t[:, -1] += g_var.to(torch.float64)
        g_var_t = g_var_t * (raw_var >= 0)  # the clamp at 0
        g_s1 = (g_mean_t - 2.0 * d1 * g_var_t) / n_t
        g_s2 = g_var_t / n_t
        r1 = g_s1.flip(1).cumsum(1).flip(1)  # (B, L, G): sum over t >= s
        r2 = g_s2.flip(1).cumsum(1).flip(1)  # (B, L, G)
        g_m = ((r1 + 2.0 * dm * r2) / g).to(work)
        g_v = (2.0 * r2 / g).to(work)
        g_x = (centred * g_v[..., None]).add_(g_m[..., None]).addcmul_(gn, rstd[..., None])  # (B, L, G, g)
        g_x = g_x.view(B, L, G * g).to(ctx.x_dtype)  # (B, L, D)
        n0 = count0.to(torch.float64)[:, None]  # (B, 1)
        g_mean0 = n0 * (r1[:, 0] + 2.0 * (mean0 - shift) * r2[:, 0])
        g_var0 = n0 * r2[:, 0]
        return g_x, g_weight, g_bias, g_mean0, g_var0, None, None, None
