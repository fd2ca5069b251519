"""Repositories: the stdlib json package as a folder, .zip and .tar.gz, and hand-made repositories
with nested .gitignore files, binary, oversize, Latin-1, empty and unreadable files and symlinks."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from megalodoc.ingest.sources import (
    REPO_FILE_HEADER,
    CorruptArchiveError,
    EmptySourceError,
    Locator,
    RepoSource,
    SourceChangedError,
    SourceError,
    SourceOptions,
    open_source,
)


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def file_texts(source: RepoSource) -> dict[str, str]:
    """Split a repository's text stream back into files at the header lines."""
    files: dict[str, str] = {}
    current = None
    for line in source.text().split("\n"):
        if line.startswith("# file: "):
            current = line[len("# file: "):]
            files[current] = ""
        elif current is not None:
            files[current] += line + "\n"
    # every file but the last is followed by the empty line that precedes the next header
    names = list(files)
    for name in names[:-1]:
        files[name] = files[name][:-1]
    files[names[-1]] = files[names[-1]][:-1]
    return files


def skipped(source: RepoSource) -> dict[str, str]:
    return {notice.subject: notice.reason for notice in source.skipped}


def test_stdlib_json_folder(json_repo: Path):
    source = open_source(json_repo)
    assert isinstance(source, RepoSource)
    expected = sorted(path.name for path in json_repo.glob("*.py"))
    assert (source.kind, source.name, source.unit_name, source.unit_count) == ("repo", "json", "file", len(expected))
    texts = file_texts(source)
    assert list(texts) == [f"json/{name}" for name in expected]
    for name in expected:
        assert texts[f"json/{name}"] == (json_repo / name).read_text(encoding="utf-8")
    assert source.text().startswith(REPO_FILE_HEADER.format(path="json/__init__.py"))
    assert set(source.encodings.values()) == {"utf-8"}


def test_locators_cover_every_line_of_every_file(json_repo: Path):
    source = open_source(json_repo, SourceOptions(repo_piece_lines=50))
    pieces = list(source.pieces())
    assert [piece.index for piece in pieces] == list(range(len(pieces)))
    covered: dict[str, list[int]] = {}
    for piece in pieces:
        locator = piece.locator
        assert locator.kind == "lines"
        lines = covered.setdefault(locator.path, [])
        assert locator.line_start == len(lines) + 1, f"{locator} does not continue the previous piece"
        lines.extend(range(locator.line_start, locator.line_end + 1))
        assert locator.line_end - locator.line_start < 50
    for name in covered:
        real = (json_repo / name.removeprefix("json/")).read_text(encoding="utf-8")
        assert len(covered[name]) == real.count("\n")


def test_piece_locators_point_at_the_right_lines(json_repo: Path):
    source = open_source(json_repo, SourceOptions(repo_piece_lines=7))
    for piece in source.pieces():
        loc = piece.locator
        real = (json_repo / loc.path.removeprefix("json/")).read_text(encoding="utf-8").split("\n")
        body = piece.text.split("# file: " + loc.path + "\n", 1)[-1]
        assert body == "".join(line + "\n" for line in real[loc.line_start - 1:loc.line_end])


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return target


def _tar_folder(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted(folder.rglob("*"), reverse=True):  # archive order differs from reading order
            archive.add(path, path.relative_to(folder.parent).as_posix(), recursive=False)
    return target


def test_json_as_zip_and_tar_gz_equals_the_folder(json_repo: Path, tmp_path: Path):
    folder = open_source(json_repo)
    for archive in (_zip_folder(json_repo, tmp_path / "json.zip"), _tar_folder(json_repo, tmp_path / "json.tgz")):
        with open_source(archive) as source:
            assert source.kind == "repo" and source.name == "json"
            assert source.content_hash == folder.content_hash
            assert list(source.pieces()) == list(folder.pieces())


def test_archive_without_a_single_top_folder_is_named_after_the_archive(tmp_path: Path):
    target = tmp_path / "loose-files.tar.gz"
    with tarfile.open(target, "w:gz") as archive:
        for name, text in (("b.py", "print('b')\n"), ("a.py", "print('a')\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    source = open_source(target)
    assert source.name == "loose-files"
    assert source.text() == "# file: loose-files/a.py\nprint('a')\n\n# file: loose-files/b.py\nprint('b')\n"


def test_a_changed_file_gives_a_new_hash(json_repo: Path):
    before = open_source(json_repo).content_hash
    with open(json_repo / "tool.py", "a", encoding="utf-8") as handle:
        handle.write("# one more line\n")
    assert open_source(json_repo).content_hash != before


def test_a_file_changed_after_opening_is_an_error_naming_it(json_repo: Path):
    source = open_source(json_repo)
    with open(json_repo / "scanner.py", "a", encoding="utf-8") as handle:
        handle.write("# edited while reading\n")
    with pytest.raises(SourceChangedError) as error:
        list(source.pieces())
    assert str(error.value).startswith(f"{json_repo}: json/scanner.py changed")


def test_resume_at_a_piece_index(json_repo: Path):
    source = open_source(json_repo, SourceOptions(repo_piece_lines=40))
    whole = list(source.pieces())
    for start in (0, 1, 9, len(whole) - 1, len(whole)):
        assert list(source.pieces(start)) == whole[start:]


def test_nested_gitignore_files_and_default_ignores(tmp_path: Path):
    root = tmp_path / "proj"
    write(root, ".gitignore", "*.log\n/secret.txt\n")
    write(root, "main.py", "print('main')\n")
    write(root, "a.log", "ignored log\n")
    write(root, "secret.txt", "anchored: ignored at the root only\n")
    write(root, "y.tmp", "*.tmp is ignored only below sub/\n")
    write(root, "sub/.gitignore", "!keep.log\n*.tmp\n")
    write(root, "sub/keep.log", "re-included by sub/.gitignore\n")
    write(root, "sub/other.log", "still ignored\n")
    write(root, "sub/x.tmp", "ignored by sub/.gitignore\n")
    write(root, "sub/secret.txt", "kept: /secret.txt is anchored to the root\n")
    write(root, "sub/deeper/.gitignore", "data/\n")
    write(root, "sub/deeper/data/rows.csv", "1,2\n")
    write(root, "sub/deeper/data.txt", "kept: data/ matches folders only\n")
    write(root, "node_modules/pkg/index.js", "module.exports = 1\n")
    write(root, "build/out.txt", "generated\n")
    write(root, "pkg/__pycache__/m.cpython-311.pyc", b"\x00\x01")
    write(root, ".git/config", "[core]\n")
    write(root, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    write(root, "myenv/lib/site.py", "x = 1\n")
    source = open_source(root)
    kept = list(file_texts(source))
    assert kept == ["proj/.gitignore", "proj/main.py", "proj/y.tmp", "proj/sub/.gitignore", "proj/sub/keep.log",
                    "proj/sub/secret.txt", "proj/sub/deeper/.gitignore", "proj/sub/deeper/data.txt"]
    reasons = skipped(source)
    assert reasons["proj/a.log"] == "ignored by proj/.gitignore (pattern '*.log')"
    assert reasons["proj/secret.txt"] == "ignored by proj/.gitignore (pattern '/secret.txt')"
    assert reasons["proj/sub/other.log"] == "ignored by proj/.gitignore (pattern '*.log')"
    assert reasons["proj/sub/x.tmp"] == "ignored by proj/sub/.gitignore (pattern '*.tmp')"
    assert reasons["proj/sub/deeper/data"] == "ignored by proj/sub/deeper/.gitignore (pattern 'data/')"
    assert reasons["proj/node_modules"] == "ignored by the default ignore list (pattern 'node_modules/')"
    assert reasons["proj/build"] == "ignored by the default ignore list (pattern 'build/')"
    assert reasons["proj/pkg/__pycache__"] == "ignored by the default ignore list (pattern '__pycache__/')"
    assert reasons["proj/.git"] == "version-control metadata"
    assert reasons["proj/myenv"] == "a Python virtual environment (pyvenv.cfg inside)"
    assert "proj/pkg" not in reasons  # an empty folder after ignoring is simply empty


def test_gitignore_can_be_switched_off_and_extra_patterns_added(tmp_path: Path):
    root = tmp_path / "proj"
    write(root, ".gitignore", "*.log\n")
    write(root, "a.log", "log\n")
    write(root, "b.py", "b = 1\n")
    write(root, "c.py", "c = 1\n")
    options = SourceOptions(honour_gitignore=False, extra_ignore=("c.py",))
    assert list(file_texts(open_source(root, options))) == ["proj/.gitignore", "proj/a.log", "proj/b.py"]


def test_binary_oversize_latin1_and_empty_files(tmp_path: Path):
    root = tmp_path / "mixed"
    write(root, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write(root, "controls.dat", bytes([1, 2, 3, 4, 5, 6, 7, 14, 15, 16]) * 100)
    write(root, "big.txt", "x" * ((1 << 20) + 1))
    write(root, "latin1.py", "# caf\u00e9 na\u00efve\n".encode("latin-1"))
    write(root, "undefined_cp1252.txt", b"byte \x81 undefined in cp1252\n")
    write(root, "utf16.txt", "wide \u00e9\n".encode("utf-16"))
    write(root, "empty.py", b"")
    write(root, "crlf.txt", b"one\r\ntwo\rthree")
    source = open_source(root)
    reasons = skipped(source)
    assert reasons["mixed/image.png"] == "binary file (NUL byte at offset 8)"
    assert reasons["mixed/controls.dat"].startswith("binary file (100% control bytes")
    assert reasons["mixed/big.txt"] == "larger than the size cap (1,048,577 > 1,048,576 bytes)"
    texts = file_texts(source)
    assert texts["mixed/latin1.py"] == "# caf\u00e9 na\u00efve\n"
    assert texts["mixed/undefined_cp1252.txt"] == "byte \x81 undefined in cp1252\n"
    assert texts["mixed/utf16.txt"] == "wide \u00e9\n"
    assert texts["mixed/empty.py"] == ""
    assert texts["mixed/crlf.txt"] == "one\ntwo\nthree\n"
    assert source.encodings["mixed/latin1.py"] == "cp1252"
    assert source.encodings["mixed/undefined_cp1252.txt"] == "latin-1"
    assert source.encodings["mixed/utf16.txt"] == "utf-16"
    warnings = {str(notice) for notice in source.warnings}
    assert "mixed/latin1.py: not valid UTF-8; decoded as cp1252" in warnings
    assert "mixed/undefined_cp1252.txt: not valid UTF-8; decoded as latin-1" in warnings
    empty = [piece for piece in source.pieces() if piece.locator.path == "mixed/empty.py"]
    assert [piece.locator for piece in empty] == [Locator.for_lines("mixed/empty.py", 1, 1)]


def test_size_cap_is_configurable(tmp_path: Path):
    root = tmp_path / "cap"
    write(root, "small.py", "a = 1\n")
    write(root, "medium.py", "b = 2\n" * 100)
    source = open_source(root, SourceOptions(max_file_bytes=100))
    assert list(file_texts(source)) == ["cap/small.py"]
    assert skipped(source) == {"cap/medium.py": "larger than the size cap (600 > 100 bytes)"}


def test_symlink_loops_and_other_links_are_reported_not_followed(tmp_path: Path):
    root = tmp_path / "links"
    write(root, "real.py", "x = 1\n")
    write(root, "pkg/mod.py", "y = 2\n")
    os.symlink(".", root / "pkg" / "here")  # folder loop: points to its own folder
    os.symlink("..", root / "pkg" / "up")  # folder loop: points to its parent
    os.symlink("self", root / "self")  # a link to itself
    os.symlink("ping", root / "pong")
    os.symlink("pong", root / "ping")  # two links pointing at each other
    os.symlink("missing.py", root / "broken.py")
    os.symlink("/etc/hostname", root / "outside")
    os.symlink("real.py", root / "alias.py")
    source = open_source(root)
    assert list(file_texts(source)) == ["links/real.py", "links/pkg/mod.py"]
    reasons = skipped(source)
    assert reasons["links/pkg/here"].startswith("symlink loop (-> . points to its own parent folder)")
    assert reasons["links/pkg/up"].startswith("symlink loop (-> .. points to its own parent folder)")
    assert reasons["links/self"].startswith("symlink loop (self -> self resolves to itself)")
    assert reasons["links/ping"].startswith("symlink loop") and reasons["links/pong"].startswith("symlink loop")
    assert reasons["links/broken.py"] == "broken symlink (-> missing.py: target missing)"
    assert reasons["links/outside"] == "symlink to outside the repository (-> /etc/hostname); not followed"
    assert reasons["links/alias.py"] == "symlink (-> real.py); not followed, its target is read as links/real.py"


def _unprivileged() -> int:
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return 65534


def _read_locked(root: Path) -> tuple[RepoSource, str, SourceError]:
    source = open_source(root)
    text = source.text()
    with pytest.raises(SourceError) as error:
        open_source(root / "closed.py")  # the unreadable file given on its own
    return source, text, error.value


def test_unreadable_file_is_reported_and_the_rest_is_read():
    # chmod 000 does not stop root, so as root the reading runs with the effective uid of "nobody"
    # (seteuid, restored afterwards); the files live in a world-traversable folder under /tmp.
    root = Path(tempfile.mkdtemp(prefix="megalodoc-unreadable-", dir="/tmp")) / "locked"
    try:
        root.parent.chmod(0o755)
        write(root, "open.py", "ok = True\n")
        write(root, "closed.py", "hidden = True\n")
        write(root, "sealed/inner.py", "inner = True\n")
        for path in (root, root / "sealed", root / "open.py"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "closed.py").chmod(0o000)
        (root / "sealed").chmod(0o000)
        if os.geteuid() == 0:
            try:
                os.seteuid(_unprivileged())
            except PermissionError:
                pytest.skip("running as root without the right to drop privileges (seteuid): a chmod 000 "
                            "file stays readable, so an unreadable file cannot be made")
            try:
                source, text, single = _read_locked(root)
            finally:
                os.seteuid(0)
        else:
            source, text, single = _read_locked(root)
        assert str(single) == f"{root / 'closed.py'}: unreadable: permission denied"
        assert text == "# file: locked/open.py\nok = True\n"
        reasons = skipped(source)
        assert reasons["locked/closed.py"] == "unreadable (permission denied)"
        assert reasons["locked/sealed"] == "unreadable folder (permission denied)"
    finally:
        for path in (root / "closed.py", root / "sealed"):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(root.parent, ignore_errors=True)


def test_folder_without_readable_files_is_an_error_naming_it(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptySourceError) as error:
        open_source(empty)
    assert str(error.value) == f"{empty}: no readable text files in this repository (the repository holds no files)"
    only_binary = tmp_path / "assets"
    write(only_binary, "logo.png", b"\x89PNG\x00\x00")
    write(only_binary, "__pycache__/x.pyc", b"\x00")
    with pytest.raises(EmptySourceError) as error:
        open_source(only_binary)
    message = str(error.value)
    assert message.startswith(f"{only_binary}: no readable text files in this repository (skipped 2: ")
    assert "assets/logo.png: binary file" in message


def test_unsafe_and_special_archive_members_are_skipped(tmp_path: Path):
    target = tmp_path / "odd.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("odd/ok.py", "fine = 1\n")
        archive.writestr("../escape.py", "evil = 1\n")
        archive.writestr("/abs.py", "evil = 2\n")
    source = open_source(target)
    assert source.text() == "# file: odd/ok.py\nfine = 1\n"
    reasons = skipped(source)
    assert reasons["odd.zip:../escape.py"] == "unsafe path in the archive; skipped"
    assert reasons["odd.zip:/abs.py"] == "unsafe path in the archive; skipped"
    tar_path = tmp_path / "links.tar"
    with tarfile.open(tar_path, "w") as archive:
        data = b"x = 1\n"
        info = tarfile.TarInfo("links/x.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("links/loop")
        link.type = tarfile.SYMTYPE
        link.linkname = "."
        archive.addfile(link)
    source = open_source(tar_path)
    assert skipped(source) == {"links/loop": "symlink in the archive (-> .); not followed"}


def test_corrupt_archives_are_named(json_repo: Path, tmp_path: Path):
    data = _zip_folder(json_repo, tmp_path / "good.zip").read_bytes()
    broken = tmp_path / "broken.zip"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArchiveError) as error:
        open_source(broken)
    assert str(error.value).startswith(f"{broken}: damaged zip archive")
    fake = tmp_path / "fake.tar.gz"
    fake.write_text("plain text pretending to be a tarball\n")
    with pytest.raises(CorruptArchiveError, match="named like an archive"):
        open_source(fake)


def test_hash_is_over_paths_and_bytes(tmp_path: Path):
    one = tmp_path / "one" / "r"
    two = tmp_path / "two" / "r"
    write(one, "a.py", "same\n")
    write(two, "b.py", "same\n")
    assert open_source(one).content_hash != open_source(two).content_hash
    write(two, "b.py", "")
    (two / "b.py").unlink()
    write(two, "a.py", "same\n")
    assert open_source(one).content_hash == open_source(two).content_hash
    assert len(open_source(one).content_hash) == len(hashlib.sha256().hexdigest())
