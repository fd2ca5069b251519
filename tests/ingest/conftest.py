"""Fixtures for the ingest tests: real PDFs made with reportlab and pypdf, the stdlib json package as a
repository, and a small real sentencepiece model trained on stdlib text."""

from __future__ import annotations

import os
import shutil
import sysconfig
import uuid
from collections.abc import Callable
from multiprocessing import resource_tracker
from pathlib import Path
from types import SimpleNamespace

import pytest
from pipeline_support import make_model_folder
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from megalodoc.model.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TOKENIZER_CORPUS_CHARS = 1_000_000  # about 1 MB of real text: trains in well under a second
TOKENIZER_VOCAB = 1000
POSTGRES_URL = os.environ.get("MEGALODOC_TEST_POSTGRES_URL")

PdfPages = list[list[str]]  # pages of lines


def stdlib_training_texts(limit_chars: int = TOKENIZER_CORPUS_CHARS) -> list[str]:
    """Multi-line chunks (<= 4000 chars) of the top-level stdlib modules, sorted, up to ``limit_chars``."""
    texts: list[str] = []
    total = 0
    for path in sorted(STDLIB.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for start in range(0, len(text), 4000):
            texts.append(text[start:start + 4000])
        total += len(text)
        if total >= limit_chars:
            break
    return texts


def trained_tokenizer(cache_dir: Path) -> Tokenizer:
    """The test tokenizer, trained once per session and cached under ``cache_dir``."""
    path = cache_dir / f"stdlib-bpe-{TOKENIZER_VOCAB}.model"
    if path.exists():
        return Tokenizer.from_file(path)
    return train_tokenizer(stdlib_training_texts(), path, TOKENIZER_VOCAB)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """A lossless BPE sentencepiece model (vocab 1000) trained on ~1 MB of stdlib source."""
    return trained_tokenizer(tmp_path_factory.getbasetemp())


def draw_pdf(path: Path, pages: PdfPages, font: str = "Helvetica") -> Path:
    """Write a PDF with one page per entry of ``pages``, one drawn string per line."""
    if font == "DejaVu" and "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", str(DEJAVU)))
    pdf = canvas.Canvas(str(path), pagesize=A4)
    for lines in pages:
        pdf.setFont(font, 11)
        y = 800
        for line in lines:
            pdf.drawString(60, y, line)
            y -= 14
        pdf.showPage()
    pdf.save()
    return path


def draw_image_only_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages hold drawings only: no text layer, as a scan would be."""
    pdf = canvas.Canvas(str(path), pagesize=A4)
    for number in range(pages):
        pdf.rect(100, 100 + number * 10, 300, 200, fill=1)
        pdf.circle(300, 600, 80)
        pdf.line(50, 50, 500, 750)
        pdf.showPage()
    pdf.save()
    return path


def encrypt_pdf(source: Path, target: Path, user_password: str) -> Path:
    """Copy ``source`` to ``target`` encrypted with AES-256 and ``user_password`` (pypdf)."""
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    with open(target, "wb") as handle:
        writer.write(handle)
    return target


def book_pages(count: int) -> PdfPages:
    """``count`` pages of distinct, checkable prose lines."""
    return [[f"Page {page} line {line}: the quick brown fox jumps over the lazy dog." for line in range(1, 9)]
            for page in range(1, count + 1)]


@pytest.fixture
def pdfkit(tmp_path: Path) -> SimpleNamespace:
    """PDF makers writing into tmp_path: ``draw(name, pages, font)``, ``image_only(name, pages)``,
    ``encrypt(source, name, user_password)``, ``book_pages(count)``."""
    return SimpleNamespace(
        draw=lambda name, pages, font="Helvetica": draw_pdf(tmp_path / name, pages, font),
        image_only=lambda name, pages=2: draw_image_only_pdf(tmp_path / name, pages),
        encrypt=lambda source, name, user_password: encrypt_pdf(source, tmp_path / name, user_password),
        book_pages=book_pages,
    )


@pytest.fixture
def dejavu() -> str:
    """The name of a registered TrueType font with ligature glyphs (DejaVu Sans)."""
    if not DEJAVU.exists():
        pytest.skip(f"{DEJAVU} not installed (Debian fonts-dejavu-core): needed for ligature glyphs")
    return "DejaVu"


@pytest.fixture
def json_repo(tmp_path: Path) -> Path:
    """A copy of the stdlib json package (its .py files) in tmp_path/json."""
    target = tmp_path / "json"
    shutil.copytree(STDLIB / "json", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def libtasn1_pdf() -> Path:
    """The libtasn1 manual from Debian's libtasn1-doc package."""
    path = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
    if not path.exists():
        pytest.skip(f"{path} not present (install the Debian package libtasn1-doc)")
    return path


@pytest.fixture
def child_pids() -> Callable[[], set[int]]:
    """A function listing this process's live (or unreaped) children, read from /proc. The resource
    tracker that multiprocessing starts once per session (for the worker pools' semaphores) is started
    first, so that it is never taken for a worker."""
    resource_tracker.ensure_running()
    return _child_pids


def _child_pids() -> set[int]:
    me = os.getpid()
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            children.add(int(entry.name))
    return children


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny reader model of ``pipeline_support`` with the test tokenizer, saved once per session."""
    folder = tmp_path_factory.mktemp("tiny-reader-model")
    (folder / "tok.model").write_bytes(tokenizer.model_bytes())
    return make_model_folder(folder / "model", folder / "tok.model", tokenizer.vocab_size)


@pytest.fixture
def model_dir(tiny_model_dir: Path) -> Path:
    """The model folder the pipeline tests read with (the session's tiny reader model; tests only read it)."""
    return tiny_model_dir


@pytest.fixture
def fresh_database():
    """A new empty database on the test server, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("MEGALODOC_TEST_POSTGRES_URL is not set (source .ci/postgres.sh to start a server)")
    import sqlalchemy  # only to create/drop the scratch database; megalodoc's code goes through storage

    name = f"workers_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()
