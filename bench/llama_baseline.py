"""Transformer baselines for the long-context benchmark: Hugging Face `transformers` Llama models built
from a config in code (random weights, nothing downloaded), SDPA attention, the library's DynamicCache.

Two baselines per Megalodon config:
- "llama-width": the same width D, depth and FFN hidden size, heads of 64 features (MHA, SwiGLU as
  every Llama), the same vocabulary and head tying;
- "llama-params": the same width and depth with the FFN hidden size chosen so that the non-embedding
  parameter count equals Megalodon's (to within one FFN column per layer).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from megalodoc.model import Megalodon, MegalodonConfig

# Llama heads of 64 features, the common width of small Llamas.
HEAD_DIM = 64


def non_embedding_parameters(model: torch.nn.Module, embedding_names: tuple[str, ...]) -> int:
    """Parameters whose name does not start with one of embedding_names (tied weights counted once)."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if id(p) in seen or name.startswith(embedding_names):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def megalodon_non_embedding_parameters(model: Megalodon) -> int:
    return non_embedding_parameters(model, ("embed.", "output.output."))


def _llama_layer_parameters(D: int, F: int) -> int:
    """q, k, v, o (D x D each), gate/up/down (3 D F), two RMSNorm weights."""
    return 4 * D * D + 3 * D * F + 2 * D


@dataclass(frozen=True)
class LlamaSpec:
    name: str
    hidden: int
    layers: int
    ffn: int
    heads: int
    vocab: int
    tied: bool
    rope_theta: float

    def kv_bytes_per_token(self, element_size: int) -> int:
        return self.layers * 2 * self.hidden * element_size


def llama_specs(cfg: MegalodonConfig, mega_non_embedding: int) -> list[LlamaSpec]:
    """The two baselines for a Megalodon config (see the module docstring)."""
    D, layers = cfg.model_dim, cfg.num_layers
    heads = max(1, D // HEAD_DIM)
    common = dict(hidden=D, layers=layers, heads=heads, vocab=cfg.vocab_size, tied=cfg.share_emb,
                  rope_theta=cfg.rope_base)
    per_layer = mega_non_embedding / layers - 4 * D * D - 2 * D - D / layers  # the final norm shared out
    ffn_match = max(1, round(per_layer / (3 * D)))
    return [
        LlamaSpec("llama-width", ffn=cfg.ffn_hidden_dim, **common),
        LlamaSpec("llama-params", ffn=ffn_match, **common),
    ]


def build_llama(spec: LlamaSpec, device: torch.device, dtype: torch.dtype, max_positions: int):
    """A random-weight LlamaForCausalLM for spec, in eval mode, on device in dtype."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.ffn,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=max_positions, rope_theta=spec.rope_theta, tie_word_embeddings=spec.tied,
        attention_bias=False, mlp_bias=False,
    )
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype=dtype).eval(), config


def new_cache(config):
    """An empty DynamicCache (the constructor's arguments changed across transformers versions)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=config)
    except TypeError:
        return DynamicCache()


def cache_keyword(model) -> str:
    """`cache` in transformers >= 5.25, `past_key_values` before."""
    params = inspect.signature(model.model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_bytes(cache) -> int:
    """Bytes of every key and value tensor held by a DynamicCache."""
    total = 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total
    for name in ("key_cache", "value_cache"):
        for t in getattr(cache, name, []):
            total += t.numel() * t.element_size()
    return total
