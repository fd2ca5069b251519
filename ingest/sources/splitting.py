"""Cut a stream of text blocks into pieces of about a target size, at line breaks where possible."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

LONG_LINE_FACTOR = 4
"""A line up to this many times the target stays whole; longer ones are cut at a space."""


def split_blocks(blocks: Iterable[str], target: int) -> Iterator[str]:
    """Yield consecutive non-empty pieces whose concatenation is the concatenation of ``blocks``.

    A piece ends just after a newline when one lies within ``target`` characters (or within
    ``LONG_LINE_FACTOR * target`` for a long line); otherwise at the last space of the second half of
    the window, else at exactly ``target`` characters. Linear time: no repeated slicing of the buffer.
    """
    buffer = ""
    for block in blocks:
        buffer += block
        pos = 0
        for cut in _cuts(buffer, target, final=False):
            yield buffer[pos:cut]
            pos = cut
        buffer = buffer[pos:]
    pos = 0
    for cut in _cuts(buffer, target, final=True):
        yield buffer[pos:cut]
        pos = cut
    if pos < len(buffer):
        yield buffer[pos:]


def _cuts(text: str, target: int, final: bool) -> Iterator[int]:
    pos = 0
    long_window = LONG_LINE_FACTOR * target
    while len(text) - pos >= target:
        newline = text.rfind("\n", pos, pos + target)
        if newline >= 0:
            cut = newline + 1
        else:
            newline = text.find("\n", pos + target, pos + long_window)
            if newline >= 0:
                cut = newline + 1
            elif len(text) - pos < long_window and not final:
                return  # the line may still end in the next block
            else:
                space = text.rfind(" ", pos + target // 2, pos + target)
                cut = space + 1 if space >= 0 else pos + target
        yield cut
        pos = cut
