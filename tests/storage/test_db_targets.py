"""Bad `--db` targets are refused before any write, say which kind of bad they are, and stay byte-identical
(no WAL switch, no -wal/-shm created, nothing else in their folder)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from db_targets import TARGETS, megalodoc_store, snapshot_folder
from storage_testkit import new_document

from megalodoc.app.cli import main as cli_main
from megalodoc.storage import SchemaError, SchemaNewerError, database_status, open_store, upgrade_database
from megalodoc.storage.target_check import DamagedDatabaseError, NotADatabaseError, UnusableTargetError


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
