"""One new token without gradients on the CPU (decoding), written out layer by layer in one function.

A decoding step of the shipped model spends most of its time on fixed costs, not arithmetic: with the
layer modules it makes about 630 tensor operations and 70 module calls for one token, each a few
microseconds, against about 3 ms of matrix-vector products. This path computes the same step from the
same parameters with the pieces the modules use for a single token (the timestep norm's update of
kernels/timestep_norm/single_token.py, one CEMA step, the rotation table, attend_one_token) but
without the module calls, the per-call dispatch and the general paths' branches. Its twin is the layer
modules' forward (Megalodon.fast_decode = False takes it); tests/model/test_decode_step.py compares
the two token by token, across chunk ends, for batches, branches and restored states.

It applies to a model in eval mode, with float32 or float64 weights on the CPU, under no_grad or
inference_mode, without autocast, when the torch backend is chosen (MEGALODOC_BACKEND unset or
"torch"), for one token after a given state. Anything else takes the modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megalodoc.kernels.cema.blocked import cema_one_step
from megalodoc.kernels.dispatch import choose_backend
from megalodoc.kernels.timestep_norm.single_token import single_token_statistics
from megalodoc.model.attention import attend_one_token
from megalodoc.model.norms import TimestepNorm
from megalodoc.model.rotary import rotate
from megalodoc.model.state import LayerState, ModelState, NormState


def decode_step_applies(model: torch.nn.Module, ids: torch.Tensor) -> bool:
    """Whether model.hidden_states(ids, state) may take decode_hidden_states, given a state."""
    weight = model.embed.weight
    return (
        ids.shape[1] == 1 and not model.training and not torch.is_grad_enabled()
        and weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled("cpu") and choose_backend(weight) == "torch"
        and _no_dropout(model)
    )


def _no_dropout(model: torch.nn.Module) -> bool:
    """No module would drop anything: every rate is 0 (the presets), or no submodule is in train mode
    (a model in eval mode can hold one that was put back into train mode)."""
    cfg = model.config
    if cfg.dropout == cfg.hidden_dropout == cfg.attention_dropout == 0.0:
        return True
    return not any(module.training for module in model.modules())


def _norm(norm: TimestepNorm, x: torch.Tensor, state: NormState) -> tuple[torch.Tensor, NormState]:
    """x (B, D) -> the timestep norm of the token (B, D) and the statistics after it."""
    B, D = x.shape
    mean0 = state.mean if state.mean.dtype == torch.float64 else state.mean.to(torch.float64)
    var0 = state.var if state.var.dtype == torch.float64 else state.var.to(torch.float64)
    y, count, mean, var = single_token_statistics(
        x.view(B, 1, D), norm.weight, norm.bias, norm.num_groups, norm.eps, state.count, mean0, var0
    )
    return y.view(B, D), NormState(count, mean, var)


def _block(block: torch.nn.Module, x: torch.Tensor, state: LayerState, rotation: torch.Tensor, C: int
           ) -> tuple[torch.Tensor, LayerState]:
    """MegaBlock.forward for one token: x (B, D) -> (B, D) and the layer's state after it."""
    mega, ffn = block.mega, block.nffn
    cfg = mega.cfg
    B, D = x.shape
    H, dz, dv, eps = cfg.num_heads, cfg.head_dim, cfg.value_head_dim, cfg.norm_eps
    x_tn, norm_state = _norm(mega.timenorm, x, state.norm)  # (B, D)
    p, q, gamma, omega = mega.cema.coefficients_for_call()  # (D, N) x3, (D,)
    ema = state.ema if state.ema.dtype == q.dtype else state.ema.to(q.dtype)  # (B, D, N) complex
    c, ema = cema_one_step(x_tn, p, q, gamma, omega, ema)  # (B, D), (B, D, N)
    rms = mega.rmsnorm
    mx = c * torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + rms.eps) * (rms.weight + 1.0)  # (B, D)
    z = F.linear(mx, mega.wz.weight, mega.wz.bias).view(B, 1, H, dz)  # (B, 1, H, d_z)
    z = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + eps)  # per-head RMS, no affine
    scale = ((mega.gamma + 1.0) / math.sqrt(dz)).view(2, H, dz)  # (2, H, d_z): q's, then k's
    offset = mega.beta.view(2, H, dz)  # (2, H, d_z)
    q_rot = rotate(torch.addcmul(offset[0], z, scale[0]), rotation)  # (B, 1, H, d_z)
    k_rot = rotate(torch.addcmul(offset[1], z, scale[1]), rotation)
    v = F.silu(F.linear(x_tn, mega.wv.weight, mega.wv.bias), inplace=True).view(B, 1, H, dv)
    r = F.silu(F.linear(mx, mega.wr.weight, mega.wr.bias), inplace=True)  # (B, E)
    # the cache in the model's dtype, as the modules convert it (a state made by a wider model fits too)
    cached_keys = state.keys if state.keys.dtype == x.dtype else state.keys.to(x.dtype)  # (B, n, H, d_z)
    cached_values = state.values if state.values.dtype == x.dtype else state.values.to(x.dtype)  # (B, n, H, d_v)
    o, keys, values = attend_one_token(q_rot, k_rot, v, cached_keys, cached_values, C)  # (B, 1, H, d_v)
    u = r.mul_(o.view(B, -1))  # (B, E)
    y = torch.addmm(mega.wh1.bias, mx, mega.wh1.weight.t()).addmm_(u, mega.wh2.weight.t()).add_(x)  # (B, D)
    h = F.layer_norm(y, (D,), ffn.norm.weight + 1.0, ffn.norm.bias, ffn.norm.eps)  # (B, D)
    a = F.silu(F.linear(h, ffn.fc1.weight), inplace=True)  # (B, F)
    if ffn.fc3 is not None:
        a = a.mul_(F.linear(h, ffn.fc3.weight))
    if ffn.alpha is not None:
        out = F.linear(a, ffn.fc2.weight).mul_(ffn.alpha).add_(x)  # (B, D)
    else:
        out = torch.addmm(x, a, ffn.fc2.weight.t())  # (B, D); the two-hop residual: the block input x
    return out, LayerState(ema=ema, norm=norm_state, keys=keys, values=values)


def decode_hidden_states(model: torch.nn.Module, ids: torch.Tensor, state: ModelState
                         ) -> tuple[torch.Tensor, ModelState]:
    """Megalodon.hidden_states for ids (B, 1) after `state`, where decode_step_applies: the final norm's
    output (B, 1, D) and the state after the token."""
    cfg = model.config
    B = ids.shape[0]
    C = cfg.chunk_size
    x = F.embedding(ids[:, 0], model.embed.weight)  # (B, D)
    if cfg.scale_emb:
        x = x * math.sqrt(cfg.model_dim)
    weight = model.embed.weight
    # (1, d_z/2) complex: the rotation at the token's place in its chunk, that of every layer's cache
    rotation = model.rope.rotations(weight.dtype, weight.device, C)[state.position % C]
    layers = []
    for block, layer_state in zip(model.layers, state.layers, strict=True):
        x, new_state = _block(block, x, layer_state, rotation, C)
        layers.append(new_state)
    x, final = _norm(model.output.final_norm, x, state.final_norm)
    return x.view(B, 1, -1), ModelState(tuple(layers), final, state.position + 1)
