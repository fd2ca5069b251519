"""A tiny reader model (test tokenizer + tiny Megalodon) saved as a real model folder."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

from megalodoc.model import Megalodon, MegalodonConfig, save_model
from megalodoc.model.tokenizer import train_tokenizer

TINY_CHUNK = 16


def make_model_folder(folder: Path, tokenizer_path: Path, vocab_size: int) -> Path:
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=vocab_size, chunk_size=TINY_CHUNK))
    return save_model(model, folder, tokenizer=tokenizer_path)


def stdlib_model_folder(folder: Path) -> Path:
    """A tiny model folder with a 600-piece tokenizer trained on three stdlib modules (in about a second)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text() for name in ("textwrap.py", "string.py", "shlex.py")]
    tokenizer = train_tokenizer(texts, folder / "tok.model", 600)
    return make_model_folder(folder / "model", folder / "tok.model", tokenizer.vocab_size)
