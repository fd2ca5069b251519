"""The Megalodon language model with a functional streaming interface.

    logits, state = model(ids)               # ids (B, L) int64; a fresh state
    logits, state2 = model(more_ids, state)  # continues exactly; `state` is never mutated

Any split of a token sequence gives the same logits and final state as one call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from megalodoc.model.config import MegalodonConfig
from megalodoc.model.decode_step import decode_hidden_states, decode_step_applies
from megalodoc.model.ffn import NormalizedFeedForward
from megalodoc.model.init import init_embedding_like, init_linear
from megalodoc.model.mega_attention import MovingAverageGatedAttention
from megalodoc.model.norms import TimestepNorm
from megalodoc.model.rotary import Rotary
from megalodoc.model.state import LayerState, ModelState, NormState


class MegaBlock(nn.Module):
    """One layer: gated attention sub-layer, then the normalized FFN with the block input as residual."""

    def __init__(self, cfg: MegalodonConfig, layer_id: int) -> None:
        super().__init__()
        self.mega = MovingAverageGatedAttention(cfg)
        self.nffn = NormalizedFeedForward(cfg, layer_id)

    def forward(self, x: torch.Tensor, state: LayerState | None, rotary: Rotary) -> tuple[torch.Tensor, LayerState]:
        y, new_state = self.mega(x, state, rotary)
        return self.nffn(y, x), new_state


class OutputLayer(nn.Module):
    """Final timestep norm and the bias-free LM head (tied to the embedding when share_emb)."""

    def __init__(self, cfg: MegalodonConfig) -> None:
        super().__init__()
        self.final_norm = TimestepNorm(cfg.model_dim, cfg.norm_num_groups, cfg.norm_eps)
        self.output = None if cfg.share_emb else nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)


class Megalodon(nn.Module):
    """Megalodon LM. Module names mirror the reference implementation's state-dict keys."""

    def __init__(self, config: MegalodonConfig) -> None:
        super().__init__()
        if not isinstance(config, MegalodonConfig):
            raise TypeError(f"Megalodon needs a MegalodonConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.model_dim)
        self.rope = Rotary(config.head_dim, config.rope_base)
        self.layers = nn.ModuleList(MegaBlock(config, i) for i in range(config.num_layers))
        self.output = OutputLayer(config)
        # one token after a state without gradients on the CPU takes model/decode_step.py; False: the modules
        self.fast_decode = True
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialisation of spec section 1.5 (CEMA initialises itself at construction)."""
        cfg = self.config
        init_embedding_like(self.embed.weight, cfg.model_dim)
        if self.output.output is not None:
            init_embedding_like(self.output.output.weight, cfg.model_dim)
        for block in self.layers:
            m = block.mega
            for layer in (m.wz, m.wv, m.wr, m.wh1, m.wh2):
                init_linear(layer, cfg.init_mode, cfg.model_dim)
            for layer in (block.nffn.fc1, block.nffn.fc2, block.nffn.fc3):
                if layer is not None:
                    init_linear(layer, cfg.init_mode, cfg.model_dim)

    # ---- state helpers ----
    def initial_state(self, batch_size: int = 1, device: torch.device | str | None = None) -> ModelState:
        """The explicit fresh state (identical in effect to passing state=None)."""
        cfg = self.config
        device = device if device is not None else self.embed.weight.device
        dtype = self.embed.weight.dtype
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        sdtype = torch.float64 if dtype == torch.float64 else torch.float32
        B, G = batch_size, cfg.norm_num_groups

        def norm() -> NormState:
            return NormState(
                torch.zeros(B, dtype=torch.int64, device=device),
                torch.zeros(B, G, dtype=sdtype, device=device),
                torch.ones(B, G, dtype=sdtype, device=device),
            )

        layers = tuple(
            LayerState(
                ema=torch.zeros(B, cfg.model_dim, cfg.cema_ndim, dtype=cdtype, device=device),
                norm=norm(),
                keys=torch.zeros(B, 0, cfg.num_heads, cfg.head_dim, dtype=dtype, device=device),
                values=torch.zeros(B, 0, cfg.num_heads, cfg.value_head_dim, dtype=dtype, device=device),
            )
            for _ in range(cfg.num_layers)
        )
        return ModelState(layers, norm(), 0)

    def _check_ids(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids must be a torch.Tensor of token ids, got {type(ids).__name__}")
        if ids.dtype != torch.int64:
            raise TypeError(f"ids must have dtype torch.int64, got {ids.dtype}")
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (batch, length), got shape {tuple(ids.shape)}")
        if ids.shape[0] == 0:  # a batch of no sequences has no state to carry
            raise ValueError(f"ids must hold at least one sequence, got shape {tuple(ids.shape)}")
        if ids.device.type != "cpu" or not ids.numel():
            return  # reading a device tensor's range would wait for the device: ids come from the host tokenizer
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}); got min {int(ids.min())}, "
                f"max {int(ids.max())}"
            )

    # ---- forward ----
    def hidden_states(
        self, ids: torch.Tensor, state: ModelState | None = None
    ) -> tuple[torch.Tensor, ModelState]:
        """ids (B, L) int64 -> the final norm's output (B, L, D), the LM head's input, and the state after
        the last token: everything forward does except the head. L = 0 (an empty piece of a stream) reads
        nothing: (B, 0, D) and the state unchanged (a fresh one for state=None)."""
        self._check_ids(ids)
        B, L = ids.shape
        if state is not None:
            if not isinstance(state, ModelState):
                raise TypeError(f"state must be a ModelState or None, got {type(state).__name__}")
            state.validate(self.config, batch_size=B, check_values=False)  # shapes only: no device sync
            if torch.is_grad_enabled():  # a call with gradients cannot save inference tensors for its backward
                state = state.with_normal_tensors()
        if state is not None and self.fast_decode and decode_step_applies(self, ids):
            return decode_hidden_states(self, ids, state)
        cfg = self.config
        if L == 0:  # nothing to read; the layers assume at least one token
            return self.embed(ids), state if state is not None else self.initial_state(B)  # (B, 0, D)
        x = self.embed(ids)  # (B, L, D)
        if cfg.scale_emb:
            x = x * math.sqrt(cfg.model_dim)
        x = F.dropout(x, cfg.dropout, self.training)
        new_layers = []
        for i, block in enumerate(self.layers):
            x, layer_state = block(x, None if state is None else state.layers[i], self.rope)
            new_layers.append(layer_state)
        x, final = self.output.final_norm(x, None if state is None else state.final_norm)  # (B, L, D)
        position = (0 if state is None else state.position) + L
        return x, ModelState(tuple(new_layers), final, position)

    def forward(
        self, ids: torch.Tensor, state: ModelState | None = None, *, compute_logits: bool = True,
        last_logits_only: bool = False,
    ) -> tuple[torch.Tensor | None, ModelState]:
        """ids (B, L) int64 -> logits (B, L, V) float32 (float64 for a float64 model; None when
        compute_logits=False, which skips the LM head entirely) and the state after the last token.
        last_logits_only=True: logits (B, 1, V) of the last position only, what generation reads after a
        prompt; the head then skips the other L - 1 positions (for a 512-token prompt of the shipped model,
        about 2 GFLOP and a 16 MB logits tensor). L = 0 reads nothing: logits (B, 0, V) (with
        last_logits_only too: there is no last position) and the state unchanged."""
        x, new_state = self.hidden_states(ids, state)  # (B, L, D)
        if not compute_logits:
            return None, new_state
        if last_logits_only:
            x = x[:, -1:]  # (B, 1, D)
        logits = F.linear(x, self.head_weight)  # (B, L, V)
        if logits.dtype != torch.float64:
            logits = logits.float()  # fp32 logits whatever the compute dtype
        return logits, new_state

    @property
    def head_weight(self) -> torch.Tensor:
        """The LM head's weight (V, D): the embedding's when share_emb."""
        return self.embed.weight if self.config.share_emb else self.output.output.weight

    def num_parameters(self) -> int:
        """Trainable parameters, counting a tied head once."""
        return sum(p.numel() for p in self.parameters())
