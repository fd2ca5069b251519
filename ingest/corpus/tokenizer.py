"""Train the corpus tokenizer on text sampled from the train split only.

Works are cut with the ingest splitter (`split_blocks`, cuts at line ends) into pieces of about
`CHUNK_CHARS` characters; a deterministic pseudo-random fraction of each slice's pieces is kept so the
Bibles and the large manuals do not dominate the merges. The sentencepiece settings live with the model
(`megalodoc.model.train.tokenizer_train`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from megalodoc.model.train.corpus import SLICES, read_work_text, split_files
from megalodoc.model.train.tokenizer_train import VOCAB_SIZE, train_sentencepiece

from ..sources.splitting import LONG_LINE_FACTOR, split_blocks
from .errors import CorpusFolderError

CHUNK_CHARS = 4000
"""Target characters per training piece (a piece holding one long line may be up to
`LONG_LINE_FACTOR` times longer; sentencepiece is told the maximum)."""
SAMPLE_BYTES_PER_SLICE = 12_000_000
"""Bytes sampled per slice."""


def _keep(key: str, fraction: float) -> bool:
    """A deterministic pseudo-random choice of a fraction of the pieces."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return h < fraction * 2**64


def sample_chunks(files_by_slice: dict[str, list[Path]], bytes_per_slice: int) -> list[str]:
    """About `bytes_per_slice` bytes of pieces from each slice, chosen uniformly and deterministically."""
    out: list[str] = []
    for slice_name, files in sorted(files_by_slice.items()):
        total = sum(f.stat().st_size for f in files)
        fraction = min(1.0, bytes_per_slice / max(1, total))
        for f in files:
            for i, chunk in enumerate(split_blocks([read_work_text(f)], CHUNK_CHARS)):
                if _keep(f"{slice_name}/{f.name}/{i}", fraction):
                    out.append(chunk)
    return out


def train_corpus_tokenizer(corpus_dir: Path, out_path: Path, vocab_size: int = VOCAB_SIZE,
                           bytes_per_slice: int = SAMPLE_BYTES_PER_SLICE, threads: int = 2) -> Path:
    """Train on the corpus's train split (sampled per slice) and write `out_path` (a .model file)."""
    files = {s: split_files(corpus_dir, "train", [s]) for s in SLICES}
    chunks = sample_chunks({s: f for s, f in files.items() if f}, bytes_per_slice)
    if not chunks:
        raise CorpusFolderError(f"{corpus_dir}: the train split is empty")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(train_sentencepiece(chunks, LONG_LINE_FACTOR * CHUNK_CHARS, vocab_size, threads))
    return out_path
