"""A SQLite file named by a relative path or URL is made absolute when the store opens: a server changes
its working folder after opening its store, and the pool's later connections must reach the same file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from megalodoc.storage import open_store
from megalodoc.storage.engine import resolve_url, sqlite_file


@pytest.mark.parametrize("given", ["library.db", "sqlite:///library.db", "sqlite:///library.db?timeout=5",
                                   "sqlite+pysqlite:///library.db"])
def test_a_relative_sqlite_file_is_made_absolute(given: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = resolve_url(given)
    assert resolved.partition(":///")[2].startswith(str(tmp_path / "library.db")), resolved
    with open_store(given) as store:
        store.create_document("a" * 64, "kept.txt", "text", None, "tok-0", "model-0")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        os.chdir(elsewhere)  # what `megalodoc serve` does once its store is open
        store.create_document("b" * 64, "also kept.txt", "text", None, "tok-0", "model-0")
        assert [d.name for d in store.list_documents()] == ["kept.txt", "also kept.txt"]
    assert not list(elsewhere.iterdir())  # no second database beside the new working folder


@pytest.mark.parametrize("given, file", [
    ("sqlite:///file:library.db?uri=true", "library.db"),  # a SQLite URI: relative to the working folder
    ("sqlite:///file:sub/library.db?uri=true&cache=private", "sub/library.db"),  # was refused: no folder "file:sub"
    ("sqlite:///file:my%20library.db?uri=true", "my library.db"),  # percent-decoded, as SQLite reads it
    ("sqlite:///file:library.db", "file:library.db"),  # without uri=true, a file of that name
])
def test_a_relative_sqlite_uri_is_made_absolute(given: str, file: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert sqlite_file(resolve_url(given)) == tmp_path / file
    with open_store(given) as store:
        store.create_document("a" * 64, "kept.txt", "text", None, "tok-0", "model-0")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        os.chdir(elsewhere)
        store.create_document("b" * 64, "also kept.txt", "text", None, "tok-0", "model-0")
        assert [d.name for d in store.list_documents()] == ["kept.txt", "also kept.txt"]
    assert (tmp_path / file).is_file() and not list(elsewhere.iterdir())


@pytest.mark.parametrize("given", ["sqlite://", "sqlite:///:memory:", "sqlite:////abs/library.db",
                                   "sqlite:///file:///abs/library.db?uri=true", "sqlite:///file::memory:?uri=true",
                                   "sqlite:///file:shared?mode=memory&cache=shared&uri=true",
                                   "postgresql+psycopg://u@h/db"])
def test_other_urls_are_kept(given: str) -> None:
    assert resolve_url(given) == given
    assert sqlite_file(given) in (None, Path("/abs/library.db"))  # memory and other backends have no file
