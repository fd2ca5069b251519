"""What every handler of one running app shares: the reader service, the background ingest jobs, the
server's data folder and its upload limit. Built once by `build_ui` (or by a test)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megalodoc.app.ui.guard import HandlerGate
from megalodoc.app.ui.jobs import FileTask, IngestJobs
from megalodoc.app.ui.uploads import (
    StoredUpload,
    discard_received,
    place_upload,
    receive_uploads,
    remove_stale_incoming,
    remove_upload,
    store_failed,
)
from megalodoc.ingest.sources.names import shown_name
from megalodoc.storage import DocumentRecord, DocumentStatus

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 200  # a 600-page PDF is 5-30 MB; an archive of a large repository fits too


@dataclass
class AppContext:
    """service: the reader service (ingest, documents, ask, sessions...); jobs: its ingest jobs;
    data_dir: where uploads are copied; max_upload_bytes: the per-file upload limit; ingest_costs: the
    model's measured (tokens per second, stored state bytes, chunk size) for ingest estimates, measured
    on the first upload and kept for the server's life (see `library_handlers.upload_estimate`).

    Two uploads of the same content under the same name share one copy in the data folder. A copy is
    removed (its document deleted, or its content already read under another name) only while nothing
    else needs it: no document reads from it, no job is reading it or has it queued, and no upload has
    staged it for a job not started yet. `copies_lock` makes that check and the removal one step against
    staging and starting, which happen in other people's requests at the same time."""

    service: Any
    jobs: IngestJobs
    data_dir: Path
    max_upload_bytes: int
    ingest_costs: tuple[float, int, int] | None = None
    costs_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    copies_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    staged: Counter[Path] = field(default_factory=Counter, repr=False, compare=False)
    gate: HandlerGate = field(default_factory=HandlerGate, repr=False, compare=False)

    @classmethod
    def create(cls, service: Any, data_dir: str | Path, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> AppContext:
        if not 0 < max_upload_mb < float("inf"):  # also refuses NaN
            raise ValueError(f"max_upload_mb={max_upload_mb} must be > 0 and finite")
        folder = Path(data_dir).resolve()
        (folder / "uploads").mkdir(parents=True, exist_ok=True)
        remove_stale_incoming(folder)
        ctx = cls(service, IngestJobs(service.ingest), folder, int(max_upload_mb * 2**20))
        ctx.jobs.on_finished = ctx.drop_duplicate_copy
        return ctx

    def shut_down(self, timeout: float = 60.0) -> bool:
        """Before the process ends: cancel every reading (each stops after its model call in progress,
        keeping its last snapshot and releasing its document), refuse new handler work and wait, up to
        `timeout` seconds in all, for the work in flight. True when everything stopped in time."""
        deadline = time.monotonic() + timeout
        log.info("stopping: cancelling %d reading(s), waiting for %d request(s) in progress",
                 len(self.jobs.running()), self.gate.running)
        self.gate.close(0.0)  # from now on no handler starts new work (a reading included)
        self.jobs.stop(timeout)
        requests = self.gate.close(max(0.0, deadline - time.monotonic()))
        readings = self.jobs.stop(max(0.0, deadline - time.monotonic()))  # any a request in flight started
        if not (readings and requests):
            log.warning("stopping after %.0f s with work still running (readings stopped: %s, requests: %s)",
                        timeout, readings, requests)
        return readings and requests

    def stage(self, files: Sequence[str]) -> list[StoredUpload]:
        """Copy uploaded files into the data folder (size-capped) and hold their copies for a job that
        `start_reading` or `unstage` ends. The copying and hashing happen outside `copies_lock`, so other
        people's uploads and deletes do not wait for a large file; only the renames into place hold it."""
        received = receive_uploads(list(files), self.data_dir, self.max_upload_bytes)
        stored: list[StoredUpload] = []
        try:
            with self.copies_lock:
                for item in received:
                    stored.append(place_upload(item, self.data_dir))
                    self.staged[stored[-1].path] += 1
        except BaseException as exc:
            discard_received(received[len(stored):])
            self.unstage(stored)  # and the copies placed already go unless something else needs them
            for placed in stored:
                self.remove_copy_unless_used(placed.path)
            if isinstance(exc, OSError):  # placing received[len(stored)] is the server's own writing
                raise store_failed(received[len(stored)].name, exc) from exc
            raise
        return stored

    def unstage(self, stored: Sequence[StoredUpload]) -> None:
        """Release the hold `stage` put on these copies."""
        with self.copies_lock:
            self.staged.subtract(s.path for s in stored)
            self.staged = +self.staged  # drops the counts that reached zero

    def start_reading(self, stored: Sequence[StoredUpload], **options: object) -> int:
        """Start a job reading staged copies; the job holds them from now on. Returns the job id."""
        with self.copies_lock:
            job_id = self.jobs.start([(s.path, s.name) for s in stored], **options)
            self.staged.subtract(s.path for s in stored)
            self.staged = +self.staged
        return job_id

    def remove_copy_unless_used(self, source_path: str | Path | None) -> bool:
        """Remove an upload's copy from the data folder unless a document, a job or a staged upload still
        needs it. Returns whether it was removed."""
        if not source_path:
            return False
        target = Path(source_path).resolve()
        with self.copies_lock:
            queued = any(t.path.resolve() == target for t in self.jobs.running())
            documents = any(d.source_path and Path(d.source_path).resolve() == target
                            for d in self.service.documents())
            if queued or documents or any(p.resolve() == target for p in self.staged):
                return False
            return remove_upload(target, self.data_dir)

    def drop_duplicate_copy(self, task: FileTask, record: DocumentRecord) -> None:
        """After a file of a job: its copy is removed when its document is complete and was read from
        another path (the same content uploaded before under another name), unless something else needs
        it: nothing reads that copy again, and it was kept on disk for nothing."""
        if record.status == DocumentStatus.COMPLETE and record.source_path != shown_name(task.path.resolve()):
            self.remove_copy_unless_used(task.path)
