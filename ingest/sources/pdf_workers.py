"""PDF page extraction in worker processes, running ahead of the consumer through a bounded window.

A ``concurrent.futures.ProcessPoolExecutor`` in the spawn context (fresh interpreters: safe beside
torch, CUDA and threads, unlike fork) whose initializer opens the PDF once per worker, checking that
its bytes still have the expected hash. The page range is cut into tasks of a few pages; at most
``tasks_ahead`` tasks are submitted and not yet handed out, so memory stays bounded whatever the size
of the book while the workers always have the next pages queued, and the consumer (the model) reads
pages in order as they come. A worker's error comes back as the SourceError it raised (naming the
file, and the pages where known); a worker that dies breaks the pool, which is reported as an
ExtractionError naming the file, the pages being read and the workers' exit codes. ``close()`` (also
run when the owning generator is closed early, and on garbage collection) stops the workers at once.

As with every spawned process, a worker imports the caller's main module first: a script that reads
PDFs with workers keeps its work under ``if __name__ == "__main__":`` (the CLI and the app do). A
worker that reaches this module's pool while still importing such a script refuses before creating
anything (a half-built pool would leave its semaphores behind), with a message naming the file.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from pypdf import PdfReader

from .errors import ExtractionError, SourceError
from .pdf_extract import PageText, describe_error, extract_page, open_pdf

STOP_SECONDS = 5.0
"""How long close() waits for a stopped worker to exit before killing it."""

# The PDF each worker process opened (set by the pool's initializer), or why it could not open it.
_worker_reader: PdfReader | Exception | None = None
_worker_path: Path | None = None


def _open_in_worker(path: str, expected_sha256: str) -> None:
    """Pool initializer: open the PDF once for all the tasks this worker will run. An error is kept
    and raised by the first task, so that it reaches the consumer as it is."""
    global _worker_reader, _worker_path
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its workers
    _worker_path = Path(path)
    try:
        _worker_reader = open_pdf(_worker_path, expected_sha256)
    except SourceError as error:
        _worker_reader = error
    except Exception as error:  # noqa: BLE001 (any failure must reach the consumer, naming the file)
        _worker_reader = ExtractionError(_worker_path, f"worker could not open it ({describe_error(error)})")


def _extract_pages(start: int, stop: int) -> list[PageText]:
    """Task: pages ``start``..``stop`` (0-based, stop exclusive) of the worker's PDF."""
    if isinstance(_worker_reader, Exception):
        raise _worker_reader
    assert _worker_reader is not None and _worker_path is not None, "the pool initializer did not run"
    try:
        return [extract_page(_worker_reader, index) for index in range(start, stop)]
    except SourceError:
        raise
    except Exception as error:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        raise ExtractionError(_worker_path, f"pages {start + 1}-{stop}: {detail}") from error


def _refuse_while_importing_main(path: Path) -> None:
    """Raise if this process is a spawned child still importing its parent's main module: a script
    without a main guard then tries to start a pool inside each of its own workers. multiprocessing
    itself refuses only once the pool has made its queues, whose semaphores then leak; this is the flag
    its own check reads (``multiprocessing.spawn._check_not_importing_main``)."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ExtractionError(path, "PDF extraction workers cannot be started while a worker is still importing "
                                    "the main module: run the script's code under "
                                    "`if __name__ == \"__main__\":`")


class PageStream:
    """Iterator over the cleaned pages ``pages`` (0-based indexes) of a PDF, extracted by workers."""

    def __init__(self, path: Path, expected_sha256: str, pages: range, *, workers: int,
                 pages_per_task: int, tasks_ahead: int | None) -> None:
        if workers < 1:
            raise ValueError(f"PageStream needs at least one worker, got {workers}")
        _refuse_while_importing_main(path)
        self.path = path
        self._tasks = deque((first, min(first + pages_per_task, pages.stop))
                            for first in range(pages.start, pages.stop, pages_per_task))
        self.tasks_ahead = tasks_ahead if tasks_ahead is not None else 2 * workers + 1
        self._pending: deque[tuple[int, int, Future[list[PageText]]]] = deque()
        self._buffer: deque[PageText] = deque()
        self._closed = False
        self._delivered = False  # whether any task's pages came back
        self._pool = ProcessPoolExecutor(max(1, min(workers, len(self._tasks))),
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_open_in_worker, initargs=(str(path), expected_sha256))
        self._processes: list[BaseProcess] = []
        try:
            self._fill()
            # ProcessPoolExecutor has no public handle on its processes (before Python 3.14's
            # terminate_workers); they are all started by the first submit in the spawn context.
            self._processes = list(self._pool._processes.values())  # type: ignore[union-attr]
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (for monitoring and tests)."""
        return [process.pid for process in self._processes if process.pid is not None]

    @property
    def in_flight(self) -> int:
        """Tasks submitted whose pages have not been handed out yet (at most ``tasks_ahead``)."""
        return len(self._pending)

    def __iter__(self) -> PageStream:
        return self

    def __next__(self) -> PageText:
        if self._buffer:
            return self._buffer.popleft()
        if self._closed or not self._pending:
            self.close()
            raise StopIteration
        start, stop, future = self._pending.popleft()
        try:
            pages = future.result()
            self._fill()
        except BrokenProcessPool as error:
            self.close()
            raise ExtractionError(self.path, f"a PDF extraction worker died while pages {start + 1}-{stop} "
                                             f"were being read ({self._exit_report()})") from error
        except BaseException:
            self.close()
            raise
        self._delivered = True
        self._buffer.extend(pages)
        return self._buffer.popleft()

    def _fill(self) -> None:
        while self._tasks and len(self._pending) < self.tasks_ahead:
            start, stop = self._tasks.popleft()
            self._pending.append((start, stop, self._pool.submit(_extract_pages, start, stop)))

    def _exit_report(self) -> str:
        codes = [process.exitcode for process in self._processes]  # all reaped by close()
        report = f"worker exit codes: {', '.join(map(str, codes))}"
        # Python failed in a worker (not a signal), or the pool broke before any task came back: by the time
        # the pool is seen broken it may already have terminated the failed worker's siblings, so exit codes
        # alone do not always show which it was.
        if not self._delivered or any(code is not None and code > 0 for code in codes):
            report += ("; its traceback is on stderr. A script that reads PDFs with workers must run its code "
                       "under `if __name__ == \"__main__\":` (each worker imports the main module first)")
        return report

    def close(self) -> None:
        """Stop the workers now (pending tasks are dropped). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if not self._pending and not self._tasks:  # every page handed out: the workers exit on their own
            self._pool.shutdown(wait=True)
            return
        # Only the pool's manager thread waits for (reaps) the workers, and shutdown(wait=True) joins it, so
        # every exit code is stored once this returns. A second waiter here would race it: the loser's
        # waitpid fails and multiprocessing reads the exit code as None. So the workers are watched through
        # their sentinels, which reap nothing.
        for process in self._processes:
            process.terminate()
        running = {process.sentinel: process for process in self._processes}
        deadline = time.monotonic() + STOP_SECONDS
        while running and (left := deadline - time.monotonic()) > 0:
            for sentinel in wait(list(running), left):
                del running[sentinel]
        for process in running.values():
            process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown: nothing useful left to do)
            pass

    def __enter__(self) -> PageStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
