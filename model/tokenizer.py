"""The sentencepiece tokenizer that comes with a model folder (``tokenizer.model``).

Lossless settings matter for ingest: a document is tokenized piece by piece and citations map tokens
back to characters, so ``decode(encode(a) + encode(b))`` must give ``a + b`` exactly. That holds for a
model trained with identity normalization, byte fallback, no dummy prefix, no whitespace clean-up and
whitespace-only pieces allowed: ``LOSSLESS_TRAINER_SETTINGS``, which ``train_tokenizer`` applies.
``Tokenizer.is_lossless`` checks a loaded model against a probe string.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

LOSSLESS_TRAINER_SETTINGS: dict[str, object] = {
    "normalization_rule_name": "identity",  # NFKC would rewrite text (ligatures, full-width forms)
    "byte_fallback": True,  # unseen characters become byte tokens instead of <unk>
    "add_dummy_prefix": False,  # a leading "▁" per encode() call would insert spaces between pieces
    "remove_extra_whitespaces": False,  # keep indentation and runs of spaces in code
    "allow_whitespace_only_pieces": True,  # so indentation gets its own tokens
    "split_digits": True,  # numbers tokenized digit by digit: no arbitrary multi-digit tokens
    # The project's special ids: pad=0 so zero-filled buffers are padding; unk is unreachable with
    # byte fallback but sentencepiece requires one; bos/eos mark document boundaries.
    "pad_id": 0,
    "unk_id": 1,
    "bos_id": 2,
    "eos_id": 3,
}
"""sentencepiece trainer arguments for a tokenizer that round-trips any text exactly."""

_PROBE = "Tabs\tand  spaces,\n    indented code;\n\nnon-ASCII: déjà vu, ﬁ, 日本語, 🙂\r\n"


class TokenizerError(ValueError):
    """A tokenizer model file that is missing or cannot be loaded; the message names the path."""


class UnencodableTextError(ValueError):
    """Text that has no UTF-8 form: it holds lone surrogates, which is what Python makes of bytes that are
    not UTF-8 in command-line arguments and file names (and what JSON may carry as escapes)."""


def check_encodable(text: str, what: str = "the text") -> None:
    """Raise UnencodableTextError, naming `what` and the first bad character, when `text` has no UTF-8 form."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise UnencodableTextError(f"{what} is not valid Unicode at character {error.start + 1} "
                                   f"({text[error.start]!r}, perhaps a byte that is not UTF-8): write it in UTF-8"
                                   ) from None


class Tokenizer:
    """A loaded sentencepiece model with its fingerprint and special ids."""

    def __init__(self, model_bytes: bytes, *, source: str = "<bytes>") -> None:
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_bytes)
        except (RuntimeError, OSError, TypeError, ValueError) as error:
            raise TokenizerError(f"{source}: not a valid sentencepiece model ({error})") from error
        if processor.GetPieceSize() == 0:
            raise TokenizerError(f"{source}: not a valid sentencepiece model (empty vocabulary)")
        self._sp = processor
        self.source = source
        self.fingerprint = hashlib.sha256(model_bytes).hexdigest()
        """Hex sha256 of the model file's bytes."""
        self._model_bytes = model_bytes

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load ``path`` (a sentencepiece ``.model`` file). Raises TokenizerError naming the path."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TokenizerError(f"{path}: tokenizer model file not found") from None
        except IsADirectoryError:
            raise TokenizerError(f"{path}: is a folder, expected a sentencepiece .model file") from None
        except OSError as error:
            raise TokenizerError(f"{path}: cannot read the tokenizer model ({error.strerror or error})") from None
        if not data:
            raise TokenizerError(f"{path}: empty file, not a sentencepiece model")
        return cls(data, source=str(path))

    def model_bytes(self) -> bytes:
        """The serialized model (what ``from_file`` read), e.g. to copy it into a model folder."""
        return self._model_bytes

    # vocabulary -----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of pieces, special and byte pieces included."""
        return self._sp.GetPieceSize()

    @property
    def bos_id(self) -> int | None:
        """Begin-of-sequence id, or None when the model has none."""
        return _optional(self._sp.bos_id())

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence id, or None when the model has none."""
        return _optional(self._sp.eos_id())

    @property
    def pad_id(self) -> int | None:
        """Padding id, or None when the model has none."""
        return _optional(self._sp.pad_id())

    @property
    def unk_id(self) -> int:
        """Unknown-piece id (sentencepiece always has one)."""
        return self._sp.unk_id()

    def special_ids(self) -> dict[str, int | None]:
        """The special ids by name, as recorded in a model folder's config.json."""
        return {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id, "unk_id": self.unk_id}

    def id_to_piece(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` (e.g. "▁the", "<0x0A>")."""
        return self._sp.IdToPiece(token_id)

    # encoding -------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added). Raises UnencodableTextError for text with no UTF-8
        form (sentencepiece only failed to convert it, without saying why)."""
        check_encodable(text)
        return self._sp.EncodeAsIds(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; for a lossless model ``decode(encode(x)) == x``."""
        return self._sp.DecodeIds(list(ids))

    def incomplete_tail(self, ids: Sequence[int]) -> int:
        """How many of the last ``ids`` are byte pieces of a character whose last byte is not among them.

        With byte fallback a character outside the vocabulary is one byte piece per UTF-8 byte; ids cut
        inside such a character end with its lead byte and fewer continuation bytes than the lead
        announces. Returns that count (1 to 3), or 0 when ``ids`` end on a whole character. Exact, also
        for a real U+FFFD in the text (which a test on the decoded text cannot tell from a cut character).
        """
        count = 0
        for token_id in reversed(list(ids[-4:])):  # a UTF-8 character has at most 4 bytes
            if not self._sp.IsByte(token_id):
                return 0
            byte = int(self._sp.IdToPiece(token_id)[3:5], 16)  # byte pieces read "<0xF0>"
            count += 1
            if byte & 0xC0 != 0x80:  # not a continuation byte: the character's lead byte
                length = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                return count if count < length else 0
        return 0

    def is_lossless(self) -> bool:
        """Whether encode/decode round-trips a probe of tabs, indentation, newlines and non-ASCII text,
        also when the text is encoded in two halves (no dummy prefix)."""
        probe = _PROBE
        middle = len(probe) // 2
        whole = self.decode(self.encode(probe)) == probe
        halves = self.decode(self.encode(probe[:middle]) + self.encode(probe[middle:])) == probe
        return whole and halves

    def __repr__(self) -> str:
        return f"<Tokenizer {self.source} vocab={self.vocab_size} sha256={self.fingerprint[:12]}>"


class IncrementalDecoder:
    """Token ids in, text out, one token at a time, never half a character.

    With byte fallback a character outside the vocabulary is several byte tokens (``<0xE4>`` ``<0xB8>``
    ``<0xAD>``); decoding a prefix of them gives U+FFFD. ``push`` holds text back while its decoding
    ends in U+FFFD and releases it once the character is complete; ``finish`` releases what is left
    (a real U+FFFD, or the bytes of a character that never completed). The concatenation of everything
    returned equals ``tokenizer.decode(all ids)`` for a lossless tokenizer. Decoding is windowed (the ids
    since the last released text plus the ids of that text as context), so a long stream costs O(1)
    per token, and a tokenizer that treats the first piece specially still decodes joined pieces right.

        decoder = IncrementalDecoder(tokenizer)
        for token in generation:
            print(decoder.push(token), end="", flush=True)
        print(decoder.finish())
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # ids[prefix:read] were released last time: context for the next decode
        self._read = 0  # ids[read:] are not released yet

    def push(self, token_id: int) -> str:
        """The text that `token_id` completes (often "" while a multi-byte character is incomplete)."""
        self._ids.append(int(token_id))
        shown = self._tokenizer.decode(self._ids[self._prefix : self._read])
        text = self._tokenizer.decode(self._ids[self._prefix :])
        if len(text) <= len(shown) or text.endswith("\ufffd") or not text.startswith(shown):
            return ""
        # release; keep the released ids as context and drop everything before them
        del self._ids[: self._read]
        self._prefix, self._read = 0, len(self._ids)
        return text[len(shown) :]

    def finish(self) -> str:
        """Whatever is still held back (call once, after the last token)."""
        shown = self._tokenizer.decode(self._ids[self._prefix : self._read])
        text = self._tokenizer.decode(self._ids[self._prefix :])
        self._ids, self._prefix, self._read = [], 0, 0
        return text[len(shown) :] if text.startswith(shown) else text


def stream_text(tokenizer: Tokenizer, ids: Iterable[int]) -> Iterator[str]:
    """The text of `ids` in pieces as they arrive (no empty pieces, never half a character)."""
    decoder = IncrementalDecoder(tokenizer)
    for token_id in ids:
        piece = decoder.push(token_id)
        if piece:
            yield piece
    rest = decoder.finish()
    if rest:
        yield rest


def _optional(token_id: int) -> int | None:
    return None if token_id < 0 else token_id


def train_tokenizer(texts: Iterable[str], out_path: str | os.PathLike[str], vocab_size: int, *,
                    model_type: str = "bpe", max_text_chars: int = 4000, **settings: object) -> Tokenizer:
    """Train a sentencepiece model on ``texts`` with LOSSLESS_TRAINER_SETTINGS (overridable by
    ``settings``), write it to ``out_path`` and load it.

    ``texts`` are training "sentences": multi-line chunks of at most ``max_text_chars`` characters work
    best (pieces such as "):\\n" then exist); longer ones are dropped by sentencepiece.
    """
    model = io.BytesIO()
    arguments = {**LOSSLESS_TRAINER_SETTINGS, "model_type": model_type, "vocab_size": vocab_size,
                 "max_sentence_length": 4 * max_text_chars, "minloglevel": 2, **settings}
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, **arguments)
    out_path = Path(out_path)
    out_path.write_bytes(model.getvalue())
    return Tokenizer.from_file(out_path)
