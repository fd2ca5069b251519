"""The CEMA recurrence written as a plain loop over time: the oracle every other path is tested against.

Per channel d with complex state h in C^N (spec section 2.3):
    h_t = q * h_{t-1} + p * x_t
    y_t = Re(sum_n gamma_n * h_{t,n}) + omega * x_t
"""

from __future__ import annotations

import torch


def cema_naive(
    x: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    gamma: torch.Tensor,
    omega: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loop reference in float64/complex128. x (B, L, D); p (D, N) real; q, gamma (D, N) complex;
    omega (D,); initial_state (B, D, N) complex. Returns y (B, L, D) in x's dtype and the final state
    (B, D, N) complex128 if asked."""
    B, L, D = x.shape
    xd = x.to(torch.float64)
    pd, qd, gd = p.to(torch.float64), q.to(torch.complex128), gamma.to(torch.complex128)
    h = torch.zeros(B, D, p.shape[-1], dtype=torch.complex128, device=x.device)  # (B, D, N)
    if initial_state is not None:
        h = initial_state.to(torch.complex128)
    ys = []
    for t in range(L):
        h = qd * h + pd * xd[:, t, :, None]  # (B, D, N)
        ys.append((gd * h).sum(-1).real + omega.to(torch.float64) * xd[:, t])  # (B, D)
    y = torch.stack(ys, dim=1) if ys else xd.new_zeros(B, 0, D)  # (B, L, D)
    return y.to(x.dtype), (h if output_final_state else None)
