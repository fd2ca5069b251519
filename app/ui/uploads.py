"""Uploaded files: size-capped and copied into the server's own data folder before anything reads them.

A copy lives under DATA_DIR/uploads/<first 16 hex of its sha256>/<name>, so the same file uploaded twice
maps to the same path (an interrupted ingest of it resumes) and nothing outside the data folder is read
later (a cancelled ingest resumes from this copy, not from Gradio's temporary file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from megalodoc.app.ui.errors import UiError

log = logging.getLogger(__name__)

# Kept in a stored name: letters and digits of any script, and these; every other run becomes "_"
# (separators, control and format characters such as U+202E, which reverses how a name reads).
_KEPT_MARKS = "._ +()-"
# A stored name's limits: short enough to read in a list, and within a file system's 255 bytes.
NAME_CHARS = 120
NAME_BYTES = 240
COPY_BLOCK = 1 << 20  # hash and copy in 1 MiB blocks: constant memory for large uploads


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


def store_uploads(paths: list[str | os.PathLike], data_dir: Path, max_bytes: int) -> list[StoredUpload]:
    """Check every file's size first (nothing is copied when one is too large), then copy each into
    DATA_DIR/uploads. Raises UiError naming the file and the limit."""
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
    return [_copy_in(source, data_dir / "uploads") for source in sources]


def _copy_in(source: Path, uploads: Path) -> StoredUpload:
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        while block := handle.read(COPY_BLOCK):
            digest.update(block)
    name = safe_name(source.name)
    target = uploads / digest.hexdigest()[:16] / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        log.info("stored upload %s (%d bytes) as %s", name, target.stat().st_size, target)
    return StoredUpload(target, name, target.stat().st_size)


def remove_upload(path: str | os.PathLike | None, data_dir: Path) -> bool:
    """Delete a stored upload (and its folder when empty) if it lies inside DATA_DIR/uploads; anything
    else is left alone. Returns whether a file was removed."""
    if not path:
        return False
    uploads = (data_dir / "uploads").resolve()
    target = Path(path).resolve()
    if uploads not in target.parents or not target.is_file():
        return False
    target.unlink()
    try:
        target.parent.rmdir()
    except OSError:
        pass  # another file shares the folder
    return True
