"""`megalodoc surprise DOC`: bits per byte of every chunk along a document (computed once, then stored)."""

from __future__ import annotations

import argparse
import json

from megalodoc.app import reader_cli
from megalodoc.app.arg_types import whole_number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("surprise", help="per-chunk bits per byte along a document (where text is odd)")
    parser.add_argument("document", metavar="DOC", help="document id or name (see `megalodoc list`)")
    parser.add_argument("--recompute", action="store_true", help="compute again even when stored")
    parser.add_argument("--top", type=whole_number(0), default=10, metavar="N",
                        help="also list the N most surprising chunks (0: none)")
    parser.add_argument("--json", action="store_true", help="print every chunk as JSON")
    reader_cli.add_service_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    def work(service) -> int:
        points = service.surprise(args.document, recompute=args.recompute)
        if args.json:
            rows = [{"start": p.start, "end": p.end, "bits_per_byte": p.bits_per_byte, "location": p.location}
                    for p in points]
            print(json.dumps(rows, indent=2))
            return 0
        if not points:
            print("no chunk with text to score")
            return 0
        values = sorted(p.bits_per_byte for p in points)
        median = values[len(values) // 2]
        print(f"{len(points)} chunks; bits per byte: median {median:.3f}, min {values[0]:.3f}, max {values[-1]:.3f}")
        if args.top:
            print("most surprising (tokens, bits per byte, location):")
        for p in sorted(points, key=lambda p: -p.bits_per_byte)[: args.top]:
            print(f"  {p.start:>9,}-{p.end:<9,} {p.bits_per_byte:7.3f}  {p.location}")
        return 0

    return reader_cli.run_with_service("surprise", args, work)
