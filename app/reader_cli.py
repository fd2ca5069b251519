"""What the `ask`, `continue` and `sessions` commands share: the common options, opening the reader
service with a clear message on failure, and printing an answer (citations first, then the streamed,
labelled text; or JSON for scripts)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from megalodoc.app.reader import Answer, ReaderService

DB_HELP = "SQLAlchemy URL or SQLite file (default: $MEGALODOC_DB or ./megalodoc.db)"
AT_HELP = 'reading point: token position, page ("p. 132"), file:line, or fraction (0.25, "25%%"); default: the end'


def add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help=DB_HELP)
    parser.add_argument("--model", help="model folder or Hub repo id (default: the shipped model)")


def add_sampling_options(parser: argparse.ArgumentParser, max_tokens: int) -> None:
    parser.add_argument("--max-tokens", type=int, default=max_tokens, help=f"most tokens to generate ({max_tokens})")
    parser.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--seed", type=int, help="fixes the sampling (default: drawn and shown)")


def sampling_from(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    return {key: value for key, value in keys.items() if value is not None}


def session_options_clash(command: str, args: argparse.Namespace) -> bool:
    """True (after printing why) when --at or --new-session come with --session: a session goes on from
    its own reading point, and asking in one session cannot start another."""
    if args.session is None:
        return False
    clash = [name for name, value in (("--at", args.at), ("--new-session", getattr(args, "new_session", None)))
             if value is not None]
    if clash:
        print(f"megalodoc {command}: {' and '.join(clash)} cannot be used with --session (a session goes on "
              "from its own reading point)", file=sys.stderr)
    return bool(clash)


def run_with_service(command: str, args: argparse.Namespace, work: Callable[[ReaderService], int]) -> int:
    """Open the service, run `work`, close it. Expected errors print "megalodoc COMMAND: cause" and
    return 2; anything else is a bug and propagates with its traceback."""
    from megalodoc.app.reader import ReaderError, ReaderService
    from megalodoc.ingest.pipeline import IngestError
    from megalodoc.model import CheckpointError
    from megalodoc.model.tokenizer import TokenizerError
    from megalodoc.storage import StorageError

    expected = (ReaderError, IngestError, CheckpointError, TokenizerError, StorageError, ValueError)
    try:
        service = ReaderService(args.db, getattr(args, "model", None))
    except expected as exc:
        print(f"megalodoc {command}: {exc}", file=sys.stderr)
        return 2
    try:
        return work(service)
    except expected as exc:
        print(f"megalodoc {command}: {exc}", file=sys.stderr)
        return 2
    finally:
        service.close()


def print_answer(answer: Answer, as_json: bool) -> int:
    """JSON (answer, label, citations, settings, turn) or: citations, the label, then the text as it comes."""
    if as_json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return 0
    out = sys.stdout
    if answer.citations:
        out.write("Evidence:\n")
        for n, c in enumerate(answer.citations, 1):
            quoted = " ".join(c.passage.split())
            out.write(f"  [{n}] {c.where} (tokens {c.start}-{c.end}, score {c.score:.3f})\n      \"{quoted}\"\n")
    elif answer.kind == "ask":
        out.write("Evidence: no passage before the reading point matches the question.\n")
    out.write(f"\n{answer.kind.capitalize()} ({answer.label}):\n")
    out.flush()
    for piece in answer:
        out.write(piece)
        out.flush()
    out.write("\n")
    tail = f"seed {answer.settings['seed']}"
    if answer.turn is not None:
        tail += f"; stored as turn {answer.turn.id} of session {answer.turn.session_id}"
    out.write(f"({tail})\n")
    return 0
