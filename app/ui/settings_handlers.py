"""Handlers of the Settings tab: the loaded model's card and the sampling settings a person chooses."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from megalodoc.app.ui.errors import UiError
from megalodoc.model.bundle import IN_MEMORY

CARD_FILES = ("README.md", "MODEL_CARD.md")  # a model folder's own card, shown as it is
# Sampling defaults of the page: short, slightly cool answers suit a small base model.
DEFAULT_SAMPLING: dict[str, Any] = {"max_new_tokens": 96, "temperature": 0.7, "top_k": 40, "top_p": 0.9,
                                    "greedy": False, "seed": 0}


def model_card_markdown(service: Any) -> str:
    """The loaded model as Markdown: where it was loaded from, its fingerprint, its architecture, and
    the card kept in its folder (README.md / MODEL_CARD.md) when there is one."""
    bundle = service.bundle
    model = bundle.model
    folder = _folder(bundle)
    params = sum(p.numel() for p in model.parameters())
    tokenizer = f"{bundle.tokenizer.vocab_size:,} pieces" if bundle.tokenizer is not None else "none"
    lines = ["## Loaded model", "",
             f"- Folder: `{folder}`" if folder else "- Folder: (built in memory)",
             f"- Fingerprint: `{bundle.fingerprint[:16]}…`",
             f"- Parameters: {params / 1e6:.1f} M, computed in {str(bundle.dtype).removeprefix('torch.')} on "
             f"{bundle.device}",
             f"- Tokenizer: {tokenizer}", "",
             "| Setting | Value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in sorted(model.config.to_dict().items())]
    card = _folder_card(folder)
    if card:
        lines += ["", "---", "", card]
    return "\n".join(lines)


def _folder(bundle: Any) -> Path | None:
    return None if bundle.source == IN_MEMORY else Path(bundle.source)


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
    # written so that NaN, for which every comparison is false, fails each check
    if temperature is None or not 0 <= temperature < math.inf:
        problems.append(f"temperature {temperature} must be >= 0 and finite")
    if top_k is None or not 0 <= top_k < math.inf:
        problems.append(f"top-k {top_k} must be >= 0 and finite")
    if top_p is None or not 0 < top_p <= 1:
        problems.append(f"top-p {top_p} must lie in (0, 1]")
    if seed is not None and not -math.inf < seed < 2**64:  # torch's seeds end below 2**64
        problems.append(f"seed {seed:.0f} must be a whole number below 2**64 (or below 0 for a new one per answer)")
    # the number boxes keep what was typed (they rounded 2.5 to 2 before, silently): a fraction is refused
    for name, value in (("answer length", max_new_tokens), ("top-k", top_k), ("seed", seed)):
        if value is not None and math.isfinite(value) and not float(value).is_integer():
            problems.append(f"{name} {value} must be a whole number")
    if problems:
        raise UiError("sampling settings: " + "; ".join(problems))
    return {"max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "top_k": int(top_k),
            "top_p": float(top_p), "greedy": bool(greedy),
            "seed": None if seed is None or seed < 0 else int(seed)}


def config_json(service: Any) -> str:
    """config.json of the loaded model's folder (for the expandable raw view)."""
    folder = _folder(service.bundle)
    if folder is None or not (folder / "config.json").is_file():
        return json.dumps(service.bundle.model.config.to_dict(), indent=2)
    return (folder / "config.json").read_text(encoding="utf-8")
