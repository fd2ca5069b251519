"""The command-line options for the caps on one input (`IngestCaps`), shared by `ingest` and `eval`.

`ingest` has all of them. `eval` has all but `--max-tokens`: its own `--max-tokens` evaluates the first N
tokens of a document instead of refusing a longer one, so it reads with no token cap.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the commands' own imports stay lazy: `megalodoc --help` loads no model code
    from megalodoc.ingest.sources.caps import IngestCaps


def add_cap_arguments(parser: argparse.ArgumentParser, *, token_cap: bool) -> None:
    """Add the caps group to `parser`; `token_cap` adds `--max-tokens` as the token cap."""
    from megalodoc.ingest.sources.caps import IngestCaps  # light: no model, no torch

    defaults = IngestCaps()
    caps = parser.add_argument_group("caps on one input (0 = no cap; see README)")
    caps.add_argument("--max-bytes", type=_size, metavar="SIZE", default=defaults.max_bytes,
                      help=f"text bytes of a document or of a repository's files (default {defaults.max_bytes:,}; "
                           "K, M, G suffixes)")
    if token_cap:
        caps.add_argument("--max-tokens", type=_count, metavar="N", default=defaults.max_tokens,
                          help=f"tokens of one document (default {defaults.max_tokens:,})")
    caps.add_argument("--max-files", type=_count, metavar="N", default=defaults.max_files,
                      help=f"files read from one repository (default {defaults.max_files:,})")
    caps.add_argument("--max-pages", type=_count, metavar="N", default=defaults.max_pages,
                      help=f"pages of one PDF (default {defaults.max_pages:,})")
    caps.add_argument("--max-expansion", type=_ratio, metavar="RATIO", default=defaults.max_expansion,
                      help=f"an archive's expanded size over its size (default {defaults.max_expansion:g})")
    caps.add_argument("--no-caps", action="store_true", help="switch every cap off")


def caps_from_args(args: argparse.Namespace, *, token_cap: bool) -> IngestCaps:
    """The caps the options of `add_cap_arguments` ask for (0 = that cap off); no token cap unless
    `token_cap`."""
    from megalodoc.ingest.sources.caps import IngestCaps

    if args.no_caps:
        return IngestCaps.unlimited()
    max_tokens = (args.max_tokens or None) if token_cap else None
    return IngestCaps(args.max_bytes or None, max_tokens, args.max_files or None, args.max_pages or None,
                      args.max_expansion or None)


def _size(text: str) -> int:
    """Bytes: "8M" (8 MiB), "4K" (4096), "1.5G", "123"."""
    return _scaled(text, {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30})


def _count(text: str) -> int:
    """A count: "4M" (4,000,000), "20K", "123"."""
    return _scaled(text, {"K": 1000, "M": 1_000_000, "G": 1_000_000_000})


def _scaled(text: str, scales: dict[str, int]) -> int:
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = scales.get(value[-1:], 1)
    try:
        number = float(value[:-1] if value[-1:] in scales else value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size or count: {text!r} (e.g. 8M, 20000, 0 for no cap)") from None
    if not 0 <= number < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be 0 (no cap) or a positive number: {text!r}")
    return int(number)


def _ratio(text: str) -> float:
    """A ratio: "100", "2.5"; 0 for no cap."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a ratio: {text!r} (e.g. 100, 0 for no cap)") from None
    if not 0 <= number < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be 0 (no cap) or a positive number: {text!r}")
    return number
