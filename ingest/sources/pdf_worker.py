"""Entry point of a PDF extraction worker process (started by ``pdf_workers.PageStream``).

Protocol over the standard streams, both binary: the parent writes pickled messages to stdin
(first ``(path, expected_sha256)``, then ``(task_id, first_page, stop_page)`` tasks, 0-based, stop
exclusive; end of input means stop); the worker writes length-prefixed (8 bytes, little-endian) pickled
replies to the stdout descriptor: ``("pages", task_id, [PageText, ...])`` or ``("error", task_id | None,
SourceError)``. Anything else printed goes to stderr.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ExtractionError, SourceError
from .pdf_extract import describe_error, extract_page, open_pdf


def frame(message: Any) -> bytes:
    """A reply as written on the wire: 8-byte little-endian length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(8, "little") + data


def main() -> None:
    """Serve extraction tasks until the parent closes our stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its workers
    replies: BinaryIO = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the protocol
    tasks = sys.stdin.buffer

    def send(message: Any) -> None:
        replies.write(frame(message))
        replies.flush()

    path_str, expected_sha256 = pickle.load(tasks)
    path = Path(path_str)
    try:
        reader = open_pdf(path, expected_sha256)
    except SourceError as error:
        send(("error", None, error))
        return
    except Exception as error:  # noqa: BLE001 (any failure must reach the consumer, naming the file)
        send(("error", None, ExtractionError(path, f"worker could not open it ({describe_error(error)})")))
        return
    while True:
        try:
            task_id, start, stop = pickle.load(tasks)
        except EOFError:
            return
        try:
            pages = [extract_page(reader, index) for index in range(start, stop)]
        except SourceError as error:
            send(("error", task_id, error))
            return
        except Exception as error:  # noqa: BLE001
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            send(("error", task_id, ExtractionError(path, f"pages {start + 1}-{stop}: {detail}")))
            return
        send(("pages", task_id, pages))


if __name__ == "__main__":
    main()
