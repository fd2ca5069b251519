"""MegalodonConfig: one frozen dataclass for the architecture, named presets, validation, fingerprint.

Field names follow the reference implementation's `ModelConf` so its checkpoints map one to one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

# Default RoPE base when the reference config says null (its code falls back to 10 000).
DEFAULT_ROPE_BASE = 10_000.0


@dataclass(frozen=True)
class MegalodonConfig:
    """Architecture hyper-parameters. Shapes: D=model_dim, Z=z_dim, E=value_dim, H=num_heads,
    F=ffn_hidden_dim, N=cema_ndim, C=chunk_size, G=norm_num_groups, V=vocab_size."""

    vocab_size: int = 32000
    num_layers: int = 8
    model_dim: int = 1024
    z_dim: int = 256
    value_dim: int = 2048
    num_heads: int = 1
    ffn_hidden_dim: int = 2048
    cema_ndim: int = 16
    chunk_size: int = 2048
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    rope_base: float = DEFAULT_ROPE_BASE
    swiglu: bool = False
    rescale_nffn: bool = False
    scale_emb: bool = False
    share_emb: bool = False
    init_mode: str = "he"
    dropout: float = 0.0
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    # Special token ids of the tokenizer that comes with the model (sentencepiece convention).
    pad_id: int = 0
    unk_id: int = 1
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        problems = []
        positive = ("vocab_size", "num_layers", "model_dim", "z_dim", "value_dim", "num_heads",
                    "ffn_hidden_dim", "cema_ndim", "chunk_size", "norm_num_groups")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name}={value!r} must be a positive integer")
        for name in ("swiglu", "rescale_nffn", "scale_emb", "share_emb"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}={getattr(self, name)!r} must be true or false")
        for name in ("norm_eps", "rope_base", "dropout", "hidden_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"{name}={value!r} must be a number")
        for name in ("pad_id", "unk_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"{name}={value!r} must be an integer")
        if not isinstance(self.init_mode, str):
            problems.append(f"init_mode={self.init_mode!r} must be a string")
        if problems:
            raise ValueError("invalid MegalodonConfig: " + "; ".join(problems))
        if self.z_dim % self.num_heads:
            problems.append(f"z_dim={self.z_dim} is not divisible by num_heads={self.num_heads}")
        elif (self.z_dim // self.num_heads) % 2:
            problems.append(f"head width z_dim/num_heads={self.z_dim // self.num_heads} must be even for RoPE")
        if self.value_dim % self.num_heads:
            problems.append(f"value_dim={self.value_dim} is not divisible by num_heads={self.num_heads}")
        if self.model_dim % self.norm_num_groups:
            problems.append(
                f"model_dim={self.model_dim} is not divisible by norm_num_groups={self.norm_num_groups}"
            )
        for name in ("dropout", "hidden_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                problems.append(f"{name}={value!r} must be in [0, 1)")
        if not 0 < self.norm_eps < math.inf:  # also refuses NaN (a config.json may hold NaN)
            problems.append(f"norm_eps={self.norm_eps!r} must be > 0 and finite")
        if not 1 < self.rope_base < math.inf:
            problems.append(f"rope_base={self.rope_base!r} must be > 1 and finite")
        if self.init_mode not in ("he", "bert", "gaussian", "xavier", "none"):
            problems.append(f"init_mode={self.init_mode!r} is not one of he, bert, gaussian, xavier, none")
        # pad and eos may be -1 (sentencepiece's "none"); every text starts with bos, and unk always exists
        for name, lowest in (("pad_id", -1), ("unk_id", 0), ("bos_id", 0), ("eos_id", -1)):
            value = getattr(self, name)
            if not lowest <= value < self.vocab_size:
                none = " or -1 for none" if lowest < 0 else ""
                problems.append(f"{name}={value!r} is outside the vocabulary [0, {self.vocab_size}){none}")
        if problems:
            raise ValueError("invalid MegalodonConfig: " + "; ".join(problems))

    # ---- derived sizes ----
    @property
    def head_dim(self) -> int:
        """d_z: width of one query/key head."""
        return self.z_dim // self.num_heads

    @property
    def value_head_dim(self) -> int:
        """d_v: width of one value head."""
        return self.value_dim // self.num_heads

    # ---- presets and (de)serialisation ----
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> MegalodonConfig:
        """A named preset (see PRESETS), optionally with fields overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MegalodonConfig:
        """Inverse of to_dict; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MegalodonConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the architecture (training-only fields excluded)."""
        arch = {k: v for k, v in self.to_dict().items()
                if k not in ("dropout", "hidden_dropout", "attention_dropout", "init_mode")}
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()


_REFERENCE_200M = MegalodonConfig(
    num_layers=12, model_dim=1024, num_heads=1, z_dim=256, value_dim=2048, ffn_hidden_dim=2560,
    chunk_size=2048, norm_num_groups=32,
)
PRESETS: dict[str, MegalodonConfig] = {
    # Small enough for exhaustive tests (chunk 16 so short inputs cross several chunk boundaries).
    "tiny": MegalodonConfig(
        vocab_size=256, num_layers=2, model_dim=32, z_dim=16, value_dim=48, num_heads=2,
        ffn_hidden_dim=64, cema_ndim=4, chunk_size=16, norm_num_groups=4, swiglu=True,
    ),
    "mega200M": _REFERENCE_200M,
    "mega1.3B": MegalodonConfig(
        num_layers=24, model_dim=2048, num_heads=2, z_dim=512, value_dim=4096, ffn_hidden_dim=4864,
        chunk_size=2048, norm_num_groups=64,
    ),
    "mega1.3B_pg19": MegalodonConfig(
        num_layers=24, model_dim=2048, num_heads=2, z_dim=512, value_dim=4096, ffn_hidden_dim=3584,
        swiglu=True, chunk_size=2048, norm_num_groups=64, scale_emb=True, share_emb=True,
    ),
    "mega7.1B": MegalodonConfig(
        num_layers=32, model_dim=4096, num_heads=4, z_dim=1024, value_dim=8192, ffn_hidden_dim=11264,
        chunk_size=2048, norm_num_groups=64,
    ),
    # The architecture of the default model shipped with megalodoc (6.1M parameters, tied embedding): small
    # enough to train on a CPU and to read at over 1,000 tokens/s on two cores; chunk 128 so training
    # sequences of 1,024 tokens cross seven chunk boundaries and the model learns to use its carried state.
    "megalodoc-6m": MegalodonConfig(
        vocab_size=8192, num_layers=4, model_dim=256, z_dim=128, value_dim=512, num_heads=2,
        ffn_hidden_dim=640, cema_ndim=16, chunk_size=128, norm_num_groups=16, swiglu=True, share_emb=True,
    ),
    # The paper's 7B: mega7.3B dims with chunk 4096 and RoPE base 1e5.
    "mega7B": MegalodonConfig(
        num_layers=32, model_dim=4096, num_heads=4, z_dim=1024, value_dim=8192, ffn_hidden_dim=8192,
        swiglu=True, chunk_size=4096, norm_num_groups=64, rope_base=100_000.0,
    ),
}
