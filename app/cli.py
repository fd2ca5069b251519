"""The `megalodoc` command line. Each subcommand lives in its own module under `app/commands/` and
exposes `register(subparsers)`; this file only collects them, so adding a command never edits another."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence

from megalodoc.app import commands
from megalodoc.app.interrupts import exit_at_once_on_interrupt


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command module's subcommands registered."""
    parser = argparse.ArgumentParser(
        prog="megalodoc",
        description="Read long documents and code into a library through a Megalodon model, then ask, continue "
                    "and branch from any point (`megalodoc serve` for the web app).")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more: -v for progress of each step (INFO), -vv for DEBUG")
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                        help="log level of the megalodoc package's messages on stderr (overrides -v)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (it may be replaced after start-up)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass


def configure_logging(verbose: int, level: str | None) -> None:
    """Send the package's log records to stderr at the chosen level; called once per CLI process. The
    root logger is left alone, so a program that embeds megalodoc keeps its own logging set-up."""
    chosen = level or ("DEBUG" if verbose >= 2 else "INFO" if verbose == 1 else "WARNING")
    package = logging.getLogger("megalodoc")
    package.setLevel(chosen)
    if not any(isinstance(h, _StderrHandler) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command (`argv`, default sys.argv[1:]); returns the exit status. `own_process`: the process
    was started as this command (see `run`), so a command may re-execute it (`train --allocator`)."""
    with exit_at_once_on_interrupt("interrupted"):  # importing the command modules
        parser = build_parser()
    args = parser.parse_args(argv)
    args.own_process = own_process
    configure_logging(args.verbose, args.log_level)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # whoever read the output stopped (`megalodoc sessions list | head -1`): end quietly, with the
        # status of a process that SIGPIPE ended. Standard output now goes nowhere, so the interpreter's
        # last flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def started_as_command() -> bool:
    """Whether the interpreter was started with this command's arguments at the end of its own (the
    console script, `python -m megalodoc.app.cli`, torchrun's workers), so that re-executing it with
    sys.orig_argv runs the same command again. Not so where a program set sys.argv itself (IPython's
    `%run`, a wrapper that rewrites its arguments)."""
    tail = sys.argv[1:]
    return not tail or sys.orig_argv[len(sys.orig_argv) - len(tail):] == tail


def run() -> int:
    """Entry point of the `megalodoc` console script and of `python -m megalodoc.app.cli`."""
    return main(own_process=started_as_command())


if __name__ == "__main__":
    sys.exit(run())
