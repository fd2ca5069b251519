"""Fixtures for the web app tests: a tiny model folder with a real tokenizer, a service on a temporary
SQLite file, an app context with its own data folder, and real documents (reportlab PDFs, text)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from pipeline_support import make_model_folder
from ui_support import atlas_pages, write_pdf

from megalodoc.app.reader import ReaderService
from megalodoc.app.ui.context import AppContext
from megalodoc.model.tokenizer import train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def ui_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained Megalodon (chunk 16) with a lossless tokenizer trained on a few stdlib modules."""
    folder = tmp_path_factory.mktemp("ui-model")
    texts = [(STDLIB / name).read_text() for name in ("textwrap.py", "string.py", "shlex.py", "this.py")]
    tokenizer = train_tokenizer(texts, folder / "tok.model", 600)
    return make_model_folder(folder / "model", folder / "tok.model", tokenizer.vocab_size)


@pytest.fixture
def service(tmp_path: Path, ui_model_dir: Path):
    # a snapshot every 4 chunks of 16 tokens: fewer writes, the same reading
    with ReaderService(tmp_path / "library.db", ui_model_dir, snapshot_every=4) as svc:
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
