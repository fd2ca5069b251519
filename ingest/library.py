"""The Python API for batch ingest and for reading stored states back.

    import megalodoc
    lib = megalodoc.Library("sqlite:///library.db", model="path-or-default")
    doc = lib.ingest("book.pdf", on_progress=print)        # the document record
    outcomes = lib.ingest_many(["a.pdf", "repo/", "b.txt"])
    lib.documents(); lib.snapshots(doc); lib.state_at(doc, 5000)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from megalodoc.ingest.pipeline import (
    CancelToken,
    IngestError,
    IngestOutcome,
    IngestSettings,
    ProgressCallback,
    Reader,
    ingest_path,
)
from megalodoc.ingest.state_bytes import state_from_bytes
from megalodoc.model import Megalodon, ModelState, load_model, model_fingerprint
from megalodoc.model.boundary import run_aligned
from megalodoc.model.tokenizer import Tokenizer
from megalodoc.storage import DocumentRecord, SnapshotInfo, Store, open_store


def load_reader(model: str | os.PathLike | Megalodon | None = None) -> Reader:
    """The model (a folder, a Hub id, an instance, or None for the default) with the tokenizer shipped in
    its folder, and its fingerprint."""
    instance = model if isinstance(model, Megalodon) else load_model(model)
    if instance.tokenizer_path is None:
        where = instance.source_dir or "this model instance"
        raise IngestError(f"{where}: the model has no tokenizer.model; ingest needs the model's own tokenizer")
    tokenizer = Tokenizer.from_file(instance.tokenizer_path)
    if tokenizer.vocab_size > instance.config.vocab_size:
        raise IngestError(f"{instance.tokenizer_path}: tokenizer has {tokenizer.vocab_size} pieces but the model "
                          f"only {instance.config.vocab_size} embeddings")
    return Reader(instance.eval(), tokenizer, model_fingerprint(instance, instance.tokenizer_path))


class Library:
    """A store of documents read by one model."""

    def __init__(self, db: str | os.PathLike | None = None, model: str | os.PathLike | Megalodon | None = None,
                 *, snapshot_every: int = 1, threads: int | None = None) -> None:
        """threads: torch intra-op threads for the model (None keeps torch's default); on a machine busy
        with other work, fewer threads than cores is often faster."""
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads={threads} must be >= 1")
            torch.set_num_threads(threads)
        self.store: Store = open_store(None if db is None else str(db))
        self.reader = load_reader(model)
        self.snapshot_every = snapshot_every

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _settings(self) -> IngestSettings:
        return IngestSettings(snapshot_every=self.snapshot_every)

    def ingest(self, path: str | os.PathLike, on_progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> DocumentRecord:
        """Read one document (or resume it); returns its record. Raises IngestError naming the file when it
        cannot be read; a cancelled ingest returns the record with status "cancelled"."""
        outcome = ingest_path(self.store, self.reader, path, self._settings(), on_progress=on_progress, cancel=cancel)
        if outcome.status in ("failed", "busy"):
            raise IngestError(outcome.message or f"{path}: {outcome.status}")
        return outcome.document

    def ingest_many(self, paths: Iterable[str | os.PathLike], on_progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> list[IngestOutcome]:
        """Read many documents; a bad one does not stop the others. One outcome per path, in order."""
        outcomes = []
        for path in paths:
            if cancel is not None and cancel.cancelled:
                outcomes.append(IngestOutcome(str(path), "cancelled", None, "not started: cancelled"))
                continue
            outcomes.append(ingest_path(self.store, self.reader, path, self._settings(),
                                        on_progress=on_progress, cancel=cancel))
        return outcomes

    def documents(self) -> list[DocumentRecord]:
        return self.store.list_documents()

    def snapshots(self, document: DocumentRecord | int) -> list[SnapshotInfo]:
        return self.store.list_snapshots(_doc_id(document))

    def state_at(self, document: DocumentRecord | int, position: int) -> ModelState:
        """The model state after `position` tokens of a document: the latest snapshot at or before it
        (a chunk-boundary state), then the stored tokens from there re-read in aligned chunks, so the
        result equals an uninterrupted chunked run bit for bit on CPU. Never modifies the stored snapshot."""
        doc = self.store.get_document(_doc_id(document))
        if not 0 <= position <= doc.committed_position:
            raise ValueError(f"{doc.name}: position {position} is outside the read part [0, {doc.committed_position}]")
        info = self.store.latest_snapshot_at(doc.id, position)
        state = None
        if info is not None:
            what = f"snapshot {info.id} of {doc.name} at token {info.position}"
            state = state_from_bytes(self.store.load_snapshot_bytes(info.id), self.reader.model,
                                     self.reader.model_fingerprint, what)
        start = 0 if state is None else state.position  # the snapshot's boundary, before its tail ids
        tail = self.store.token_ids(doc.id, start, position) if position > start else []
        return run_aligned(self.reader.model, state, tail)


def _doc_id(document: DocumentRecord | int) -> int:
    return document if isinstance(document, int) else document.id
