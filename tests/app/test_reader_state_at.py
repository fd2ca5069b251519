"""state_at and snapshots through the reader service: documents by record, id or name, positions as
resolve_position takes them, and the reader's errors, including a document another model read."""

from __future__ import annotations

import pytest
import torch

from megalodoc.app.reader import DocumentNotFoundError, ForeignModelError, PositionError, ReaderService
from megalodoc.ingest.library import Library
from megalodoc.model import IncompatibleStateError, Megalodon, MegalodonConfig, save_model


def _same_state(a, b) -> bool:
    flat_a, flat_b = a.to_flat(), b.to_flat()
    return flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a)


def test_state_at_takes_names_and_positions_as_the_reader_does(service, book):
    doc = service.ingest(book)
    by_record = Library.state_at(service, doc, doc.committed_position // 2)
    assert _same_state(service.state_at("book.txt", "50%"), by_record)
    assert _same_state(service.state_at(str(doc.id), doc.committed_position // 2), by_record)
    assert [s.id for s in service.snapshots("book.txt")] == [s.id for s in Library.snapshots(service, doc)]
    with pytest.raises(PositionError, match=r"book.txt \(id \d+\)"):
        service.state_at(doc, doc.committed_position + 1)
    with pytest.raises(DocumentNotFoundError, match="id 999"):
        service.state_at(999, 5)
    with pytest.raises(DocumentNotFoundError, match="no document named"):
        service.snapshots("missing.txt")


def test_a_state_of_a_document_another_model_read_is_refused(tmp_path, service, tiny_model_dir, book):
    other_dir = tmp_path / "other-model"
    torch.manual_seed(1)
    save_model(Megalodon(MegalodonConfig(**service.bundle.model.config.to_dict())), other_dir,
               tokenizer=tiny_model_dir / "tokenizer.model")
    with ReaderService(tmp_path / "reader.db", other_dir) as other:
        theirs = other.ingest(book)
    first_snapshot = service.snapshots(theirs)[0].position
    for position in (first_snapshot // 2, first_snapshot + 1):  # before any snapshot, and from one
        with pytest.raises(ForeignModelError, match="book.txt .*another model"):
            service.state_at(theirs, position)
        with pytest.raises(IncompatibleStateError, match="book.txt .*another model"):
            Library.state_at(service, theirs, position)
