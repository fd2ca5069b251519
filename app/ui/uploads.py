"""Uploaded files: size-capped and copied into the server's own data folder before anything reads them.

A copy lives under DATA_DIR/uploads/<first 16 hex of its sha256>/<name>, so the same file uploaded twice
maps to the same path (an interrupted ingest of it resumes) and nothing outside the data folder is read
later (a cancelled ingest resumes from this copy, not from Gradio's temporary file). An upload is first
copied and hashed under DATA_DIR/uploads/.incoming, outside any lock, then renamed into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from megalodoc.app.ui.errors import UiError

log = logging.getLogger(__name__)

# Kept in a stored name: letters and digits of any script, and these; every other run becomes "_"
# (separators, control and format characters such as U+202E, which reverses how a name reads).
_KEPT_MARKS = "._ +()-"
# A stored name's limits: short enough to read in a list, and within a file system's 255 bytes.
NAME_CHARS = 120
NAME_BYTES = 240
COPY_BLOCK = 1 << 20  # hash and copy in 1 MiB blocks: constant memory for large uploads
INCOMING = ".incoming"  # under DATA_DIR/uploads: copies being received, before they are placed
STALE_INCOMING_S = 3600.0  # a copy there untouched this long was left by a process that stopped


@dataclass(frozen=True)
class StoredUpload:
    """An upload copied into the data folder: where it is now and the name the person gave it."""

    path: Path
    name: str
    size_bytes: int


def safe_name(name: str) -> str:
    """The base name of an uploaded file (Unicode NFC) with anything but letters, digits and a few marks
    replaced; never empty, never a path (no separators, no leading dots). A name over NAME_CHARS
    characters or NAME_BYTES bytes of UTF-8 is shortened before its extension, which stays."""
    base = unicodedata.normalize("NFC", Path(str(name).replace("\\", "/")).name)
    marked = "".join(c if c.isalnum() or c in _KEPT_MARKS else "\0" for c in base)  # \0: not kept
    cleaned = re.sub("\0+", "_", marked).strip(" .") or "upload"
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot or not stem or len(suffix) > 16:  # no extension to keep
        stem, dot, suffix = cleaned, "", ""
    while len(stem) > 1 and (len(stem + dot + suffix) > NAME_CHARS or len((stem + dot + suffix).encode()) > NAME_BYTES):
        stem = stem[:-1]
    return (stem.rstrip(" .") or "upload") + dot + suffix


@dataclass(frozen=True)
class ReceivedUpload:
    """An upload copied into the data folder's incoming area and hashed, not yet at its lasting path."""

    partial: Path
    name: str
    digest: str


def receive_uploads(paths: list[str | os.PathLike], data_dir: Path, max_bytes: int) -> list[ReceivedUpload]:
    """Check every file's size first (nothing is copied when one is too large), then copy each into
    DATA_DIR/uploads/.incoming under a name of its own, hashing it in the same pass. Needs no lock: two
    requests never write the same file. Raises UiError naming the file and the limit."""
    if not paths:
        raise UiError("no file given: choose one or more files to upload first")
    sources = [Path(p) for p in paths]
    for source in sources:
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise UiError(f"{safe_name(source.name)}: the upload cannot be read ({exc.strerror})") from exc
        if size > max_bytes:
            raise UiError(f"{safe_name(source.name)}: {size / 2**20:.1f} MiB is over the upload limit of "
                          f"{max_bytes / 2**20:.0f} MiB")
    incoming = data_dir / "uploads" / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    received: list[ReceivedUpload] = []
    try:
        for source in sources:
            received.append(_receive(source, incoming))
    except BaseException:
        discard_received(received)
        raise
    return received


def _receive(source: Path, incoming: Path) -> ReceivedUpload:
    shown = safe_name(source.name)
    try:
        reader = open(source, "rb")
    except OSError as exc:
        raise UiError(f"{shown}: the upload cannot be read ({exc.strerror})") from exc
    digest = hashlib.sha256()
    partial = incoming / f"{secrets.token_hex(8)}.part"
    with reader:
        try:
            writer = open(partial, "xb")  # created as any new file is (0666 less the umask), never reused
        except OSError as exc:
            raise store_failed(shown, exc) from exc
        try:
            with writer:  # closing flushes: a full disk may show only then
                while block := _read_block(reader, shown):
                    digest.update(block)
                    writer.write(block)
        except OSError as exc:  # reading errors arrive as UiError: this one is the server's writing
            partial.unlink(missing_ok=True)
            raise store_failed(shown, exc) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return ReceivedUpload(partial, shown, digest.hexdigest())


def _read_block(reader: BinaryIO, shown: str) -> bytes:
    try:
        return reader.read(COPY_BLOCK)
    except OSError as exc:
        raise UiError(f"{shown}: the upload cannot be read ({exc.strerror})") from exc


def place_upload(received: ReceivedUpload, data_dir: Path) -> StoredUpload:
    """Move a received upload to DATA_DIR/uploads/<first 16 hex of its sha256>/<name>, or drop it when
    that copy is there already. Quick (a rename); the caller holds whatever keeps the copy from being
    removed meanwhile."""
    target = data_dir / "uploads" / received.digest[:16] / received.name
    if target.exists():
        received.partial.unlink(missing_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received.partial, target)
        log.info("stored upload %s (%d bytes) as %s", received.name, target.stat().st_size, target)
    return StoredUpload(target, received.name, target.stat().st_size)


def discard_received(received: list[ReceivedUpload]) -> None:
    """Remove received uploads that will not be placed (a later file of the same upload failed)."""
    for item in received:
        item.partial.unlink(missing_ok=True)


def remove_stale_incoming(data_dir: Path, older_than_s: float = STALE_INCOMING_S) -> int:
    """Remove copies left in DATA_DIR/uploads/.incoming by a process that stopped while receiving them
    (not written to for `older_than_s` seconds). Returns how many were removed."""
    removed = 0
    deadline = time.time() - older_than_s
    for partial in (data_dir / "uploads" / INCOMING).glob("*.part"):
        try:
            if partial.is_file() and partial.stat().st_mtime < deadline:
                partial.unlink()
                removed += 1
        except OSError as exc:
            log.warning("could not remove the stale upload copy %s (%s)", partial, exc.strerror)
    if removed:
        log.info("removed %d stale upload cop%s from %s", removed, "y" if removed == 1 else "ies",
                 data_dir / "uploads" / INCOMING)
    return removed


def store_failed(shown: str, exc: OSError) -> UiError:
    """The page's message for an upload the server could not write into its data folder (a full disk, say)."""
    return UiError(f"{shown}: the server could not store the upload ({exc.strerror})")


def upload_path(path: str | os.PathLike | None, data_dir: Path) -> Path | None:
    """`path` resolved (symlinks followed) when it lies inside DATA_DIR/uploads, else None: what the web
    app may read or remove."""
    if not path:
        return None
    target = Path(path).resolve()
    return target if (data_dir / "uploads").resolve() in target.parents else None


def remove_upload(path: str | os.PathLike | None, data_dir: Path) -> bool:
    """Delete a stored upload (and its folder when empty) if it lies inside DATA_DIR/uploads; anything
    else is left alone. Returns whether a file was removed."""
    target = upload_path(path, data_dir)
    if target is None or not target.is_file():
        return False
    target.unlink()
    try:
        target.parent.rmdir()
    except OSError:
        pass  # another file shares the folder
    return True
