"""Caps on runaway inputs: how much one input may hold before megalodoc says no.

Reading costs about a kilobyte of snapshots per token at the default density and runs at a few
thousand tokens a second on a CPU, so an unbounded input (a 50 MiB one-line text, a 20,000-file
repository, a 2,000-page PDF, an archive bomb) would run for hours and fill the disk. Each cap is
checked as early as what it measures is known, and its error names the input, the cap and the
``megalodoc ingest`` option that raises it (0 or None means no cap):

========================  ==========  ===========================================================
cap (option)              default     checked
========================  ==========  ===========================================================
max_bytes (--max-bytes)   8 MiB       a text document's size (from ``stat``, before reading); the
                                      total size of the files a repository would read (after
                                      listing, before reading them)
max_tokens (--max-tokens) 4,000,000   tokens of one document, while reading, piece by piece (a piece
                                      that would cross it is not read); the snapshots made so far
                                      are kept, so a run with a higher cap resumes from them
max_files (--max-files)   10,000      files a repository would read; an archive's members (of any
                                      kind) may number at most ``ARCHIVE_MEMBERS_PER_FILE`` times it
max_pages (--max-pages)   2,000       pages of a PDF (when it is opened, before any extraction)
max_expansion             100         an archive's expanded size over its size on disk (zip: the
(--max-expansion)                     declared sizes; tar: the stream offset, checked member by
                                      member); below ``max_bytes`` of expansion it is not applied
========================  ==========  ===========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import SourceError

MIB = 1 << 20
ARCHIVE_MEMBERS_PER_FILE = 10
"""An archive may list this many members per file cap: ignored folders (node_modules, .git) are common."""


class CapExceededError(SourceError):
    """An input is over one of the caps; the message names the cap and the option that raises it."""


@dataclass(frozen=True)
class IngestCaps:
    """Limits on one input; None (or 0 on the command line) switches a cap off."""

    max_bytes: int | None = 8 * MIB
    max_tokens: int | None = 4_000_000
    max_files: int | None = 10_000
    max_pages: int | None = 2_000
    max_expansion: float | None = 100.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_tokens", "max_files", "max_pages", "max_expansion"):
            value = getattr(self, name)
            if value is not None and not 0 < value < float("inf"):  # also refuses NaN
                raise ValueError(f"IngestCaps.{name} must be positive and finite, or None (no cap), got {value!r}")

    @classmethod
    def unlimited(cls) -> IngestCaps:
        """No caps at all."""
        return cls(None, None, None, None, None)

    # checks ----------------------------------------------------------------------------------------

    def check_bytes(self, path: str | os.PathLike[str], size: int, what: str = "the file") -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise CapExceededError(path, f"{what} holds {size:,} bytes, over the cap of {self.max_bytes:,} "
                                         f"(--max-bytes){_RAISE}")

    def check_files(self, path: str | os.PathLike[str], count: int) -> None:
        if self.max_files is not None and count > self.max_files:
            raise CapExceededError(path, f"more than {self.max_files:,} files to read, over the cap "
                                         f"(--max-files){_RAISE}")

    def check_members(self, path: str | os.PathLike[str], count: int) -> None:
        if self.max_files is not None and count > self.max_files * ARCHIVE_MEMBERS_PER_FILE:
            raise CapExceededError(path, f"the archive lists more than {self.max_files * ARCHIVE_MEMBERS_PER_FILE:,} "
                                         f"members ({ARCHIVE_MEMBERS_PER_FILE} x the file cap, --max-files){_RAISE}")

    def check_pages(self, path: str | os.PathLike[str], pages: int) -> None:
        if self.max_pages is not None and pages > self.max_pages:
            raise CapExceededError(path, f"{pages:,} pages, over the cap of {self.max_pages:,} (--max-pages)"
                                         f"{_RAISE}")

    def check_expansion(self, path: str | os.PathLike[str], expanded: int, archive_size: int) -> None:
        if self.max_expansion is None:
            return
        allowed = max(self.max_expansion * max(archive_size, 1), self.max_bytes or 0)
        if expanded > allowed:
            raise CapExceededError(
                path, f"the archive expands to more than {expanded:,} bytes from {archive_size:,} (ratio over "
                      f"{self.max_expansion:g}, --max-expansion): an archive bomb or mostly filler{_RAISE}")

    def check_tokens(self, path: str | os.PathLike[str], tokens: int) -> None:
        if self.max_tokens is not None and tokens > self.max_tokens:
            raise CapExceededError(
                path, f"stopped at the token cap ({self.max_tokens:,} tokens, --max-tokens); the snapshots read "
                      f"so far are kept and a run with a higher cap continues from them{_RAISE}")


_RAISE = "; raise the cap with that option (0 = no cap) if this input is meant"
