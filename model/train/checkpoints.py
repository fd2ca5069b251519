"""Resumable training checkpoints: model, optimizer, scheduler, data position and RNG state.

One file per checkpoint, `OUT/checkpoints/step-0000500.pt`, written under a temporary name and renamed
so a crash never leaves a half-written checkpoint; the newest `keep` are kept. (The final model is
written separately with `save_model`; these files are for resuming only.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from megalodoc.model.train.errors import TrainingInputError

_NAME = re.compile(r"^step-(\d{7})\.pt$")


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = checkpoint_dir(out_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def rng_state() -> dict:
    """The random generators' states of this process."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, step: int, payload: dict, keep: int) -> Path:
    """Write `payload` (plus `step`) as the checkpoint of `step` and prune older ones beyond `keep`."""
    folder = checkpoint_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**payload, "step": step}, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`, naming the file in any error."""
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise TrainingInputError(f"{path}: not a readable training checkpoint ({e})") from e
    for key in ("step", "model", "optimizer", "scheduler", "train_config", "model_config"):
        if key not in data:
            raise TrainingInputError(f"{path}: training checkpoint lacks {key!r}")
    return data
