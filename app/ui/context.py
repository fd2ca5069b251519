"""What every handler of one running app shares: the reader service, the background ingest jobs, the
server's data folder and its upload limit. Built once by `build_ui` (or by a test)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megalodoc.app.ui.jobs import IngestJobs
from megalodoc.app.ui.uploads import remove_upload
from megalodoc.ingest.sources.names import shown_name
from megalodoc.storage import DocumentRecord, DocumentStatus

DEFAULT_MAX_UPLOAD_MB = 200  # a 600-page PDF is 5-30 MB; an archive of a large repository fits too


@dataclass
class AppContext:
    """service: the reader service (ingest, documents, ask, sessions...); jobs: its ingest jobs;
    data_dir: where uploads are copied; max_upload_bytes: the per-file upload limit; ingest_costs: the
    model's measured (tokens per second, stored state bytes, chunk size) for ingest estimates, measured
    on the first upload and kept for the server's life (see `library_handlers.upload_estimate`)."""

    service: Any
    jobs: IngestJobs
    data_dir: Path
    max_upload_bytes: int
    ingest_costs: tuple[float, int, int] | None = None
    costs_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def create(cls, service: Any, data_dir: str | Path, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> AppContext:
        if not 0 < max_upload_mb < float("inf"):  # also refuses NaN
            raise ValueError(f"max_upload_mb={max_upload_mb} must be > 0 and finite")
        folder = Path(data_dir).resolve()
        (folder / "uploads").mkdir(parents=True, exist_ok=True)
        return cls(service, IngestJobs(_dropping_duplicate_uploads(service.ingest, folder)), folder,
                   int(max_upload_mb * 2**20))


def _dropping_duplicate_uploads(ingest: Callable[..., DocumentRecord], data_dir: Path) -> Callable[..., DocumentRecord]:
    """`ingest`, after which an upload copy is removed when its document is complete and was read from
    another path (the same content uploaded before under another name): nothing reads that copy again,
    and it was kept on disk for nothing."""

    def run(path: Path, **options: Any) -> DocumentRecord:
        record = ingest(path, **options)
        if record.status == DocumentStatus.COMPLETE and record.source_path != shown_name(Path(path).resolve()):
            remove_upload(path, data_dir)
        return record

    return run
