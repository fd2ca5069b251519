"""Progress of one document's ingest: what a progress bar, a log line or the UI needs."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class IngestProgress:
    """A snapshot of progress. tokens_total is an estimate until the source is fully read."""

    path: str
    name: str
    document_id: int
    tokens_done: int
    tokens_total: int | None
    tokens_per_second: float
    eta_seconds: float | None
    units_done: int
    unit_count: int | None
    unit_name: str
    snapshots_written: int
    finished: bool = False

    def line(self) -> str:
        """One human-readable line, e.g. for a terminal progress bar."""
        pct = f"{100 * self.tokens_done / self.tokens_total:5.1f}%" if self.tokens_total else "   ? %"
        eta = f"ETA {self.eta_seconds:4.0f}s" if self.eta_seconds is not None else "ETA    ?"
        units = f"{self.units_done}/{self.unit_count or '?'} {self.unit_name}s"
        return (f"{self.name}: {pct} {self.tokens_done:,} tokens, {self.tokens_per_second:,.0f} tok/s, {eta}, "
                f"{units}, {self.snapshots_written} snapshots")


class ProgressMeter:
    """Rate and ETA from the tokens processed in this run (resumed tokens count as done, not as speed)."""

    def __init__(self, path: str, name: str, document_id: int, unit_name: str, unit_count: int | None,
                 start_tokens: int) -> None:
        self.path, self.name, self.document_id = path, name, document_id
        self.unit_name, self.unit_count = unit_name, unit_count
        self.start_tokens = start_tokens
        self.started = time.perf_counter()

    def report(self, tokens_done: int, units_done: int, snapshots: int, *, tokens_total: int | None = None,
               finished: bool = False) -> IngestProgress:
        elapsed = max(1e-9, time.perf_counter() - self.started)
        rate = (tokens_done - self.start_tokens) / elapsed
        total = tokens_total
        if total is None and self.unit_count and units_done:
            total = max(tokens_done, round(tokens_done * self.unit_count / units_done))
        eta = (total - tokens_done) / rate if total is not None and rate > 0 else None
        return IngestProgress(self.path, self.name, self.document_id, tokens_done, total, rate,
                              0.0 if finished else eta, units_done, self.unit_count, self.unit_name, snapshots,
                              finished)
