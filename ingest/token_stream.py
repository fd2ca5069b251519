"""A source's text as token ids with locations, tokenized piece by piece (bounded memory).

``tokenize_source`` yields one ``TokenizedPiece`` per non-empty piece: its ids, its locator and the
absolute token offset of its first id. Token offsets are positions in the document's token stream (the
concatenation of all pieces' ids). With a lossless tokenizer (``Tokenizer.is_lossless()``) decoding the
whole stream gives back the source's text stream exactly, repository file headers included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .sources.types import Locator, Source


class TextTokenizer(Protocol):
    """What tokenization needs (``megalodoc.model.tokenizer.Tokenizer`` provides it)."""

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class TokenizedPiece:
    """Token ids of one piece; ``token_start`` is the absolute offset of ``ids[0]``."""

    ids: list[int]
    locator: Locator
    piece_index: int
    token_start: int

    @property
    def token_end(self) -> int:
        """Offset just past the last id."""
        return self.token_start + len(self.ids)


def tokenize_source(source: Source, tokenizer: TextTokenizer, *, start_piece: int = 0,
                    token_start: int = 0) -> Iterator[TokenizedPiece]:
    """Tokenize ``source`` piece by piece, in order, skipping pieces that give no tokens.

    To resume, pass the index of the first piece still to read and the token offset at which it
    begins (both known from the rows stored for the earlier pieces): tokens never cross a piece
    boundary, so the ids are the same as in an uninterrupted run. Closing the iterator closes the
    source's piece iterator (stopping PDF workers).
    """
    position = token_start
    pieces = source.pieces(start_piece)
    try:
        for piece in pieces:
            if not piece.text:
                continue
            ids = tokenizer.encode(piece.text)
            if not ids:
                continue
            source.options.caps.check_tokens(source.path, position + len(ids))
            yield TokenizedPiece(ids, piece.locator, piece.index, position)
            position += len(ids)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
