"""Blocked CEMA over a whole number of blocks, forward and a hand-written backward.

The forward is the one of kernels/cema/blocked.py (see its docstring for the block equations). Left to
autograd, it recorded one copy per block state and rebuilt the matrices' graph through a cumulative
product, flips and an unfolded Toeplitz: ~38 ms of backward per 2,048-token layer call on one CPU thread
for ~3 ms of forward. The backward here is the chain rule written out on the same matrices, with
gradients of complex tensors in PyTorch's convention (dL/d re + i dL/d im):

    g_lhs = g_y out^T,  g_out = lhs^T g_y                      lhs = [blocks | Re E, Im E pairs]
    state scan in reverse:  g_E_A = g_final;  g_pushed_a = g_E_(a+1);  g_E_a = g_states_a + conj(q^T) g_E_(a+1)
    g_blocks = g_lhs[:, :, :T] + g_pushed sums^T,  g_sums = blocks^T g_pushed,  g_q^T = sum conj(E_a) g_pushed_a
and from g_out, g_sums, g_q^T to the powers q^j (j = 0..T) and then to p, q, gamma:
    taps k[j] = Re sum_n p gamma q^j: g_k[j] = sum of g_out's j-th upper diagonal,
        g_(q^j) += g_k[j] conj(p gamma),  g_(p gamma) = sum_j g_k[j] conj(q^j)
    read-out gamma q^(t+1):  g_(q^(t+1)) += g_R[t] conj(gamma),  g_gamma += sum_t g_R[t] conj(q^(t+1))
    sums p q^(T-1-s):  g_(q^(T-1-s)) += p g_S[s],  g_p += Re sum_s conj(q^(T-1-s)) g_S[s]
    g_q = sum_(j>=1) j conj(q^(j-1)) g_(q^j)
Tested against autograd through the float64 loop (tests/model/test_cema.py) and by gradcheck.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..autocast_off import backward_without_autocast
from .block_matrices import BlockMatrices, block_matrices


def run_blocks(
    blocks: torch.Tensor, m: BlockMatrices, h: torch.Tensor, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """blocks (D, B*A, T) contiguous (block a of row b at b*A + a); h (B, D, N) -> y (D, B*A, T) without
    the omega skip, the state after the last block (D, B, N), and the states entering each block
    (D, B, A, N)."""
    D, BA, T = blocks.shape
    N = m.step.shape[-1]
    A = BA // batch
    # (D, B, A, N) complex, a view of the product: p sum_s q^(T-1-s) x[aT + s]
    pushed = torch.view_as_complex(torch.bmm(blocks, m.sums).reshape(D, batch, A, N, 2))
    step = m.step[:, None, :]  # (D, 1, N)
    e = h.transpose(0, 1)  # (D, B, N): E_0
    states = pushed.new_empty(D, batch, A, N)  # E_a for a < A
    for a in range(A):
        states[:, :, a] = e
        e = torch.addcmul(pushed[:, :, a], step, e)  # E_(a+1) = q^T E_a + pushed_a
    lhs = torch.cat((blocks, torch.view_as_real(states).reshape(D, BA, 2 * N)), dim=-1)  # (D, B*A, T+2N)
    return torch.bmm(lhs, m.out), e, states


def _diagonal_sums(g: torch.Tensor) -> torch.Tensor:
    """g (D, T, T) -> (D, T): [j] = sum_s g[s, s + j], the adjoint of building a Toeplitz from its taps.
    Zeroing the lower triangle and reading the flat (T*T + T) buffer as (T, T+1) rows puts diagonal j in
    column j (entries that wrap into the next row fall in the zeroed triangle)."""
    D, T, _ = g.shape
    upper = torch.triu(g)  # (D, T, T)
    flat = torch.nn.functional.pad(upper.reshape(D, T * T), (0, T))  # (D, T*(T+1))
    return flat.reshape(D, T, T + 1)[..., :T].sum(1)


class BlocksFunction(torch.autograd.Function):
    """(blocks (D, B*A, T), p, q, gamma, h (B, D, N)) -> (y (D, B*A, T), final state (D, B, N))."""

    @staticmethod
    def forward(ctx, blocks, p, q, gamma, h, batch):
        T = blocks.shape[-1]
        m = block_matrices(p, q, gamma, T)
        y, e, states = run_blocks(blocks, m, h, batch)
        ctx.batch = batch
        ctx.save_for_backward(blocks, states, p, gamma, m.out, m.sums, m.powers)
        return y, e

    @staticmethod
    @backward_without_autocast
    @once_differentiable  # the saved matrices carry no graph: no second derivative
    def backward(ctx, g_y, g_final):
        blocks, states, p, gamma, out, sums, powers = ctx.saved_tensors
        B = ctx.batch
        D, BA, T = g_y.shape
        N = p.shape[-1]
        A = BA // B
        g_y = g_y.contiguous()
        # g_y out^T, in two products: an odd T would leave the state pairs at odd strides
        g_state_pairs = torch.bmm(g_y, out[:, T:].transpose(1, 2))  # (D, B*A, 2N)
        g_states = torch.view_as_complex(g_state_pairs.reshape(D, B, A, N, 2))  # (D, B, A, N)
        # the state scan in reverse
        conj_step = powers[..., T].conj()[:, None, :]  # (D, 1, N)
        g_e = g_final  # (D, B, N); gradients are materialized: zeros when the final state was unused
        g_pushed = g_states.new_empty(D, B, A, N)
        for a in range(A - 1, -1, -1):
            g_pushed[:, :, a] = g_e
            g_e = torch.addcmul(g_states[:, :, a], conj_step, g_e)  # g_E_a
        g_pushed_pairs = torch.view_as_real(g_pushed).reshape(D, BA, 2 * N)  # (re, im) pairs per n
        g_blocks = g_p = g_q = g_gamma = None
        if ctx.needs_input_grad[0]:
            g_blocks = torch.baddbmm(torch.bmm(g_y, out[:, :T].transpose(1, 2)), g_pushed_pairs, sums.transpose(1, 2))
        if any(ctx.needs_input_grad[1:4]):
            conj_powers = powers.conj()  # (D, N, T+1)
            # gradients on the matrices: Toeplitz taps, read-out gamma q^(t+1), block sums p q^(T-1-s), q^T
            g_taps = _diagonal_sums(torch.bmm(blocks.transpose(1, 2), g_y))  # (D, T): on k[j]
            state_pairs = torch.view_as_real(states).reshape(D, BA, 2 * N)  # (re, im) pairs per n
            rows = torch.bmm(state_pairs.transpose(1, 2), g_y).reshape(D, N, 2, T)  # rows (re, -im) per n
            g_read = torch.complex(rows[:, :, 0], -rows[:, :, 1])  # (D, N, T): on gamma q^(t+1)
            g_sums = torch.bmm(blocks.transpose(1, 2), g_pushed_pairs)  # (D, T, 2N), columns (re, im) per n
            g_s = torch.view_as_complex(g_sums.reshape(D, T, N, 2)).transpose(1, 2).flip(-1)  # (D, N, T): on p q^j
            g_step = (states.conj() * g_pushed).sum((1, 2))  # (D, N): on q^T
            # to p, gamma (w = p gamma is the taps' weight)
            g_w = (conj_powers[..., :T] * g_taps[:, None, :]).sum(-1)  # (D, N)
            g_gamma = (g_read * conj_powers[..., 1:]).sum(-1) + p * g_w
            g_p = (conj_powers[..., :T] * g_s).real.sum(-1) + (gamma.conj() * g_w).real
            # to q: g on q^j for j = 1..T (index j-1), then d q^j / dq = j q^(j-1)
            pad = torch.nn.functional.pad
            g_power = g_read * gamma.conj()[..., None] + p[..., None] * pad(g_s[..., 1:], (0, 1))
            g_power += (p * gamma).conj()[..., None] * pad(g_taps[:, 1:], (0, 1))[:, None, :]
            g_power[..., T - 1] += g_step
            j = torch.arange(1, T + 1, device=powers.device, dtype=p.dtype)  # (T,)
            g_q = (conj_powers[..., :T] * (j * g_power)).sum(-1)
        return g_blocks, g_p, g_q, g_gamma, g_e.transpose(0, 1), None
