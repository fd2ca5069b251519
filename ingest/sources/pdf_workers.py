"""PDF page extraction in worker processes, running ahead of the consumer through a bounded window.

The page range is cut into tasks of a few pages. Each worker is a fresh Python process
(``python -c`` running ``pdf_worker.main`` with the parent's ``sys.path``): unlike multiprocessing's
spawn it never re-imports the caller's ``__main__``, and unlike fork it is safe beside torch, CUDA and
threads. A worker opens the PDF once (checking that its bytes still have the expected hash) and extracts
the tasks it is given; the parent hands pages out strictly in order and keeps at most ``tasks_ahead``
tasks submitted but not yet handed out, so memory stays bounded whatever the size of the book and the
workers always have the next tasks queued. A worker's error comes back as the SourceError it raised
(naming the file, and the page where known); a worker that dies is reported with its exit code and the
end of its stderr. ``close()`` (also run when the owning generator is closed early, and on garbage
collection) stops the workers at once.
"""

from __future__ import annotations

import json
import os
import pickle
import selectors
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ExtractionError
from .pdf_extract import PageText

POLL_SECONDS = 0.5
"""How long one wait for replies lasts before the workers' health is checked again."""

STOP_SECONDS = 5.0
"""How long close() waits for a worker to exit before killing it."""

_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    f"from {__package__}.pdf_worker import main; main()"
)


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    inbox: bytearray = field(default_factory=bytearray)
    outstanding: int = 0
    done: bool = False

    def stderr_tail(self, limit: int = 600) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - limit))
            return self.stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""


class PageStream:
    """Iterator over the cleaned pages ``pages`` (0-based indexes) of a PDF, extracted by workers."""

    def __init__(self, path: Path, expected_sha256: str, pages: range, *, workers: int,
                 pages_per_task: int, tasks_ahead: int | None) -> None:
        if workers < 1:
            raise ValueError(f"PageStream needs at least one worker, got {workers}")
        self.path = path
        self._tasks = [(task_id, first, min(first + pages_per_task, pages.stop))
                       for task_id, first in enumerate(range(pages.start, pages.stop, pages_per_task))]
        self.tasks_ahead = tasks_ahead if tasks_ahead is not None else 2 * workers + 1
        self._submitted = 0  # tasks sent to a worker
        self._next = 0  # the task whose pages are handed out next
        self._ready: dict[int, list[PageText]] = {}
        self._buffer: deque[PageText] = deque()
        self._closed = False
        self._workers: list[_Worker] = []
        self._selector = selectors.DefaultSelector()
        try:
            for _ in range(max(1, min(workers, len(self._tasks)))):
                self._start_worker(expected_sha256)
            self._fill()
        except BaseException:
            self.close()
            raise

    def _start_worker(self, expected_sha256: str) -> None:
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, json.dumps(sys.path)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
        worker = _Worker(process, stderr)
        self._workers.append(worker)
        assert process.stdout is not None
        self._selector.register(process.stdout, selectors.EVENT_READ, worker)
        self._send(worker, (str(self.path), expected_sha256))

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (for monitoring and tests)."""
        return [worker.process.pid for worker in self._workers]

    @property
    def in_flight(self) -> int:
        """Tasks submitted whose pages have not been handed out yet (at most ``tasks_ahead``)."""
        return self._submitted - self._next

    def __iter__(self) -> PageStream:
        return self

    def __next__(self) -> PageText:
        if self._buffer:
            return self._buffer.popleft()
        if self._closed or self._next >= len(self._tasks):
            self.close()
            raise StopIteration
        try:
            while self._next not in self._ready:
                self._receive()
        except BaseException:
            self.close()
            raise
        pages = self._ready.pop(self._next)
        self._next += 1
        self._fill()
        self._buffer.extend(pages)
        return self._buffer.popleft()

    def _fill(self) -> None:
        while self._submitted < len(self._tasks) and self._submitted - self._next < self.tasks_ahead:
            worker = min((w for w in self._workers if not w.done), key=lambda w: w.outstanding, default=None)
            if worker is None:
                raise ExtractionError(self.path, "every PDF extraction worker has exited")
            self._send(worker, self._tasks[self._submitted])
            worker.outstanding += 1
            self._submitted += 1

    def _send(self, worker: _Worker, message: Any) -> None:
        assert worker.process.stdin is not None
        try:
            worker.process.stdin.write(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):
            self._died(worker)

    def _receive(self) -> None:
        events = self._selector.select(timeout=POLL_SECONDS)
        for key, _ in events:
            worker: _Worker = key.data
            data = os.read(key.fd, 1 << 16)
            if not data:
                self._selector.unregister(key.fileobj)
                self._died(worker)
            worker.inbox.extend(data)
            self._unpack(worker)
        if events:
            return
        for worker in self._workers:  # nothing arrived: is everyone still alive?
            if not worker.done and worker.process.poll() is not None:
                self._died(worker)

    def _unpack(self, worker: _Worker) -> None:
        inbox = worker.inbox
        while len(inbox) >= 8:
            size = int.from_bytes(inbox[:8], "little")
            if len(inbox) < 8 + size:
                return
            kind, task_id, payload = pickle.loads(inbox[8:8 + size])
            del inbox[:8 + size]
            if kind == "error":
                raise payload
            self._ready[task_id] = payload
            worker.outstanding -= 1

    def _died(self, worker: _Worker) -> None:
        worker.done = True
        code = worker.process.wait()
        stdout = worker.process.stdout
        if stdout is not None and not stdout.closed:
            worker.inbox.extend(stdout.read() or b"")  # the process is gone: this reads to the end
            self._unpack(worker)  # raises the worker's own error when it sent one before exiting
        tail = worker.stderr_tail()
        detail = f"; its last output: {tail.splitlines()[-1]}" if tail else ""
        raise ExtractionError(self.path, f"a PDF extraction worker (pid {worker.process.pid}) exited "
                                         f"unexpectedly with code {code}{detail}")

    def close(self) -> None:
        """Stop the workers now (pending tasks are dropped). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        finished = self._next >= len(self._tasks)
        for worker in self._workers:
            if finished and worker.process.stdin is not None:
                try:
                    worker.process.stdin.close()  # end of input: the worker exits on its own
                except OSError:
                    pass
            elif worker.process.poll() is None:
                worker.process.kill()
        for worker in self._workers:
            try:
                worker.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            for stream in (worker.process.stdin, worker.process.stdout, worker.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._selector.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown: nothing useful left to do)
            pass

    def __enter__(self) -> PageStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
