"""Opening a PDF with pypdf and extracting cleaned page text; used in-process and in worker processes.

Kept free of heavy imports: spawned extraction workers import this module and nothing of the model.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError
from pypdf.generic import DictionaryObject, IndirectObject, StreamObject

from ..normalize import clean_pdf_text
from .decoding import READ_BLOCK
from .errors import CorruptPdfError, EmptySourceError, EncryptedPdfError, SourceChangedError, SourceError
from .path_checks import open_binary, read_regular

EOF_WINDOW = 8192
"""A complete PDF ends with "%%EOF" within this many bytes (a little trailing junk is common)."""

MAX_WARNINGS_PER_PAGE = 5
"""pypdf can log the same complaint hundreds of times on one damaged page."""


@dataclass(frozen=True)
class PageText:
    """The cleaned text of one page (``page`` 1-based), what pypdf complained about on it, and the
    error that stopped its extraction if any."""

    page: int
    text: str
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    """Why extraction failed on this page (its text is then empty), or None."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open_binary(path) as handle:
        while block := handle.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def open_pdf(path: Path, expected_sha256: str | None = None) -> PdfReader:
    """Open ``path`` with pypdf, decrypting with an empty password when needed.

    Raises CorruptPdfError, EncryptedPdfError, EmptySourceError (no pages) or SourceChangedError (when
    ``expected_sha256`` is given and the bytes differ), each naming the file.
    """
    try:
        data = read_regular(path)
    except OSError as error:
        raise SourceError(path, f"unreadable ({error.strerror or error})") from error
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SourceChangedError(path, "the file changed after it was opened; open it again")
    if b"%%EOF" not in data[-EOF_WINDOW:]:
        raise CorruptPdfError(path, "truncated or corrupt PDF: no %%EOF marker at the end of the file")
    with quiet_pypdf():
        try:
            reader = PdfReader(BytesIO(data), strict=False)
        except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            raise CorruptPdfError(path, f"corrupt PDF: pypdf cannot parse it ({describe_error(error)})") from error
        if reader.is_encrypted:
            _decrypt(reader, path)
        try:
            pages = len(reader.pages)
        except (PdfReadError, FileNotDecryptedError, ValueError, KeyError, TypeError, AttributeError,
                IndexError) as error:
            raise CorruptPdfError(path, f"corrupt PDF: cannot read its page tree ({describe_error(error)})") from error
    if pages == 0:
        raise EmptySourceError(path, "the PDF has no pages")
    return reader


def _decrypt(reader: PdfReader, path: Path) -> None:
    try:
        opened = reader.decrypt("")
    except DependencyError as error:
        raise EncryptedPdfError(path, f"encrypted PDF; decrypting it needs {error}") from error
    except (PdfReadError, NotImplementedError, ValueError, KeyError) as error:
        raise EncryptedPdfError(path, f"encrypted PDF with an unsupported scheme ({describe_error(error)})") from error
    if not opened:  # PasswordType.NOT_DECRYPTED == 0
        raise EncryptedPdfError(
            path, "encrypted PDF: it needs a password (an empty one does not open it); "
                  "save a decrypted copy first, e.g. `qpdf --decrypt --password=PASSWORD in.pdf out.pdf`")


def has_text_objects(reader: PdfReader) -> bool:
    """Whether any page (or a form XObject it draws) shows text (a Tj, TJ, ' or " operator).

    Scans content streams until the first hit, so a normal PDF answers at its first page; a PDF of
    scanned images has none at all. A stream that cannot be decoded counts as text (extraction will
    tell), so this never rejects a readable PDF.
    """
    seen: set[int] = set()
    with quiet_pypdf():
        for page in reader.pages:
            try:
                contents = page.get_contents()
                if contents is not None and _TEXT_OBJECT.search(contents.get_data()):
                    return True
                if _xobjects_have_text(page.get("/Resources"), seen, depth=0):
                    return True
            except Exception:  # noqa: BLE001 (undecodable stream: let extraction decide)
                return True
    return False


# Text-showing operators: Tj and TJ, or ' and " after a string operand. An empty "BT ... ET" block
# (reportlab writes one on every page) shows nothing, so BT alone is not evidence of text.
_TEXT_OBJECT = re.compile(rb"(?<![A-Za-z0-9_#])T[jJ](?![A-Za-z0-9_#])|[)>]\s*['\"]")
_MAX_FORM_DEPTH = 8  # nested form XObjects deeper than this are not looked into


def _xobjects_have_text(resources: object, seen: set[int], depth: int) -> bool:
    resources = resources.get_object() if isinstance(resources, IndirectObject) else resources
    if not isinstance(resources, DictionaryObject) or depth > _MAX_FORM_DEPTH:
        return False
    xobjects = resources.get("/XObject")
    if xobjects is None:
        return False
    for ref in xobjects.get_object().values():
        if isinstance(ref, IndirectObject):
            if ref.idnum in seen:
                continue
            seen.add(ref.idnum)
        xobject = ref.get_object()
        if not isinstance(xobject, StreamObject) or xobject.get("/Subtype") != "/Form":
            continue
        if _TEXT_OBJECT.search(xobject.get_data()) or _xobjects_have_text(xobject.get("/Resources"), seen,
                                                                            depth + 1):
            return True
    return False


def extract_page(reader: PdfReader, index: int) -> PageText:
    """Extract and clean page ``index`` (0-based), collecting pypdf's warnings about it.

    A page pypdf fails on (a damaged content stream) gives empty text and the reason in ``error``:
    one bad page should not cost the rest of the book.
    """
    error: str | None = None
    raw = ""
    with quiet_pypdf() as complaints:
        try:
            raw = reader.pages[index].extract_text() or ""
        except Exception as failure:  # noqa: BLE001 (pypdf raises many types on damaged content streams)
            error = describe_error(failure)
    unique = list(dict.fromkeys(complaints))[:MAX_WARNINGS_PER_PAGE]
    return PageText(index + 1, clean_pdf_text(raw), unique, error)


class _PdfComplaints(logging.Handler):
    """Installed once, at import, on the "pypdf" logger (which then stops propagating): a record logged
    while this thread is inside `quiet_pypdf()` is collected for the page being read; any other record
    is handed to the root logger, as propagation would have done. Nothing is changed per call, so
    threads reading PDFs at the same time never see each other's complaints or settings."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._local = threading.local()

    def collecting(self) -> list[list[str]]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def emit(self, record: logging.LogRecord) -> None:
        stack = self.collecting()
        if stack:
            stack[-1].append(record.getMessage())
        else:
            root = logging.getLogger()
            if record.levelno >= root.getEffectiveLevel():
                root.handle(record)


def _install_pdf_complaints() -> _PdfComplaints:
    logger = logging.getLogger("pypdf")
    for handler in logger.handlers:
        if isinstance(handler, _PdfComplaints):  # a re-imported module finds the one already there
            return handler
    handler = _PdfComplaints()
    logger.addHandler(handler)
    logger.propagate = False  # the handler forwards what it does not collect to the root logger
    return handler


_COMPLAINTS = _install_pdf_complaints()


@contextmanager
def quiet_pypdf() -> Iterator[list[str]]:
    """Collect the pypdf log records of this thread in the yielded list instead of letting them reach
    stderr. Changes no global state (see `_PdfComplaints`); pypdf reports damaged content through
    logging, and uses `warnings` only for deprecations of its own API."""
    messages: list[str] = []
    stack = _COMPLAINTS.collecting()
    stack.append(messages)
    try:
        yield messages
    finally:
        stack.pop()


def describe_error(error: BaseException) -> str:
    """"Type: message" of an exception, for error reasons."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
