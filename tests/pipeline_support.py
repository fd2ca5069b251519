"""A tiny reader model (test tokenizer + tiny Megalodon) saved as a real model folder."""

from __future__ import annotations

from pathlib import Path

import torch

from megalodoc.model import Megalodon, MegalodonConfig, save_model

TINY_CHUNK = 16


def make_model_folder(folder: Path, tokenizer_path: Path, vocab_size: int) -> Path:
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=vocab_size, chunk_size=TINY_CHUNK))
    return save_model(model, folder, tokenizer=tokenizer_path)
