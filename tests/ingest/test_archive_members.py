"""Archive members a tar or zip file may hold but a folder cannot: one name listed several times, and
names longer than a file system allows."""

from __future__ import annotations

import io
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

from megalodoc.ingest.sources import open_source
from megalodoc.ingest.sources.repo_tree import TarTree


def _tar(target: Path, members: list[tuple[str, bytes | tuple[bytes, str]]]) -> Path:
    """A .tar.gz of ``members``: (name, data) for a file, (name, (type, link target)) for a link."""
    with tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = content
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return target


def _zip(target: Path, members: list[tuple[str, bytes | tuple[bytes, str]]]) -> Path:
    """A .zip of ``members``: (name, data) for a file, (name, (SYMTYPE, link target)) for a symlink."""
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about a duplicate name
        for name, content in members:
            if isinstance(content, tuple):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, content[1])
            else:
                archive.writestr(name, content)
    return target


def _read(path: Path) -> tuple[str, dict[str, str]]:
    with open_source(path) as source:
        return source.text(), {notice.subject: notice.reason for notice in source.skipped}


@pytest.mark.parametrize("make", [_tar, _zip], ids=["tar", "zip"])
@pytest.mark.parametrize("link", [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "../../etc/passwd")],
                         ids=["symlink", "hardlink"])
def test_a_name_listed_twice_is_the_last_member_and_a_link_is_not_followed(tmp_path: Path, make, link):
    if make is _zip and link[0] == tarfile.LNKTYPE:
        pytest.skip("zip has no hard links")
    suffix = ".tar.gz" if make is _tar else ".zip"
    file_then_link = make(tmp_path / f"r{suffix}", [("r/ok.py", b"ok = 1\n"), ("r/a.py", b"a = 1\n"),
                                                   ("r/a.py", link)])
    text, reasons = _read(file_then_link)
    assert text == "# file: r/ok.py\nok = 1\n"
    kind = "symlink" if link[0] == tarfile.SYMTYPE else "hard link"
    assert reasons == {"r/a.py": f"{kind} in the archive (-> {link[1]}); not followed"
                       if make is _tar else "symlink in the archive; not followed"}
    link_then_file = make(tmp_path / f"s{suffix}", [("s/a.py", link), ("s/a.py", b"a = 2\n"),
                                                   ("s/b.py", b"b = 1\n"), ("s/b.py", b"b = 2\n")])
    text, reasons = _read(link_then_file)
    assert text == "# file: s/a.py\na = 2\n\n# file: s/b.py\nb = 2\n"
    assert reasons == {}


def test_reading_a_link_member_of_a_tar_is_an_os_error_not_a_followed_link(tmp_path: Path):
    archive = _tar(tmp_path / "l.tar.gz", [("l/a.py", b"a = 1\n"), ("l/out", (tarfile.SYMTYPE, "/etc/passwd"))])
    tree = TarTree(archive)
    try:
        assert tree.read("a.py") == b"a = 1\n"
        with pytest.raises(OSError, match="'out' is not a regular file"):
            tree.read("out")
    finally:
        tree.close()


def test_member_names_longer_than_a_file_system_allows_are_read_from_a_tar_as_from_a_zip(tmp_path: Path):
    long_file = "r/" + "x" * 300 + ".py"
    long_folder = "r/" + "d" * 300 + "/b.py"
    members = [("r/ok.py", b"ok = 1\n"), (long_file, b"x = 1\n"), (long_folder, b"b = 1\n")]
    texts = [_read(make(tmp_path / f"long{suffix}", members)) for make, suffix in ((_tar, ".tar"), (_zip, ".zip"))]
    assert texts[0] == texts[1]
    text, reasons = texts[0]
    assert reasons == {}
    assert f"# file: {long_file}\nx = 1\n" in text and f"# file: {long_folder}\nb = 1\n" in text


def test_a_note_shortens_a_long_name(tmp_path: Path):
    name = "r/" + "y" * 5000 + ".bin"
    link = (tarfile.SYMTYPE, "z" * 5000)
    members = [("r/ok.py", b"ok = 1\n"), (name, b"\0binary"), ("r/link", link)]
    with open_source(_tar(tmp_path / "r.tar", members)) as source:
        binary, linked = sorted(source.skipped, key=lambda notice: notice.subject, reverse=True)
    assert binary.subject == name  # the whole name stays the file's identity
    note = str(binary)
    assert note.startswith("r/yyy") and note.endswith(".bin: binary file (NUL byte at offset 0)")
    assert len(note) < 250
    assert str(linked).startswith("r/link: symlink in the archive (-> zzz") and len(str(linked)) < 250
