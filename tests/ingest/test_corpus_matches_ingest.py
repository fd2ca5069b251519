"""The training corpus holds exactly the text `megalodoc ingest` stores for the same source: a stdlib
package (a repository) and an HTML manual page, built by the corpus recipe and ingested with a real
(tiny) model into a real SQLite store."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

from megalodoc.ingest.corpus.documents import read_manual
from megalodoc.ingest.corpus.fetch import FetchedPackage
from megalodoc.ingest.corpus.works import CODE_DEBS, code
from megalodoc.ingest.library import Library

STDLIB = Path(sysconfig.get_paths()["stdlib"])
GTK_DOC_PAGE = Path("/usr/share/gtk-doc/html/libtasn1/libtasn1-libtasn1.html")
DOCBOOK_PAGE = """<html><head><title>Installing</title><link rel="next" href="ch02.html"/></head><body>
<div class="navheader"><table><tr><td><a href="ch00.html">Prev</a></td><td>Next</td></tr></table></div>
<div class="toc"><dl><dt>1. Repeated contents</dt></dl></div>
<div class="section"><h2 class="title">Installing</h2>
<p>Run   <code>apt</code> as
   root:</p>
<pre class="screen"># apt  install megalodoc
  done
</pre><ul><li>one<li>two</ul><table><tr><td>a</td><td>b</td></tr></table></div>
<ul class="docnav"><li>Prev</li><li>Home</li></ul></body></html>"""


def stored_text(model_dir: Path, tokenizer, db: Path, source: Path) -> str:
    """Ingest `source`; the stored chunk texts joined (each chunk's exact share of the document text,
    which is also what its stored tokens decode to)."""
    with Library(db, model_dir) as library:
        doc = library.ingest(source)
        assert doc.committed_position == doc.token_count > 0  # read to the end
        chunks = library.store.get_chunks(doc.id, 0, doc.token_count)
        decoded = tokenizer.decode(library.store.token_ids(doc.id, 0, doc.token_count))
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]  # contiguous, whole document
    joined = "".join(c.text for c in chunks)
    assert joined == decoded
    return joined


def test_a_stdlib_package_work_is_what_ingest_stores(model_dir: Path, tokenizer, tmp_path: Path) -> None:
    # A package as the recipe finds it in Debian's packages: usr/lib/python3.11/json/*.py of one package.
    roots = {name: tmp_path / "debs" / name for name in CODE_DEBS}
    lib = roots[CODE_DEBS[1]] / "usr/lib/python3.11"
    shutil.copytree(STDLIB / "json", lib / "json", ignore=shutil.ignore_patterns("__pycache__"))
    for root in roots.values():
        root.mkdir(parents=True, exist_ok=True)
    packages = {name: FetchedPackage(name, "1", f"{name}.deb", "0" * 64, root) for name, root in roots.items()}
    (work,) = code(packages, tmp_path / "stage")
    assert work.key == "code/stdlib_json" and work.source == CODE_DEBS[1]
    assert work.text.startswith("# file: json/__init__.py\n")
    # The product reads the interpreter's own json package (with its __pycache__, which it ignores).
    assert work.text == stored_text(model_dir, tokenizer, tmp_path / "lib.db", STDLIB / "json")


@pytest.mark.parametrize("page", ["docbook", "gtk-doc"])
def test_an_html_manual_page_is_what_ingest_stores(model_dir: Path, tokenizer, tmp_path: Path, page: str) -> None:
    manual = tmp_path / "manual"
    manual.mkdir()
    if page == "docbook":
        (manual / "index.html").write_text(DOCBOOK_PAGE, encoding="utf-8")
    elif GTK_DOC_PAGE.is_file():
        shutil.copyfile(GTK_DOC_PAGE, manual / "index.html")
    else:
        pytest.skip(f"{GTK_DOC_PAGE} not present (Debian libtasn1-doc's gtk-doc HTML)")
    text = read_manual(manual)
    assert "Repeated contents" not in text and "Prev" not in text
    assert text == stored_text(model_dir, tokenizer, tmp_path / "lib.db", manual / "index.html")
