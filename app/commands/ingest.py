"""`megalodoc ingest PATH...` and `megalodoc list`: batch ingest with a live progress line and a summary."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from megalodoc.app.arg_types import whole_number
from megalodoc.app.cap_options import add_cap_arguments, caps_from_args
from megalodoc.app.progress_output import StreamProgress
from megalodoc.ingest.snapshot_spacing import DEFAULT_SNAPSHOT_EVERY

if TYPE_CHECKING:  # the command's own imports stay lazy: `megalodoc --help` loads no model code
    from megalodoc.ingest.estimate import IngestEstimate


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser("ingest", help="read documents (PDF, text, repositories) into the library")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files, folders, .zip or .tar.gz archives")
    ingest.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: $MEGALODOC_DB or ./megalodoc.db)")
    ingest.add_argument("--model", help="model folder or Hub repo id (default: the shipped model)")
    ingest.add_argument("--snapshot-every", type=whole_number(1), default=DEFAULT_SNAPSHOT_EVERY, metavar="K",
                        help=f"snapshot every K chunks, rounded up to whole model calls of 4 chunks "
                             f"(default {DEFAULT_SNAPSHOT_EVERY}; see bench/snapshots.py)")
    ingest.add_argument("--threads", type=int, help="torch threads for the model (default: torch's choice)")
    ingest.add_argument("--quiet", action="store_true", help="no progress line, only the summary")
    ingest.add_argument("--estimate", action="store_true",
                        help="only print the estimate of tokens, time and disk for the paths; reads no "
                             "document and opens no database")
    add_cap_arguments(ingest, token_cap=True)
    ingest.set_defaults(handler=run_ingest)
    listing = subparsers.add_parser("list", help="list the documents in the library")
    listing.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: $MEGALODOC_DB or ./megalodoc.db)")
    listing.set_defaults(handler=run_list)


class ProgressLine:
    """Ingest progress on `stream` (see `StreamProgress`): a tqdm bar per document on a terminal, else
    `IngestProgress.line()` every `plain_interval` seconds and at the end of each document."""

    def __init__(self, stream, *, plain_interval: float = 10.0) -> None:
        self.output = StreamProgress(stream, unit="tok", plain_interval=plain_interval)
        self.terminal = self.output.terminal

    def __call__(self, progress) -> None:
        units = f"{progress.units_done}/{progress.unit_count or '?'} {progress.unit_name}s"
        self.output.update(progress.path, progress.name, progress.tokens_done, progress.tokens_total,
                           line=progress.line(), note=f"{units}, {progress.snapshots_written} snapshots",
                           finished=progress.finished)

    def close(self) -> None:
        self.output.close()


_BEFORE_READING = "\ninterrupted before reading anything"
_WHILE_READING = "\ninterrupted: the last snapshot is kept; run the same command again to resume"


def _print_estimate(bundle, source_options, paths: list[str], snapshot_every: int, stream) -> IngestEstimate:
    from megalodoc.ingest.estimate import estimate_ingest, model_costs

    speed, state_bytes, chunk = model_costs(bundle)
    estimate = estimate_ingest(paths, source_options, tokens_per_second=speed, state_bytes=state_bytes,
                               chunk_size=chunk, snapshot_every=snapshot_every, tokenizer=bundle.tokenizer)
    print(estimate.summary(), file=stream)
    return estimate


def _estimate_only(args: argparse.Namespace) -> int:
    """--estimate: the model and the paths only; no database is opened or created."""
    from megalodoc.ingest.pipeline import IngestError
    from megalodoc.ingest.sources import SourceOptions
    from megalodoc.model import CheckpointError, load_bundle

    try:
        bundle = load_bundle(args.model)
        if bundle.tokenizer is None:
            raise IngestError(f"{bundle.source}: the model has no tokenizer.model; ingest needs the model's own "
                              "tokenizer")
        options = SourceOptions(caps=caps_from_args(args, token_cap=True))
    except (IngestError, CheckpointError, ValueError) as exc:
        print(f"megalodoc ingest: {exc}", file=sys.stderr)
        return 2
    estimate = _print_estimate(bundle, options, args.paths, args.snapshot_every, sys.stdout)
    for item in estimate.inputs:
        print(f"  {item.line()}")
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from megalodoc.app.interrupts import exit_at_once_on_interrupt, stop_on_interrupt

    with exit_at_once_on_interrupt("interrupted before reading anything"):
        from megalodoc.ingest.library import Library
        from megalodoc.ingest.pipeline import CancelToken, IngestError
        from megalodoc.model import CheckpointError
        from megalodoc.storage import StorageError

        if args.threads is not None:
            if args.threads < 1:
                print(f"megalodoc ingest: --threads {args.threads} must be at least 1", file=sys.stderr)
                return 2
            import torch

            torch.set_num_threads(args.threads)  # once, for this process: the library never changes it
        if args.estimate:  # nothing is read or written, so an interrupt may end it at once
            return _estimate_only(args)
        try:
            library = Library(args.db, args.model, snapshot_every=args.snapshot_every,
                              caps=caps_from_args(args, token_cap=True))
        except (IngestError, CheckpointError, StorageError, ValueError) as exc:
            print(f"megalodoc ingest: {exc}", file=sys.stderr)
            return 2
    cancel = CancelToken()
    try:
        # from here on Ctrl-C also cancels: an interrupt whose KeyboardInterrupt Python drops still stops
        with stop_on_interrupt(cancel.cancel):
            status = _estimate(args, library, cancel)
            return status if status is not None else _read(args, library, cancel)
    except KeyboardInterrupt:  # between the steps below (each handles its own)
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        library.close()


def _estimate(args: argparse.Namespace, library, cancel) -> int | None:
    """Print the estimate on stderr unless --quiet; the exit status when the command ends here
    (interrupted), else None."""
    if args.quiet:
        return None
    try:
        _print_estimate(library.bundle, library.source_options, args.paths, args.snapshot_every, sys.stderr)
    except KeyboardInterrupt:
        cancel.cancel()
    if cancel.cancelled:  # also when the interrupt's KeyboardInterrupt was dropped on its way
        print(_BEFORE_READING, file=sys.stderr)
        return 130
    return None


def _read(args: argparse.Namespace, library, cancel) -> int:
    """Read every path with a progress line; print the summary; the exit status."""
    progress = None if args.quiet else ProgressLine(sys.stderr)
    try:
        outcomes = library.ingest_many(args.paths, on_progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        print(_WHILE_READING, file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()  # a bar cut short by an error stays on screen, ended
    failed = _print_summary(outcomes)
    if cancel.cancelled:  # interrupted, and the KeyboardInterrupt was dropped on its way: the reading stopped
        print(_WHILE_READING, file=sys.stderr)
        return 130
    return 1 if failed else 0


def _print_summary(outcomes) -> int:
    """Print what happened to each path; returns how many failed. A document another worker holds (busy)
    is not a failure of this run: the summary counts it as left to that worker."""
    from megalodoc.storage import IngestStatus

    print("\nsummary:")
    for o in outcomes:
        tokens = f"{o.document.committed_position:,} tokens" if o.document else ""
        extra = f" ({o.message})" if o.message else ""
        print(f"  {o.status:16} {o.path}  {tokens}{extra}")
        for note in (*o.warnings, *o.skipped[:20]):
            print(f"      note: {note}")
        if len(o.skipped) > 20:
            print(f"      ... and {len(o.skipped) - 20} more skipped")
    read = sum(o.ok for o in outcomes)
    busy = sum(o.status == IngestStatus.BUSY for o in outcomes)
    left = f", {busy} left to another worker reading them" if busy else ""
    print(f"{read} of {len(outcomes)} documents read{left}")
    return len(outcomes) - read - busy


def run_list(args: argparse.Namespace) -> int:
    from megalodoc.storage import StorageError, open_store

    try:
        store = open_store(args.db)
    except StorageError as exc:
        print(f"megalodoc list: {exc}", file=sys.stderr)
        return 2
    with store:
        documents = store.list_documents()
        if not documents:
            print("no documents")
        for d in documents:
            total = f"/{d.token_count:,}" if d.token_count else ""
            print(f"{d.id:5}  {d.status:10} {d.kind:5} {d.committed_position:,}{total} tokens  {d.name}")
    return 0
