"""A generator of hostile and broken inputs, made at test time in a folder (nothing is committed).

``build(root)`` writes every case under ``root/given/`` and the things they try to reach under
``root/outside/`` (a secret file and folder that no case may open or store), and returns the cases.
Each ``Hostile`` says what ingest must do with its path:

    "ingest"  read it (a ``note`` may be expected among the warnings or skipped notes)
    "skip"    read it, skipping the named parts with a note containing ``words``
    "refuse"  refuse it with a message that names the path and contains ``words``

``HOSTILE_CAPS`` are the caps the cases are judged under (small, so that the huge and bomb cases stay
small and fast to make).
"""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from megalodoc.ingest.sources import IngestCaps

SECRET = "SECRET-7f3a-must-never-be-read"
HOSTILE_CAPS = IngestCaps(max_bytes=256 << 10, max_tokens=None, max_files=100, max_pages=40, max_expansion=100)
PROSE = "The reader keeps its state at every chunk boundary and resumes from there.\n"


@dataclass(frozen=True)
class Hostile:
    kind: str
    path: str  # as given on the command line (a trailing slash matters)
    outcome: str  # ingest | skip | refuse
    words: str = ""
    unprivileged: bool = False  # only meaningful when run as a user without root's override
    unread: tuple[Path, ...] = ()  # paths that must never be opened (special files)


Maker = Callable[[Path, Path], Hostile]  # (given folder, outside folder) -> case
MAKERS: list[Maker] = []


def case(maker: Maker) -> Maker:
    MAKERS.append(maker)
    return maker


def build(root: Path) -> list[Hostile]:
    """Write every case under ``root`` and return them (kinds are unique)."""
    given, outside = root / "given", root / "outside"
    given.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{SECRET}\n")
    (outside / "folder").mkdir()
    (outside / "folder" / "inner.py").write_text(f"secret = '{SECRET}'\n")
    cases = [maker(given, outside) for maker in MAKERS]
    cases = [Hostile(c.kind, os.fspath(c.path), c.outcome, c.words, c.unprivileged, c.unread) for c in cases]
    assert len({c.kind for c in cases}) == len(cases)
    return cases


def text(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def repo(path: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        text(path / name, content)
    return path


def tar_with(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return path


def zip_with(path: Path, members: list[tuple[str, str | bytes] | tuple[str, str | bytes, int]]) -> Path:
    """A .zip of (name, data) members; a third item is the Unix mode a member claims (type and bits)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode[0] << 16
            archive.writestr(info, data)
    return path


def special_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


# --- PDFs ----------------------------------------------------------------------------------------------


def _pdf(path: Path, pages: int, line: str = PROSE.strip()) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for number in range(pages):
        pdf.drawString(60, 800, f"Page {number + 1}. {line}")
        pdf.showPage()
    pdf.save()
    return path


@case
def pdf_corrupt(given: Path, _: Path) -> Hostile:
    path = text(given / "corrupt.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\nendobj\ngarbage\n%%EOF\n")
    return Hostile("pdf-corrupt", path, "refuse", "corrupt PDF")


@case
def pdf_truncated(given: Path, _: Path) -> Hostile:
    path = _pdf(given / "truncated.pdf", 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Hostile("pdf-truncated", path, "refuse", "truncated or corrupt PDF")


@case
def pdf_encrypted(given: Path, _: Path) -> Hostile:
    from pypdf import PdfReader, PdfWriter

    plain = _pdf(given / "plain-for-encryption.pdf.tmp", 1)
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="hunter2", owner_password="owner", algorithm="AES-256")
    path = given / "encrypted.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    plain.unlink()
    return Hostile("pdf-encrypted", path, "refuse", "encrypted PDF")


@case
def pdf_image_only(given: Path, _: Path) -> Hostile:
    from reportlab.pdfgen import canvas

    path = given / "scan.pdf"
    pdf = canvas.Canvas(str(path))
    pdf.rect(100, 100, 300, 200, fill=1)
    pdf.showPage()
    pdf.save()
    return Hostile("pdf-image-only", path, "refuse", "OCR")


@case
def pdf_huge(given: Path, _: Path) -> Hostile:
    return Hostile("pdf-huge", _pdf(given / "huge.pdf", HOSTILE_CAPS.max_pages + 1), "refuse", "--max-pages")


@case
def pdf_nested(given: Path, _: Path) -> Hostile:
    """Form XObjects nested 30 deep (each drawing the next) and a PDF attached inside the PDF."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

    outer = _pdf(given / "nested-base.pdf.tmp", 1)
    writer = PdfWriter(clone_from=PdfReader(outer))
    inner = None
    for _ in range(30):
        form = DecodedStreamObject()
        form.set_data(b"q /Inner Do Q" if inner is not None else b"BT /F1 9 Tf 10 10 Td (deep) Tj ET")
        form.update({NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Form"),
                     NameObject("/BBox"): ArrayObject([NumberObject(v) for v in (0, 0, 100, 100)])})
        if inner is not None:
            form[NameObject("/Resources")] = DictionaryObject({NameObject("/XObject"): DictionaryObject(
                {NameObject("/Inner"): inner})})
        inner = writer._add_object(form)
    page = writer.pages[0]
    resources = page["/Resources"].get_object()
    resources[NameObject("/XObject")] = DictionaryObject({NameObject("/Deep"): inner})
    writer.add_attachment("inner.pdf", _pdf(given / "attached.pdf.tmp", 1).read_bytes())
    path = given / "nested.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    for temporary in given.glob("*.tmp"):
        temporary.unlink()
    return Hostile("pdf-nested", path, "ingest")


@case
def pdf_named_but_text(given: Path, _: Path) -> Hostile:
    return Hostile("pdf-mislabelled", text(given / "notes.pdf", PROSE), "refuse", "no %PDF- header")


# --- encodings -------------------------------------------------------------------------------------------


@case
def utf16_bom(given: Path, _: Path) -> Hostile:
    return Hostile("utf16-bom", text(given / "utf16-bom.txt", ("Grüße. " + PROSE).encode("utf-16")), "ingest")


@case
def utf16_no_bom(given: Path, _: Path) -> Hostile:
    return Hostile("utf16-no-bom", text(given / "utf16-le.txt", PROSE.encode("utf-16-le")), "ingest")


@case
def utf16_bad_bom(given: Path, _: Path) -> Hostile:
    return Hostile("utf16-bom-contradicted", text(given / "bad-bom.txt", b"\xff\xfeA\x00B"), "refuse",
                   "not valid utf-16")


@case
def latin1(given: Path, _: Path) -> Hostile:
    return Hostile("latin-1", text(given / "latin1.txt", ("Café déjà vu. " + PROSE).encode("latin-1")), "ingest",
                   "decoded as cp1252")


@case
def mixed_newlines(given: Path, _: Path) -> Hostile:
    return Hostile("mixed-newlines", text(given / "newlines.txt", b"one\r\ntwo\rthree\nfour\r\n\r\rfive"), "ingest")


@case
def invalid_utf8(given: Path, _: Path) -> Hostile:
    return Hostile("invalid-utf8", text(given / "invalid.txt", PROSE.encode() + b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\n"),
                   "ingest", "not valid UTF-8")


@case
def nul_bytes(given: Path, _: Path) -> Hostile:
    return Hostile("nul-bytes", text(given / "nul.txt", PROSE.encode() + b"\x00\x00" + PROSE.encode()), "refuse",
                   "NUL byte")


@case
def long_line(given: Path, _: Path) -> Hostile:
    return Hostile("very-long-line", text(given / "long-line.txt", "x" * 6_000 + "\n"), "ingest")


@case
def whitespace_only(given: Path, _: Path) -> Hostile:
    return Hostile("unicode-whitespace", text(given / "blank.txt", "\u00a0\u3000\u2028\u200b \n" * 50), "refuse",
                   "only whitespace")


@case
def empty(given: Path, _: Path) -> Hostile:
    return Hostile("empty", text(given / "empty.md", ""), "refuse", "empty file")


@case
def huge_text(given: Path, _: Path) -> Hostile:
    return Hostile("huge-text", text(given / "huge.txt", "y" * (HOSTILE_CAPS.max_bytes + 1)), "refuse",
                   "--max-bytes")


@case
def binary(given: Path, _: Path) -> Hostile:
    return Hostile("binary", text(given / "program", b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 4), "refuse",
                   "binary")


# --- markup that tries to reach other files ----------------------------------------------------------------


@case
def markdown_includes(given: Path, outside: Path) -> Hostile:
    body = (f"# Notes\n\n{PROSE}\n{{!{outside}/secret.txt!}}\n\n--8<-- \"{outside}/secret.txt\"\n\n"
            f"![img]({outside}/secret.txt)\n[link](file://{outside}/secret.txt)\n"
            f"<!-- #include file=\"{outside}/secret.txt\" -->\n")
    return Hostile("markdown-include", text(given / "include.md", body), "ingest")


@case
def rst_includes(given: Path, outside: Path) -> Hostile:
    body = (f"Title\n=====\n\n{PROSE}\n.. include:: {outside}/secret.txt\n\n"
            ".. literalinclude:: ../outside/secret.txt\n\n"
            f".. raw:: html\n   :file: {outside}/secret.txt\n\n.. image:: /proc/self/environ\n")
    return Hostile("rst-include", text(given / "include.rst", body), "ingest")


@case
def html_entities(given: Path, outside: Path) -> Hostile:
    body = (f'<?xml version="1.0"?>\n<!DOCTYPE html [<!ENTITY xxe SYSTEM "file://{outside}/secret.txt">\n'
            '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
            f'<html><body><p>{PROSE} &xxe; &b; &#0; &#99999999; &#x110000; &amp;&lt;</p>'
            f'<iframe src="file://{outside}/secret.txt"></iframe><img src="/proc/self/environ">'
            f'<object data="{outside}/secret.txt"></object><script>fetch("file:///etc/passwd")</script>'
            '</body></html>\n')
    return Hostile("html-entities", text(given / "entities.html", body), "ingest")


# --- archives -------------------------------------------------------------------------------------------


@case
def tar_escapes(given: Path, outside: Path) -> Hostile:
    path = tar_with(given / "escapes.tar.gz", [
        ("escapes/ok.py", PROSE.encode()),
        ("../escaped.py", b"x = 1\n"),
        (f"{outside}/absolute.py", b"y = 2\n"),
    ])
    return Hostile("tar-dotdot-absolute", path, "skip", "unsafe path in the archive")


@case
def zip_escapes(given: Path, outside: Path) -> Hostile:
    path = zip_with(given / "escapes.zip", [("zipped/ok.py", PROSE), ("../../escaped.py", "x = 1\n"),
                                            (f"{outside}/absolute.py", "y = 2\n")])
    return Hostile("zip-dotdot-absolute", path, "skip", "unsafe path in the archive")


@case
def tar_links(given: Path, outside: Path) -> Hostile:
    path = tar_with(given / "links.tar.gz", [
        ("links/ok.py", PROSE.encode()),
        special_member("links/secret-link.txt", tarfile.SYMTYPE, f"{outside}/secret.txt"),
        special_member("links/up.txt", tarfile.SYMTYPE, "../../outside/secret.txt"),
        special_member("links/hard.txt", tarfile.LNKTYPE, f"{outside}/secret.txt"),
    ])
    return Hostile("tar-symlink-hardlink-outside", path, "skip", "in the archive (->")


@case
def zip_symlink(given: Path, outside: Path) -> Hostile:
    path = zip_with(given / "link.zip", [("zl/ok.py", PROSE),
                                         ("zl/secret-link.txt", f"{outside}/secret.txt", stat.S_IFLNK | 0o777)])
    return Hostile("zip-symlink-outside", path, "skip", "symlink in the archive")


@case
def tar_devices(given: Path, _: Path) -> Hostile:
    path = tar_with(given / "devices.tar.gz", [
        ("devices/ok.py", PROSE.encode()),
        special_member("devices/fifo", tarfile.FIFOTYPE),
        special_member("devices/null", tarfile.CHRTYPE),
        special_member("devices/sda", tarfile.BLKTYPE),
    ])
    return Hostile("tar-device-fifo-members", path, "skip", "not a regular file")


@case
def zip_special(given: Path, _: Path) -> Hostile:
    path = zip_with(given / "special.zip", [("zs/ok.py", PROSE), ("zs/pipe", "", stat.S_IFIFO | 0o644)])
    return Hostile("zip-fifo-member", path, "skip", "named pipe")


@case
def zip_ratio_bomb(given: Path, _: Path) -> Hostile:
    path = zip_with(given / "bomb.zip", [("bomb/readme.md", PROSE), ("bomb/zeros.txt", b"0" * (8 << 20))])
    return Hostile("zip-bomb-ratio", path, "refuse", "--max-expansion")


@case
def tar_ratio_bomb(given: Path, _: Path) -> Hostile:
    return Hostile("tar-bomb-ratio", tar_with(given / "bomb.tar.gz", [("bomb/zeros.txt", b"0" * (8 << 20))]),
                   "refuse", "--max-expansion")


@case
def tar_count_bomb(given: Path, _: Path) -> Hostile:
    count = HOSTILE_CAPS.max_files * 10 + 50
    return Hostile("tar-bomb-count", tar_with(given / "many.tar", [(f"many/f{n}.py", b"") for n in range(count)]),
                   "refuse", "members")


@case
def nested_archive(given: Path, _: Path) -> Hostile:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("inner/evil.py", "x = 1\n")
    path = tar_with(given / "nested.tar.gz", [("nested/ok.py", PROSE.encode()), ("nested/inner.zip", inner.getvalue())])
    return Hostile("archive-in-archive", path, "skip", "binary")


@case
def corrupt_archive(given: Path, _: Path) -> Hostile:
    data = tar_with(given / "whole.tar.gz", [("c/ok.py", PROSE.encode() * 50)]).read_bytes()
    (given / "whole.tar.gz").unlink()
    return Hostile("archive-truncated", text(given / "cut.tar.gz", data[: len(data) // 2]), "refuse", "archive")


# --- folders ---------------------------------------------------------------------------------------------


@case
def folder_links(given: Path, outside: Path) -> Hostile:
    root = repo(given / "links-repo", {"ok.py": PROSE})
    (root / "loop").symlink_to(".")
    (root / "self").symlink_to("self")
    (root / "secret.txt").symlink_to(outside / "secret.txt")
    (root / "outside-folder").symlink_to(outside / "folder")
    (root / "environ.txt").symlink_to("/proc/self/environ")
    return Hostile("folder-symlinks-loops-outside", root, "skip", "not followed")


@case
def folder_specials(given: Path, _: Path) -> Hostile:
    root = repo(given / "special-repo", {"ok.py": PROSE})
    os.mkfifo(root / "pipe.txt")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(root / "sock.txt"))
    server.close()
    return Hostile("folder-fifo-socket", root, "skip", "not a regular file", unread=(root / "pipe.txt",))


@case
def folder_unreadable(given: Path, _: Path) -> Hostile:
    root = repo(given / "locked-repo", {"ok.py": PROSE, "closed.py": "hidden = 1\n", "sealed/inner.py": "x = 1\n"})
    (root / "closed.py").chmod(0o000)
    (root / "sealed").chmod(0o000)
    return Hostile("folder-unreadable", root, "skip", "permission denied", unprivileged=True)


@case
def folder_undecodable(given: Path, _: Path) -> Hostile:
    root = given / "names-repo"
    root.mkdir()
    for name in (b"ok.py", b"caf\xe9.py", b"\xff\xfe-odd.txt"):
        with open(os.fsencode(root) + b"/" + name, "wb") as handle:
            handle.write(PROSE.encode())
    return Hostile("folder-undecodable-names", root, "ingest")


@case
def folder_deep(given: Path, _: Path) -> Hostile:
    root = repo(given / "deep-repo", {"top.py": PROSE})
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(130):  # deeper than the walk goes (100), made without recursion
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("bottom.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as handle:
            handle.write("x = 1\n")
    finally:
        os.close(fd)
    return Hostile("folder-deep-nesting", root, "skip", "nested deeper than 100 folders")


@case
def folder_bad_bom(given: Path, _: Path) -> Hostile:
    root = repo(given / "bom-repo", {"ok.py": PROSE, "bad.txt": b"\xff\xfeA\x00B"})
    return Hostile("folder-file-bad-bom", root, "skip", "byte-order mark")


# --- paths given directly --------------------------------------------------------------------------------


@case
def direct_fifo(given: Path, _: Path) -> Hostile:
    path = given / "fifo.txt"
    os.mkfifo(path)
    return Hostile("direct-fifo", path, "refuse", "named pipe", unread=(path,))


@case
def direct_proc_link(given: Path, _: Path) -> Hostile:
    path = given / "version.txt"
    path.symlink_to("/proc/version")
    return Hostile("direct-proc-symlink", path, "refuse", "/proc", unread=(Path("/proc/version"),))


@case
def direct_sys_link(given: Path, _: Path) -> Hostile:
    path = given / "kernel.txt"
    path.symlink_to("/sys/kernel/mm/transparent_hugepage/enabled")
    return Hostile("direct-sys-symlink", path, "refuse", "/sys",
                   unread=(Path("/sys/kernel/mm/transparent_hugepage/enabled"),))


@case
def direct_device_link(given: Path, _: Path) -> Hostile:
    path = given / "zero.txt"
    path.symlink_to("/dev/zero")
    return Hostile("direct-device-symlink", path, "refuse", "/dev", unread=(Path("/dev/zero"),))


@case
def direct_trailing_slash(given: Path, _: Path) -> Hostile:
    path = text(given / "plain.txt", PROSE)
    return Hostile("file-with-trailing-slash", f"{path}/", "refuse", "not a folder")


@case
def direct_unreadable(given: Path, _: Path) -> Hostile:
    path = text(given / "closed.txt", PROSE)
    path.chmod(0o000)
    return Hostile("direct-unreadable", path, "refuse", "permission denied", unprivileged=True)


@case
def direct_broken_link(given: Path, outside: Path) -> Hostile:
    path = given / "broken.txt"
    path.symlink_to(outside / "missing.txt")
    return Hostile("direct-broken-symlink", path, "refuse", "broken symlink")


@case
def office(given: Path, _: Path) -> Hostile:
    path = zip_with(given / "report.docx", [("word/document.xml", "<w:document/>")])
    return Hostile("office-document", path, "refuse", "not supported")
