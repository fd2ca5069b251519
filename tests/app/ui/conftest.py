"""Fixtures for the web app tests (the tiny model folder `tiny_model_dir` comes from tests/app/conftest.py):
a service on a temporary SQLite file, an app context with its own data folder, and real documents."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from app_support import atlas_pages, write_pdf

from megalodoc.app.reader import ReaderService
from megalodoc.app.ui.context import AppContext

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture
def service(tmp_path: Path, tiny_model_dir: Path):
    # a snapshot every 4 chunks of 16 tokens: fewer writes, the same reading
    with ReaderService(tmp_path / "library.db", tiny_model_dir, snapshot_every=4) as svc:
        yield svc


@pytest.fixture
def ctx(service, tmp_path: Path) -> AppContext:
    return AppContext.create(service, tmp_path / "data", max_upload_mb=1)


@pytest.fixture
def atlas_pdf(tmp_path: Path) -> Path:
    return write_pdf(tmp_path / "atlas.pdf", atlas_pages(8))


@pytest.fixture
def long_text(tmp_path: Path) -> Path:
    """3 KB of real code and prose: about a thousand tokens, many chunks of the tiny model."""
    path = tmp_path / "long.txt"
    path.write_text((STDLIB / "textwrap.py").read_text()[:3000])
    return path
