"""Schema versioning: creation through the migration, behind -> upgrade, newer -> refused, and the
migration matching the ORM models."""

from __future__ import annotations

import shutil
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from storage_testkit import new_document, raw_execute

from megalodoc.app.cli import main as cli_main
from megalodoc.storage import (
    SCHEMA_VERSION,
    SchemaBehindError,
    SchemaError,
    SchemaNewerError,
    StorageError,
    database_status,
    open_store,
    upgrade_database,
)
from megalodoc.storage import schema as schema_module
from megalodoc.storage.engine import create_store_engine
from megalodoc.storage.models import Base

FTS_NAMES = ("chunks_fts", "search_vector", "ix_chunks_search_vector")


def _not_fts(_object, name, _type, _reflected, _compare_to) -> bool:  # noqa: ANN001
    return not (name or "").startswith(FTS_NAMES)


def test_new_database_is_created_at_the_head_revision(db_url: str) -> None:
    with open_store(db_url) as store:
        assert new_document(store).committed_position == 0
    assert raw_execute(db_url, "SELECT version_num FROM alembic_version") == [(SCHEMA_VERSION,)]
    assert database_status(db_url).state == "current"


def test_migration_creates_exactly_the_orm_tables(db_url: str) -> None:
    with open_store(db_url) as store, store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _not_fts})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_database_from_a_newer_megalodoc_is_refused_untouched(db_url: str) -> None:
    with open_store(db_url) as store:
        document = new_document(store)
    raw_execute(db_url, "UPDATE alembic_version SET version_num = '0999_from_the_future'")
    with pytest.raises(SchemaNewerError, match="newer megalodoc") as caught:
        open_store(db_url)
    assert "0999_from_the_future" in str(caught.value)
    with pytest.raises(SchemaNewerError):
        upgrade_database(db_url)
    assert raw_execute(db_url, "SELECT version_num FROM alembic_version") == [("0999_from_the_future",)]
    assert raw_execute(db_url, "SELECT name FROM documents") == [(document.name,)]


FUTURE_REVISION = '''
"""A later schema, as a future megalodoc would ship it."""
import sqlalchemy as sa
from alembic import op

revision = "0999_next"
down_revision = "{current}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def newer_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process behave like a megalodoc whose schema head is one revision later."""
    migrations = tmp_path / "migrations"
    shutil.copytree(schema_module.MIGRATIONS_DIR, migrations)
    revision = textwrap.dedent(FUTURE_REVISION).replace("{current}", SCHEMA_VERSION)
    (migrations / "versions" / "0999_note.py").write_text(revision)
    monkeypatch.setattr(schema_module, "MIGRATIONS_DIR", migrations)
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", "0999_next")


def test_database_behind_the_code_says_to_run_db_upgrade_and_upgrade_keeps_data(
    db_url: str, request: pytest.FixtureRequest
) -> None:
    with open_store(db_url) as store:
        document = new_document(store, name="kept.pdf")
    request.getfixturevalue("newer_code")

    with pytest.raises(SchemaBehindError, match="megalodoc db upgrade"):
        open_store(db_url)
    assert database_status(db_url).state == "behind"

    assert upgrade_database(db_url) == (SCHEMA_VERSION, "0999_next")
    assert raw_execute(db_url, "SELECT version_num FROM alembic_version") == [("0999_next",)]
    with open_store(db_url) as store:
        assert store.get_document(document.id).name == "kept.pdf"
    raw_execute(db_url, "UPDATE documents SET note = 'new column works'")


def test_unrelated_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw_execute(f"sqlite:///{path}", "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(SchemaError, match="not megalodoc's"):
        open_store(str(path))


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"%PDF-1.4 this is not sqlite" * 100)
    with pytest.raises(StorageError, match="notes.db"):
        open_store(str(path))


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_store(str(tmp_path / "absent" / "x.db"))


def test_open_without_create_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no database at"):
        open_store(str(tmp_path / "x.db"), create=False)
    assert not (tmp_path / "x.db").exists()


def test_default_location_and_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEGALODOC_DB", raising=False)
    with open_store() as store:
        assert store.url.endswith("/megalodoc.db")
    assert (tmp_path / "megalodoc.db").exists()
    monkeypatch.setenv("MEGALODOC_DB", str(tmp_path / "elsewhere.db"))
    with open_store() as store:
        new_document(store)
    assert (tmp_path / "elsewhere.db").exists()


def run_at_once(work: Callable[[], None], count: int) -> list[BaseException]:
    """Runs `work` on `count` threads released together by a barrier; returns the exceptions raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # noqa: BLE001 (collected and returned)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_many_openers_of_a_new_database_race_safely(db_url: str) -> None:
    def opener() -> None:
        with open_store(db_url) as store:
            new_document(store)

    assert run_at_once(opener, 4) == []
    with open_store(db_url) as store:
        assert len(store.list_documents()) == 4


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "p.db")) as store, store.engine.connect() as connection:
        values = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert values["journal_mode"] == "wal"
    assert values["foreign_keys"] == 1
    assert values["synchronous"] == 1  # NORMAL
    assert values["busy_timeout"] >= 1000


def test_db_command_creates_upgrades_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = str(tmp_path / "cli.db")
    assert cli_main(["db", "status", "--db", path]) == 1
    assert cli_main(["db", "upgrade", "--db", path]) == 0
    assert "created at schema revision" in capsys.readouterr().out
    assert cli_main(["db", "upgrade", "--db", path]) == 0
    assert "already at schema revision" in capsys.readouterr().out
    assert cli_main(["db", "status", "--db", path]) == 0
    assert cli_main(["db", "check", "--db", path]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")
    raw_execute(f"sqlite:///{path}", "UPDATE alembic_version SET version_num = '0999'")
    assert cli_main(["db", "upgrade", "--db", path]) == 1
    assert "newer megalodoc" in capsys.readouterr().err


def test_connections_racing_to_open_a_new_sqlite_file_all_get_wal(tmp_path: Path) -> None:
    # Two connections switching a brand-new file to WAL at the same moment: SQLite answers one of them
    # "database is locked" at once, without waiting the busy timeout (a few percent of rounds on this
    # machine before the switch was retried). Every connection must end up in WAL mode.
    modes: list[str] = []
    errors: list[BaseException] = []
    for round_ in range(150):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        engines = [create_store_engine(url) for _ in range(2)]  # no connection yet: the file is not made
        try:
            pending = iter(engines)

            def connect(pending=pending) -> None:
                with next(pending).connect() as connection:
                    modes.append(connection.exec_driver_sql("PRAGMA journal_mode").scalar())

            errors += run_at_once(connect, 2)
        finally:
            for engine in engines:
                engine.dispose()
    assert errors == []
    assert modes == ["wal"] * 300
