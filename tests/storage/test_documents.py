"""Documents: registration, lookup, status, and the ingest workers' claims and leases."""

from __future__ import annotations

import threading
import time

import pytest
from storage_testkit import MODEL, TOKENIZER, new_document

from megalodoc.storage import (
    ClaimLostError,
    DocumentExistsError,
    DocumentStatus,
    NotFoundError,
    Store,
    open_store,
)


def test_create_get_find_list(store: Store) -> None:
    first = store.create_document("hash-a", "A Book.pdf", "pdf", "/books/a.pdf", TOKENIZER, MODEL, token_count=5000)
    second = store.create_document("hash-b", "repo", "repo", "/src/repo", TOKENIZER, MODEL)
    assert (first.status, first.committed_position, first.token_count) == ("ingesting", 0, 5000)
    assert first.created_at.tzinfo is not None
    assert store.get_document(first.id) == first
    assert store.find_document("hash-b", MODEL) == second
    assert store.find_document("hash-b", "another-model") is None
    assert [d.id for d in store.list_documents()] == [first.id, second.id]
    assert store.get_document_or_none(second.id + 100) is None
    with pytest.raises(NotFoundError, match=str(second.id + 100)):
        store.get_document(second.id + 100)


def test_same_content_and_model_is_one_document(store: Store) -> None:
    first = store.create_document("same", "a.txt", "text", None, TOKENIZER, MODEL)
    with pytest.raises(DocumentExistsError) as caught:
        store.create_document("same", "copy of a.txt", "text", None, TOKENIZER, MODEL)
    assert caught.value.existing_id == first.id
    again, created = store.get_or_create_document("same", "a.txt", "text", None, TOKENIZER, MODEL)
    assert (again.id, created) == (first.id, False)
    other_model, created = store.get_or_create_document("same", "a.txt", "text", None, TOKENIZER, "model-2")
    assert created and other_model.id != first.id


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "docx"}, "unknown document kind 'docx'"),
        ({"content_hash": ""}, "content_hash"),
        ({"name": "  "}, "name"),
        ({"token_count": -1}, "token_count"),
    ],
)
def test_bad_document_values_are_named(store: Store, overrides: dict, message: str) -> None:
    values = dict(
        content_hash="h",
        name="n",
        kind="pdf",
        source_path=None,
        tokenizer_fingerprint=TOKENIZER,
        model_fingerprint=MODEL,
    )
    values.update(overrides)
    with pytest.raises(ValueError, match=message):
        store.create_document(**values)
    assert store.list_documents() == []


def test_status_changes(store: Store) -> None:
    document = new_document(store)
    failed = store.set_status(document.id, "failed", error="pypdf: file is encrypted")
    assert (failed.status, failed.error) == ("failed", "pypdf: file is encrypted")
    resumed = store.set_status(document.id, "ingesting")
    assert resumed.error is None
    done = store.set_status(document.id, "complete", token_count=777)
    assert (done.status, done.token_count) == ("complete", 777)
    assert [d.id for d in store.list_documents(status="complete")] == [document.id]
    assert store.rename_document(document.id, "Renamed").name == "Renamed"
    with pytest.raises(ValueError, match="unknown document status 'done'"):
        store.set_status(document.id, "done")
    with pytest.raises(NotFoundError):
        store.set_status(document.id + 1, "failed")


def test_status_is_the_enum_and_stored_as_its_plain_word(store: Store, db_url: str) -> None:
    """Records carry `DocumentStatus`; the column keeps the schema's words, so another store (or an older
    megalodoc) reading the same database sees exactly the strings it always saw."""
    document = new_document(store)
    cancelled = store.set_status(document.id, DocumentStatus.CANCELLED)
    assert cancelled.status is DocumentStatus.CANCELLED
    with store.engine.connect() as connection:  # the raw column, under the ORM
        raw = connection.exec_driver_sql(f"SELECT status FROM documents WHERE id = {document.id}").scalar_one()
    assert (type(raw), raw) == (str, "cancelled")
    assert store.list_documents(status=DocumentStatus.CANCELLED)[0].status is DocumentStatus.CANCELLED


def test_claim_is_exclusive_until_release_or_expiry(store: Store) -> None:
    document = new_document(store)
    assert store.claim_document(document.id, "worker-a", 60)
    assert store.claim_document(document.id, "worker-a", 60)  # re-claiming your own claim renews it
    assert not store.claim_document(document.id, "worker-b", 60)
    assert store.get_document(document.id).claimed_by == "worker-a"
    assert not store.release_document(document.id, "worker-b")
    assert store.release_document(document.id, "worker-a")
    assert store.claim_document(document.id, "worker-b", 60)


def test_expired_lease_can_be_taken_over_and_the_old_holder_learns_it(store: Store) -> None:
    document = new_document(store)
    assert store.claim_document(document.id, "slow", 0.2)
    assert store.heartbeat(document.id, "slow", 0.2)
    assert not store.claim_document(document.id, "fast", 30)
    time.sleep(0.35)
    assert store.claim_document(document.id, "fast", 30)
    assert not store.heartbeat(document.id, "slow", 30)
    assert store.heartbeat(document.id, "fast", 30)


def test_cancelling_stops_the_worker_and_finished_documents_cannot_be_claimed(store: Store) -> None:
    document = new_document(store)
    assert store.claim_document(document.id, "w", 30)
    store.set_status(document.id, "cancelled")
    assert not store.heartbeat(document.id, "w", 30)
    assert store.get_document(document.id).claimed_by is None
    assert not store.claim_document(document.id, "w", 30)
    store.set_status(document.id, "complete")
    assert not store.claim_document(document.id, "w", 30)


def test_a_worker_writes_the_status_only_while_it_holds_the_claim(store: Store) -> None:
    """A worker whose lease expired and was taken over cannot fail, cancel or complete the document: the
    claim check and the write are one step, and a refused write changes nothing."""
    document = new_document(store)
    assert store.claim_document(document.id, "stalled", 0.2)
    time.sleep(0.35)
    assert store.claim_document(document.id, "successor", 30)
    for status in (DocumentStatus.FAILED, DocumentStatus.CANCELLED, DocumentStatus.COMPLETE):
        with pytest.raises(ClaimLostError, match=r"worker stalled no longer holds .* held by successor"):
            store.set_status(document.id, status, error="lost", token_count=5, worker_id="stalled")
    kept = store.get_document(document.id)
    assert (kept.status, kept.claimed_by, kept.error) == ("ingesting", "successor", None)
    assert kept.token_count == document.token_count
    done = store.set_status(document.id, DocumentStatus.COMPLETE, token_count=9, worker_id="successor")
    assert (done.status, done.claimed_by, done.token_count) == ("complete", None, 9)
    with pytest.raises(ClaimLostError, match="it is complete, held by nobody"):  # a finished document stays so
        store.set_status(document.id, DocumentStatus.FAILED, error="late", worker_id="stalled")
    assert store.get_document(document.id).status == "complete"
    with pytest.raises(NotFoundError):
        store.set_status(document.id + 1, DocumentStatus.FAILED, worker_id="successor")


def test_claim_next_hands_out_each_document_once(store: Store) -> None:
    ids = [new_document(store).id for _ in range(3)]
    store.set_status(ids[1], "complete")
    first = store.claim_next_document("w1", 30)
    second = store.claim_next_document("w2", 30)
    assert (first.id, second.id) == (ids[0], ids[2])
    assert second.claimed_by == "w2"
    assert store.claim_next_document("w3", 30) is None


@pytest.mark.parametrize("lease", [0, -1])
def test_lease_must_be_positive(store: Store, lease: float) -> None:
    document = new_document(store)
    with pytest.raises(ValueError, match="lease_seconds"):
        store.claim_document(document.id, "w", lease)


def test_racing_workers_never_share_a_document(db_url: str) -> None:
    """Six workers, each with its own engine and connection pool (as separate processes or machines
    would have), race for the same twelve documents: every document ends with exactly one holder."""
    with open_store(db_url) as setup:
        ids = [new_document(setup).id for _ in range(12)]
    won: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(name: str) -> None:
        try:
            with open_store(db_url) as store:
                barrier.wait()
                won[name] = [i for i in ids if store.claim_document(i, name, 60)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    claimed = sorted(i for wins in won.values() for i in wins)
    assert claimed == ids
    with open_store(db_url) as store:
        for name, wins in won.items():
            assert all(store.get_document(i).claimed_by == name for i in wins)
