"""The complex exponential moving average layer (CEMA): parameters, coefficients, carried state.

Parameter shapes follow the reference implementation so its checkpoints copy over unchanged:
alpha, delta (D, N, 1); theta (D, 1, 1); gamma (D, N, 2) as (re, im); omega (D, 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from megalodoc.kernels.dispatch import cema


class ComplexEMA(nn.Module):
    """h_t = q * h_{t-1} + p * x_t;  y_t = Re(sum_n gamma_n h_t,n) + omega * x_t, per channel."""

    def __init__(self, dim: int, ndim: int) -> None:
        super().__init__()
        self.dim = dim
        self.ndim = ndim
        self.alpha = nn.Parameter(torch.empty(dim, ndim, 1))
        self.delta = nn.Parameter(torch.empty(dim, ndim, 1))
        self.theta = nn.Parameter(torch.empty(dim, 1, 1))
        self.gamma = nn.Parameter(torch.empty(dim, ndim, 2))
        self.omega = nn.Parameter(torch.empty(dim, 1))
        # (p, q, gamma, omega) computed under no_grad, and the parameter versions they were computed from
        self._frozen_coefficients: tuple | None = None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialisation of spec section 2.1."""
        nn.init.normal_(self.alpha, 0.0, 0.2)
        nn.init.normal_(self.delta, 0.0, 0.2)
        # base frequencies D^(-k/D), k = 1..D, randomly permuted over channels, stored as logits
        freqs = torch.exp(-torch.arange(1, self.dim + 1, dtype=torch.float64) * math.log(self.dim) / self.dim)
        freqs = freqs[torch.randperm(self.dim)]
        self.theta.copy_(torch.log(freqs / (1.0 - freqs)).view(self.dim, 1, 1))
        nn.init.normal_(self.gamma, 0.0, 1.0)
        self.gamma[:, :, 1] = 0.0
        nn.init.trunc_normal_(self.omega, 0.0, 0.25, -1.0, 1.0)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """p (D, N) real, q (D, N) complex, gamma (D, N) complex, always in fp32/complex64 (or 64-bit
        when the parameters are float64)."""
        real = torch.float64 if self.alpha.dtype == torch.float64 else torch.float32
        alpha = torch.sigmoid(self.alpha.to(real)).squeeze(-1)  # (D, N)
        delta = torch.sigmoid(self.delta.to(real)).squeeze(-1)  # (D, N)
        base = torch.sigmoid(self.theta.to(real)).view(self.dim, 1) * (2 * math.pi / self.ndim)  # (D, 1)
        wavelets = torch.arange(1, self.ndim + 1, dtype=real, device=base.device)  # (N,)
        q = torch.polar(1.0 - alpha * delta, base * wavelets)  # (D, N)
        gamma = torch.view_as_complex(self.gamma.to(real).contiguous()) / math.sqrt(self.ndim)  # (D, N)
        return alpha, q, gamma

    def coefficients_for_call(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(p, q, gamma, omega). With gradients off they are computed once and reused (the same tensor
        objects, so the kernel's tables of powers of q are reused too) until a parameter changes. The
        cache keeps detached aliases of the parameters it was computed from (so their storage cannot be
        freed and reused at the same address) and their in-place version counters."""
        if torch.is_grad_enabled():
            p, q, gamma = self.coefficients()
            return p, q, gamma, self.omega.squeeze(-1).to(p.dtype)
        params = (self.alpha, self.delta, self.theta, self.gamma, self.omega)
        cached = self._frozen_coefficients
        if cached is None or not all(
            ref.data_ptr() == t.data_ptr() and ref.dtype == t.dtype and ref.device == t.device
            and version == t._version
            for ref, version, t in zip(cached[0], cached[1], params, strict=True)
        ):
            # outside inference mode even when called inside it (inference tensors carry no version
            # counter, which the kernel's cache of tables checks); inference_mode(False) turns gradients
            # back on, hence no_grad
            with torch.inference_mode(False), torch.no_grad():
                p, q, gamma = self.coefficients()
                coefficients = (p, q, gamma, self.omega.squeeze(-1).to(p.dtype))
            cached = self._frozen_coefficients = (
                tuple(t.detach() for t in params), tuple(t._version for t in params), coefficients
            )
        return cached[2]

    def forward(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, D), state (B, D, N) complex or None -> y (B, L, D), new state (B, D, N)."""
        p, q, gamma, omega = self.coefficients_for_call()  # omega (D,)
        y, h = cema(x, p, q, gamma, omega, initial_state=state, output_final_state=True)
        return y, h
