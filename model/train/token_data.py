"""Token files for training: the corpus tokenized once into a flat uint16 file, read memory-mapped.

Each document is written as BOS, its tokens, EOS; documents follow each other in manifest order. The
file is cached under `CORPUS/tokens/<tokenizer sha256[:16]>/<split>.u16` with a JSON sidecar naming the
corpus and tokenizer it was made from, so a changed corpus or tokenizer is never read by mistake.

Training windows are a pure function of (seed, sample index): epoch e uses a random offset and a random
permutation of the non-overlapping windows of that epoch, so a run's data position is just the number of
samples drawn, and a resumed run reads exactly what an uninterrupted one would have read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from megalodoc.model.train.corpus import read_manifest, read_work_text, split_files
from megalodoc.model.train.errors import MissingTrainingInput, TrainingInputError
from megalodoc.model.train.tokenizer_train import load_processor

TOKEN_DTYPE = np.uint16  # every vocabulary we train has fewer than 65 536 pieces
# Documents handed to sentencepiece per batch (its encoder runs them on several threads).
_ENCODE_BATCH = 64


@dataclass(frozen=True)
class TokenFile:
    """A flat token file opened read-only; `tokens` is a (N,) uint16 memmap."""

    path: Path
    tokens: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_token_file(texts: list[str] | list[Path], tokenizer_path: Path, out_path: Path, meta: dict,
                     threads: int = 2) -> TokenFile:
    """Tokenize documents (strings or paths of corpus files) into `out_path` (+ `.json` sidecar)."""
    sp = load_processor(tokenizer_path)
    if sp.get_piece_size() > np.iinfo(TOKEN_DTYPE).max + 1:
        raise TrainingInputError(f"{tokenizer_path}: {sp.get_piece_size()} pieces do not fit uint16 token files")
    bos, eos = sp.bos_id(), sp.eos_id()
    if bos < 0 or eos < 0:
        raise TrainingInputError(f"{tokenizer_path}: the tokenizer needs bos and eos ids to separate documents")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A per-process temporary name: ranks that build the same cache at once each rename a complete file.
    tmp = out_path.with_name(f"{out_path.name}.{os.getpid()}.tmp")
    n_tokens = n_docs = n_bytes = 0
    with tmp.open("wb") as f:
        for start in range(0, len(texts), _ENCODE_BATCH):
            batch = [t if isinstance(t, str) else read_work_text(t) for t in texts[start : start + _ENCODE_BATCH]]
            for text, ids in zip(batch, sp.encode(batch, num_threads=threads), strict=True):
                doc = np.asarray([bos, *ids, eos], dtype=TOKEN_DTYPE)
                f.write(doc.tobytes())
                n_tokens += len(doc)
                n_docs += 1
                n_bytes += len(text.encode("utf-8"))
    meta = {**meta, "tokens": n_tokens, "documents": n_docs, "bytes": n_bytes, "dtype": "uint16",
            "tokenizer_sha256": _file_sha256(tokenizer_path), "vocab_size": sp.get_piece_size(),
            "bos_id": bos, "eos_id": eos}
    sidecar_tmp = out_path.with_name(f"{out_path.stem}.{os.getpid()}.json.tmp")
    sidecar_tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out_path)
    os.replace(sidecar_tmp, out_path.with_suffix(".json"))
    return open_token_file(out_path)


def open_token_file(path: Path) -> TokenFile:
    """Open a token file written by `write_token_file` (memory-mapped, read-only)."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        raise MissingTrainingInput(f"{path}: no token file (or its .json sidecar)")
    meta = json.loads(sidecar.read_text())
    tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
    if len(tokens) != meta["tokens"]:
        raise TrainingInputError(f"{path}: {len(tokens)} tokens on disk, the sidecar says {meta['tokens']} "
                                 "(truncated?)")
    return TokenFile(path, tokens, meta)


def corpus_token_file(corpus_dir: Path, tokenizer_path: Path, split: str = "train", threads: int = 2) -> TokenFile:
    """The cached token file of one split of a built corpus, made on first use."""
    corpus_dir, tokenizer_path = Path(corpus_dir), Path(tokenizer_path)
    tok_sha = _file_sha256(tokenizer_path)
    corpus_sha = read_manifest(corpus_dir)["corpus_sha256"]
    path = corpus_dir / "tokens" / tok_sha[:16] / f"{split}.u16"
    if path.is_file() and path.with_suffix(".json").is_file():
        cached = open_token_file(path)
        if cached.meta.get("corpus_sha256") == corpus_sha and cached.meta.get("tokenizer_sha256") == tok_sha:
            return cached
    files = split_files(corpus_dir, split)
    if not files:
        raise TrainingInputError(f"{corpus_dir}: the {split} split has no files")
    return write_token_file(files, tokenizer_path, path, {"corpus_sha256": corpus_sha, "split": split}, threads)


@functools.lru_cache(maxsize=4)
def _epoch_order(num_tokens: int, window: int, seed: int, epoch: int) -> tuple[int, np.ndarray]:
    """(offset, order of the windows) of one epoch; cached, as every step of an epoch reads it."""
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(0, window))
    count = (num_tokens - 1 - offset) // window
    return offset, rng.permutation(count)


@dataclass(frozen=True)
class WindowSampler:
    """Windows of `window` tokens (+1 for the shifted targets) drawn without replacement per epoch."""

    num_tokens: int
    window: int
    seed: int

    def __post_init__(self) -> None:
        if self.num_tokens < 2 * (self.window + 1):
            raise TrainingInputError(f"{self.num_tokens} tokens are too few for windows of {self.window} tokens")

    def _epoch(self, epoch: int) -> tuple[int, np.ndarray]:
        return _epoch_order(self.num_tokens, self.window, self.seed, epoch)

    def starts(self, first: int, count: int) -> np.ndarray:
        """Start offsets of samples first .. first+count-1 (the global sample index counts across epochs)."""
        out = np.empty(count, dtype=np.int64)
        per_epoch = self.samples_per_epoch()
        for i in range(count):
            epoch, index = divmod(first + i, per_epoch)
            offset, order = self._epoch(epoch)
            out[i] = offset + int(order[index]) * self.window
        return out

    def samples_per_epoch(self) -> int:
        """Samples drawn before the order is reshuffled: the number of windows that fit whatever the
        epoch's offset (an epoch at a large offset may leave one random window out)."""
        return (self.num_tokens - 1 - self.window) // self.window


def gather_windows(tokens: np.ndarray, starts: np.ndarray, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (B, window) int64, from windows of window+1 tokens at `starts`."""
    rows = np.stack([np.asarray(tokens[s : s + window + 1], dtype=np.int64) for s in starts])  # (B, T+1)
    batch = torch.from_numpy(rows)
    return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
