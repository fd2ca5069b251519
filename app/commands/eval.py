"""`megalodoc eval PATH...`: bits per byte with the state carried across chunks vs reset at every chunk.

    megalodoc eval book.pdf repo/ notes.txt [--model PATH] [--json OUT.json] [--plot OUT.png] [--max-tokens N]

Inputs are read under ingest's caps (--max-bytes, --max-files, --max-pages, --max-expansion, --no-caps),
except the token cap: --max-tokens N evaluates a document's first N tokens.
"""

from __future__ import annotations

import argparse
import sys

from megalodoc.app.arg_types import torch_device
from megalodoc.app.cap_options import add_cap_arguments, caps_from_args
from megalodoc.app.progress_output import StreamProgress


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval` to the CLI."""
    p = subparsers.add_parser(
        "eval", help="bits per byte of documents with the model state carried vs reset at every chunk",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="PDF, text files, folders, .zip or .tar.gz archives")
    p.add_argument("--model", help="model folder or Hub repo id (default: the shipped model)")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG of both curves over the position buckets")
    p.add_argument("--max-tokens", type=int, metavar="N", help="evaluate at most the first N tokens of each document")
    p.add_argument("--device", type=torch_device, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_cap_arguments(p, token_cap=False)
    p.set_defaults(handler=run_eval)


class _Progress:
    """Tokens scored so far per input on stderr (a tqdm bar on a terminal, plain lines elsewhere); `total`
    is given once, when the input is done."""

    def __init__(self) -> None:
        self.output = StreamProgress(sys.stderr, unit="tok")

    def __call__(self, name: str, done: int, total: int | None) -> None:
        finished = total is not None
        line = f"{name}: {done:,} tokens" + (", done" if finished else "")
        self.output.update(name, name, done, total, line=line, finished=finished)


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from megalodoc.ingest.eval_report import format_table, write_json, write_plot
    from megalodoc.ingest.evaluate import evaluate_paths
    from megalodoc.ingest.pipeline import IngestError
    from megalodoc.model import CheckpointError
    from megalodoc.model.tokenizer import TokenizerError

    if args.max_tokens is not None and args.max_tokens < 2:
        print(f"megalodoc eval: --max-tokens {args.max_tokens} must be at least 2", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        report = evaluate_paths(args.paths, args.model, max_tokens=args.max_tokens, device=device,
                                on_progress=None if args.quiet else _Progress(),
                                caps=caps_from_args(args, token_cap=False))
    except (IngestError, CheckpointError, TokenizerError) as exc:
        print(f"megalodoc eval: {exc}", file=sys.stderr)
        return 2
    if report.documents:
        print(format_table(report))
    for _, message in report.errors:
        print(f"megalodoc eval: {message}", file=sys.stderr)
    try:
        if args.json:
            write_json(report, args.json)
            print(f"wrote {args.json}")
        if args.plot and report.documents:
            write_plot(report, args.plot)
            print(f"wrote {args.plot}")
    except OSError as exc:
        print(f"megalodoc eval: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 1 if report.errors else 0
