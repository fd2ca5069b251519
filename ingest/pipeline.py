"""The streaming ingest of one document: read, tokenize, run the model call by call, snapshot.

The model reads the text in calls of CALL_CHUNKS chunks of C tokens that end at absolute call
boundaries (multiples of `call_span`, see `megalodoc.model.boundary`). After the call that brings the
chunks read since the last snapshot to `snapshot_every` or more, the model state is written together
with the chunk text, the locations and the document's committed position, in one transaction; the end
of the document gets a final snapshot. Stored states are call-boundary states only: the document's last
tokens after its last call boundary are not run through the model at all; the final snapshot holds the
state at that boundary plus those tokens' ids (fewer than CALL_CHUNKS * C), which a restore re-reads.
A document whose content hash is known and incomplete resumes from its last snapshot and ends
bit-identical to an uninterrupted run; a complete document is not read again. Ingest never computes
the LM head. Cancellation is cooperative and takes effect after the model call in progress.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from megalodoc.ingest.chunk_text import chunk_texts, stored_carry
from megalodoc.ingest.progress import IngestProgress, ProgressMeter
from megalodoc.ingest.snapshot_spacing import DEFAULT_SNAPSHOT_EVERY
from megalodoc.ingest.sources import Locator, Source, SourceError, SourceOptions, open_source, shown_name
from megalodoc.ingest.token_stream import TokenizedPiece, tokenize_source
from megalodoc.model import (
    STATE_SCHEMA_VERSION,
    CheckpointError,
    ModelBundle,
    ModelState,
    StateMismatchError,
    state_from_bytes,
    state_to_bytes,
)
from megalodoc.model.boundary import call_span
from megalodoc.model.state_codec import compute_label
from megalodoc.model.tokenizer import Tokenizer, TokenizerError
from megalodoc.storage import (
    ChunkText,
    ClaimLostError,
    DocumentRecord,
    DocumentStatus,
    IngestStatus,
    Location,
    StorageError,
    Store,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[IngestProgress], None]


class IngestError(RuntimeError):
    """An ingest that could not complete; the message names the file and the cause."""


class DocumentBusyError(IngestError):
    """Another worker (process, machine or upload) holds the document and is reading it now."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    SourceError,  # the file, page or archive member cannot be read
    StorageError,  # the store refused or failed a write, or a stored blob is damaged
    StateMismatchError,  # a stored state does not fit this model (IncompatibleStateError included)
    CheckpointError,  # the model folder is unusable (e.g. no tokenizer)
    TokenizerError,
    IngestError,  # the pipeline's own refusals: no text, a lost claim, other reader settings
)
"""What makes one input's outcome "failed"; every other exception propagates (see the module doc)."""


class CancelToken:
    """Set it from any thread, or from a signal handler, to stop an ingest after the model call in progress
    (at most CALL_CHUNKS chunks). A plain flag: storing it takes no lock, so a handler that runs while the
    same thread is inside cancel() (a second Ctrl-C) cannot deadlock, as threading.Event's lock could."""

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


def _read_boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12] or None
    except (OSError, ValueError):  # not Linux, or /proc not mounted
        return None


# Read once, when the module loads: a reading opens nothing outside the paths it is given.
_BOOT_ID = _read_boot_id()


def _pid_namespace() -> str | None:
    """Who can see this process's pids: the kernel's boot id and the inode of this process's PID
    namespace, or None when /proc does not say (not Linux, or /proc not mounted)."""
    if _BOOT_ID is None:
        return None
    try:
        return f"{_BOOT_ID}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _this_place() -> str | None:
    """host/namespace: where a pid of this process means this process; None when the namespace cannot
    be read."""
    namespace = _pid_namespace()
    return None if namespace is None else f"{socket.gethostname()}/{namespace}"


def default_worker_id() -> str:
    """host/namespace:pid:random, unique per ingest worker; the namespace part (see `_pid_namespace`) is
    left out (host:pid:random) when it cannot be read."""
    place = _this_place() or socket.gethostname()
    return f"{place}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# Worker ids of the readings running in this process now (a count: one id may read several documents).
_READING_HERE: Counter[str] = Counter()
_READING_HERE_LOCK = threading.Lock()


@contextmanager
def _reading_here(worker_id: str) -> Iterator[None]:
    """Count a reading of `worker_id` as running in this process while the block runs."""
    with _READING_HERE_LOCK:
        _READING_HERE[worker_id] += 1
    try:
        yield
    finally:
        with _READING_HERE_LOCK:
            _READING_HERE[worker_id] -= 1
            if not _READING_HERE[worker_id]:
                del _READING_HERE[worker_id]


def _release_if_holder_died(store: Store, document: DocumentRecord) -> bool:
    """A claim held by a process that no longer exists (killed, crashed) is released at once instead of
    waiting for its lease to expire, when the holder's pid means the same process here: same host name
    and same PID namespace of the same kernel. Any other claim is left to its lease: one from another host
    or container (its pid may not exist here while it runs), or one without a namespace part (written
    where /proc could not be read, or by an older release), whose pid cannot be placed. A claim of this
    very process whose reading is over (the store was unreachable when it ended, so the claim stayed) is
    released too: a long-running server would otherwise call its own document busy for a whole lease."""
    holder = document.claimed_by or ""
    place, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    here = _this_place()
    if here is None or place != here:
        return False
    if not pid_text.isdigit():
        return False
    if int(pid_text) == os.getpid():
        with _READING_HERE_LOCK:
            if holder in _READING_HERE:
                return False
        logger.info("document %d: releasing the claim a finished reading of this process left", document.id)
        return store.release_document(document.id, holder)
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return store.release_document(document.id, holder)
    except PermissionError:  # alive, owned by someone else
        return False
    return False


@dataclass(frozen=True)
class IngestSettings:
    """snapshot_every: chunks between snapshots, rounded up to whole model calls of CALL_CHUNKS chunks
    (the end of a document always gets one)."""

    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    lease_seconds: float = 120.0
    worker_id: str = field(default_factory=default_worker_id)
    source_options: SourceOptions | None = None

    def __post_init__(self) -> None:
        if self.snapshot_every < 1:
            raise ValueError(f"snapshot_every={self.snapshot_every} must be >= 1")


@dataclass
class StageTimes:
    """Seconds spent per stage in one run (extraction includes waiting for reader workers)."""

    extraction: float = 0.0
    tokenization: float = 0.0
    model: float = 0.0
    snapshots: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"extraction": self.extraction, "tokenization": self.tokenization, "model": self.model,
                "snapshots": self.snapshots}


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one path (`IngestStatus`: complete, already-complete, cancelled, failed or busy)."""

    path: str
    status: IngestStatus
    document: DocumentRecord | None
    message: str | None = None
    cause: BaseException | None = None  # the exception behind a "failed" outcome
    warnings: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    tokens_read: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    times: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status.ok


class _TimedTokenizer:
    """Counts the time spent encoding, so extraction and tokenization can be told apart."""

    def __init__(self, tokenizer: Tokenizer, times: StageTimes) -> None:
        self.tokenizer, self.times = tokenizer, times

    def encode(self, text: str) -> list[int]:
        start = time.perf_counter()
        ids = self.tokenizer.encode(text)
        self.times.tokenization += time.perf_counter() - start
        return ids


def _location(start: int, end: int, locator: Locator) -> Location:
    """The stored record of token range [start, end) of the piece that `locator` placed in its source."""
    if locator.kind == "page":
        return Location.page_range(start, end, locator.page)
    if locator.kind == "lines":
        return Location.file_lines(start, end, locator.path, locator.line_start, locator.line_end)
    return Location.text_span(start, end, locator.char_start, locator.char_end)


class _DocumentRun:
    """One run over one claimed document; holds the in-flight buffers between snapshots."""

    def __init__(self, store: Store, bundle: ModelBundle, document: DocumentRecord, settings: IngestSettings,
                 meter: ProgressMeter, on_progress: ProgressCallback | None, cancel: CancelToken | None,
                 times: StageTimes) -> None:
        self.store, self.bundle, self.document, self.settings = store, bundle, document, settings
        self.meter, self.on_progress, self.cancel, self.times = meter, on_progress, cancel, times
        self.state: ModelState | None = None
        self.position = 0  # tokens read by the model
        self.committed = 0  # position of the last snapshot
        self.pending_ids: list[int] = []  # tokens read since the last snapshot (chunk text)
        self.carry_ids: list[int] = []  # the last stored chunk's ids of a character it does not end
        self.pending_pieces: list[TokenizedPiece] = []  # pieces overlapping [committed, ...)
        self.tail_ids: list[int] = []  # the document's last tokens after the last call boundary (< call span)
        self.chunks_since_snapshot = 0
        self.snapshots = 0
        self.units_done = 0
        self.last_path: str | None = None
        self.last_heartbeat = time.monotonic()

    # ---- model ----
    def feed(self, ids: list[int]) -> None:
        start = time.perf_counter()
        # inference_mode, not no_grad: no version counters or view tracking per op (~10% of a chunk's time
        # on a CPU); the state never leaves this run except as stored bytes
        with torch.inference_mode():
            batch = torch.tensor([ids], dtype=torch.int64, device=self.bundle.model.embed.weight.device)
            _, self.state = self.bundle.model(batch, self.state, compute_logits=False)
        self.times.model += time.perf_counter() - start
        self.position += len(ids)
        self.pending_ids.extend(ids)

    def hold_tail(self, ids: list[int]) -> None:
        """Take the document's last tokens (fewer than a call span) as ids to store beside the call-boundary
        state, without running the model over them: a mid-chunk state would carry that chunk's keys and
        values, and a restore re-reads them on the same call grid as any other reading."""
        self.tail_ids = list(ids)
        self.position += len(ids)
        self.pending_ids.extend(ids)

    # ---- snapshots ----
    def _resume_point(self) -> tuple[int, int]:
        """(piece index, token offset of that piece) where reading continues after `position`."""
        for piece in self.pending_pieces:
            if piece.token_start <= self.position < piece.token_end:
                return piece.piece_index, piece.token_start
        last = self.pending_pieces[-1] if self.pending_pieces else None
        return (last.piece_index + 1 if last else 0), self.position

    def snapshot(self, source_stream_version: str) -> None:
        start = time.perf_counter()
        begin, end = self.committed, self.position
        tokenizer = self.bundle.require_tokenizer()
        chunk_size = self.bundle.chunk_size
        cut = [self.pending_ids[offset : offset + chunk_size] for offset in range(0, end - begin, chunk_size)]
        texts, carry = chunk_texts(tokenizer, self.carry_ids, cut)
        chunks = [ChunkText(begin + index * chunk_size, begin + index * chunk_size + len(ids), text, tuple(ids))
                  for index, (ids, text) in enumerate(zip(cut, texts, strict=True))]
        locations = [
            _location(max(begin, p.token_start), min(end, p.token_end), p.locator)
            for p in self.pending_pieces
            if p.token_end > begin and p.token_start < end
        ]
        piece_index, piece_start = self._resume_point()
        metadata = {"piece_index": piece_index, "piece_token_start": piece_start,
                    "stream_version": source_stream_version,
                    "compute": compute_label(self.bundle.dtype, self.bundle.device)}
        state = self.state if self.state is not None else self.bundle.model.initial_state(1)
        if not state.at_chunk_boundary or state.position != end - len(self.tail_ids):
            raise RuntimeError(f"snapshot at {end} would store a state at {state.position} with "
                               f"{len(self.tail_ids)} tail ids: only chunk-boundary states are stored")
        data = state_to_bytes(state, self.bundle)
        self.store.add_snapshot(self.document.id, end, data, self.bundle.fingerprint, STATE_SCHEMA_VERSION,
                                metadata, chunks=chunks, locations=locations, worker_id=self.settings.worker_id,
                                tail_ids=self.tail_ids)
        self.committed = end
        self.pending_ids = []
        self.carry_ids = carry
        self.pending_pieces = [p for p in self.pending_pieces if p.token_end > end]
        self.chunks_since_snapshot = 0
        self.snapshots += 1
        self.times.snapshots += time.perf_counter() - start

    def note_unit(self, locator: Locator) -> None:
        """Advance the pages/files/bytes-done counter from the locator of the piece just read."""
        if locator.kind == "page":
            self.units_done = max(self.units_done, locator.page)
        elif locator.kind == "lines":
            if locator.path != self.last_path:
                self.units_done += 1
                self.last_path = locator.path
        else:  # character offsets: an estimate of bytes done, for the progress bar
            self.units_done = max(self.units_done, locator.char_end or 0)

    def progress(self, finished: bool = False) -> None:
        if self.on_progress is not None:
            self.on_progress(self.meter.report(self.position, self.units_done, self.snapshots,
                                               tokens_total=self.position if finished else None, finished=finished))

    def keep_claim(self) -> None:
        if time.monotonic() - self.last_heartbeat > self.settings.lease_seconds / 3:
            if not self.store.heartbeat(self.document.id, self.settings.worker_id, self.settings.lease_seconds):
                raise IngestError(f"{self.document.name}: lost the ingest claim (another worker took over)")
            self.last_heartbeat = time.monotonic()


def _latest_record(store: Store, run: _DocumentRun) -> DocumentRecord:
    """The document as stored now; when the store cannot be read, the record this run started from with
    the position of the last snapshot it wrote."""
    try:
        return store.get_document(run.document.id)
    except StorageError:
        return replace(run.document, committed_position=max(run.document.committed_position, run.committed))


def _release_claim(store: Store, document_id: int, worker_id: str, shown: str) -> None:
    try:
        store.release_document(document_id, worker_id)
    except StorageError as exc:  # the original error matters more; the lease expires anyway
        logger.warning("%s: could not release the ingest claim (%s)", shown, exc)


def _restore(store: Store, bundle: ModelBundle, run: _DocumentRun, stream_version: str) -> tuple[int, int] | None:
    """Load the document's last snapshot into `run`; returns where to continue reading, or None when that
    snapshot already holds the end of the document (it has tail ids: only the final snapshot has them)."""
    document = run.document
    if document.committed_position == 0:
        return 0, 0
    info = store.latest_snapshot_at(document.id, document.committed_position)
    if info is None:
        return 0, 0
    if info.tail_ids:
        run.position = run.committed = info.position
        return None
    what = f"snapshot {info.id} of {document.name} at token {info.position}"
    if info.metadata.get("stream_version") != stream_version:
        raise IngestError(f"{what}: was read with other reader settings ({info.metadata.get('stream_version')}); "
                          "delete the document to read it again with the current ones")
    run.state = state_from_bytes(store.load_snapshot_bytes(info.id), bundle, what)
    run.position = run.committed = info.position
    run.carry_ids = stored_carry(store, bundle.require_tokenizer(), document.id, info.position)
    return int(info.metadata["piece_index"]), int(info.metadata["piece_token_start"])


def ingest_path(
    store: Store,
    bundle: ModelBundle,
    path: str | os.PathLike,
    settings: IngestSettings | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> IngestOutcome:
    """Ingest one file, folder or archive; never raises for a bad input (the outcome says what happened)."""
    settings = settings or IngestSettings()
    started = time.perf_counter()
    times = StageTimes()
    shown = shown_name(path)
    try:
        source = open_source(path, settings.source_options)  # the path as given: "file/" is refused
    except SourceError as exc:
        logger.warning("%s", exc)
        return IngestOutcome(shown, IngestStatus.FAILED, None, str(exc), exc, seconds=time.perf_counter() - started)
    with source:
        notes = dict(warnings=tuple(str(n) for n in source.warnings), skipped=tuple(str(n) for n in source.skipped))
        document, _ = store.get_or_create_document(
            source.content_hash, source.name, source.kind, shown_name(Path(path).resolve()),
            bundle.require_tokenizer().fingerprint, bundle.fingerprint,
        )
        if document.status == DocumentStatus.COMPLETE:
            return IngestOutcome(shown, IngestStatus.ALREADY_COMPLETE, document, **notes)
        if document.status != DocumentStatus.INGESTING:
            document = store.set_status(document.id, DocumentStatus.INGESTING)
        with _reading_here(settings.worker_id):  # counted from before the claim: never released as left over
            return _claim_and_read(store, bundle, source, document, shown, settings, on_progress, cancel, started,
                                   times, notes)


def _claim_and_read(store: Store, bundle: ModelBundle, source: Source, document: DocumentRecord,
                    shown: str, settings: IngestSettings, on_progress: ProgressCallback | None,
                    cancel: CancelToken | None, started: float, times: StageTimes, notes: dict) -> IngestOutcome:
    if not store.claim_document(document.id, settings.worker_id, settings.lease_seconds):
        if not _release_if_holder_died(store, store.get_document(document.id)) or not store.claim_document(
            document.id, settings.worker_id, settings.lease_seconds
        ):
            return IngestOutcome(shown, IngestStatus.BUSY, document,
                                 f"{shown}: another worker is reading this document", **notes)
    meter = ProgressMeter(shown, source.name, document.id, source.unit_name, source.unit_count or None,
                          document.committed_position)
    run = _DocumentRun(store, bundle, document, settings, meter, on_progress, cancel, times)
    logger.info("reading %s (document %d) from token %d", shown, document.id, document.committed_position)
    try:
        status = _read(store, bundle, run, source)
    except EXPECTED_ERRORS as exc:  # one bad file must not stop the others: record it and report
        message = str(exc) if shown in str(exc) else f"{shown}: {exc}"
        status, record = IngestStatus.FAILED, None
        try:  # only while this worker still holds the claim: a lost one belongs to whoever took it
            record = store.set_status(document.id, DocumentStatus.FAILED, error=message,
                                      worker_id=settings.worker_id)
            logger.warning("%s", message)
        except ClaimLostError as lost:
            status = IngestStatus.BUSY
            message = f"{shown}: lost the ingest claim after token {run.committed}; left as it is ({lost})"
            logger.warning("%s", message)
        except StorageError as status_error:
            logger.warning("%s", message)
            logger.warning("%s: could not record the failure (%s)", shown, status_error)
            _release_claim(store, document.id, settings.worker_id, shown)  # if the store is back already
        return IngestOutcome(shown, status, record or _latest_record(store, run), message, exc,
                             tokens_read=run.position - meter.start_tokens, resumed_from=meter.start_tokens,
                             seconds=time.perf_counter() - started, times=times.as_dict(), **notes)
    except BaseException as exc:
        # A bug or an interrupt, not a bad file: keep the document as it is (its last snapshot is the
        # last good state), give up the claim so the next run resumes at once, and let it propagate.
        if isinstance(exc, Exception):
            logger.exception("%s: unexpected %s while reading; the document keeps its snapshot at token %d",
                             shown, type(exc).__name__, run.committed)
        _release_claim(store, document.id, settings.worker_id, shown)
        raise
    record = store.get_document(document.id)
    message = None if status == IngestStatus.COMPLETE else f"cancelled at token {run.committed}"
    return IngestOutcome(shown, status, record, message, tokens_read=run.position - meter.start_tokens,
                         resumed_from=meter.start_tokens, seconds=time.perf_counter() - started,
                         times=times.as_dict(), **notes)


def _read(store: Store, bundle: ModelBundle, run: _DocumentRun, source: Source) -> IngestStatus:
    """The call loop. Returns COMPLETE or CANCELLED."""
    C, span = bundle.chunk_size, call_span(bundle.model.config)
    resume = _restore(store, bundle, run, source.stream_version)
    run.meter.start_tokens = run.position
    if resume is None:  # stopped after the final snapshot, before the status was written
        store.set_status(run.document.id, DocumentStatus.COMPLETE, token_count=run.position,
                     worker_id=run.settings.worker_id)
        run.progress(finished=True)
        return IngestStatus.COMPLETE
    piece_index, piece_start = resume
    buffer: list[int] = []  # tokens not yet given to the model; the model sees calls up to a call boundary
    stream = tokenize_source(source, _TimedTokenizer(bundle.require_tokenizer(), run.times),
                             start_piece=piece_index, token_start=piece_start)
    try:
        while True:
            wait = time.perf_counter()
            tokenized_before = run.times.tokenization
            piece = next(stream, None)
            run.times.extraction += (time.perf_counter() - wait) - (run.times.tokenization - tokenized_before)
            if piece is None:
                break
            run.note_unit(piece.locator)
            skip = max(0, run.position + len(buffer) - piece.token_start)  # tokens already read (resume)
            if skip >= len(piece.ids):
                continue
            run.pending_pieces.append(piece)
            buffer.extend(piece.ids[skip:])
            # a state resumed at a chunk boundary that is not a call boundary (stored by an older release)
            # first reads up to the next call boundary
            while len(buffer) >= (take := span - run.position % span):
                run.feed(buffer[:take])
                del buffer[:take]
                run.chunks_since_snapshot += take // C
                if run.chunks_since_snapshot >= run.settings.snapshot_every:
                    run.snapshot(source.stream_version)
                run.progress()
                if run.cancel is not None and run.cancel.cancelled:
                    if run.chunks_since_snapshot:
                        run.snapshot(source.stream_version)
                    store.set_status(run.document.id, DocumentStatus.CANCELLED, worker_id=run.settings.worker_id)
                    return IngestStatus.CANCELLED
                run.keep_claim()
    finally:
        stream.close()
    if buffer:
        run.hold_tail(buffer)
    if run.position == 0:
        raise IngestError(f"{source.path}: no text to read (every page or file was empty)")
    if run.position > run.committed:
        run.snapshot(source.stream_version)
    store.set_status(run.document.id, DocumentStatus.COMPLETE, token_count=run.position,
                     worker_id=run.settings.worker_id)
    run.progress(finished=True)
    return IngestStatus.COMPLETE
