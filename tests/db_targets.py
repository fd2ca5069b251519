"""Bad `--db` targets made at test time: a folder, files that are not databases, damaged stores, another
application's databases, a store from a newer megalodoc, a read-only store, special files. `TARGETS` maps
a name to (maker, the error class refusing it, words its message must contain)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from megalodoc.storage import SchemaError, SchemaNewerError, StorageError, open_store
from megalodoc.storage.target_check import DamagedDatabaseError, NotADatabaseError, UnusableTargetError


def new_document(store, name: str = "book.pdf"):
    return store.create_document(uuid.uuid4().hex, name, "pdf", f"/data/{name}", "tokenizer-0", "model-0")


def megalodoc_store(path: Path) -> Path:
    with open_store(str(path)) as store:
        new_document(store, name="kept.pdf")
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the file
    return path


def foreign(path: Path, wal: bool) -> Path:
    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    connection.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    connection.commit()
    connection.close()
    return path


def truncated(path: Path) -> Path:
    megalodoc_store(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    return path


def overwritten(path: Path) -> Path:
    """The schema page (page 1 after the header) and the next pages overwritten with junk."""
    megalodoc_store(path)
    data = bytearray(path.read_bytes())
    data[100:12288] = bytes(range(256)) * ((12288 - 100) // 256) + bytes((12288 - 100) % 256)
    path.write_bytes(bytes(data))
    return path


def newer(path: Path) -> Path:
    megalodoc_store(path)
    connection = sqlite3.connect(path)
    connection.execute("UPDATE alembic_version SET version_num = '0999_from_the_future'")
    connection.commit()
    connection.close()
    return path


def read_only(path: Path) -> Path:
    megalodoc_store(path)
    path.chmod(0o444)
    return path


TARGETS: dict[str, tuple[Callable[[Path], Path], type[StorageError], str]] = {
    "folder": (lambda p: (p.mkdir(), p)[1], UnusableTargetError, "it is a folder"),
    "text-file": (lambda p: (p.write_text("shopping list\n" * 50), p)[1], NotADatabaseError, "not a database"),
    "pdf-file": (lambda p: (p.write_bytes(b"%PDF-1.4\n" + b"x" * 5000), p)[1], NotADatabaseError, "not a database"),
    "header-only": (lambda p: (p.write_bytes(b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 82), p)[1],
                    DamagedDatabaseError, "damaged SQLite database (truncated"),
    "truncated-store": (truncated, DamagedDatabaseError, "damaged SQLite database (truncated"),
    "overwritten-store": (overwritten, DamagedDatabaseError, "damaged SQLite database"),
    "foreign": (lambda p: foreign(p, wal=False), SchemaError, "another application's SQLite database"),
    "foreign-wal": (lambda p: foreign(p, wal=True), SchemaError, "another application's SQLite database"),
    "newer-store": (newer, SchemaNewerError, "a store from a newer megalodoc (schema revision 0999_from_the_future"),
    "read-only": (read_only, UnusableTargetError, "the file is read-only (mode -r--r--r--)"),
    "dev-null": (lambda p: (p.symlink_to("/dev/null"), p)[1], UnusableTargetError, "kernel or device file system"),
    "proc-file": (lambda p: (p.symlink_to("/proc/self/environ"), p)[1], UnusableTargetError,
                  "kernel or device file system"),
}


def snapshot_folder(folder: Path) -> dict[str, str]:
    """name -> sha256 of every entry (folders and links by their kind)."""
    result = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            result[entry.name] = "link->" + os.readlink(entry)
        elif entry.is_dir():
            result[entry.name] = "dir:" + ",".join(sorted(p.name for p in entry.iterdir()))
        else:
            result[entry.name] = hashlib.sha256(entry.read_bytes()).hexdigest()
    return result
