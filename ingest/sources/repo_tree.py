"""Uniform read access to a repository held in a folder, a .zip or a tar archive (.tar, .tar.gz, .tgz,
.tar.bz2, .tar.xz).

A tree lists folders (entries plus problems found while listing) and reads files by their path
relative to the repository root. Symbolic links are never followed, as git does not follow them: each
is reported with what it is (a loop, broken, pointing outside the repository, or a duplicate of a path
inside it). Archives are checked for unsafe member names; a name an archive lists twice is its last
member, as extracting it would leave it (a link member is noted, never followed). Tar archives cannot
be read at random cheaply when compressed, so the files finally chosen are copied to a private
temporary folder in one sequential pass (``prepare``).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from .caps import IngestCaps
from .names import shortened, shown_name
from .path_checks import file_type, open_binary, read_regular, special_device
from .types import Notice

EntryKind = Literal["file", "dir"]
MAX_MEMBER_DEPTH = 100
"""Archive members nested deeper than this many folders are skipped (like deep folders of a tree)."""
SPECIAL_TYPES = frozenset({stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK})
"""Unix file types a zip member may claim that are not data (a member's mode may carry no type at all)."""


@dataclass(frozen=True)
class Entry:
    """A file or folder inside a tree: ``path`` relative to the root, "/"-separated."""

    name: str
    path: str
    kind: EntryKind
    size: int = 0


class Tree:
    """Base of the three tree kinds. ``root_name`` is the repository's name (first path component shown
    in headers and locators); ``label`` names the repository in messages."""

    root_name: str
    label: str

    def list_dir(self, path: str) -> tuple[list[Entry], list[Notice]]:
        """Entries of folder ``path`` ("" is the root) sorted by name, and problems met on the way."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        """The bytes of file ``path``. Raises OSError when it cannot be read."""
        raise NotImplementedError

    def prepare(self, paths: list[str]) -> list[Notice]:
        """Make ``paths`` cheap to read in any order; returns problems met. Default: nothing to do."""
        return []

    def show(self, path: str) -> str:
        """``path`` as shown to people: prefixed with the repository name."""
        return shown_name(f"{self.root_name}/{path}" if path else self.root_name)

    def close(self) -> None:
        """Release temporary files."""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


class FolderTree(Tree):
    """A repository in a folder of the file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.root_name = self.root.name or "repository"
        self.label = str(root)

    def list_dir(self, path: str) -> tuple[list[Entry], list[Notice]]:
        folder = self.root / path if path else self.root
        entries: list[Entry] = []
        problems: list[Notice] = []
        try:
            with os.scandir(folder) as listing:
                items = sorted(listing, key=lambda item: item.name)
        except OSError as error:
            return [], [Notice(self.show(path), f"unreadable folder ({_os_reason(error)})")]
        for item in items:
            child = _join(path, item.name)
            try:
                if item.is_symlink():
                    problems.append(Notice(self.show(child), self._symlink_reason(Path(item.path), folder)))
                    continue
                info = item.stat(follow_symlinks=False)
                mounted = special_device(info)  # /proc, /sys or /dev mounted inside the folder
                if mounted is not None:
                    what = "folder" if stat.S_ISDIR(info.st_mode) else "file"
                    problems.append(Notice(self.show(child), f"a {what} of the kernel or device file system "
                                                             f"{mounted} (mounted here), not a document; not read"))
                elif stat.S_ISDIR(info.st_mode):
                    entries.append(Entry(item.name, child, "dir"))
                elif stat.S_ISREG(info.st_mode):
                    entries.append(Entry(item.name, child, "file", info.st_size))
                else:
                    problems.append(Notice(self.show(child),
                                           f"not a regular file ({file_type(info.st_mode)}); not read"))
            except OSError as error:
                problems.append(Notice(self.show(child), f"unreadable ({_os_reason(error)})"))
        return entries, problems

    def _symlink_reason(self, link: Path, folder: Path) -> str:
        target = shortened(shown_name(os.readlink(link)))
        try:
            resolved = Path(os.path.realpath(link, strict=True))
        except OSError as error:
            if error.errno == errno.ELOOP:
                return f"symlink loop ({shown_name(link.name)} -> {target} resolves to itself); not followed"
            if error.errno == errno.ENOENT:
                return f"broken symlink (-> {target}: target missing)"
            return f"symlink (-> {target}) cannot be resolved ({_os_reason(error)})"
        real_folder = Path(os.path.realpath(folder))
        if resolved == real_folder or resolved in real_folder.parents:
            return f"symlink loop (-> {target} points to its own parent folder); not followed"
        if resolved != self.root and self.root not in resolved.parents:
            return f"symlink to outside the repository (-> {target}); not followed"
        inside = resolved.relative_to(self.root).as_posix()
        return f"symlink (-> {target}); not followed, its target is read as {self.show(inside)}"

    def read(self, path: str) -> bytes:
        # Listed as a regular file; opened without following a symlink swapped in since, and re-checked.
        return read_regular(self.root / path, follow_symlinks=False)


class _IndexedTree(Tree):
    """A tree known from a member list (archives): folders are implied by the file paths."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.label = str(archive)
        self._dirs: dict[str, dict[str, Entry]] = {"": {}}
        self._problems: dict[str, list[Notice]] = {}
        self._strip = ""

    def _index(self, names: list[tuple[str, str, int]]) -> None:
        """``names``: (member name, kind "file"/"dir"/other description, size). Sets root_name."""
        cleaned: list[tuple[str, str, int]] = []
        for name, kind, size in names:
            path = clean_member_name(name)
            if path is None:
                notice = Notice(shown_name(f"{self.archive.name}:{name}"), "unsafe path in the archive; skipped")
                self._problem("", notice)
                continue
            if path.count("/") > MAX_MEMBER_DEPTH:
                self._problem("", Notice(shown_name(f"{self.archive.name}:{name[:200]}..."),
                                         f"nested deeper than {MAX_MEMBER_DEPTH} folders; not read"))
                continue
            cleaned.append((path, kind, size))
        # A name listed again replaces the earlier member, as extracting the archive would: the last one wins.
        cleaned = list({path: (path, kind, size) for path, kind, size in cleaned}.values())
        tops = {path.split("/", 1)[0] for path, _, _ in cleaned}
        single_top = len(tops) == 1 and any("/" in path or kind == "dir" for path, kind, _ in cleaned)
        if single_top:
            self.root_name = tops.pop()
            self._strip = self.root_name + "/"
        else:
            self.root_name = _archive_stem(self.archive)
        for path, kind, size in cleaned:
            if self._strip:
                if path == self.root_name:
                    continue
                path = path[len(self._strip):]
            folder, _, name = path.rpartition("/")
            self._ensure_dir(folder)
            if kind == "dir":
                self._ensure_dir(path)
            elif kind == "file":
                self._dirs[folder][name] = Entry(name, path, "file", size)
            else:
                self._problem(folder, Notice(self.show(path), kind))

    def _ensure_dir(self, path: str) -> None:
        while path not in self._dirs:
            self._dirs[path] = {}
            parent, _, name = path.rpartition("/")
            self._ensure_dir(parent)
            self._dirs[parent][name] = Entry(name, path, "dir")
            path = parent

    def _problem(self, folder: str, notice: Notice) -> None:
        self._problems.setdefault(folder, []).append(notice)

    def list_dir(self, path: str) -> tuple[list[Entry], list[Notice]]:
        entries = sorted(self._dirs.get(path, {}).values(), key=lambda entry: entry.name)
        return entries, list(self._problems.get(path, []))

    def member_name(self, path: str) -> str:
        return self._strip + path


class ZipTree(_IndexedTree):
    """A repository in a .zip file."""

    def __init__(self, archive: Path, caps: IngestCaps | None = None) -> None:
        super().__init__(archive)
        caps = caps or IngestCaps()
        handle = open_binary(archive)
        try:
            self._zip = zipfile.ZipFile(handle)
            infos = self._zip.infolist()
            caps.check_members(archive, len(infos))
            caps.check_expansion(archive, sum(info.file_size for info in infos), os.fstat(handle.fileno()).st_size)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        self._members: dict[str, zipfile.ZipInfo] = {}
        names: list[tuple[str, str, int]] = []
        for info in infos:
            mode = info.external_attr >> 16
            if info.is_dir():
                kind = "dir"
            elif stat.S_ISLNK(mode):
                kind = "symlink in the archive; not followed"
            elif stat.S_IFMT(mode) in SPECIAL_TYPES:
                kind = f"not a regular file ({file_type(mode)}); not read"
            elif info.flag_bits & 0x1:
                kind = "encrypted archive member; cannot be read"
            else:
                kind = "file"
            names.append((info.filename, kind, info.file_size))
            self._members[clean_member_name(info.filename) or info.filename] = info
        self._index(names)

    def read(self, path: str) -> bytes:
        try:
            return self._zip.read(self._members[self.member_name(path)])
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, KeyError) as error:
            raise OSError(f"corrupt archive member ({type(error).__name__}: {error})") from error

    def close(self) -> None:
        self._zip.close()
        self._handle.close()


class TarTree(_IndexedTree):
    """A repository in a tar archive, plain or compressed."""

    def __init__(self, archive: Path, caps: IngestCaps | None = None) -> None:
        super().__init__(archive)
        caps = caps or IngestCaps()
        handle = open_binary(archive)
        try:
            self._tar = tarfile.open(fileobj=handle, mode="r:*")
            members = self._list_members(caps, os.fstat(handle.fileno()).st_size)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        self._members: dict[str, tarfile.TarInfo] = {}
        names: list[tuple[str, str, int]] = []
        for member in members:
            if member.isdir():
                kind = "dir"
            elif member.issym() or member.islnk():
                target = shortened(shown_name(member.linkname))
                kind = f"{'symlink' if member.issym() else 'hard link'} in the archive (-> {target}); not followed"
            elif member.isfile():
                kind = "file"
            else:
                kind = "not a regular file (device, fifo or other special member)"
            names.append((member.name, kind, member.size))
            self._members[clean_member_name(member.name) or member.name] = member
        self._index(names)
        self._copies: Path | None = None
        self._copied: dict[str, Path] = {}  # tree path -> its copy
        self._cleanup: weakref.finalize | None = None

    def _list_members(self, caps: IngestCaps, archive_size: int) -> list[tarfile.TarInfo]:
        """The members, read header by header: a count or expansion bomb is refused as soon as the headers
        read so far show it, before the rest of the stream is decompressed."""
        members: list[tarfile.TarInfo] = []
        try:
            while (member := self._tar.next()) is not None:
                members.append(member)
                caps.check_members(self.archive, len(members))
                caps.check_expansion(self.archive, member.offset_data + member.size, archive_size)
        except BaseException:
            self._tar.close()
            raise
        return members

    def _member(self, path: str) -> tarfile.TarInfo:
        name = self.member_name(path)
        member = self._members.get(name)
        if member is None:
            raise OSError(f"no member {name!r} in {self.archive.name}")
        return member

    def read(self, path: str) -> bytes:
        copy = self._copied.get(path)
        if copy is not None:
            return copy.read_bytes()
        member = self._member(path)
        if not member.isfile():  # extractfile would follow a link member
            raise OSError(f"member {path!r} is not a regular file")
        handle = self._tar.extractfile(member)
        if handle is None:
            raise OSError(f"member {path!r} has no data")
        try:
            return handle.read()
        except (tarfile.TarError, EOFError, OSError) as error:
            raise OSError(f"corrupt archive member ({type(error).__name__}: {error})") from error

    def prepare(self, paths: list[str]) -> list[Notice]:
        """Copy ``paths`` into a temporary folder in one pass in archive order. Each copy gets a short
        generated name: a member's own name may be longer than the file system allows (255 bytes)."""
        if self._copies is None:
            self._make_copies_folder()
        problems: list[Notice] = []
        wanted = sorted(paths, key=lambda path: self._member(path).offset_data)
        for path in wanted:
            target = self._copies / str(len(self._copied))
            try:
                target.write_bytes(self.read(path))
                self._copied[path] = target
            except OSError as error:
                problems.append(Notice(self.show(path), f"unreadable ({_os_reason(error)})"))
        return problems

    def _make_copies_folder(self) -> None:
        """Create the private folder of copies with its removal registered before it exists, so that an
        interrupt (Ctrl-C) between any two statements leaves no folder, or one that `close` or the
        collector removes (``tempfile.mkdtemp`` returns its folder only after creating it: a gap)."""
        while True:
            copies = Path(tempfile.gettempdir()) / f"megalodoc-repo-{secrets.token_hex(8)}"
            self._cleanup = weakref.finalize(self, remove_tree, copies)
            try:
                copies.mkdir(mode=0o700)
            except FileExistsError:  # not ours, so never removed; with 64 random bits it does not repeat
                self._cleanup.detach()
                continue
            self._copies = copies
            return

    def close(self) -> None:
        """Close the archive and remove the copies. Removal runs here rather than through the finalizer's
        call, which unregisters itself before it removes anything: an interrupt in between would leave the
        folder to no one. Interrupted before removing, the finalizer still removes them later (when the
        tree is collected, or at exit)."""
        try:
            self._tar.close()
            self._handle.close()
        finally:
            registered = self._cleanup.peek() if self._cleanup is not None else None  # (tree, func, args, kwargs)
            if registered is not None:
                remove_tree(registered[2][0])
                self._cleanup.detach()


def remove_tree(path: Path) -> None:
    """Remove a folder of extracted copies completely, even when interrupted: an interrupt (Ctrl-C) that
    arrives in the middle lets the removal finish, then is raised. At the caps (at most ``max_files``
    files of ``max_bytes`` in all) removal takes well under a second, so the interrupt stays prompt and
    no extracted files are left behind."""
    interrupted: KeyboardInterrupt | None = None
    while True:
        try:
            shutil.rmtree(path, ignore_errors=True)
            break
        except KeyboardInterrupt as interrupt:
            interrupted = interrupt
    if interrupted is not None:
        raise interrupted


def clean_member_name(name: str) -> str | None:
    """An archive member's path as "a/b/c", or None when it is absolute or climbs out with "..". """
    if name.startswith(("/", "\\")):
        return None
    parts = [part for part in PurePosixPath(name.replace("\\", "/")).parts if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _archive_stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return archive.stem or name


def _os_reason(error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}" + (f" [errno {error.errno}]" if error.errno else "")
    return f"{type(error).__name__}: {error}"
