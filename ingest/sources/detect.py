"""``open_source``: look at a path, decide what it is, check it and open the matching reader."""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from .decoding import SNIFF_BYTES, has_visible_text, iter_decoded, scan_file
from .errors import (
    CorruptArchiveError,
    CorruptPdfError,
    EmptySourceError,
    SourceError,
    UnsupportedSourceError,
)
from .html_text import declared_charset, html_to_text, looks_like_html
from .path_checks import check_input_path, open_binary
from .pdf import PdfSource
from .pdf_extract import file_sha256
from .repo import RepoSource
from .repo_tree import FolderTree, TarTree, Tree, ZipTree
from .text import FORMAT_BY_SUFFIX, TextFormat, TextSource, check_text_file
from .types import Source, SourceOptions

PDF_HEADER_WINDOW = 1024
"""The "%PDF-" header may follow a little junk; readers accept it within the first KiB."""

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
OFFICE_SUFFIXES = frozenset({".epub", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp"})


def open_source(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Source:
    """Open ``path`` as a PDF, a text document (plain, Markdown, reStructuredText, HTML) or a repository
    (a folder, a .zip, a tar archive), detected from its content (magic bytes) before its name.

    Checks the input and computes the content hash; the text is read later by ``pieces()``.
    Raises a SourceError subclass whose message names the path and the cause.
    """
    options = options or SourceOptions()
    info = check_input_path(path)  # refuses special files and locations before any open
    mode = info.st_mode
    path = Path(path)
    if stat.S_ISDIR(mode):
        return RepoSource(path, FolderTree(path), options)
    head = _head(path)
    if not head:
        raise EmptySourceError(path, "empty file (0 bytes)")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffixes else ""
    if b"%PDF-" in head[:PDF_HEADER_WINDOW]:
        return PdfSource(path, file_sha256(path), options)
    if path.suffix.lower() == ".pdf":
        raise CorruptPdfError(path, "no %PDF- header: not a PDF, or a damaged one")
    if head.startswith(ZIP_MAGIC):
        if path.suffix.lower() in OFFICE_SUFFIXES:
            raise UnsupportedSourceError(path, f"{path.suffix} documents are not supported; export it as PDF, "
                                               "HTML or text")
        return RepoSource(path, _open_archive(path, ZipTree, options), options)
    if head[257:262] == b"ustar" or any(head.startswith(magic) for magic in COMPRESSED_MAGIC):
        if _is_tar(path):
            return RepoSource(path, _open_archive(path, TarTree, options), options)
        kind = next((name for magic, name in COMPRESSED_MAGIC.items() if head.startswith(magic)), "tar")
        if kind == "tar" or path.name.lower().endswith(TAR_SUFFIXES):
            raise CorruptArchiveError(path, f"damaged or truncated tar archive ({kind} data that does not read "
                                            "as a tar archive)")
        raise UnsupportedSourceError(path, f"a {kind}-compressed file that is not a tar archive; unpack it first")
    if suffix.endswith((".zip", ".tgz", ".tar", ".tar.gz")):
        raise CorruptArchiveError(path, f"named like an archive ({suffix}) but not one: damaged or mislabelled")
    options.caps.check_bytes(path, info.st_size)  # before the file is read through
    return _open_text(path, head, options)


def _head(path: Path) -> bytes:
    try:
        with open_binary(path) as handle:
            return handle.read(SNIFF_BYTES)
    except PermissionError:
        raise SourceError(path, "unreadable: permission denied") from None
    except OSError as error:
        raise SourceError(path, f"unreadable ({error.strerror or error})") from None


def _is_tar(path: Path) -> bool:
    try:
        with open_binary(path) as handle, tarfile.open(fileobj=handle, mode="r:*") as archive:
            return archive.next() is not None
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        return False


def _open_archive(path: Path, kind: type[ZipTree] | type[TarTree], options: SourceOptions) -> Tree:
    try:
        return kind(path, options.caps)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as error:
        label = "zip" if kind is ZipTree else "tar"
        raise CorruptArchiveError(path, f"damaged {label} archive ({type(error).__name__}: {error})") from error


def _text_format(path: Path, head: bytes) -> TextFormat:
    text_format = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if text_format is not None:
        return text_format
    return "html" if looks_like_html(head) else "plain"


def _open_text(path: Path, head: bytes, options: SourceOptions) -> TextSource:
    text_format = _text_format(path, head)
    declared = declared_charset(head) if text_format == "html" else None
    try:
        scan = scan_file(path, declared)
    except OSError as error:
        raise SourceError(path, f"unreadable ({error.strerror or error})") from None
    check_text_file(path, scan)
    blocks = iter_decoded(path, scan.encoding)
    if text_format == "html" and not any(has_visible_text(text) for text in html_to_text(blocks)):
        raise EmptySourceError(path, "HTML file with no readable text (only markup, scripts or styles)")
    return TextSource(path, scan, text_format, options)
