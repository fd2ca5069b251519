"""The training loop: data-parallel (DDP) over torch.distributed ranks, or one process.

Every optimizer step draws the same global batch whatever the number of processes (the sampler is a
function of the step), each rank takes its contiguous share, and DDP averages the gradients; so N
processes compute what one process computes with the same global batch, up to float summation order.
Dropout masks come from a generator re-seeded from (seed, step, rank) at every step, so a resumed run
repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from megalodoc.model import Megalodon, MegalodonConfig, save_model
from megalodoc.model.init import spread_cema_memory
from megalodoc.model.train import checkpoints as ckpt
from megalodoc.model.train.distributed import DistInfo, barrier, mean_across_ranks, setup, sum_across_ranks, teardown
from megalodoc.model.train.errors import TrainingInputError
from megalodoc.model.train.linear_cross_entropy import linear_cross_entropy
from megalodoc.model.train.token_data import TokenFile, WindowSampler, gather_windows
from megalodoc.model.train.train_config import TrainConfig, lr_lambda, make_optimizer


class LanguageModelLoss(nn.Module):
    """Mean next-token cross entropy of a Megalodon over whole multi-chunk sequences (fresh state at the
    start of each sequence, carried across its chunk boundaries). Without autocast and in fp32/fp64 (CPU
    training and validation), the head and the loss run a block of rows at a time
    (model/train/linear_cross_entropy.py) instead of holding the whole (B*L, V) logits; without gradients
    (validation) only the loss is computed."""

    def __init__(self, model: Megalodon) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.model.head_weight  # (V, D)
        if not torch.is_autocast_enabled(ids.device.type) and weight.dtype in (torch.float32, torch.float64):
            h, _ = self.model.hidden_states(ids)  # (B, L, D)
            return linear_cross_entropy(h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1))
        logits, _ = self.model(ids)  # (B, L, V) fp32
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass
class TrainResult:
    """What a call of `train` did: per-step mean training loss of the steps it ran (keyed by step
    number, 1-based), the last validation loss, where the model went, the measured throughput."""

    losses: dict[int, float] = field(default_factory=dict)
    val_loss: float | None = None
    final_step: int = 0
    model_dir: Path | None = None
    tokens_per_second: float = 0.0


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _check_resume(data: dict, cfg: MegalodonConfig, tcfg: TrainConfig, path: Path) -> None:
    if data["model_config"] != cfg.to_dict():
        raise TrainingInputError(f"{path}: the checkpoint's model config differs from --config; resume with the "
                                 "same one")
    defaults = TrainConfig().to_dict()  # fields added after a checkpoint was written take their defaults
    saved = {k: v for k, v in {**defaults, **data["train_config"]}.items() if k not in TrainConfig.RESUMABLE_CHANGES}
    now = {k: v for k, v in tcfg.to_dict().items() if k not in TrainConfig.RESUMABLE_CHANGES}
    if saved != now:
        diff = sorted(k for k in now if saved.get(k) != now[k])
        raise TrainingInputError(f"{path}: training settings differ from the checkpoint's ({', '.join(diff)})")


def _check_validation_data(data: TokenFile, window: int) -> None:
    """A validation window is `window` tokens plus the shifted target: refuse a file too short for one."""
    if len(data) < window + 2:
        raise TrainingInputError(f"{data.path}: {len(data)} tokens are too few for validation windows of {window}")


@torch.no_grad()
def evaluate(model: Megalodon, data: TokenFile, window: int, sequences: int, micro: int, info: DistInfo) -> float:
    """Mean next-token loss on `sequences` windows spread evenly over `data` (split over the ranks)."""
    _check_validation_data(data, window)
    was_training = model.training
    model.eval()
    starts = np.linspace(0, len(data) - window - 1, sequences).astype(np.int64)[info.rank :: info.world_size]
    total = count = 0.0
    for i in range(0, len(starts), micro):
        ids, targets = gather_windows(data.tokens, starts[i : i + micro], window)
        ids, targets = ids.to(info.device), targets.to(info.device)
        with _autocast(info.device):
            loss = LanguageModelLoss(model)(ids, targets)  # on the CPU a block of rows at a time
        total += loss.item() * targets.numel()
        count += targets.numel()
    total, count = sum_across_ranks([total, count], info)
    model.train(was_training)
    return total / max(count, 1.0)


def bits_per_byte(loss: float, data: TokenFile) -> float:
    """A mean token loss (nats) as bits per UTF-8 byte, using the token file's bytes-per-token ratio."""
    return loss / math.log(2) * data.meta["tokens"] / max(1, data.meta["bytes"])


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (the model keeps CEMA and norm statistics in fp32); fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def train(
    cfg: MegalodonConfig,
    tcfg: TrainConfig,
    data: TokenFile,
    out_dir: Path,
    *,
    tokenizer_path: Path | None = None,
    val_data: TokenFile | None = None,
    resume: bool = False,
    stop_at: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train from scratch (or from the newest checkpoint in `out_dir` with `resume`) up to `tcfg.steps`
    (or `stop_at`, leaving a checkpoint to resume from); write the final model to `out_dir/model`."""
    out_dir = Path(out_dir)
    joined_here = not torch.distributed.is_initialized()
    info = setup(device)
    try:
        return _train(cfg, tcfg, data, out_dir, info, tokenizer_path, val_data, resume, stop_at, log)
    finally:
        if joined_here:
            teardown()


def _train(cfg, tcfg, data, out_dir, info, tokenizer_path, val_data, resume, stop_at, log) -> TrainResult:
    vocab = int(data.meta.get("vocab_size", 0))
    if vocab > cfg.vocab_size:
        raise TrainingInputError(f"{data.path}: tokens from a {vocab}-piece vocabulary, model vocab_size is "
                                 f"{cfg.vocab_size}")
    window = tcfg.seq_chunks * cfg.chunk_size
    local, n_micro = tcfg.per_rank_batches(info.world_size)
    micro = local // n_micro
    try:
        sampler = WindowSampler(len(data), window, tcfg.seed)
    except TrainingInputError as e:
        raise TrainingInputError(f"{data.path}: {e}") from e
    if val_data is not None:  # before the steps, not after them
        _check_validation_data(val_data, window)

    torch.manual_seed(tcfg.seed)  # identical initial weights on every rank
    model = Megalodon(cfg)
    if tcfg.cema_max_half_life:
        spread_cema_memory(model, tcfg.cema_max_half_life)
    model = model.to(info.device)
    module: nn.Module = LanguageModelLoss(model)
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=ids)
    optimizer = make_optimizer(model, tcfg, info.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tcfg))

    start = 0
    existing = ckpt.list_checkpoints(out_dir)
    if existing and not resume:
        raise TrainingInputError(f"{out_dir} already holds training checkpoints; pass --resume or choose another --out")
    if existing:
        state = ckpt.load_checkpoint(existing[-1], map_location=info.device)
        _check_resume(state, cfg, tcfg, existing[-1])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("rng") is not None and info.is_main:
            ckpt.set_rng_state(state["rng"])
        start = int(state["step"])
        if info.is_main:
            log(f"resumed from {existing[-1]} at step {start}")
    end = min(tcfg.steps, stop_at) if stop_at is not None else tcfg.steps

    if info.is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainingInputError(f"{out_dir}: cannot create the run folder ({e.strerror})") from e
        (out_dir / "train_config.json").write_text(json.dumps(
            {"model": cfg.to_dict(), "train": tcfg.to_dict(), "data": data.meta, "world_size": info.world_size,
             "parameters": model.num_parameters(), "window_tokens": window}, indent=1) + "\n")
        log(f"model {model.num_parameters() / 1e6:.2f}M parameters; {info.world_size} process(es) on "
            f"{info.device.type}; global batch {tcfg.batch_size} x {window} tokens ({tcfg.seq_chunks} chunks); "
            f"{len(data) / 1e6:.1f}M tokens, {sampler.samples_per_epoch()} windows per epoch")
    result = TrainResult(final_step=start)
    log_file = out_dir / "train_log.jsonl"
    model.train()
    tokens_per_step = tcfg.batch_size * window
    t_last, steps_since = time.perf_counter(), 0
    t_begin = t_last
    for step in range(start, end):
        torch.manual_seed(_step_seed(tcfg.seed, step, info.rank))
        starts = sampler.starts(step * tcfg.batch_size, tcfg.batch_size)[info.rank * local : (info.rank + 1) * local]
        loss_sum = 0.0
        for m in range(n_micro):
            ids, targets = gather_windows(data.tokens, starts[m * micro : (m + 1) * micro], window)
            ids, targets = ids.to(info.device, non_blocking=True), targets.to(info.device, non_blocking=True)
            sync = nullcontext() if (m == n_micro - 1 or not info.distributed) else module.no_sync()
            with sync:
                with _autocast(info.device):
                    loss = module(ids, targets) / n_micro
                loss.backward()
            loss_sum += float(loss.detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        step_loss = mean_across_ranks(loss_sum, info)
        result.losses[done] = step_loss
        result.final_step = done
        steps_since += 1

        if done % tcfg.log_every == 0 or done == end:
            if info.device.type == "cuda":
                torch.cuda.synchronize(info.device)
            now = time.perf_counter()
            tps = steps_since * tokens_per_step / max(now - t_last, 1e-9)
            t_last, steps_since = now, 0
            if info.is_main:
                record = {"step": done, "loss": step_loss, "lr": scheduler.get_last_lr()[0],
                          "grad_norm": float(grad_norm), "tokens_per_s": tps,
                          "tokens": done * tokens_per_step, "elapsed_s": now - t_begin}
                with log_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                log(f"step {done}/{tcfg.steps} loss {step_loss:.4f} lr {record['lr']:.2e} "
                    f"grad {record['grad_norm']:.2f} {tps:,.0f} tok/s")
        if val_data is not None and tcfg.val_every and done % tcfg.val_every == 0 and done != end:
            result.val_loss = evaluate(model, val_data, window, tcfg.val_batches * micro, micro, info)
            if info.is_main:
                log(f"step {done} validation loss {result.val_loss:.4f} "
                    f"(~{bits_per_byte(result.val_loss, val_data):.3f} bits/byte)")
        if done % tcfg.checkpoint_every == 0 or done == end:
            if info.is_main:
                ckpt.save_checkpoint(out_dir, done, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "train_config": tcfg.to_dict(),
                    "model_config": cfg.to_dict(), "rng": ckpt.rng_state(),
                    "data": {"samples_seen": done * tcfg.batch_size, "window": window, "seed": tcfg.seed,
                             "token_file": str(data.path), "tokens": len(data)},
                }, tcfg.keep_checkpoints)
            barrier(info)
    elapsed = time.perf_counter() - t_begin
    result.tokens_per_second = (result.final_step - start) * tokens_per_step / max(elapsed, 1e-9)

    if val_data is not None and result.final_step > start:
        result.val_loss = evaluate(model, val_data, window, tcfg.val_batches * micro, micro, info)
        if info.is_main:
            log(f"step {result.final_step} validation loss {result.val_loss:.4f} "
                f"(~{bits_per_byte(result.val_loss, val_data):.3f} bits/byte)")
    if result.final_step >= tcfg.steps:
        result.model_dir = out_dir / "model"
        if info.is_main:
            save_model(model, result.model_dir, tokenizer=tokenizer_path)
            log(f"model written to {result.model_dir}")
        barrier(info)
    return result
