"""Fixtures for the reader service tests: a tiny model folder with a real tokenizer trained on stdlib
text, services on temporary SQLite files, and small real documents (text, a repository, a PDF)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from app_support import atlas_pages, write_pdf
from pipeline_support import make_model_folder

from megalodoc.app.reader import ReaderService
from megalodoc.model.tokenizer import train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny untrained Megalodon (chunk 16) with a lossless tokenizer trained on a few stdlib modules."""
    folder = tmp_path_factory.mktemp("reader-model")
    texts = [(STDLIB / name).read_text() for name in ("textwrap.py", "string.py", "shlex.py", "this.py")]
    tokenizer = train_tokenizer(texts, folder / "tok.model", 600)
    return make_model_folder(folder / "model", folder / "tok.model", tokenizer.vocab_size)


@pytest.fixture
def service(tmp_path, tiny_model_dir):
    with ReaderService(tmp_path / "reader.db", tiny_model_dir) as svc:
        yield svc


@pytest.fixture
def book(tmp_path) -> Path:
    """A text of about 1,300 tokens whose first and last thirds use different words."""
    path = tmp_path / "book.txt"
    path.write_text((STDLIB / "textwrap.py").read_text()[:4000] + "\n" + (STDLIB / "shlex.py").read_text()[:2500])
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    """A small repository: two Python files of a few dozen lines each."""
    target = tmp_path / "proj"
    (target / "pkg").mkdir(parents=True)
    (target / "pkg" / "shapes.py").write_text("".join(
        f"def area_of_square_{n}(side):\n    return side * side * {n}\n\n" for n in range(12)))
    (target / "README.md").write_text("".join(f"Line {n} of the readme talks about squares.\n" for n in range(1, 30)))
    return target


@pytest.fixture
def pdf(tmp_path) -> Path:
    """Four pages about different things; page 3 alone speaks of lighthouses."""
    return write_pdf(tmp_path / "atlas.pdf", atlas_pages(12))
