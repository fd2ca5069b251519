"""`megalodoc serve`: the web app (Gradio) on the embedded default: a SQLite file and the shipped model."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

from megalodoc.app.arg_types import whole_number
from megalodoc.app.listen_check import listen_problem

log = logging.getLogger(__name__)

# Nothing leaves the machine: no analytics, no Hub lookups. Set before gradio or huggingface_hub load.
OFFLINE_ENVIRONMENT = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                       "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}
DEFAULT_PORT = 7860
DEFAULT_DATA_DIR = "megalodoc-data"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="start the web app: upload, read, ask, continue, sessions")
    parser.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: $MEGALODOC_DB or ./megalodoc.db)")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the shipped model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=whole_number(1, 65535), default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--auth", metavar="USER:PASS", help="require this user name and password")
    parser.add_argument("--max-upload-mb", type=_upload_mib, default=None, metavar="N",
                        help="largest file a person may upload, in MiB (default 200)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"folder for uploaded files and exports (default ./{DEFAULT_DATA_DIR})")
    parser.add_argument("--threads", type=int, help="torch threads for the model (default: torch's choice)")
    parser.set_defaults(handler=run)


def _upload_mib(text: str) -> float:
    """--max-upload-mb: a positive, finite number of MiB."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB: {text!r}")
    return value


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """"user:pass" -> ("user", "pass"); the password may contain colons."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth {value!r}: give USER:PASS with a non-empty user and password")
    return user, password


def _stop_on_sigterm() -> None:
    """SIGTERM (a service manager, `docker stop`, `kill`) ends the server as Ctrl-C does: the server
    closes and the store with it. By default the process just died, mid-write, leaving the WAL for the
    next opener to recover. Set once here: the serving process is this command's."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace) -> int:
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    data_dir = Path(args.data_dir).resolve()
    try:
        auth = parse_auth(args.auth)
    except ValueError as exc:
        print(f"megalodoc serve: {exc}", file=sys.stderr)
        return 2
    # before the model loads, and before anything is created
    if (problem := listen_problem(args.host, args.port)) is not None:
        print(f"megalodoc serve: {problem}", file=sys.stderr)
        return 2
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"megalodoc serve: {exc}", file=sys.stderr)
        return 2
    # Gradio keeps its own copy of every upload: inside the data folder too, not in /tmp.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(data_dir / "gradio-cache"))
    # Several requests and an ingest share the cores: OpenMP threads that spin while waiting made a
    # state restore 5-40 times slower with 2 threads under load (bench/snapshots.py); passive waiting
    # does not. It must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    if getattr(args, "log_level", None) is None and not getattr(args, "verbose", 0):
        logging.getLogger("megalodoc").setLevel(logging.INFO)  # a server logs its work by default
    if args.threads is not None:
        if args.threads < 1:
            print(f"megalodoc serve: --threads {args.threads} must be at least 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)  # once, at start-up: the library never changes it
    from megalodoc.app.reader import ReaderService
    from megalodoc.app.ui.build import build_ui, launch
    from megalodoc.app.ui.context import DEFAULT_MAX_UPLOAD_MB
    from megalodoc.ingest.pipeline import IngestError
    from megalodoc.model import CheckpointError
    from megalodoc.storage import StorageError

    try:
        service = ReaderService(args.db, args.model)
    except (IngestError, CheckpointError, StorageError, ValueError) as exc:
        print(f"megalodoc serve: {exc}", file=sys.stderr)
        return 2
    _stop_on_sigterm()
    demo = None
    try:
        demo = build_ui(service, data_dir, args.max_upload_mb or DEFAULT_MAX_UPLOAD_MB)
        # Gradio refuses every upload of an event when one file's name starts with a dot and its cache copy
        # lies under the working folder (meant for an app's own .env files), with a bare "Error" on the
        # page. The upload cache is inside the data folder, often under the folder serve starts in; the
        # exports folder, which holds only what the app writes to be downloaded, is the working folder
        # instead. Everything opened later has an absolute path by now (the store, the data folder).
        exports = data_dir / "exports"
        exports.mkdir(exist_ok=True)
        os.chdir(exports)
        print(f"megalodoc serve: library {service.store.url}, uploads in {data_dir}", file=sys.stderr)
        launch(demo, host=args.host, port=args.port, auth=auth, prevent_thread_lock=True)
        _wait_for_stop()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        print(f"megalodoc serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before Gradio's own wait took it: the same requested stop
        pass
    finally:
        try:
            if demo is not None:  # readings cancelled and requests in flight finished before the store closes
                demo.megalodoc_context.shut_down()
        finally:  # also after a second Ctrl-C or SIGTERM during that wait
            try:
                if demo is not None:
                    demo.close()  # the web server last: it waits up to 5 s for open pages' connections
                    log.info("web server closed")
            finally:
                service.close()
    return 0


def _wait_for_stop() -> None:
    """Serve until Ctrl-C or SIGTERM (a KeyboardInterrupt here). The stop is handled by the caller at once:
    readings are cancelled before the web server closes, which waits for open pages for a few seconds
    (Gradio's own wait closed the web server first, so readings went on for those seconds)."""
    while True:
        time.sleep(3600)
