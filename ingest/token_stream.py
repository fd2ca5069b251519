"""A source's text as token ids with locations, tokenized piece by piece (bounded memory).

``tokenize_source`` yields one ``TokenizedPiece`` per non-empty piece: its ids, its locator and the
absolute token offset of its first id. Token offsets are positions in the document's token stream (the
concatenation of all pieces' ids). With a lossless tokenizer (``Tokenizer.is_lossless()``) decoding the
whole stream gives back the source's text stream exactly, repository file headers included.
``LocationMap`` keeps (token_start, token_end, locator) rows compactly and answers "where is token p".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
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


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """Tokens ``token_start``..``token_end`` (half-open) come from ``locator``."""

    token_start: int
    token_end: int
    locator: Locator


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
            yield TokenizedPiece(ids, piece.locator, piece.index, position)
            position += len(ids)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


class LocationMap:
    """Contiguous token ranges and their locators, in order; neighbours with equal locators merge."""

    def __init__(self, spans: Iterable[TokenSpan] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._locators: list[Locator] = []
        for span in spans:
            self.add(span.token_start, span.token_end, span.locator)

    def add(self, token_start: int, token_end: int, locator: Locator) -> None:
        """Append tokens ``token_start``..``token_end``; they must start where the previous span ended
        (or later) and not be empty."""
        if token_end <= token_start:
            raise ValueError(f"empty or reversed token span {token_start}..{token_end}")
        if self._ends and token_start < self._ends[-1]:
            raise ValueError(f"token span {token_start}..{token_end} overlaps the previous one "
                             f"(which ends at {self._ends[-1]})")
        if self._ends and token_start == self._ends[-1] and self._locators[-1] == locator:
            self._ends[-1] = token_end
            return
        self._starts.append(token_start)
        self._ends.append(token_end)
        self._locators.append(locator)

    def add_piece(self, piece: TokenizedPiece) -> None:
        """Append the span of a tokenized piece."""
        self.add(piece.token_start, piece.token_end, piece.locator)

    def locate(self, position: int) -> Locator | None:
        """The locator of token ``position``, or None if no span covers it."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index >= 0 and position < self._ends[index]:
            return self._locators[index]
        return None

    def overlapping(self, token_start: int, token_end: int) -> list[TokenSpan]:
        """Spans that share at least one token with ``token_start``..``token_end`` (e.g. a chunk)."""
        first = max(0, bisect.bisect_right(self._starts, token_start) - 1)
        found: list[TokenSpan] = []
        for index in range(first, len(self._starts)):
            if self._starts[index] >= token_end:
                break
            if self._ends[index] > token_start:
                found.append(TokenSpan(self._starts[index], self._ends[index], self._locators[index]))
        return found

    def spans(self) -> list[TokenSpan]:
        """All spans in order (the rows to store)."""
        return [TokenSpan(s, e, loc) for s, e, loc in zip(self._starts, self._ends, self._locators, strict=True)]

    def __len__(self) -> int:
        return len(self._starts)
