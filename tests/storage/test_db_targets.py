"""Bad `--db` targets are refused before any write, say which kind of bad they are, and stay byte-identical
(no WAL switch, no -wal/-shm created, nothing else in their folder)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_testkit import new_document

from megalodoc.app.cli import main as cli_main
from megalodoc.storage import SchemaError, SchemaNewerError, StorageError, database_status, open_store, upgrade_database
from megalodoc.storage.target_check import DamagedDatabaseError, NotADatabaseError, UnusableTargetError


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


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_bad_targets_are_refused_and_left_byte_identical(tmp_path: Path, kind: str, capsys):
    make, error_type, words = TARGETS[kind]
    target = make(tmp_path / f"{kind}.db")
    before = snapshot_folder(tmp_path)
    for attempt in (lambda: open_store(str(target)), lambda: upgrade_database(str(target)),
                    lambda: open_store(f"sqlite:///{target}", create=False)):
        with pytest.raises(error_type) as caught:
            attempt()
        message = str(caught.value)
        assert (str(target) in message or os.path.realpath(target) in message) and words in message
        assert snapshot_folder(tmp_path) == before
    # the command line: db check refuses with the same words and changes nothing
    assert cli_main(["db", "check", "--db", str(target)]) == 1
    assert words in capsys.readouterr().err
    if error_type is not UnusableTargetError:
        status = database_status(str(target))  # a status reads the file alone
        assert status.state == {NotADatabaseError: "not-database", DamagedDatabaseError: "damaged",
                                SchemaError: "foreign", SchemaNewerError: "newer"}[error_type]
        assert cli_main(["db", "status", "--db", str(target)]) == 1
        capsys.readouterr()
    assert snapshot_folder(tmp_path) == before


def test_a_megalodoc_store_in_use_is_read_with_its_log(tmp_path: Path):
    """A store held open by another connection (its -wal and -shm present) is judged with its latest commits."""
    path = tmp_path / "live.db"
    with open_store(str(path)) as writer:
        new_document(writer, name="first.pdf")
        assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
        assert database_status(str(path)).state == "current"
        with open_store(str(path)) as second:
            assert [d.name for d in second.list_documents()] == ["first.pdf"]


def test_an_empty_file_and_a_new_path_become_stores(tmp_path: Path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (empty, tmp_path / "new.db"):
        with open_store(str(path)) as store:
            new_document(store)
        assert database_status(str(path)).state == "current"


def test_refused_file_stays_identical_for_an_unprivileged_user_too():
    """Without write permission on the folder SQLite could not create its log: refused up front."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    folder = Path(tempfile.mkdtemp(prefix="megalodoc-locked-", dir="/tmp"))  # /tmp: traversable by anyone
    path = megalodoc_store(folder / "store.db")
    path.chmod(0o666)
    folder.chmod(0o555)
    before = snapshot_folder(folder)
    try:
        os.seteuid(65534)
    except PermissionError:
        pytest.skip("cannot drop privileges here (seteuid)")
    try:
        with pytest.raises(UnusableTargetError, match="is not writable"):
            open_store(str(path))
        after = snapshot_folder(folder)
    finally:
        os.seteuid(0)
        folder.chmod(0o755)
    assert after == before
    shutil.rmtree(folder)
