"""Documents: create, find, list, status, the ingest workers' claim/lease, and deletion."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Update, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from megalodoc.storage.clock import db_now
from megalodoc.storage.convert import document_record, require_int, require_text, storable_text
from megalodoc.storage.errors import (
    ClaimLostError,
    ConflictError,
    DocumentExistsError,
    DocumentInUseError,
    NotFoundError,
)
from megalodoc.storage.models import (
    ChunkLossRow,
    ChunkRow,
    Document,
    LocationRow,
    SessionRow,
    SnapshotRow,
    StateBlob,
    TurnRow,
    utcnow,
)
from megalodoc.storage.records import DOCUMENT_KINDS, DocumentRecord
from megalodoc.storage.row_ids import get_row, guard_ids
from megalodoc.storage.status import DocumentStatus
from megalodoc.storage.unit import UnitOfWork


def load_document(session: Session, document_id: int, lock: bool = False, key_share: bool = False) -> Document:
    """The document row, or NotFoundError. `lock` takes a row lock on PostgreSQL (SELECT ... FOR UPDATE);
    `key_share` keeps it from being deleted until the transaction ends (`get_row`)."""
    row = get_row(session, Document, document_id, lock=lock, key_share=key_share)
    if row is None:
        raise NotFoundError(f"no document with id {document_id}")
    return row


def _check_status(status: DocumentStatus | str) -> str:
    """The status as the plain string the column stores, or ValueError naming the known ones."""
    try:
        return DocumentStatus(status).value
    except ValueError:
        known = ", ".join(s.value for s in DocumentStatus)
        raise ValueError(f"unknown document status {status!r}; expected one of {known}") from None


def _check_lease(worker_id: str, lease_seconds: float) -> None:
    require_text("worker_id", worker_id)
    if not isinstance(lease_seconds, (int, float)) or not lease_seconds > 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")


def _updates_one(statement: Update, document_id: int) -> Callable[[Session], bool]:
    """Work running `statement`, an UPDATE of document `document_id`: whether it changed that row (an id
    no row can have changes none, without reaching the database)."""
    return guard_ids(lambda s: s.execute(statement).rowcount == 1, False, document_id)


class DocumentsMixin:
    _uow: UnitOfWork

    def create_document(
        self,
        content_hash: str,
        name: str,
        kind: str,
        source_path: str | None,
        tokenizer_fingerprint: str,
        model_fingerprint: str,
        token_count: int | None = None,
    ) -> DocumentRecord:
        """Register a document (status "ingesting", committed position 0). One document exists per
        (content_hash, model_fingerprint); a second one raises `DocumentExistsError` with `existing_id`."""
        require_text("content_hash", content_hash)
        require_text("name", name)
        require_text("tokenizer_fingerprint", tokenizer_fingerprint)
        require_text("model_fingerprint", model_fingerprint)
        if kind not in DOCUMENT_KINDS:
            raise ValueError(f"unknown document kind {kind!r}; expected one of {', '.join(DOCUMENT_KINDS)}")
        if token_count is not None:
            require_int("token_count", token_count)

        def work(session: Session) -> DocumentRecord:
            now = utcnow()
            row = Document(
                content_hash=content_hash,
                name=name,
                kind=kind,
                source_path=source_path,
                status=DocumentStatus.INGESTING.value,
                token_count=token_count,
                committed_position=0,
                tokenizer_fingerprint=tokenizer_fingerprint,
                model_fingerprint=model_fingerprint,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            return document_record(row)

        try:
            return self._uow.write(work)
        except ConflictError as exc:
            existing = self.find_document(content_hash, model_fingerprint)
            if existing is None:
                raise
            raise DocumentExistsError(
                f"document {existing.name!r} (id {existing.id}) already holds content {content_hash[:16]}... "
                f"for model {model_fingerprint[:16]}...",
                existing.id,
            ) from exc

    def get_or_create_document(
        self,
        content_hash: str,
        name: str,
        kind: str,
        source_path: str | None,
        tokenizer_fingerprint: str,
        model_fingerprint: str,
        token_count: int | None = None,
    ) -> tuple[DocumentRecord, bool]:
        """(document, created): the stored document for (content_hash, model_fingerprint), or a new one."""
        found = self.find_document(content_hash, model_fingerprint)
        if found is not None:
            return found, False
        try:
            created = self.create_document(
                content_hash, name, kind, source_path, tokenizer_fingerprint, model_fingerprint, token_count
            )
        except DocumentExistsError as exc:  # another process created it in between
            return self.get_document(exc.existing_id), False
        return created, True

    def get_document(self, document_id: int) -> DocumentRecord:
        """The document with this id; `NotFoundError` when there is none."""
        return self._uow.read(lambda s: document_record(load_document(s, document_id)))

    def get_document_or_none(self, document_id: int) -> DocumentRecord | None:
        """The document with this id, or None."""

        def work(session: Session) -> DocumentRecord | None:
            row = get_row(session, Document, document_id)
            return None if row is None else document_record(row)

        return self._uow.read(work)

    def find_document(self, content_hash: str, model_fingerprint: str) -> DocumentRecord | None:
        """The document with this content hash read by this model, or None."""

        def work(session: Session) -> DocumentRecord | None:
            row = session.scalars(
                select(Document).where(
                    Document.content_hash == content_hash, Document.model_fingerprint == model_fingerprint
                )
            ).first()
            return None if row is None else document_record(row)

        return self._uow.read(work)

    def list_documents(self, status: DocumentStatus | str | None = None) -> list[DocumentRecord]:
        """All documents (or those with `status`), oldest first."""
        query = select(Document).order_by(Document.id)
        if status is not None:
            query = query.where(Document.status == _check_status(status))
        return self._uow.read(lambda s: [document_record(row) for row in s.scalars(query)])

    def set_status(
        self,
        document_id: int,
        status: DocumentStatus | str,
        *,
        error: str | None = None,
        token_count: int | None = None,
        worker_id: str | None = None,
    ) -> DocumentRecord:
        """Set the status (ingesting, complete, failed, cancelled); `error` is kept for failed documents and
        cleared otherwise; `token_count`, when given, is stored too. Leaving "ingesting" ends any claim.

        With `worker_id` (an ingest worker writing the outcome of its reading), the change is one
        conditional UPDATE that only applies while that worker holds the claim of the "ingesting"
        document; otherwise nothing is written and `ClaimLostError` names the holder and the status."""
        status = _check_status(status)
        if token_count is not None:
            require_int("token_count", token_count)
        if worker_id is not None:
            require_text("worker_id", worker_id)

        def work(session: Session) -> DocumentRecord:
            values: dict[str, object] = {
                "status": status,
                "error": storable_text(error) if status == DocumentStatus.FAILED and error is not None else None,
                "updated_at": utcnow(),
            }
            if token_count is not None:
                values["token_count"] = token_count
            if status != DocumentStatus.INGESTING:
                values.update(claimed_by=None, lease_expires_at=None)
            conditions = [Document.id == document_id]
            if worker_id is not None:
                conditions += [Document.claimed_by == worker_id, Document.status == DocumentStatus.INGESTING.value]
            statement = update(Document).where(*conditions).values(values).execution_options(
                synchronize_session=False)
            if not _updates_one(statement, document_id)(session):
                row = load_document(session, document_id)  # NotFoundError when there is no such document
                raise ClaimLostError(
                    f"worker {worker_id} no longer holds document {document_id} (it is {row.status}, held by "
                    f"{row.claimed_by or 'nobody'}): status {status} not written"
                )
            return document_record(load_document(session, document_id))

        return self._uow.write(work)

    def set_token_count(self, document_id: int, token_count: int) -> DocumentRecord:
        """Record the document's total token count (known once tokenization finishes)."""
        require_int("token_count", token_count)

        def work(session: Session) -> DocumentRecord:
            row = load_document(session, document_id, lock=True)
            row.token_count = token_count
            row.updated_at = utcnow()
            session.flush()
            return document_record(row)

        return self._uow.write(work)

    def rename_document(self, document_id: int, name: str) -> DocumentRecord:
        """Change the display name."""
        require_text("name", name)

        def work(session: Session) -> DocumentRecord:
            row = load_document(session, document_id, lock=True)
            row.name = name
            row.updated_at = utcnow()
            session.flush()
            return document_record(row)

        return self._uow.write(work)

    # ------------------------------------------------------------ claims of ingest workers

    def claim_document(self, document_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Try to take the ingest claim on an "ingesting" document for `lease_seconds` (database clock).
        One conditional UPDATE: succeeds when nobody holds it, this worker already does, or the holder's
        lease expired; two workers can never both succeed. Returns whether this worker now holds it."""
        _check_lease(worker_id, lease_seconds)
        now = db_now()
        statement = (
            update(Document)
            .where(
                Document.id == document_id,
                Document.status == DocumentStatus.INGESTING.value,
                or_(
                    Document.claimed_by.is_(None),
                    Document.claimed_by == worker_id,
                    Document.lease_expires_at < now,
                ),
            )
            .values(claimed_by=worker_id, lease_expires_at=now + float(lease_seconds), updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return self._uow.write(_updates_one(statement, document_id))

    def claim_next_document(self, worker_id: str, lease_seconds: float) -> DocumentRecord | None:
        """Claim the oldest "ingesting" document that nobody holds (or whose lease expired); None if none."""
        _check_lease(worker_id, lease_seconds)
        query = (
            select(Document.id)
            .where(
                Document.status == DocumentStatus.INGESTING.value,
                or_(Document.claimed_by.is_(None), Document.lease_expires_at < db_now()),
            )
            .order_by(Document.id)
            .limit(20)
        )
        for _ in range(100):  # each round only fails when other workers won every candidate
            candidates = self._uow.read(lambda s: list(s.scalars(query)))
            if not candidates:
                return None
            for document_id in candidates:
                if self.claim_document(document_id, worker_id, lease_seconds):
                    return self.get_document(document_id)
        return None

    def heartbeat(self, document_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Extend this worker's lease. False when the claim was lost (taken over after expiry, released)
        or the document left "ingesting" (e.g. a user cancelled it): the worker should stop."""
        _check_lease(worker_id, lease_seconds)
        statement = (
            update(Document)
            .where(
                Document.id == document_id,
                Document.claimed_by == worker_id,
                Document.status == DocumentStatus.INGESTING.value,
            )
            .values(lease_expires_at=db_now() + float(lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return self._uow.write(_updates_one(statement, document_id))

    def release_document(self, document_id: int, worker_id: str) -> bool:
        """Give the claim back. False when this worker did not hold it."""
        require_text("worker_id", worker_id)
        statement = (
            update(Document)
            .where(Document.id == document_id, Document.claimed_by == worker_id)
            .values(claimed_by=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        return self._uow.write(_updates_one(statement, document_id))

    # ------------------------------------------------------------ deletion

    def delete_document(self, document_id: int, force: bool = False) -> None:
        """Delete the document with its snapshots, locations, chunk text and the blobs nothing else uses.
        Refused (`DocumentInUseError`) when sessions point at it or a worker holds a live claim, unless
        `force`, which then deletes those sessions and their turns too."""

        def work(session: Session) -> None:
            row = load_document(session, document_id, lock=True)
            sessions = session.scalar(
                select(func.count()).select_from(SessionRow).where(SessionRow.document_id == document_id)
            )
            if sessions and not force:
                raise DocumentInUseError(
                    f"document {row.name!r} (id {document_id}) has {sessions} session(s); delete them first "
                    "or pass force=True to delete them with it"
                )
            if not force and row.claimed_by is not None and row.status == DocumentStatus.INGESTING:
                live = session.scalar(select(Document.lease_expires_at > db_now()).where(Document.id == document_id))
                if live:
                    raise DocumentInUseError(
                        f"document {row.name!r} (id {document_id}) is being ingested by {row.claimed_by}; "
                        "cancel it first or pass force=True"
                    )
            session_ids = select(SessionRow.id).where(SessionRow.document_id == document_id)
            session.execute(delete(TurnRow).where(TurnRow.session_id.in_(session_ids)))
            session.execute(delete(SessionRow).where(SessionRow.document_id == document_id))
            session.execute(delete(SnapshotRow).where(SnapshotRow.document_id == document_id))
            session.execute(delete(ChunkRow).where(ChunkRow.document_id == document_id))
            session.execute(delete(LocationRow).where(LocationRow.document_id == document_id))
            session.execute(delete(ChunkLossRow).where(ChunkLossRow.document_id == document_id))
            session.execute(delete(Document).where(Document.id == document_id))

        self._uow.write(work)
        self.collect_garbage()

    def collect_garbage(self) -> int:
        """Delete state blobs that no snapshot references; returns how many. Safe to run at any time."""
        orphan = ~exists().where(SnapshotRow.blob_sha256 == StateBlob.sha256)
        statement = delete(StateBlob).where(orphan).execution_options(synchronize_session=False)
        try:
            return self._uow.write(lambda s: s.execute(statement).rowcount)
        except ConflictError:
            return 0  # a concurrent snapshot started using one of them: keep it, collect later
