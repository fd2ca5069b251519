"""The LM head and the mean next-token cross-entropy in one autograd Function, a block of rows at a time.

The plain way, F.cross_entropy(F.linear(h, W), targets), holds the whole (M, V) logits, their log-softmax
and, in the backward, their gradient: for a CPU training step of 8 x 1,024 tokens over the shipped
model's 8,192-token vocabulary, several 256 MiB tensors. glibc's malloc maps every block of 32 MiB or
more afresh and returns it at free, so each of them is faulted in page by page on every step (see
bench/allocator.py). Here the forward takes M rows a block at a time (at most ROW_BLOCK_BYTES of logits,
16 MiB) and computes, besides the loss, the gradients of the mean loss with respect to h and W:

    logits = h_b W^T,  lse = logsumexp(logits),  loss_b = sum(lse - logits[target]),
    dlogits = (softmax(logits) - onehot(target)) / M,  grad_h_b = dlogits W,  grad_W += dlogits^T h_b

The backward only scales the stored gradients by the incoming one. The products are those of the plain
forward and backward (three (M, D, V) matrix products), so the arithmetic is the same; only the order of
the sums differs. Its twin is the plain expression (`plain_linear_cross_entropy`), compared in
tests/model/test_linear_cross_entropy.py. It computes gradients in the forward, so it is meant for a
training step (a forward whose loss is differentiated once; no double backward); without gradients
only the loss is computed. It keeps the gradients, not h and W: a backward after either was changed in
place raises, as autograd does for the plain expression.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Largest logits block: 16 MiB (4M fp32 values, 512 rows of the shipped vocabulary). glibc maps the first
# such block afresh and, once it is freed, raises its mmap threshold above it (up to 32 MiB), so the later
# blocks come from the heap and are reused from block to block and step to step.
ROW_BLOCK_BYTES = 16 << 20


def plain_linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The twin: h (M, D), weight (V, D), targets (M,) int64 -> the mean cross-entropy of h W^T (scalar)."""
    return F.cross_entropy(F.linear(h, weight), targets)


def _block_loss(h_b: torch.Tensor, weight: torch.Tensor, t_b: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h_b (r, D), weight (V, D), t_b (r,) -> logits (r, V), their logsumexp (r,), the block's summed loss."""
    logits = h_b @ weight.t()  # (r, V)
    lse = torch.logsumexp(logits, dim=-1)  # (r,)
    return logits, lse, lse.sum() - logits.gather(1, t_b[:, None]).sum()


class LinearCrossEntropy(torch.autograd.Function):
    """h (M, D), weight (V, D), targets (M,) int64 in [0, V), rows per block -> mean cross-entropy, with
    the gradients of whichever of h and weight need one computed in the forward."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        M = h.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # refs, not saved values, to see in-place changes (an inference tensor has no version: never changed)
        ctx.inputs = (h, weight)
        ctx.versions = tuple(None if t.is_inference() else t._version for t in ctx.inputs)
        total = torch.zeros((), dtype=h.dtype, device=h.device)
        grad_h = torch.empty_like(h) if want_h else None  # (M, D)
        grad_w = torch.zeros_like(weight) if want_w else None  # (V, D)
        for start in range(0, M, rows):
            h_b, t_b = h[start : start + rows], targets[start : start + rows]  # (r, D), (r,)
            logits, lse, block_loss = _block_loss(h_b, weight, t_b)
            total += block_loss
            dlogits = logits.sub_(lse[:, None]).exp_()  # (r, V) softmax, in place of the logits
            dlogits[torch.arange(t_b.shape[0], device=h.device), t_b] -= 1.0  # minus the one-hot target
            dlogits.div_(M)  # the mean over all M rows
            if grad_h is not None:
                torch.mm(dlogits, weight, out=grad_h[start : start + rows])  # (r, D)
            if grad_w is not None:
                grad_w.addmm_(dlogits.t(), h_b)  # (V, D)
        ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
        ctx.wants = (want_h, want_w)
        return total / M

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        for name, t, version in zip(("h", "weight"), ctx.inputs, ctx.versions, strict=True):
            if version is not None and t._version != version:
                raise RuntimeError(f"linear_cross_entropy: {name} was modified in place after the forward; its "
                                   "gradients were computed from the values before")
        saved = list(ctx.saved_tensors)
        grad_h = saved.pop(0) * grad_loss if ctx.wants[0] else None
        grad_w = saved.pop(0) * grad_loss if ctx.wants[1] else None
        return grad_h, grad_w, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of h (M, D) W^T against targets (M,) int64 a block of `rows` at a time (default:
    as many as fit ROW_BLOCK_BYTES of logits). Where no gradient will be asked for (no_grad, or neither h
    nor the weight needs one), only the loss is computed. Targets must lie in [0, V) (no ignore_index)."""
    _check_inputs(h, weight, targets)
    if rows is None:
        rows = max(1, ROW_BLOCK_BYTES // (weight.shape[0] * weight.element_size()))
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return LinearCrossEntropy.apply(h, weight, targets, rows)
    total = torch.zeros((), dtype=h.dtype, device=h.device)
    for start in range(0, h.shape[0], rows):
        total += _block_loss(h[start : start + rows], weight, targets[start : start + rows])[2]
    return total / h.shape[0]


def _check_inputs(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> None:
    """Shapes and dtypes the blocks rely on, named where they do not fit (reading no tensor data)."""
    problems = []
    if h.dim() != 2 or weight.dim() != 2 or (h.dim() == 2 == weight.dim() and h.shape[1] != weight.shape[1]):
        problems.append(f"h {tuple(h.shape)} and weight {tuple(weight.shape)} must be (M, D) and (V, D)")
    if h.dtype != weight.dtype:
        problems.append(f"h is {h.dtype} and weight {weight.dtype}")
    if targets.dtype != torch.int64 or targets.dim() != 1 or (h.dim() >= 1 and targets.shape[0] != h.shape[0]):
        problems.append(f"targets are {targets.dtype}{tuple(targets.shape)}, expected int64 ({h.shape[0]},)")
    if problems:
        raise ValueError("linear_cross_entropy: " + "; ".join(problems))
