"""The sentencepiece tokenizer of the default model: training settings, loading, measuring.

It is trained on text sampled from the corpus's train split only (`megalodoc.ingest.corpus.tokenizer`
cuts and samples the text; `train_sentencepiece` here turns the samples into a model).

Lossless by construction: identity normalization (no NFKC), no whitespace folding, no dummy prefix
(so tokenizing a document piece by piece, as streaming ingest does, equals tokenizing it whole up to
the piece seams), whitespace-only pieces (indentation) and byte fallback (any byte the vocabulary
lacks becomes one of 256 byte pieces), so `decode(encode(x)) == x` for every string.
Training text keeps its newlines: documents are cut into multi-line chunks, not lines, so pieces such
as "):\\n" and "\\n\\n" exist.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from megalodoc.model.tokenizer import LOSSLESS_TRAINER_SETTINGS
from megalodoc.model.train.corpus import read_work_text
from megalodoc.model.train.errors import MissingTrainingInput, TrainingInputError

# 8192 pieces: for a 5-15M parameter model the (tied) embedding costs V*D = 8192*256 = 2.1M parameters,
# a fifth to a third of the model. Measured on the held-out works (bytes/token books, tech, code):
# 4k 2.81/2.96/3.21, 8k 3.19/3.49/3.67, 16k 3.49/3.89/3.96. Doubling to 16k buys only 8-11% fewer
# tokens for 2.1M more embedding parameters; halving to 4k saves 1M parameters but costs 14-18% more
# tokens (slower ingest per byte, less text per chunk). 8192 also tiles matmuls and fits uint16.
VOCAB_SIZE = 8192
# Special ids. pad=0 so zero-initialized buffers are padding; unk is unreachable with byte fallback but
# sentencepiece requires it; bos/eos mark document boundaries in the packed training stream.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = (int(LOSSLESS_TRAINER_SETTINGS[k]) for k in ("pad_id", "unk_id", "bos_id", "eos_id"))
# Characters covered by the vocabulary; the rarest 0.01% fall back to bytes.
CHARACTER_COVERAGE = 0.9999


@dataclass(frozen=True)
class TokenizerStats:
    """Compression of a tokenizer on a set of files."""

    files: int
    bytes: int
    tokens: int

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(1, self.tokens)


def train_sentencepiece(chunks: Iterable[str], max_chars: int, vocab_size: int = VOCAB_SIZE,
                        threads: int = 2) -> bytes:
    """Train a lossless BPE sentencepiece model on text chunks of at most `max_chars` characters;
    returns the serialized model."""
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(chunks),
            model_writer=model,
            **LOSSLESS_TRAINER_SETTINGS,  # identity normalization, byte fallback, special ids pad 0 .. eos 3
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=CHARACTER_COVERAGE,
            max_sentence_length=4 * max_chars,  # bytes; a chunk of max_chars characters always fits
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        # "INTERNAL: src/trainer_interface.cc(744) [check] Vocabulary size too high (...). Please set ..."
        reason = str(e).rpartition("] ")[2].strip()
        if not reason.startswith("Vocabulary size"):
            raise
        raise TrainingInputError(f"vocabulary size {vocab_size} does not fit the training text: {reason}") from e
    return model.getvalue()


def load_processor(model_path: Path) -> spm.SentencePieceProcessor:
    """A sentencepiece processor for a .model file, with a clear error for a missing or bad file."""
    if not Path(model_path).is_file():
        raise MissingTrainingInput(f"{model_path}: no such tokenizer model")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(model_path))
    except Exception as e:  # sentencepiece raises OSError or RuntimeError depending on the version
        raise TrainingInputError(f"{model_path}: not a sentencepiece model ({e})") from e
    return sp


def measure(model_path: Path, files: Iterable[Path]) -> TokenizerStats:
    """Bytes per token of a tokenizer over whole files (UTF-8 bytes / token count)."""
    sp = load_processor(model_path)
    n_files = n_bytes = n_tokens = 0
    for f in files:
        text = read_work_text(f)
        n_files += 1
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(sp.encode(text))
    return TokenizerStats(n_files, n_bytes, n_tokens)
