"""The text stored with each chunk: exactly its share of the document, never half a character.

Chunks are cut every C tokens, and with byte fallback a character outside the vocabulary is several
byte tokens, so a cut can fall inside a character; decoding each chunk's ids on their own would give
U+FFFD on both sides. Rule: a character belongs to the chunk that holds its last byte token. A chunk's
text is the decoding of the previous chunk's trailing incomplete-character ids (the carry) followed by
its own ids less its own trailing incomplete-character ids, which it carries on. The chunk texts joined
are then the decoded document; the chunks' token ranges and ids stay as cut. The document's end is
always a whole character (every piece of text is tokenized whole), so nothing is carried past it.
"""

from __future__ import annotations

from collections.abc import Sequence

from megalodoc.model.tokenizer import Tokenizer
from megalodoc.storage import Store

MAX_CARRY = 3
"""A cut character has at most 3 of its (at most 4) bytes before the cut."""


def chunk_texts(tokenizer: Tokenizer, carry: Sequence[int],
                chunks: Sequence[Sequence[int]]) -> tuple[list[str], list[int]]:
    """(the text of each chunk of consecutive `chunks` ids, the carry after the last one), given the
    `carry` of ids before the first chunk (the trailing incomplete-character ids of the chunk before)."""
    texts: list[str] = []
    held = list(carry)
    for ids in chunks:
        joined = held + list(ids)
        cut = len(joined) - tokenizer.incomplete_tail(joined)
        texts.append(tokenizer.decode(joined[:cut]))
        held = joined[cut:]
    return texts, held


def stored_carry(store: Store, tokenizer: Tokenizer, document_id: int, position: int) -> list[int]:
    """The carry at a chunk boundary `position` of a stored document, from its stored token ids (for a
    run that resumes there: the chunk before it was stored without these ids' character)."""
    if position == 0:
        return []
    ids = store.token_ids(document_id, max(0, position - MAX_CARRY - 1), position)
    return ids[len(ids) - tokenizer.incomplete_tail(ids):]
