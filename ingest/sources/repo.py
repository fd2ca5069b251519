"""Repositories: a folder, a .zip or a tar archive read as one document.

Choosing files (at open): walk the tree, skipping version-control folders, what the default ignore list,
the extra patterns and every .gitignore exclude, Python virtual environments (a pyvenv.cfg inside),
symlinks (never followed), special files, files over ``max_file_bytes``, unreadable files and binary
files (NUL bytes or many control bytes in the first 8 KiB). Each skip is recorded in ``skipped`` with its
reason. Kept files are decoded as UTF-8 (a BOM's codec when there is one), else cp1252, else latin-1;
the codec is recorded per file in ``encodings`` and a fallback adds a warning.

Order: within a folder, its files sorted by name, then its subfolders sorted by name (depth first).

Text stream: each file is introduced by a header line ``# file: NAME/PATH`` (NAME is the repository's
name: the folder's name, an archive's single top folder, or the archive's name without its suffix);
every file after the first is preceded by one empty line. The file's text follows byte-exact apart
from "\\r\\n"/"\\r" becoming "\\n" and a final "\\n" added when missing. A file is cut into pieces of
``repo_piece_lines`` lines; the header belongs to the file's first piece. Locators are
``lines(NAME/PATH, first, last)``; an empty file gives the header alone, located at line 1.

Content hash: sha256 over the sorted (path, bytes) of the files read, each length-prefixed, so a
changed, added or removed file gives a new document; the same files in a folder, a .zip or a .tar.gz
give the same hash.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..normalize import normalize_newlines
from .decoding import decode_bytes, sniff_binary
from .errors import EmptySourceError, SourceChangedError
from .ignore import VENV_MARKER, IgnoreRules
from .repo_tree import Tree
from .types import Locator, Notice, Source, SourceOptions, TextPiece

READER_VERSION = 1
"""Bump when the text stream of an unchanged repository would change (header format, order)."""

HEADER = "# file: {path}\n"
"""Introduces each file in the text stream."""

GITIGNORE = ".gitignore"
MAX_FOLDER_DEPTH = 100
"""Folders nested deeper than this are skipped with a note (real repositories stay far below; a deeper
tree is generated or hostile, and walking it would exhaust the stack)."""
MAX_GITIGNORE_BYTES = 1 << 20


@dataclass(frozen=True)
class RepoFile:
    """A file chosen for reading: its path (relative to the root), codec and the sha256 of its bytes."""

    path: str
    encoding: str
    sha256: str
    size: int


class RepoSource(Source):
    """A repository. Open it with :func:`open_source`."""

    kind = "repo"

    def __init__(self, path: Path, tree: Tree, options: SourceOptions) -> None:
        super().__init__(path, tree.root_name, "", options)
        self.tree = tree
        try:
            candidates = self._walk()
            self.options.caps.check_bytes(path, sum(size for _, size in candidates),
                                          f"the {len(candidates):,} files to read")
            self.files = self._check_files(candidates)
            if not self.files:
                raise EmptySourceError(path, f"no readable text files in this repository ({self._skip_summary()})")
            self.content_hash = self._hash()
        except BaseException:
            tree.close()
            raise
        self.unit_name = "file"
        self.unit_count = len(self.files)

    @property
    def stream_version(self) -> str:
        return f"repo/{READER_VERSION} lines={self.options.repo_piece_lines}"

    def display_path(self, path: str) -> str:
        """A repository path as it appears in headers, locators and messages."""
        return self.tree.show(path)

    # choosing files -------------------------------------------------------------------------------

    def _skip(self, path: str, reason: str) -> None:
        self.skipped.append(Notice(self.tree.show(path), reason))

    def _walk(self) -> list[tuple[str, int]]:
        rules = IgnoreRules(defaults=self.options.ignore_defaults, extra=self.options.extra_ignore)
        found: list[tuple[str, int]] = []
        self._walk_dir("", rules, found)
        return found

    def _walk_dir(self, folder: str, rules: IgnoreRules, found: list[tuple[str, int]]) -> None:
        entries, problems = self.tree.list_dir(folder)
        self.skipped.extend(problems)
        names = {entry.name: entry for entry in entries}
        if folder and VENV_MARKER in names and names[VENV_MARKER].kind == "file":
            self._skip(folder, f"a Python virtual environment ({VENV_MARKER} inside)")
            return
        pushed = False
        ignore_file = names.get(GITIGNORE)
        if self.options.honour_gitignore and ignore_file is not None and ignore_file.kind == "file":
            lines = self._read_gitignore(ignore_file.path, ignore_file.size)
            if lines is not None:
                rules.push(folder, lines, self.tree.show(ignore_file.path))
                pushed = True
        try:
            subfolders = []
            for entry in entries:
                reason = rules.reason(entry.path, entry.kind == "dir")
                if reason is not None:
                    self._skip(entry.path, reason)
                elif entry.kind == "dir":
                    subfolders.append(entry)
                elif entry.size > self.options.max_file_bytes:
                    self._skip(entry.path, f"larger than the size cap ({entry.size:,} > "
                                           f"{self.options.max_file_bytes:,} bytes)")
                else:
                    found.append((entry.path, entry.size))
                    self.options.caps.check_files(self.path, len(found))  # stops a huge walk early
            for entry in subfolders:
                if entry.path.count("/") >= MAX_FOLDER_DEPTH:
                    self._skip(entry.path, f"nested deeper than {MAX_FOLDER_DEPTH} folders; not read")
                else:
                    self._walk_dir(entry.path, rules, found)
        finally:
            if pushed:
                rules.pop()

    def _read_gitignore(self, path: str, size: int) -> list[str] | None:
        if size > MAX_GITIGNORE_BYTES:
            self.warnings.append(Notice(self.tree.show(path), "too large to be a real .gitignore; not applied"))
            return None
        try:
            data = self.tree.read(path)
        except OSError as error:
            self.warnings.append(Notice(self.tree.show(path), f"unreadable, not applied ({error})"))
            return None
        return decode_bytes(data)[0].splitlines()

    def _check_files(self, candidates: list[tuple[str, int]]) -> list[RepoFile]:
        self.skipped.extend(self.tree.prepare([path for path, _ in candidates]))
        unreadable = {notice.subject for notice in self.skipped}
        kept: list[RepoFile] = []
        for path, _ in candidates:
            if self.tree.show(path) in unreadable:
                continue
            try:
                data = self.tree.read(path)
            except OSError as error:
                self._skip(path, f"unreadable ({_reason(error)})")
                continue
            if len(data) > self.options.max_file_bytes:  # grew since it was listed
                self._skip(path, f"larger than the size cap ({len(data):,} > {self.options.max_file_bytes:,} bytes)")
                continue
            binary = sniff_binary(data[:8192])
            if binary is not None:
                self._skip(path, binary)
                continue
            try:
                _, encoding = decode_bytes(data)
            except UnicodeDecodeError as error:  # a byte-order mark the bytes contradict
                self._skip(path, f"not valid {error.encoding} after its byte-order mark; not read")
                continue
            shown = self.tree.show(path)
            self.encodings[shown] = encoding
            if encoding in ("cp1252", "latin-1"):
                self.warnings.append(Notice(shown, f"not valid UTF-8; decoded as {encoding}"))
            kept.append(RepoFile(path, encoding, hashlib.sha256(data).hexdigest(), len(data)))
        return kept

    def _hash(self) -> str:
        digest = hashlib.sha256(b"megalodoc-repo\0")
        for file in sorted(self.files, key=lambda file: file.path):
            name = self.tree.show(file.path).encode("utf-8", "surrogateescape")
            digest.update(len(name).to_bytes(8, "little") + name)
            digest.update(file.size.to_bytes(8, "little") + bytes.fromhex(file.sha256))
        return digest.hexdigest()

    def _skip_summary(self) -> str:
        if not self.skipped:
            return "the repository holds no files"
        counts = Counter(_reason_kind(notice.reason) for notice in self.skipped)
        kinds = ", ".join(f"{count} {kind}" for kind, count in counts.most_common())
        examples = "; ".join(str(notice) for notice in self.skipped[:3])
        return f"skipped {len(self.skipped)}: {kinds}; e.g. {examples}"

    # streaming ------------------------------------------------------------------------------------

    def pieces(self, start: int = 0) -> Iterator[TextPiece]:
        index = 0
        lines_per_piece = self.options.repo_piece_lines
        for number, file in enumerate(self.files):
            shown = self.tree.show(file.path)
            text = self._read_checked(file)
            lines = split_lines(text)
            groups = (len(lines) + lines_per_piece - 1) // lines_per_piece
            if index + groups <= start:  # resuming: this whole file comes before the start piece
                index += groups
                continue
            header = ("\n" if number else "") + HEADER.format(path=shown)
            for group in range(groups):
                first = group * lines_per_piece
                chunk = "".join(lines[first:first + lines_per_piece])
                if group == 0:
                    chunk = header + chunk
                if index >= start:
                    last = min(first + lines_per_piece, len(lines))
                    yield TextPiece(chunk, Locator.for_lines(shown, first + 1, max(first + 1, last)), index)
                index += 1

    def _read_checked(self, file: RepoFile) -> str:
        try:
            data = self.tree.read(file.path)
        except OSError as error:
            raise SourceChangedError(self.path, f"{self.tree.show(file.path)} became unreadable after the "
                                                f"repository was opened ({_reason(error)})") from error
        if hashlib.sha256(data).hexdigest() != file.sha256:
            raise SourceChangedError(self.path, f"{self.tree.show(file.path)} changed after the repository was "
                                                "opened; open it again")
        text = normalize_newlines(data.decode(file.encoding))
        if text and not text.endswith("\n"):
            text += "\n"
        return text

    def close(self) -> None:
        self.tree.close()


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` with their "\\n" (only "\\n" ends a line; form feeds and the like do not);
    [""] for empty text."""
    if not text:
        return [""]
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    return lines


def _reason(error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    return str(error) or type(error).__name__


def _reason_kind(reason: str) -> str:
    for marker in ("ignored", "binary", "size cap", "symlink", "unreadable", "virtual environment",
                   "version-control", "not a regular file", "nested deeper"):
        if marker in reason:
            return marker
    return "other"
