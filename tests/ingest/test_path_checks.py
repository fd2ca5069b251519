"""Special files and locations are refused from their type and resolved location before any open; a
regular file with a trailing slash is "not a folder"; blank text (Unicode whitespace too) is refused at
open; undecodable names are shown escaped and never sink a repository."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from open_audit import recording, touched

from megalodoc.ingest.sources import (
    EmptySourceError,
    SourceError,
    SourceNotFoundError,
    UnsupportedSourceError,
    open_source,
    shown_name,
)
from megalodoc.ingest.sources.decoding import has_visible_text


def refused(path: str | os.PathLike[str]) -> tuple[SourceError, list[str]]:
    with recording() as opened, pytest.raises(SourceError) as error:
        open_source(path)
    return error.value, opened


def make_socket(path: Path) -> Path:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.close()  # the socket file stays
    return path


@pytest.mark.parametrize("kind", ["fifo", "socket", "dev-null-link", "dev-zero-link", "proc-link", "sys-link"])
def test_special_files_given_directly_are_refused_unopened(tmp_path: Path, kind: str):
    path = tmp_path / f"input-{kind}.txt"
    target = {"dev-null-link": "/dev/null", "dev-zero-link": "/dev/zero", "proc-link": "/proc/self/status",
              "sys-link": "/sys/kernel/mm"}.get(kind)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        make_socket(path)
    else:
        path.symlink_to(target)
    error, opened = refused(path)
    assert isinstance(error, UnsupportedSourceError)
    assert error.path == str(path) and str(error).startswith(f"{path}: ")
    expected = {"fifo": "named pipe", "socket": "socket", "dev-null-link": "/dev", "dev-zero-link": "/dev",
                "proc-link": "/proc", "sys-link": "/sys"}[kind]
    assert expected in error.reason and "refused without reading it" in error.reason
    assert opened == []  # nothing at all was opened, let alone the special file
    if target is not None:
        assert not touched(opened, target)


@pytest.mark.parametrize("given", ["/proc/self/environ", "/proc/self/status", "/proc", "/sys/kernel", "/dev/null",
                                   "/dev/zero", "/dev/shm"])
def test_kernel_and_device_locations_are_refused(given: str):
    if not os.path.exists(given):
        pytest.skip(f"{given} does not exist on this system")
    error, opened = refused(given)
    assert isinstance(error, UnsupportedSourceError) and error.path == given
    assert opened == []


def test_a_regular_file_with_a_trailing_slash_is_not_a_folder(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("some text\n")
    error, opened = refused(f"{path}/")
    assert isinstance(error, UnsupportedSourceError)
    assert str(error) == f"{path}/: not a folder (a regular file written with a trailing slash); drop the slash " \
                         "to read the file"
    assert opened == []
    assert open_source(str(path)).text() == "some text\n"  # without the slash it reads
    with pytest.raises(SourceNotFoundError):
        open_source(f"{path}/inner.txt")


def test_a_folder_with_a_trailing_slash_is_read(tmp_path: Path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "a.py").write_text("a = 1\n")
    assert open_source(f"{tmp_path / 'repo'}/").text() == "# file: repo/a.py\na = 1\n"


def test_special_files_inside_a_folder_are_skipped_unopened(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "ok.py").write_text("ok = 1\n")
    os.mkfifo(repo / "pipe.txt")
    make_socket(repo / "sock.txt")
    (repo / "env.txt").symlink_to("/proc/self/environ")
    (repo / "zero.txt").symlink_to("/dev/zero")
    with recording() as opened:
        source = open_source(repo)
        text = source.text()
    assert text == "# file: repo/ok.py\nok = 1\n"
    reasons = {notice.subject: notice.reason for notice in source.skipped}
    assert reasons["repo/pipe.txt"] == "not a regular file (named pipe (FIFO)); not read"
    assert reasons["repo/sock.txt"] == "not a regular file (socket); not read"
    assert reasons["repo/env.txt"] == "symlink to outside the repository (-> /proc/self/environ); not followed"
    assert reasons["repo/zero.txt"] == "symlink to outside the repository (-> /dev/zero); not followed"
    assert touched(opened, repo / "ok.py")  # the audit sees the file that is read...
    for name in ("pipe.txt", "sock.txt", "env.txt", "zero.txt"):
        assert not touched(opened, repo / name)  # ...and none of the special ones
    assert not any(path.startswith(("/proc", "/dev", "/sys")) for path in opened)


def test_special_members_of_archives_are_skipped(tmp_path: Path):
    tar_path = tmp_path / "special.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        data = b"print('hi')\n"
        info = tarfile.TarInfo("special/ok.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        for name, kind in (("fifo", tarfile.FIFOTYPE), ("null", tarfile.CHRTYPE), ("disk", tarfile.BLKTYPE)):
            member = tarfile.TarInfo(f"special/{name}")
            member.type = kind
            member.devmajor, member.devminor = (1, 3) if kind != tarfile.FIFOTYPE else (0, 0)
            archive.addfile(member)
        link = tarfile.TarInfo("special/env")
        link.type, link.linkname = tarfile.SYMTYPE, "/proc/self/environ"
        archive.addfile(link)
    source = open_source(tar_path)
    assert source.text() == "# file: special/ok.py\nprint('hi')\n"
    reasons = {notice.subject: notice.reason for notice in source.skipped}
    for name in ("fifo", "null", "disk"):
        assert reasons[f"special/{name}"] == "not a regular file (device, fifo or other special member)"
    assert reasons["special/env"].startswith("symlink in the archive (-> /proc/self/environ)")
    source.close()

    zip_path = tmp_path / "special.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("zipped/ok.py", "ok = 1\n")
        for name, kind in (("pipe", stat.S_IFIFO), ("tty", stat.S_IFCHR), ("sock", stat.S_IFSOCK)):
            member = zipfile.ZipInfo(f"zipped/{name}")
            member.external_attr = (kind | 0o644) << 16
            archive.writestr(member, "not data")
    with open_source(zip_path) as source:
        assert source.text() == "# file: zipped/ok.py\nok = 1\n"
        reasons = {notice.subject: notice.reason for notice in source.skipped}
        assert reasons == {"zipped/pipe": "not a regular file (named pipe (FIFO)); not read",
                           "zipped/tty": "not a regular file (character device); not read",
                           "zipped/sock": "not a regular file (socket); not read"}


@pytest.mark.parametrize("blank", [" \t\n", "\u00a0\u00a0\n", "\u3000\u2028\u2029\u0085\n", "\u200b\ufeff \n",
                                   "\u2003" * 5000 + "\n"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_whitespace_only_files_are_refused_at_open(tmp_path: Path, blank: str, encoding: str):
    path = tmp_path / "blank.txt"
    path.write_bytes(blank.encode(encoding))
    with pytest.raises(EmptySourceError) as error:
        open_source(path)
    assert str(error.value).startswith(f"{path}: only whitespace (")
    (tmp_path / "blank.html").write_bytes(f"<html><body><p>{blank}</p></body></html>".encode(encoding))
    with pytest.raises(EmptySourceError):
        open_source(tmp_path / "blank.html")


def test_visible_text_among_unicode_whitespace_is_read(tmp_path: Path):
    path = tmp_path / "almost.txt"
    path.write_text("\u00a0" * 3000 + "é\n")
    assert open_source(path).text().endswith("é\n")
    assert has_visible_text("\u3000x") and not has_visible_text("\u3000\u200b\u00ad \n")


def test_undecodable_names_are_shown_escaped_and_read(tmp_path: Path):
    root = os.fsencode(tmp_path / "repo")
    os.mkdir(root)
    for name, text in ((b"ok.py", b"ok = 1\n"), (b"caf\xe9.py", b"latin = 1\n"), (b"\xff\xfe.txt", b"bom = 2\n")):
        with open(root + b"/" + name, "wb") as handle:
            handle.write(text)
    os.mkdir(root + b"/d\x80ir")
    with open(root + b"/d\x80ir/inner.py", "wb") as handle:
        handle.write(b"inner = 3\n")
    source = open_source(tmp_path / "repo")
    text = source.text()
    assert text == ("# file: repo/caf\\xe9.py\nlatin = 1\n\n# file: repo/ok.py\nok = 1\n\n"
                    "# file: repo/\\xff\\xfe.txt\nbom = 2\n\n# file: repo/d\\x80ir/inner.py\ninner = 3\n")
    text.encode("utf-8")  # storable and tokenizable
    # a single document with such a name: its name and errors are shown escaped
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/n\xe4me.txt")
    Path(odd).write_text("hello\n")
    assert open_source(odd).name == "n\\xe4me.txt"
    Path(odd + ".md").write_text("")
    with pytest.raises(EmptySourceError) as error:
        open_source(odd + ".md")
    assert str(error.value) == f"{shown_name(odd)}.md: empty file (0 bytes)"
    str(error.value).encode("utf-8")
