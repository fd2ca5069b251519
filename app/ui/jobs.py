"""Background ingest jobs: one worker thread per upload job reads its files one after the other on the
shared model, while the rest of the app keeps serving. Each file has its own cancel token; progress is
kept here for any page (or test) to read.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from megalodoc.app.ui.errors import expected_errors
from megalodoc.ingest.pipeline import CancelToken, DocumentBusyError
from megalodoc.ingest.progress import IngestProgress
from megalodoc.storage import DocumentRecord, DocumentStatus, IngestStatus

log = logging.getLogger(__name__)

IngestFunction = Callable[..., DocumentRecord]  # (path, on_progress=..., cancel=...) -> record


@dataclass(frozen=True)
class FileTask:
    """One file of a job as the page shows it (`IngestStatus`: queued, reading, then complete,
    already-complete, cancelled or failed)."""

    path: Path
    name: str
    status: IngestStatus = IngestStatus.QUEUED
    progress: IngestProgress | None = None
    document_id: int | None = None
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.status.finished

    @property
    def percent(self) -> float | None:
        if self.status.ok:
            return 100.0
        p = self.progress
        if p is None or not p.tokens_total:
            return None
        return min(100.0, 100.0 * p.tokens_done / p.tokens_total)


@dataclass
class _Job:
    id: int
    tasks: list[FileTask]
    cancels: list[CancelToken]
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)
    options: dict[str, object] = field(default_factory=dict)


class IngestJobs:
    """The ingest jobs of one server. Thread-safe; `ingest` is the service's ingest function.
    `on_finished(task, record)`, when set, is called in the job's thread after each file that ingest
    returned a record for, once the file shows as done."""

    def __init__(self, ingest: IngestFunction) -> None:
        self._ingest = ingest
        self.on_finished: Callable[[FileTask, DocumentRecord], None] | None = None
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)

    def start(self, files: Sequence[tuple[Path, str]], **options: object) -> int:
        """Start a job reading (path, display name) files in a new thread; returns its id. `options` go to
        the ingest function with every file (e.g. surprise=True)."""
        with self._lock:
            job = _Job(next(self._ids), [FileTask(Path(p), name) for p, name in files],
                       [CancelToken() for _ in files], options=dict(options))
            self._jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"ingest-job-{job.id}", daemon=True)
        job.thread.start()
        return job.id

    def tasks(self, job_id: int) -> list[FileTask]:
        """The job's files as they stand now; KeyError for an unknown job."""
        with self._lock:
            return list(self._jobs[job_id].tasks)

    def finished(self, job_id: int) -> bool:
        return all(t.done for t in self.tasks(job_id))

    def wait(self, job_id: int, timeout: float | None = None) -> bool:
        """Block until the job's thread ends (True) or the timeout passes (False)."""
        with self._lock:
            thread = self._jobs[job_id].thread
        if thread is not None:
            thread.join(timeout)
        return self.finished(job_id)

    def running(self) -> list[FileTask]:
        """Every file queued or being read, in any job."""
        with self._lock:
            return [t for job in self._jobs.values() for t in job.tasks if not t.done]

    def live_progress(self, document_id: int) -> FileTask | None:
        """The file task now reading this document, if any."""
        return next((t for t in self.running() if t.document_id == document_id), None)

    def cancel_document(self, document_id: int) -> bool:
        """Ask the task reading this document to stop after the model call in progress (at most 4 chunks).
        False when none is."""
        with self._lock:
            for job in self._jobs.values():
                for task, token in zip(job.tasks, job.cancels, strict=True):
                    if task.document_id == document_id and not task.done:
                        token.cancel()
                        return True
        return False

    def cancel_job(self, job_id: int) -> None:
        """Cancel every file of a job that has not finished (queued ones never start)."""
        with self._lock:
            for token in self._jobs[job_id].cancels:
                token.cancel()

    def stop(self, timeout: float) -> bool:
        """Cancel every file not finished, in every job, and wait up to `timeout` seconds in all for the
        jobs' threads to end (each stops after its model call in progress, keeping its last snapshot).
        True when all ended."""
        with self._lock:
            jobs = list(self._jobs.values())
            for job in jobs:
                for token in job.cancels:
                    token.cancel()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(job.thread is not None and job.thread.is_alive() for job in jobs)

    # ---- the worker thread ----
    def _update(self, job: _Job, index: int, **changes: object) -> None:
        with self._lock:
            job.tasks[index] = replace(job.tasks[index], **changes)

    def _run(self, job: _Job) -> None:
        for index, (task, token) in enumerate(zip(list(job.tasks), job.cancels, strict=True)):
            if token.cancelled:
                self._update(job, index, status=IngestStatus.CANCELLED, message="cancelled before it started")
                continue
            self._update(job, index, status=IngestStatus.READING)

            def on_progress(progress: IngestProgress, index: int = index) -> None:
                self._update(job, index, progress=progress, document_id=progress.document_id)

            try:
                record = self._ingest(task.path, on_progress=on_progress, cancel=token, **job.options)
            except DocumentBusyError:  # the same file, uploaded beside this one or read by another worker
                self._update(job, index, status=IngestStatus.BUSY,
                             message=f"{task.name}: being read by another upload or worker now; it is listed "
                                     "when that reading ends")
                continue
            except Exception as exc:  # one bad file must not stop the job; the page shows the message
                if not isinstance(exc, expected_errors()):
                    log.exception("ingest of %s failed unexpectedly", task.path)
                message = str(exc).replace(str(task.path), task.name)
                self._update(job, index, status=IngestStatus.FAILED, message=message)
                continue
            seen = self.tasks(job.id)[index]
            if record.status == DocumentStatus.CANCELLED:
                status = IngestStatus.CANCELLED
                message = f"cancelled at token {record.committed_position:,}; resume it later"
            elif seen.progress is None and record.status == DocumentStatus.COMPLETE:
                status = IngestStatus.ALREADY_COMPLETE
                message = f"already in the library as {record.name} (id {record.id})"
            else:
                status, message = IngestStatus.COMPLETE, None
            self._update(job, index, status=status, message=message, document_id=record.id)
            if self.on_finished is not None:
                try:
                    self.on_finished(self.tasks(job.id)[index], record)
                except Exception:  # housekeeping after a file: the job's other files are still read
                    log.exception("after reading %s", task.path)
