"""The Python API for batch ingest and for reading stored states back.

    import megalodoc
    lib = megalodoc.Library("sqlite:///library.db", model="path-or-default")   # or model=a ModelBundle
    doc = lib.ingest("book.pdf", on_progress=print)        # the document record
    outcomes = lib.ingest_many(["a.pdf", "repo/", "b.txt"])
    lib.documents(); lib.snapshots(doc); lib.state_at(doc, 5000)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from megalodoc.ingest.pipeline import (
    CancelToken,
    DocumentBusyError,
    IngestError,
    IngestOutcome,
    IngestSettings,
    ProgressCallback,
    ingest_path,
)
from megalodoc.ingest.snapshot_spacing import DEFAULT_SNAPSHOT_EVERY
from megalodoc.ingest.sources import IngestCaps, SourceOptions
from megalodoc.model import (
    IncompatibleStateError,
    Megalodon,
    ModelBundle,
    ModelState,
    load_bundle,
    state_from_bytes,
)
from megalodoc.model.boundary import run_aligned
from megalodoc.storage import DocumentRecord, IngestStatus, SnapshotInfo, Store, open_store


class Library:
    """A store of documents read by one model."""

    def __init__(self, db: str | os.PathLike | None = None,
                 model: ModelBundle | str | os.PathLike | Megalodon | None = None,
                 *, snapshot_every: int = DEFAULT_SNAPSHOT_EVERY, caps: IngestCaps | None = None) -> None:
        """model: a loaded ModelBundle (shared, e.g. by a service), or what `load_bundle` takes (a folder,
        a Hub id, None for the shipped default). The model must come with its tokenizer. caps: limits on
        runaway inputs (default ``IngestCaps()``; ``IngestCaps.unlimited()`` for none).

        The library changes no process-wide setting: torch's intra-op thread count, for one, is set once
        at start-up by whoever owns the process (`megalodoc ingest --threads N` does)."""
        bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
        if bundle.tokenizer is None:
            raise IngestError(f"{bundle.source}: the model has no tokenizer.model; ingest needs the model's own "
                              "tokenizer")
        self.bundle = bundle
        self.store: Store = open_store(None if db is None else str(db))
        self.snapshot_every = snapshot_every
        self.source_options = SourceOptions(caps=caps or IngestCaps())

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _settings(self) -> IngestSettings:
        return IngestSettings(snapshot_every=self.snapshot_every, source_options=self.source_options)

    def ingest(self, path: str | os.PathLike, on_progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> DocumentRecord:
        """Read one document (or resume it); returns its record. Raises IngestError naming the file when it
        cannot be read (DocumentBusyError, a subclass, when another worker is reading it now or took it
        over from this one); a cancelled ingest returns the record with status "cancelled"."""
        outcome = ingest_path(self.store, self.bundle, path, self._settings(), on_progress=on_progress, cancel=cancel)
        if outcome.status == IngestStatus.BUSY:
            raise DocumentBusyError(outcome.message or f"{path}: {outcome.status}")
        if outcome.status == IngestStatus.FAILED:
            raise IngestError(outcome.message or f"{path}: {outcome.status}") from outcome.cause
        return outcome.document

    def ingest_many(self, paths: Iterable[str | os.PathLike], on_progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> list[IngestOutcome]:
        """Read many documents; a bad one does not stop the others. One outcome per path, in order."""
        outcomes = []
        for path in paths:
            if cancel is not None and cancel.cancelled:
                outcomes.append(IngestOutcome(str(path), IngestStatus.CANCELLED, None, "not started: cancelled"))
                continue
            outcomes.append(ingest_path(self.store, self.bundle, path, self._settings(),
                                        on_progress=on_progress, cancel=cancel))
        return outcomes

    def documents(self) -> list[DocumentRecord]:
        return self.store.list_documents()

    def snapshots(self, document: DocumentRecord | int) -> list[SnapshotInfo]:
        return self.store.list_snapshots(_doc_id(document))

    def state_at(self, document: DocumentRecord | int, position: int) -> ModelState:
        """The model state after `position` tokens of a document: the latest snapshot at or before it
        (a call-boundary state), then the stored tokens from there re-read in calls on the same grid as
        ingest's, so the result equals an uninterrupted reading bit for bit. Never modifies the stored snapshot."""
        doc = self.store.get_document(_doc_id(document))
        if not 0 <= position <= doc.committed_position:
            raise ValueError(f"{doc.name}: position {position} is outside the read part [0, {doc.committed_position}]")
        return restore_state(self.store, self.bundle, doc, position)


def restore_state(store: Store, bundle: ModelBundle, document: DocumentRecord, position: int) -> ModelState:
    """The state after `position` tokens of a stored document: the latest snapshot at or before it (a
    call-boundary state), then the stored token ids from that boundary re-read in calls on the call grid.
    The stored snapshot is never modified. Raises IncompatibleStateError naming the snapshot, or the
    document when another model read it (its states would not fit, or, before the first snapshot, would
    be this model's reading of the text rather than the stored one)."""
    if document.model_fingerprint != bundle.fingerprint:
        raise IncompatibleStateError(
            f"{document.name} (id {document.id}) was read by another model (fingerprint "
            f"{document.model_fingerprint[:12]}), not the loaded one ({bundle.fingerprint[:12]})"
        )
    info = store.latest_snapshot_at(document.id, position)
    state = None
    if info is not None:
        what = f"snapshot {info.id} of {document.name} at token {info.position}"
        state = state_from_bytes(store.load_snapshot_bytes(info.id), bundle, what)
    start = 0 if state is None else state.position  # the snapshot's boundary, before its tail ids
    tail = store.token_ids(document.id, start, position) if position > start else []
    return run_aligned(bundle.model, state, tail)


def _doc_id(document: DocumentRecord | int) -> int:
    return document if isinstance(document, int) else document.id
