"""Handlers of the Settings tab: the loaded model's card and the sampling settings a person chooses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megalodoc.app.ui.errors import UiError

CARD_FILES = ("README.md", "MODEL_CARD.md")  # a model folder's own card, shown as it is
# Sampling defaults of the page: short, slightly cool answers suit a small base model.
DEFAULT_SAMPLING: dict[str, Any] = {"max_new_tokens": 96, "temperature": 0.7, "top_k": 40, "top_p": 0.9,
                                    "greedy": False, "seed": 0}


def model_card_markdown(service: Any) -> str:
    """The loaded model as Markdown: where it was loaded from, its fingerprint, its architecture, and
    the card kept in its folder (README.md / MODEL_CARD.md) when there is one."""
    reader = service.reader
    model = reader.model
    folder = Path(model.source_dir) if model.source_dir is not None else None
    params = sum(p.numel() for p in model.parameters())
    lines = ["## Loaded model", "",
             f"- Folder: `{folder}`" if folder else "- Folder: (built in memory)",
             f"- Fingerprint: `{reader.model_fingerprint[:16]}…`",
             f"- Parameters: {params / 1e6:.1f} M",
             f"- Tokenizer: {reader.tokenizer.vocab_size:,} pieces", "",
             "| Setting | Value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in sorted(model.config.to_dict().items())]
    card = _folder_card(folder)
    if card:
        lines += ["", "---", "", card]
    return "\n".join(lines)


def _folder_card(folder: Path | None) -> str | None:
    if folder is None:
        return None
    for name in CARD_FILES:
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return None


def sampling_settings(max_new_tokens: float, temperature: float, top_k: float, top_p: float, greedy: bool,
                      seed: float | None) -> dict[str, Any]:
    """The settings as the reader service takes them, checked; seed None or < 0 means a fresh random seed
    per answer (the one used is recorded with the turn)."""
    problems = []
    if max_new_tokens is None or not 1 <= max_new_tokens <= 4096:
        problems.append(f"answer length {max_new_tokens} must lie between 1 and 4096 tokens")
    if temperature is None or temperature < 0:
        problems.append(f"temperature {temperature} must be >= 0")
    if top_k is None or top_k < 0:
        problems.append(f"top-k {top_k} must be >= 0")
    if top_p is None or not 0 < top_p <= 1:
        problems.append(f"top-p {top_p} must lie in (0, 1]")
    if problems:
        raise UiError("sampling settings: " + "; ".join(problems))
    return {"max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "top_k": int(top_k),
            "top_p": float(top_p), "greedy": bool(greedy),
            "seed": None if seed is None or seed < 0 else int(seed)}


def config_json(service: Any) -> str:
    """config.json of the loaded model's folder (for the expandable raw view)."""
    folder = service.reader.model.source_dir
    if folder is None:
        return json.dumps(service.reader.model.config.to_dict(), indent=2)
    return (Path(folder) / "config.json").read_text(encoding="utf-8")
