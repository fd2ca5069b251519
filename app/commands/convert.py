"""`megalodoc convert-upstream SRC DST`: a reference checkpoint folder -> a megalodoc model folder."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-upstream",
        help="convert a reference Megalodon checkpoint (config.json + consolidated.pth) to megalodoc's format",
    )
    parser.add_argument("src", help="folder with the reference config.json and consolidated.pth")
    parser.add_argument("dst", help="output model folder")
    parser.add_argument("--tokenizer", help="sentencepiece tokenizer.model to ship with the model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from megalodoc.model.checkpoint import CheckpointError
    from megalodoc.model.upstream import convert_upstream

    try:
        out = convert_upstream(args.src, args.dst, tokenizer=args.tokenizer)
    except (CheckpointError, OSError) as exc:
        print(f"megalodoc convert-upstream: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
