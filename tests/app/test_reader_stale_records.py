"""Records outlive what they name: a document, session or turn may be deleted, and another store has the
same ids. A record must never be taken for whatever holds its id now. (Before schema 0005 SQLite also
handed a deleted newest row's id to the next one: the records of another store stand in for that case.)"""

from __future__ import annotations

import pytest

from megalodoc.app.reader import DocumentNotFoundError, ReaderService, SessionNotFoundError

ASK = {"max_new_tokens": 3}


@pytest.fixture
def second_text(tmp_path):
    path = tmp_path / "other.txt"
    path.write_text("A second text about lighthouses and their keepers, long enough to read. " * 20)
    return path


def test_a_deleted_documents_record_is_refused(service, book, second_text):
    old = service.ingest(book)
    service.delete_document(old)
    new = service.ingest(second_text)
    assert new.id > old.id  # the deleted newest document's id is not handed out again
    with pytest.raises(DocumentNotFoundError, match="not in this store"):
        service.ask(old, "wrap", seed=1, sampling=ASK)
    with pytest.raises(DocumentNotFoundError, match="book.txt"):
        service.start_session(old)
    assert service.document(new).id == new.id


def test_a_deleted_sessions_point_is_refused(service, book):
    doc = service.ingest(book)
    old = service.start_session(doc, at=100, title="first")
    service.delete_session(old)
    new = service.start_session(doc, at=200, title="second")
    assert new.session_id > old.session_id
    for call in (lambda: service.ask(None, "wrap", session=old, seed=1, sampling=ASK),
                 lambda: service.continue_(None, session=old, seed=1, max_tokens=2),
                 lambda: service.resume(old), lambda: service.rename_session(old, "x"),
                 lambda: service.delete_session(old.session)):
        with pytest.raises(SessionNotFoundError, match=f"session .*{old.session_id}.* deleted"):
            call()
    assert service.turns(new) == [] and service.session(new).title == "second"


def test_a_deleted_turn_is_refused(service, book):
    doc = service.ingest(book)
    point = service.start_session(doc, at=100)
    old = service.ask(None, "wrap", session=point, seed=1, sampling=ASK)
    old.text  # noqa: B018 -- consumes the stream, which stores the turn
    service.delete_session(point)
    again = service.start_session(doc, at=100)
    new = service.ask(None, "indent", session=again, seed=2, sampling=ASK)
    new.text  # noqa: B018
    assert new.turn.id > old.turn.id
    with pytest.raises(SessionNotFoundError, match=f"turn .*{old.turn.id}.* deleted"):
        service.branch(old.turn)
    with pytest.raises(SessionNotFoundError):
        service.ask(None, "tabs", session=old.point, seed=3, sampling=ASK)
    assert [t.id for t in service.turns(again)] == [new.turn.id]


def test_records_of_another_store_are_refused(tmp_path, tiny_model_dir, book, second_text):
    with ReaderService(tmp_path / "a.db", tiny_model_dir) as a, ReaderService(tmp_path / "b.db", tiny_model_dir) as b:
        doc_a = a.ingest(book)
        doc_b = b.ingest(second_text)
        assert doc_a.id == doc_b.id
        point_a = a.start_session(doc_a)
        point_b = b.start_session(doc_b, title="b's")
        assert point_a.session_id == point_b.session_id
        with pytest.raises(DocumentNotFoundError, match="another store"):
            b.ask(doc_a, "wrap", seed=1, sampling=ASK)
        with pytest.raises(SessionNotFoundError, match="another store"):
            b.ask(None, "wrap", session=point_a, seed=1, sampling=ASK)
        assert b.turns(point_b) == []
        b.ingest(book)  # the same content in b, under another id, does not make a's record b's
        with pytest.raises(DocumentNotFoundError, match="another store"):
            b.document(doc_a)
