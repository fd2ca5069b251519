"""A reading that fails because the store went away reports the position its last snapshot committed,
not the record the reading started from (which said 0 tokens)."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import IngestSettings, ingest_path
from megalodoc.storage import IngestStatus

pytestmark = pytest.mark.postgres
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_a_store_lost_mid_reading_leaves_the_committed_position_in_the_outcome(tmp_path, model_dir,
                                                                                  fresh_database):
    import sqlalchemy  # only to shut the scratch database to new connections and end the open ones

    book = tmp_path / "book.txt"
    book.write_text((STDLIB / "textwrap.py").read_text()[:6000])
    name = fresh_database.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(os.environ["MEGALODOC_TEST_POSTGRES_URL"], isolation_level="AUTOCOMMIT")

    def shut(allow: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(allow).lower()}")
            if not allow:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    def on_progress(progress) -> None:
        if progress.snapshots_written == 2 and not progress.finished:  # the store goes away mid-reading
            shut(False)

    try:
        with Library(fresh_database, model_dir) as lib:
            outcome = ingest_path(lib.store, lib.bundle, book, IngestSettings(snapshot_every=1),
                                  on_progress=on_progress)
            shut(True)
            stored = lib.store.get_document(outcome.document.id)
    finally:
        shut(True)
        admin.dispose()
    assert outcome.status == IngestStatus.FAILED and stored.committed_position > 0
    assert outcome.document.committed_position == stored.committed_position
