"""Training hyper-parameters, the learning-rate schedule and the optimizer's parameter groups."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megalodoc.model import PRESETS, MegalodonConfig
from megalodoc.model.train.errors import TrainingInputError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the training run's arithmetic, plus logging cadence.

    `batch_size` is the global number of sequences per optimizer step, split evenly over the ranks;
    each rank runs it in micro-batches of `micro_batch_size` (gradient accumulation). A sequence is
    `seq_chunks` model chunks long, so the recurrent state is carried across chunk boundaries inside it.
    """

    steps: int = 1000
    batch_size: int = 16
    micro_batch_size: int | None = None  # per rank; None = the whole per-rank batch at once
    seq_chunks: int = 4
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    val_every: int = 0  # 0: validate only at the end (when a validation file is given)
    val_batches: int = 4  # validation sequences = val_batches * per-rank micro-batch, spread over ranks
    # 0: the paper's CEMA init (half-lives of ~2.4 tokens); > 0: `spread_cema_memory` with this longest
    # half-life in tokens, so the state carried across chunks starts out with a long memory.
    cema_max_half_life: float = 0.0

    # Fields that may differ between a checkpoint and the run resuming it (they do not change the math).
    RESUMABLE_CHANGES = ("micro_batch_size", "log_every", "checkpoint_every", "keep_checkpoints",
                         "val_every", "val_batches")

    def __post_init__(self) -> None:
        problems = []
        for name in ("steps", "batch_size", "seq_chunks", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            problems.append(f"micro_batch_size={self.micro_batch_size} must be >= 1")
        if not 0 <= self.warmup_steps <= self.steps:
            problems.append(f"warmup_steps={self.warmup_steps} must be in [0, steps={self.steps}]")
        # each condition is false for NaN, which every comparison is false for
        if not (self.cema_max_half_life == 0 or 8 <= self.cema_max_half_life < math.inf):
            problems.append(f"cema_max_half_life={self.cema_max_half_life} must be 0 (paper init) or >= 8 tokens")
        if not (0 < self.lr < math.inf and 0 <= self.min_lr_ratio <= 1):
            problems.append(f"lr={self.lr} must be > 0 and min_lr_ratio={self.min_lr_ratio} in [0, 1]")
        if not 0 <= self.weight_decay < math.inf:
            problems.append(f"weight_decay={self.weight_decay} must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 < self.eps < math.inf):
            problems.append(f"beta1={self.beta1} and beta2={self.beta2} must be in [0, 1), eps={self.eps} > 0")
        if not 0 < self.grad_clip < math.inf:
            problems.append(f"grad_clip={self.grad_clip} must be > 0")
        if problems:
            raise TrainingInputError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def per_rank_batches(self, world_size: int) -> tuple[int, int]:
        """(sequences per rank per step, micro-batches per rank per step)."""
        if self.batch_size % world_size:
            raise TrainingInputError(f"batch_size={self.batch_size} is not divisible by {world_size} processes")
        local = self.batch_size // world_size
        micro = self.micro_batch_size or local
        if local % micro:
            raise TrainingInputError(f"per-process batch {local} is not divisible by micro_batch_size={micro}")
        return local, local // micro


def lr_lambda(cfg: TrainConfig):
    """Multiplier of the peak lr at a step: linear warmup from 1/warmup, then cosine to min_lr_ratio."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the matrices of Linear and Embedding layers only; norms, biases, CEMA
    coefficients and attention scales are not decayed (decay would pull them to meaningless zeros)."""
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear | nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # tied weights appear once
        if p.requires_grad:
            (decay if id(p) in decayed else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) over `parameter_groups`."""
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), **kwargs)


def resolve_model_config(spec: str) -> MegalodonConfig:
    """A preset name (`megalodoc.model.PRESETS`), or a JSON file: a dict of config fields,
    optionally with "preset" naming the base they override, or a model folder's config.json."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(sorted(PRESETS))
        raise TrainingInputError(f"--config {spec!r} is neither a preset ({names}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TrainingInputError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, dict) and isinstance(data.get("config"), dict):  # a model folder's config.json
        data = data["config"]
    if not isinstance(data, dict):
        raise TrainingInputError(f"{path}: not a JSON object of config fields")
    base = data.pop("preset", None)
    if base is not None and not isinstance(base, str):
        raise TrainingInputError(f"{path}: \"preset\" must be a preset name or a JSON file, not {base!r}")
    fields = data if base is None else {**resolve_model_config(base).to_dict(), **data}
    try:
        return MegalodonConfig.from_dict(fields)
    except (TypeError, ValueError) as e:  # unknown fields, values out of range or of the wrong type
        raise TrainingInputError(f"{path}: {e}") from e
