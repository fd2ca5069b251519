"""Timestep normalization in Triton: segment-parallel cumulative group statistics, forward and backward.

For row r = (b, group) the running mean and population variance over every scalar of the group up to
token t (paper Eq. 4, spec section 3.2) normalise x_t; the scale is applied as (weight + 1).

Forward, over segments of T tokens (programs over (row, segment); x read in its (B, L, D) layout):
  1. `_tsn_fwd_segment_kernel`: each segment's own (mean, var) over its T tokens;
  2. `_tsn_fwd_kernel`: each segment merges the summaries of all earlier segments (equal counts, so a
     two-pass reduction, no sequential carry pass) with the carried (count, mean, var), then rescans
     its tokens in tiles of BLOCK_T: per-token group moments, cumulative shifted sums inside the tile
     (tl.cumsum), and a Welford merge of each tile into the carried statistics with Kahan-compensated
     mean and variance. It writes y, the per-token (mean, rstd) for the backward, and the final state.
Backward (spec section 3.4): the reverse recurrence for (dmean, dvar) is affine with matrix
c1 [[1, -2 delta / n], [0, 1]] (c1 = (n-1)/n); divided by the count n it becomes unipotent, so the
scaled adjoints Q = P / n are reverse cumulative sums:
    Qv_t = Xv + sum_{s>=t} ev_s,   Qu_t = Xu + sum_{s>=t} eu_s - sum_{s>t} e2_s Qv_s
with eu = -rstd db / n, ev = -rstd^3 ds / (2 n), e2 = 2 (mbar_t - mean_{t-1}) / n. `_tsn_bwd_segment_kernel`
reduces each segment to three numbers (A = sum ev, E = sum e2, B = sum eu - sum e2 R with R the in-segment
suffix sums of ev); `_tsn_bwd_kernel` combines the later segments' summaries into its incoming carry and
rescans its tokens, giving dx, per-segment partial dweight/dbias, and (segment 0) the gradients of the
carried mean and variance (count * X).
All arithmetic is fp32 (bf16 inputs are cast on load); offsets are int64; no autotuning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .stats import NormStats

# Allocation of every buffer a kernel writes. Tests replace it with a NaN-filling allocator.
_alloc = torch.empty


@dataclass(frozen=True)
class TsnConfig:
    """Launch shape. segment_len: tokens per program (a multiple of block_t); block_t: tokens per tile
    (cumulative sums run inside a tile); block_g: groups per program; num_warps: warps per program
    (ignored by the interpreter)."""

    segment_len: int
    block_t: int
    block_g: int = 1
    num_warps: int = 4


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def default_config(x: torch.Tensor, num_groups: int) -> TsnConfig:
    """Heuristic launch shape. On a GPU: tiles of 64 tokens x one or more whole groups (about 2048
    elements; 4 warps, 8 from 4096 elements: an offline sm_90 compile put the backward near 245
    registers at 4 warps and 2048 elements) and segments sized for about eight programs per SM (the merge
    of earlier segments is a reduction, so many segments cost little). Under the CPU interpreter, where each
    program costs ~0.2 ms per tl operation, one program covers all groups of a row and segments are 64
    tokens (lengths around 64 exercise the multi-segment path)."""
    B, L, D = x.shape
    if not x.is_cuda:
        return TsnConfig(segment_len=64, block_t=64, block_g=min(64, triton.next_power_of_2(num_groups)))
    block_f = triton.next_power_of_2(D // num_groups)
    block_t = 64
    block_g = max(1, min(triton.next_power_of_2(num_groups), 32 // block_f))
    num_warps = 4 if block_t * block_g * block_f <= 2048 else 8
    row_programs = B * triton.cdiv(num_groups, block_g)
    target_programs = 8 * torch.cuda.get_device_properties(x.device).multi_processor_count
    segments = max(1, target_programs // row_programs)
    segment = triton.next_power_of_2(max(1, triton.cdiv(L, segments)))
    return TsnConfig(
        segment_len=max(block_t, min(8192, segment)), block_t=block_t, block_g=block_g, num_warps=num_warps
    )


# ----------------------------------------------------------------------------------------------------
# Shared pieces. A program covers one batch row b, a block of BLOCK_G groups and one segment of tokens;
# tiles are (BLOCK_T tokens, BLOCK_G groups, BLOCK_F features of a group).
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _row_setup(pid_row, L, D, G, g, BLOCK_G: tl.constexpr, BLOCK_F: tl.constexpr):
    """Batch row, groups of this program (vector), stat rows r = b*G + group, feature offsets and masks;
    offsets are int64."""
    n_gblocks = tl.cdiv(G, BLOCK_G)
    b = (pid_row // n_gblocks).to(tl.int64)
    grp = (pid_row % n_gblocks) * BLOCK_G + tl.arange(0, BLOCK_G)
    gmask = grp < G
    grp = grp.to(tl.int64)
    f = tl.arange(0, BLOCK_F)
    fmask2 = gmask[:, None] & (f < g)[None, :]  # (BLOCK_G, BLOCK_F)
    feat = grp[:, None] * g + f[None, :]  # feature index within D
    r = b * G + grp  # (BLOCK_G,) rows of the (B*G, ...) statistics
    return b, r, gmask, feat, fmask2


@triton.jit
def _tile_moments(ptr, x_base, t_start, n_valid, D, feat, fmask2, inv_g, BLOCK_T: tl.constexpr):
    """Load a (BLOCK_T, BLOCK_G, BLOCK_F) fp32 tile of tokens t_start.. (rows >= n_valid are zero) and
    form the per-token group mean and population variance (BLOCK_T, BLOCK_G) (two passes in registers).
    Returns the tile, token mask, element offsets, element mask and the moments. (One helper per tile:
    each jit call costs milliseconds under the interpreter.)"""
    i = tl.arange(0, BLOCK_T)
    tmask = i < n_valid
    off = x_base + (t_start + i).to(tl.int64)[:, None, None] * D + feat[None, :, :]
    emask = tmask[:, None, None] & fmask2[None, :, :]
    xt = tl.load(ptr + off, mask=emask, other=0.0).to(tl.float32)
    m = tl.sum(xt, axis=2) * inv_g
    dev = tl.where(fmask2[None, :, :], xt - m[:, :, None], 0.0)
    v = tl.sum(dev * dev, axis=2) * inv_g
    return xt, tmask, off, emask, m, v


@triton.jit
def _welford_tile(m, v, tmask, n, mean, cm, var, cv, BLOCK_T: tl.constexpr):
    """Merge a tile of per-token moments m, v (BLOCK_T, BLOCK_G) into the running statistics: count n
    (scalar, shared by the groups of a row), mean and var (BLOCK_G,) with Kahan compensations cm, cv.
    Inside the tile the cumulative moments are shifted sums about the running mean. Returns the
    per-token cumulative (mean, var) (BLOCK_T, BLOCK_G) and the new state."""
    i = tl.arange(0, BLOCK_T)
    idx = (i + 1).to(tl.float32)[:, None]
    tm = tmask[:, None]
    # An empty state (count 0, the prior) is overwritten: take the first token's mean as reference.
    first = tl.sum(tl.where(i[:, None] == 0, m, 0.0), axis=0)
    empty = (n == 0).to(tl.float32)
    mean = empty * first + (1.0 - empty) * mean
    var = (1.0 - empty) * var
    cm = (1.0 - empty) * cm
    cv = (1.0 - empty) * cv
    mu0 = mean - cm  # compensated running mean and variance
    var0 = var - cv
    dm = tl.where(tm, m - mu0[None, :], 0.0)
    sq = tl.where(tm, v + dm * dm, 0.0)
    s1 = tl.cumsum(dm, axis=0)
    s2 = tl.cumsum(sq, axis=0)
    nt = n + idx
    a = s1 / nt
    mean_t = mu0[None, :] + a
    var_t = tl.maximum(var0[None, :] + (s2 - idx * var0[None, :]) / nt - a * a, 0.0)
    cnt = tl.sum(tmask.to(tl.float32), axis=0)
    n_new = n + cnt
    a_last = tl.sum(dm, axis=0) / n_new
    inc_v = (tl.sum(sq, axis=0) - cnt * var0) / n_new - a_last * a_last
    # Kahan-compensated updates (written out: a jit helper call is slow under the interpreter);
    # the compensated values are mean - cm and var - cv.
    y_m = a_last - cm
    t_m = mean + y_m
    cm = (t_m - mean) - y_m
    y_v = inc_v - cv
    t_v = var + y_v
    cv = (t_v - var) - y_v
    return mean_t, var_t, n_new, t_m, cm, t_v, cv


@triton.jit
def _initial_state(count0_ptr, mean0_ptr, var0_ptr, b, r, gmask, HAS_INIT: tl.constexpr, BLOCK_G: tl.constexpr):
    """Carried (count, mean, var) of this program's groups; the prior (0, 0, 1) without a state."""
    if HAS_INIT:
        n0 = tl.load(count0_ptr + b).to(tl.float32)
        mean0 = tl.load(mean0_ptr + r, mask=gmask, other=0.0)
        var0 = tl.load(var0_ptr + r, mask=gmask, other=1.0)
    else:
        n0 = tl.sum(tl.zeros((1,), tl.float32), axis=0)
        mean0 = tl.zeros((BLOCK_G,), tl.float32)
        var0 = tl.zeros((BLOCK_G,), tl.float32) + 1.0
    return n0, mean0, var0


# ----------------------------------------------------------------------------------------------------
# Forward kernels
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _tsn_fwd_segment_kernel(
    x_ptr, cmean_ptr, cvar_ptr,  # cmean, cvar: (R, NC) fp32 per-segment statistics
    L, D, G, g, T, NC, inv_g,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_F: tl.constexpr,
):
    pid_row = tl.program_id(0)
    c = tl.program_id(1)
    b, r, gmask, feat, fmask2 = _row_setup(pid_row, L, D, G, g, BLOCK_G, BLOCK_F)
    x_base = b * L * D
    t0 = c * T
    n_steps = tl.minimum(T, L - t0)
    n = tl.sum(tl.zeros((1,), tl.float32), axis=0)
    mean = tl.zeros((BLOCK_G,), tl.float32)
    var = tl.zeros((BLOCK_G,), tl.float32)
    cm = tl.zeros((BLOCK_G,), tl.float32)
    cv = tl.zeros((BLOCK_G,), tl.float32)
    for k in range(0, tl.cdiv(n_steps, BLOCK_T)):
        xt, tmask, off, emask, m, v = _tile_moments(
            x_ptr, x_base, t0 + k * BLOCK_T, n_steps - k * BLOCK_T, D, feat, fmask2, inv_g, BLOCK_T
        )
        mean_t, var_t, n, mean, cm, var, cv = _welford_tile(m, v, tmask, n, mean, cm, var, cv, BLOCK_T)
    out = r * NC + c
    tl.store(cmean_ptr + out, mean - cm, mask=gmask)
    tl.store(cvar_ptr + out, var - cv, mask=gmask)


@triton.jit
def _tsn_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, count0_ptr, mean0_ptr, var0_ptr,
    cmean_ptr, cvar_ptr,  # (R, NC) segment statistics from `_tsn_fwd_segment_kernel`
    y_ptr, mu_ptr, rstd_ptr, meanf_ptr, varf_ptr,  # y (B, L, D); mu, rstd (R, L) fp32; final (R,) fp32
    L, D, G, g, T, NC, inv_g, eps,
    HAS_INIT: tl.constexpr, WRITE_FINAL: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_row = tl.program_id(0)
    c = tl.program_id(1)
    b, r, gmask, feat, fmask2 = _row_setup(pid_row, L, D, G, g, BLOCK_G, BLOCK_F)
    x_base = b * L * D
    n0, mean0, var0 = _initial_state(count0_ptr, mean0_ptr, var0_ptr, b, r, gmask, HAS_INIT, BLOCK_G)
    # Merge the statistics of segments 0..c-1 (T tokens each): a two-pass reduction.
    j = tl.arange(0, BLOCK_C)
    acc = tl.zeros((BLOCK_C, BLOCK_G), tl.float32)
    for k in range(0, tl.cdiv(c, BLOCK_C)):
        idx = k * BLOCK_C + j
        lmask = (idx < c)[:, None] & gmask[None, :]
        acc += tl.load(cmean_ptr + r[None, :] * NC + idx[:, None], mask=lmask, other=0.0)
    cf = c.to(tl.float32)
    mean_p = tl.sum(acc, axis=0) / tl.maximum(cf, 1.0)
    acc = tl.zeros((BLOCK_C, BLOCK_G), tl.float32)
    for k in range(0, tl.cdiv(c, BLOCK_C)):
        idx = k * BLOCK_C + j
        lmask = (idx < c)[:, None] & gmask[None, :]
        soff = r[None, :] * NC + idx[:, None]
        dmk = tl.load(cmean_ptr + soff, mask=lmask, other=0.0) - mean_p[None, :]
        cvk = tl.load(cvar_ptr + soff, mask=lmask, other=0.0)
        acc += tl.where(lmask, cvk + dmk * dmk, 0.0)
    var_p = tl.sum(acc, axis=0) / tl.maximum(cf, 1.0)
    n_p = cf * T
    n = n0 + n_p
    frac = n_p / tl.maximum(n, 1.0)  # weight of the earlier segments in the merged state
    delta = mean_p - mean0
    mean = mean0 + delta * frac
    var = (1.0 - frac) * var0 + frac * var_p + delta * delta * frac * (1.0 - frac)
    cm = tl.zeros((BLOCK_G,), tl.float32)
    cv = tl.zeros((BLOCK_G,), tl.float32)
    # Rescan this segment tile by tile.
    t0 = c * T
    n_steps = tl.minimum(T, L - t0)
    scale = tl.load(w_ptr + feat, mask=fmask2, other=0.0) + 1.0  # (BLOCK_G, BLOCK_F)
    shift = tl.load(bias_ptr + feat, mask=fmask2, other=0.0)
    for k in range(0, tl.cdiv(n_steps, BLOCK_T)):
        ts = t0 + k * BLOCK_T
        xt, tmask, off, emask, m, v = _tile_moments(
            x_ptr, x_base, ts, n_steps - k * BLOCK_T, D, feat, fmask2, inv_g, BLOCK_T
        )
        mean_t, var_t, n, mean, cm, var, cv = _welford_tile(m, v, tmask, n, mean, cm, var, cv, BLOCK_T)
        rstd_t = 1.0 / tl.sqrt(var_t + eps)
        yt = (xt - mean_t[:, :, None]) * rstd_t[:, :, None] * scale[None, :, :] + shift[None, :, :]
        tl.store(y_ptr + off, yt.to(y_ptr.dtype.element_ty), mask=emask)
        soff = r[None, :] * L + (ts + tl.arange(0, BLOCK_T))[:, None]
        smask = tmask[:, None] & gmask[None, :]
        tl.store(mu_ptr + soff, mean_t, mask=smask)
        tl.store(rstd_ptr + soff, rstd_t, mask=smask)
    if WRITE_FINAL:
        if c == NC - 1:
            tl.store(meanf_ptr + r, mean - cm, mask=gmask)
            tl.store(varf_ptr + r, var - cv, mask=gmask)


# ----------------------------------------------------------------------------------------------------
# Backward kernels
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _bwd_tile_terms(
    x_ptr, dy_ptr, mu_ptr, rstd_ptr, scale, x_base, r, gmask, ts, n_valid, n0, mean0, L, D, feat, fmask2,
    inv_g, BLOCK_T: tl.constexpr,
):
    """Per-token backward terms of a tile, each (BLOCK_T, BLOCK_G): the scaled direct adjoints eu, ev,
    the coupling e2; plus what the elementwise step needs."""
    i = tl.arange(0, BLOCK_T)
    tmask = i < n_valid
    t = ts + i
    off = x_base + t.to(tl.int64)[:, None, None] * D + feat[None, :, :]
    emask = tmask[:, None, None] & fmask2[None, :, :]
    xt = tl.load(x_ptr + off, mask=emask, other=0.0).to(tl.float32)
    dyt = tl.load(dy_ptr + off, mask=emask, other=0.0).to(tl.float32)
    smask = tmask[:, None] & gmask[None, :]
    soff = r[None, :] * L + t[:, None]
    mu = tl.load(mu_ptr + soff, mask=smask, other=0.0)
    rs = tl.load(rstd_ptr + soff, mask=smask, other=0.0)
    mu_prev = tl.load(mu_ptr + soff - 1, mask=smask & (t > 0)[:, None], other=0.0)
    mu_prev = tl.where((t == 0)[:, None], mean0[None, :], mu_prev)
    m = tl.sum(xt, axis=2) * inv_g
    nt = (n0 + (t + 1).to(tl.float32))[:, None]
    dyw = dyt * scale[None, :, :]
    xc = tl.where(fmask2[None, :, :], xt - mu[:, :, None], 0.0)
    db = tl.sum(dyw, axis=2)
    ds = tl.sum(dyw * xc, axis=2)
    eu = tl.where(smask, -rs * db / nt, 0.0)
    ev = tl.where(smask, -0.5 * rs * rs * rs * ds / nt, 0.0)
    e2 = tl.where(smask, 2.0 * (m - mu_prev) / nt, 0.0)
    return xt, dyt, off, emask, m, rs, nt, xc, eu, ev, e2


@triton.jit
def _tsn_bwd_segment_kernel(
    x_ptr, dy_ptr, w_ptr, mu_ptr, rstd_ptr, count0_ptr, mean0_ptr,
    sa_ptr, se_ptr, sb_ptr,  # (R, NC) segment summaries A, E, B
    L, D, G, g, T, NC, inv_g,
    HAS_INIT: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_F: tl.constexpr,
):
    pid_row = tl.program_id(0)
    c = tl.program_id(1)
    b, r, gmask, feat, fmask2 = _row_setup(pid_row, L, D, G, g, BLOCK_G, BLOCK_F)
    x_base = b * L * D
    n0, mean0, var0 = _initial_state(count0_ptr, mean0_ptr, mean0_ptr, b, r, gmask, HAS_INIT, BLOCK_G)
    scale = tl.load(w_ptr + feat, mask=fmask2, other=0.0) + 1.0
    t0 = c * T
    n_steps = tl.minimum(T, L - t0)
    n_tiles = tl.cdiv(n_steps, BLOCK_T)
    suf = tl.zeros((BLOCK_G,), tl.float32)  # sum of ev over the later tiles of this segment
    sa = tl.zeros((BLOCK_G,), tl.float32)
    se = tl.zeros((BLOCK_G,), tl.float32)
    sb = tl.zeros((BLOCK_G,), tl.float32)
    for kk in range(0, n_tiles):
        k = n_tiles - 1 - kk
        xt, dyt, off, emask, m, rs, nt, xc, eu, ev, e2 = _bwd_tile_terms(
            x_ptr, dy_ptr, mu_ptr, rstd_ptr, scale, x_base, r, gmask, t0 + k * BLOCK_T,
            n_steps - k * BLOCK_T, n0, mean0, L, D, feat, fmask2, inv_g, BLOCK_T,
        )
        rsuf = suf[None, :] + tl.cumsum(ev, axis=0, reverse=True)
        sa += tl.sum(ev, axis=0)
        se += tl.sum(e2, axis=0)
        sb += tl.sum(eu - e2 * rsuf, axis=0)
        suf += tl.sum(ev, axis=0)
    out = r * NC + c
    tl.store(sa_ptr + out, sa, mask=gmask)
    tl.store(se_ptr + out, se, mask=gmask)
    tl.store(sb_ptr + out, sb, mask=gmask)


@triton.jit
def _tsn_bwd_kernel(
    x_ptr, dy_ptr, w_ptr, mu_ptr, rstd_ptr, count0_ptr, mean0_ptr,
    dmf_ptr, dvf_ptr,  # incoming gradients of the final mean and var, (R,) fp32
    sa_ptr, se_ptr, sb_ptr,  # (R, NC) segment summaries
    dx_ptr, dw_ptr, db_ptr, dm0_ptr, dv0_ptr,  # dx (B, L, D); dw, db (NC, B, D) partials; dm0, dv0 (R,)
    L, D, G, g, T, NC, BD, inv_g,
    HAS_INIT: tl.constexpr, HAS_DSTATE: tl.constexpr, WRITE_DSTATE0: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_row = tl.program_id(0)
    c = tl.program_id(1)
    b, r, gmask, feat, fmask2 = _row_setup(pid_row, L, D, G, g, BLOCK_G, BLOCK_F)
    x_base = b * L * D
    n0, mean0, var0 = _initial_state(count0_ptr, mean0_ptr, mean0_ptr, b, r, gmask, HAS_INIT, BLOCK_G)
    n_final = n0 + L
    if HAS_DSTATE:
        xu = tl.load(dmf_ptr + r, mask=gmask, other=0.0) / n_final
        xv = tl.load(dvf_ptr + r, mask=gmask, other=0.0) / n_final
    else:
        xu = tl.zeros((BLOCK_G,), tl.float32)
        xv = tl.zeros((BLOCK_G,), tl.float32)
    # Incoming carry: combine the summaries of segments c+1..NC-1.
    j = tl.arange(0, BLOCK_C)
    n_later = NC - 1 - c
    acc = tl.zeros((BLOCK_C, BLOCK_G), tl.float32)
    for k in range(0, tl.cdiv(n_later, BLOCK_C)):
        idx = c + 1 + k * BLOCK_C + j
        lmask = (idx < NC)[:, None] & gmask[None, :]
        acc += tl.load(sa_ptr + r[None, :] * NC + idx[:, None], mask=lmask, other=0.0)
    tot_a = tl.sum(acc, axis=0)
    acc = tl.zeros((BLOCK_C, BLOCK_G), tl.float32)
    run = tl.zeros((BLOCK_G,), tl.float32)  # sum of A over the segments already visited
    for k in range(0, tl.cdiv(n_later, BLOCK_C)):
        idx = c + 1 + k * BLOCK_C + j
        lmask = (idx < NC)[:, None] & gmask[None, :]
        soff = r[None, :] * NC + idx[:, None]
        a = tl.load(sa_ptr + soff, mask=lmask, other=0.0)
        e = tl.load(se_ptr + soff, mask=lmask, other=0.0)
        bb = tl.load(sb_ptr + soff, mask=lmask, other=0.0)
        pre = run[None, :] + tl.cumsum(a, axis=0)  # sum of A over segments c+1..idx
        xv_in = xv[None, :] + tot_a[None, :] - pre  # carry into segment idx (from the segments after it)
        acc += tl.where(lmask, bb - e * xv_in, 0.0)
        run += tl.sum(a, axis=0)
    xu = xu + tl.sum(acc, axis=0)
    xv = xv + tot_a
    # Rescan this segment from its last tile to its first.
    scale = tl.load(w_ptr + feat, mask=fmask2, other=0.0) + 1.0
    t0 = c * T
    n_steps = tl.minimum(T, L - t0)
    n_tiles = tl.cdiv(n_steps, BLOCK_T)
    dw = tl.zeros((BLOCK_G, BLOCK_F), tl.float32)
    dbias = tl.zeros((BLOCK_G, BLOCK_F), tl.float32)
    first = (tl.arange(0, BLOCK_T) == 0)[:, None]
    for kk in range(0, n_tiles):
        k = n_tiles - 1 - kk
        xt, dyt, off, emask, m, rs, nt, xc, eu, ev, e2 = _bwd_tile_terms(
            x_ptr, dy_ptr, mu_ptr, rstd_ptr, scale, x_base, r, gmask, t0 + k * BLOCK_T,
            n_steps - k * BLOCK_T, n0, mean0, L, D, feat, fmask2, inv_g, BLOCK_T,
        )
        qv = xv[None, :] + tl.cumsum(ev, axis=0, reverse=True)
        w2 = e2 * qv
        qu = xu[None, :] + tl.cumsum(eu, axis=0, reverse=True) - (tl.cumsum(w2, axis=0, reverse=True) - w2)
        du = qu + (nt - 1.0) * e2 * qv  # DU = Qu + 2 c1 delta Qv, with 2 delta = n e2 and c1 n = n - 1
        xm = tl.where(fmask2[None, :, :], xt - m[:, :, None], 0.0)
        dx = dyt * rs[:, :, None] * scale[None, :, :] + (du[:, :, None] + 2.0 * qv[:, :, None] * xm) * inv_g
        tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=emask)
        dw += tl.sum(dyt * xc * rs[:, :, None], axis=0)
        dbias += tl.sum(dyt, axis=0)
        # carry to the previous tile: Xv = Qv_first, Xu = Qu_first - e2_first Qv_first
        xv = tl.sum(tl.where(first, qv, 0.0), axis=0)
        xu = tl.sum(tl.where(first, qu - w2, 0.0), axis=0)
    poff = c.to(tl.int64) * BD + b * D + feat
    tl.store(dw_ptr + poff, dw, mask=fmask2)
    tl.store(db_ptr + poff, dbias, mask=fmask2)
    if WRITE_DSTATE0:
        if c == 0:
            tl.store(dm0_ptr + r, n0 * xu, mask=gmask)
            tl.store(dv0_ptr + r, n0 * xv, mask=gmask)


# ----------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------

# Segment statistics are merged in blocks of this many segments (one vector load per block).
_BLOCK_C = 128


def _check_device(x: torch.Tensor) -> None:
    if not x.is_cuda and not _interpreting():
        raise RuntimeError(
            f"timestep_norm_triton needs a CUDA tensor (got device {x.device}); on the CPU use the torch "
            "backend or set TRITON_INTERPRET=1 before importing triton"
        )


def _tsn_fwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    G: int,
    eps: float,
    count0: torch.Tensor | None,
    mean0: torch.Tensor | None,
    var0: torch.Tensor | None,
    output_final_state: bool,
    cfg: TsnConfig,
) -> tuple[torch.Tensor, ...]:
    """Launch the forward. x (B, L, D) contiguous (L >= 1); weight, bias (D,) fp32; count0 (B,) int64,
    mean0, var0 (B, G) fp32 contiguous, or all None. Returns y (B, L, D) in x's dtype, mu and rstd
    (B*G, L) fp32 (saved for the backward) and the final mean and var (B, G) fp32 (or None)."""
    B, L, D = x.shape
    g = D // G
    R = B * G
    T, BLOCK_T = cfg.segment_len, cfg.block_t
    NC = triton.cdiv(L, T)
    BLOCK_F = triton.next_power_of_2(g)
    grid = (B * triton.cdiv(G, cfg.block_g), NC)
    dev = x.device
    has_init = count0 is not None
    y = _alloc((B, L, D), dtype=x.dtype, device=dev)
    mu = _alloc((R, L), dtype=torch.float32, device=dev)
    rstd = _alloc((R, L), dtype=torch.float32, device=dev)
    mean_f = _alloc((B, G), dtype=torch.float32, device=dev) if output_final_state else None
    var_f = _alloc((B, G), dtype=torch.float32, device=dev) if output_final_state else None
    cmean = _alloc((R, NC), dtype=torch.float32, device=dev)
    cvar = _alloc((R, NC), dtype=torch.float32, device=dev)
    if NC > 1:
        _tsn_fwd_segment_kernel[grid](
            x, cmean, cvar, L, D, G, g, T, NC, 1.0 / g,
            BLOCK_T=BLOCK_T, BLOCK_G=cfg.block_g, BLOCK_F=BLOCK_F, num_warps=cfg.num_warps,
        )
    _tsn_fwd_kernel[grid](
        x, weight, bias,
        count0 if has_init else x, mean0 if has_init else x, var0 if has_init else x,
        cmean, cvar, y, mu, rstd,
        mean_f if mean_f is not None else mu, var_f if var_f is not None else mu,
        L, D, G, g, T, NC, 1.0 / g, eps,
        HAS_INIT=has_init, WRITE_FINAL=output_final_state,
        BLOCK_T=BLOCK_T, BLOCK_G=cfg.block_g, BLOCK_F=BLOCK_F, BLOCK_C=_BLOCK_C, num_warps=cfg.num_warps,
    )
    return y, mu, rstd, mean_f, var_f


def _tsn_bwd(
    dy: torch.Tensor,
    dmean_f: torch.Tensor | None,
    dvar_f: torch.Tensor | None,
    x: torch.Tensor,
    weight: torch.Tensor,
    mu: torch.Tensor,
    rstd: torch.Tensor,
    count0: torch.Tensor | None,
    mean0: torch.Tensor | None,
    G: int,
    need_dstate0: bool,
    cfg: TsnConfig,
) -> tuple[torch.Tensor, ...]:
    """Launch the backward. Returns dx (B, L, D) in x's dtype, dweight, dbias (D,) fp32 and the gradients
    of the carried mean and var (B, G) fp32 (or None)."""
    B, L, D = x.shape
    g = D // G
    R = B * G
    T, BLOCK_T = cfg.segment_len, cfg.block_t
    NC = triton.cdiv(L, T)
    BLOCK_F = triton.next_power_of_2(g)
    grid = (B * triton.cdiv(G, cfg.block_g), NC)
    dev = x.device
    has_init = count0 is not None
    has_dstate = dmean_f is not None or dvar_f is not None
    if has_dstate:
        dmean_f = torch.zeros(B, G, device=dev) if dmean_f is None else dmean_f.float().contiguous()
        dvar_f = torch.zeros(B, G, device=dev) if dvar_f is None else dvar_f.float().contiguous()
    sa = _alloc((R, NC), dtype=torch.float32, device=dev)
    se = _alloc((R, NC), dtype=torch.float32, device=dev)
    sb = _alloc((R, NC), dtype=torch.float32, device=dev)
    if NC > 1:
        _tsn_bwd_segment_kernel[grid](
            x, dy, weight, mu, rstd, count0 if has_init else x, mean0 if has_init else x,
            sa, se, sb, L, D, G, g, T, NC, 1.0 / g,
            HAS_INIT=has_init, BLOCK_T=BLOCK_T, BLOCK_G=cfg.block_g, BLOCK_F=BLOCK_F,
            num_warps=cfg.num_warps,
        )
    dx = _alloc((B, L, D), dtype=x.dtype, device=dev)
    dw = _alloc((NC, B, D), dtype=torch.float32, device=dev)
    db = _alloc((NC, B, D), dtype=torch.float32, device=dev)
    dm0 = _alloc((B, G), dtype=torch.float32, device=dev) if need_dstate0 else None
    dv0 = _alloc((B, G), dtype=torch.float32, device=dev) if need_dstate0 else None
    _tsn_bwd_kernel[grid](
        x, dy, weight, mu, rstd, count0 if has_init else x, mean0 if has_init else x,
        dmean_f if has_dstate else x, dvar_f if has_dstate else x,
        sa, se, sb, dx, dw, db, dm0 if need_dstate0 else dw, dv0 if need_dstate0 else dw,
        L, D, G, g, T, NC, B * D, 1.0 / g,
        HAS_INIT=has_init, HAS_DSTATE=has_dstate, WRITE_DSTATE0=need_dstate0,
        BLOCK_T=BLOCK_T, BLOCK_G=cfg.block_g, BLOCK_F=BLOCK_F, BLOCK_C=_BLOCK_C, num_warps=cfg.num_warps,
    )
    return dx, dw.sum((0, 1)), db.sum((0, 1)), dm0, dv0


# ----------------------------------------------------------------------------------------------------
# Autograd and the public entry point
# ----------------------------------------------------------------------------------------------------


class TimestepNormFunction(torch.autograd.Function):
    """Autograd for the Triton timestep norm: gradients to x, weight, bias and the carried mean/var."""

    @staticmethod
    def forward(ctx, x, weight, bias, count0, mean0, var0, num_groups, eps, output_final_state, cfg):
        y, mu, rstd, mean_f, var_f = _tsn_fwd(
            x, weight, bias, num_groups, eps, count0, mean0, var0, output_final_state, cfg
        )
        ctx.save_for_backward(x, weight, mu, rstd, count0, mean0)
        ctx.num_groups = num_groups
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)
        return y, mean_f, var_f

    @staticmethod
    def backward(ctx, dy, dmean_f, dvar_f):
        x, weight, mu, rstd, count0, mean0 = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(x)
        need_dstate0 = count0 is not None and (ctx.needs_input_grad[4] or ctx.needs_input_grad[5])
        dx, dw, db, dm0, dv0 = _tsn_bwd(
            dy.contiguous(), dmean_f, dvar_f, x, weight, mu, rstd, count0, mean0, ctx.num_groups,
            need_dstate0, ctx.cfg,
        )
        return dx, dw, db, None, dm0, dv0, None, None, None, None


def timestep_norm_apply(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    num_groups: int,
    eps: float = 1e-5,
    initial_state: NormStats | None = None,
    output_final_state: bool = False,
    config: TsnConfig | None = None,
) -> tuple[torch.Tensor, NormStats | None]:
    """`timestep_norm_triton` with an explicit launch shape (tests and benchmarks pin segment sizes)."""
    if x.dim() != 3:
        raise ValueError(f"timestep_norm_triton: x must be (B, L, D), got shape {tuple(x.shape)}")
    B, L, D = x.shape
    G = num_groups
    if G < 1 or D % G != 0:
        raise ValueError(f"timestep_norm_triton: num_groups={G} must divide D={D}")
    if weight.shape != (D,) or bias.shape != (D,):
        raise ValueError(
            f"timestep_norm_triton: weight and bias must be ({D},), got {tuple(weight.shape)}, {tuple(bias.shape)}"
        )
    count0 = mean0 = var0 = None
    if initial_state is not None:
        count0, mean0, var0 = initial_state
        if count0.shape != (B,) or mean0.shape != (B, G) or var0.shape != (B, G):
            raise ValueError(
                f"timestep_norm_triton: initial_state must be count ({B},), mean and var ({B}, {G}); got "
                f"{tuple(count0.shape)}, {tuple(mean0.shape)}, {tuple(var0.shape)}"
            )
    _check_device(x)
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if L == 0:  # nothing to normalise: the state passes through
        if not output_final_state:
            return x.new_zeros(B, 0, D), None
        if initial_state is None:
            count0 = torch.zeros(B, dtype=torch.int64, device=x.device)
            mean0 = torch.zeros(B, G, dtype=stat_dtype, device=x.device)
            var0 = torch.ones(B, G, dtype=stat_dtype, device=x.device)
        return x.new_zeros(B, 0, D), (count0, mean0.to(stat_dtype), var0.to(stat_dtype))
    cfg = config or default_config(x, G)
    if cfg.segment_len % cfg.block_t != 0:
        raise ValueError(f"timestep_norm_triton: segment_len {cfg.segment_len} must be a multiple of {cfg.block_t}")
    y, mean_f, var_f = TimestepNormFunction.apply(
        x.contiguous(), weight.float().contiguous(), bias.float().contiguous(),
        None if count0 is None else count0.to(torch.int64).contiguous(),
        None if mean0 is None else mean0.float().contiguous(),
        None if var0 is None else var0.float().contiguous(),
        G, eps, output_final_state, cfg,
    )
    if not output_final_state:
        return y, None
    count_f = (count0 if count0 is not None else torch.zeros(B, dtype=torch.int64, device=x.device)) + L
    return y, (count_f, mean_f.to(stat_dtype), var_f.to(stat_dtype))


def timestep_norm_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    num_groups: int,
    eps: float = 1e-5,
    initial_state: NormStats | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, NormStats | None]:
    """Causal cumulative group normalization (paper Eq. 4) on Triton, with autograd. x (B, L, D) any
    float dtype (computed in fp32); weight, bias (D,) with the scale applied as (weight + 1);
    initial_state (count (B,) int64, mean (B, G), var (B, G)). Returns y (B, L, D) in x's dtype and,
    if asked, (count (B,) int64, mean, var (B, G)) in fp32 (float64 for float64 input)."""
    return timestep_norm_apply(
        x, weight, bias, num_groups=num_groups, eps=eps, initial_state=initial_state,
        output_final_state=output_final_state,
    )
