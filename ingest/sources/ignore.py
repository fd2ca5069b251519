"""Which repository paths to leave out: version-control folders always, a default ignore list, extra
patterns, and the .gitignore files found at every level (gitwildmatch semantics via pathspec).

Precedence follows git: a deeper .gitignore overrides a shallower one, .gitignore files override the
extra patterns, and those override the default list; within one file the last matching pattern wins
(so "!pattern" re-includes). Paths are "/"-separated and relative to the repository root; folders are
matched with a trailing "/".
"""

from __future__ import annotations

from dataclasses import dataclass

from pathspec import GitIgnoreSpec

ALWAYS_IGNORED = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", "CVS"})
"""Version-control metadata: never content, whatever a .gitignore says."""

DEFAULT_IGNORE: tuple[str, ...] = (
    # virtual environments and tool caches
    ".venv/", "venv/", ".tox/", ".nox/", "__pycache__/", "*.py[cod]", ".mypy_cache/", ".pytest_cache/",
    ".ruff_cache/", ".hypothesis/", ".ipynb_checkpoints/", ".cache/", ".eggs/", "*.egg-info/",
    # dependencies fetched by package managers
    "node_modules/", "bower_components/", ".gradle/",
    # build outputs
    "build/", "dist/", "_build/", "target/", ".next/", "htmlcov/", "*.o", "*.so", "*.a", "*.dylib", "*.dll",
    "*.class",
    # editor and OS litter
    ".idea/", ".DS_Store", "*.swp", "*~",
)
"""Ignored in every repository unless a .gitignore re-includes them (``SourceOptions.ignore_defaults``)."""

VENV_MARKER = "pyvenv.cfg"
"""A folder holding this file is a Python virtual environment, whatever its name."""


@dataclass(frozen=True)
class _Level:
    base: str  # folder the patterns are relative to ("" for the root)
    spec: GitIgnoreSpec
    origin: str  # where the patterns come from, for messages


class IgnoreRules:
    """A stack of pattern sets; push a folder's .gitignore when entering it, pop when leaving."""

    def __init__(self, *, defaults: bool = True, extra: tuple[str, ...] = ()) -> None:
        self._levels: list[_Level] = []
        if defaults:
            self._levels.append(_Level("", GitIgnoreSpec.from_lines(DEFAULT_IGNORE), "the default ignore list"))
        if extra:
            self._levels.append(_Level("", GitIgnoreSpec.from_lines(extra), "the extra ignore patterns"))

    def push(self, base: str, lines: list[str], origin: str) -> None:
        """Add the patterns of ``origin`` (a .gitignore in folder ``base``)."""
        self._levels.append(_Level(base, GitIgnoreSpec.from_lines(lines), origin))

    def pop(self) -> None:
        """Remove the patterns pushed last."""
        self._levels.pop()

    def reason(self, path: str, is_dir: bool) -> str | None:
        """Why ``path`` is ignored, or None when it is kept."""
        name = path.rsplit("/", 1)[-1]
        if is_dir and name in ALWAYS_IGNORED:
            return "version-control metadata"
        candidate = path + "/" if is_dir else path
        for level in reversed(self._levels):
            if level.base:
                if not candidate.startswith(level.base + "/"):
                    continue
                relative = candidate[len(level.base) + 1:]
            else:
                relative = candidate
            result = level.spec.check_file(relative)
            if result.include is None:
                continue
            if not result.include:
                return None  # re-included by a "!" pattern
            pattern = level.spec.patterns[result.index].pattern if result.index is not None else "?"
            return f"ignored by {level.origin} (pattern {pattern!r})"
        return None
