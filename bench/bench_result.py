"""What a CPU benchmark's JSON records about the machine it ran on, and where the JSON is written."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def machine_meta(**settings: object) -> dict:
    """Platform, Python, torch and the thread count in use, followed by the run's own settings."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), **settings}


def write_result(out: Path, filename: str, result: dict) -> Path:
    """Writes result as indented JSON to out/filename (creating out) and says where."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return path
