"""Extractors of the corpus recipe on small files written in each source's real on-disk format:
R lazy-load databases, SWORD modules, DocBook HTML manuals, Gutenberg texts, stdlib grouping."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import pytest

from megalodoc.ingest.corpus.documents import join_documents, manual_pages, read_document, read_manual
from megalodoc.ingest.corpus.rdata import read_lazyload, unserialize
from megalodoc.ingest.corpus.sword import osis_to_text, sword_module_text
from megalodoc.ingest.corpus.works import code_work_id, strip_gutenberg
from megalodoc.ingest.sources import CapExceededError, IngestCaps, open_source

# ---- R serialization (XDR, version 3), written the way R writes it: symbols once, then references ----


class _RWriter:
    def __init__(self) -> None:
        self.out = bytearray(b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8")
        self.symbols: list[str] = []

    def int(self, v: int) -> None:
        self.out += struct.pack(">i", v)

    def char(self, s: str | None) -> None:
        self.int(9 | (64 << 12))  # CHARSXP, UTF-8 flag
        if s is None:
            self.int(-1)
        else:
            raw = s.encode("utf-8")
            self.int(len(raw))
            self.out += raw

    def symbol(self, name: str) -> None:
        if name in self.symbols:
            self.int(255 | ((self.symbols.index(name) + 1) << 8))  # REFSXP
            return
        self.symbols.append(name)
        self.int(1)  # SYMSXP
        self.char(name)

    def names_attr(self, names: list[str]) -> None:
        self.int(2 | (1 << 10))  # LISTSXP cell with a tag
        self.symbol("names")
        self.strings(names)
        self.int(254)  # end of the pairlist

    def strings(self, values: list[str | None], names: list[str] | None = None) -> None:
        self.int(16 | ((1 << 9) if names else 0))
        self.int(len(values))
        for v in values:
            self.char(v)
        if names:
            self.names_attr(names)

    def ints(self, values: list[int]) -> None:
        self.int(13)
        self.int(len(values))
        for v in values:
            self.int(v)

    def named_list(self, items: dict[str, object]) -> None:
        self.int(19 | (1 << 9))
        self.int(len(items))
        for v in items.values():
            self.value(v)
        self.names_attr(list(items))

    def value(self, v: object) -> None:
        if isinstance(v, dict):
            self.named_list(v)
        elif v and all(isinstance(x, int) for x in v):
            self.ints(v)
        else:
            self.strings(v)


def _serialize(v: object) -> bytes:
    w = _RWriter()
    w.value(v)
    return bytes(w.out)


def test_r_lazyload_database_reads_named_character_vectors(tmp_path: Path) -> None:
    data = {"emma": ["EMMA", "", "By Jane Austen", None, "Emma Woodhouse, handsome, clever, and rich,"],
            "persuasion": ["Persuasion", "Sir Walter Elliot, of Kellynch Hall"]}
    rdb, variables = bytearray(), {}
    for name, lines in data.items():
        payload = _serialize(lines)
        record = struct.pack(">I", len(payload)) + zlib.compress(payload)
        variables[name] = [len(rdb), len(record)]
        rdb += record
    (tmp_path / "Rdata.rdb").write_bytes(bytes(rdb))
    index = {"variables": variables, "references": {}, "compressed": [1]}
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_serialize(index)))
    got = read_lazyload(tmp_path / "Rdata.rdb")
    assert list(got) == ["emma", "persuasion"]
    assert got["emma"] == data["emma"]  # NA_character_ comes back as None
    assert got["persuasion"] == data["persuasion"]


def test_r_unserialize_rejects_unknown_types_and_formats() -> None:
    with pytest.raises(ValueError, match="not an XDR"):
        unserialize(b"A\n" + bytes(20))
    w = _RWriter()
    w.int(21)  # BCODESXP: not something a data set holds
    with pytest.raises(ValueError, match="unsupported R object type 21"):
        unserialize(bytes(w.out))


# ---- SWORD modules ----


def _write_sword(folder: Path, entries: list[tuple[int, int, int]], blocks: list[bytes], prefix: str, width: int):
    folder.mkdir(parents=True, exist_ok=True)
    table, data = bytearray(), bytearray()
    for block in blocks:
        packed = zlib.compress(block)
        table += struct.pack("<III", len(data), len(packed), len(block))
        data += packed
    fmt = "<IIH" if width == 10 else "<III"
    (folder / f"ot.{prefix}zs").write_bytes(bytes(table))
    (folder / f"ot.{prefix}zz").write_bytes(bytes(data))
    (folder / f"ot.{prefix}zv").write_bytes(b"".join(struct.pack(fmt, *e) for e in entries))


@pytest.mark.parametrize(("prefix", "width"), [("b", 10), ("c", 12)])
def test_sword_module_text_in_order_without_notes_or_repeated_links(tmp_path: Path, prefix: str, width: int) -> None:
    v1 = b'<w lemma="strong:H0430">In</w> <w>the</w> <w>beginning</w>, <w>God</w><note placement="foot">' \
         b'The Hebrew word is Elohim.</note><w>created</w> the heavens.'
    v2 = b'<title type="x-s">The Fall</title><div sID="p1" type="x-p"/>Now the serpent was more subtle &amp; wise.'
    blocks = [v1 + v2, b"<milestone type='x-importer'/>Second block."]
    entries = [(0, 0, 0), (0, 0, len(v1)), (0, 0, len(v1)), (0, len(v1), len(v2)), (1, 0, len(blocks[1]))]
    _write_sword(tmp_path / "mod", entries, blocks, prefix, width)
    text = sword_module_text(tmp_path / "mod")
    assert text.split("\n") == [
        "In the beginning, God created the heavens.",  # the note is gone and the words stay apart
        "The Fall",
        "Now the serpent was more subtle & wise.",
        "Second block.",
    ]


def test_sword_rejects_a_folder_that_is_not_a_module(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a SWORD"):
        sword_module_text(tmp_path)


def test_osis_titles_and_paragraphs_become_lines() -> None:
    assert osis_to_text("<title>Psalm 1</title>Blessed<lb/>is the man") == "Psalm 1\nBlessed\nis the man"


# ---- DocBook HTML ----

_PAGE = """<html><head><title>{title}</title>{link}</head><body>
<div class="navheader"><table><tr><td><a href="x.html">Prev</a></td><td>Next</td></tr></table></div>
<div class="toc"><dl><dt>1. Repeated contents</dt></dl></div>
<div class="section"><h2 class="title">{title}</h2>
<p>Some   <code>text</code>
   spread over
   lines.</p>
<pre class="programlisting">$ apt  install x
  indented line
</pre></div>
<ul class="docnav"><li>Prev</li><li>Home</li></ul></body></html>"""


def _page(title: str, next_href: str | None) -> str:
    link = f'<link rel="next" href="{next_href}" title="n"/>' if next_href else ""
    return _PAGE.format(title=title, link=link)


def test_html_page_is_read_by_the_ingest_reader_without_navigation(tmp_path: Path) -> None:
    page = tmp_path / "intro.html"
    page.write_text(_page("Intro", "b.html"))
    assert read_document(page) == ("Intro\n\nIntro\n\nSome text spread over lines.\n\n"
                                   "$ apt  install x\n  indented line\n\n")


def test_html_manual_follows_the_next_chain_then_appends_unreached_pages(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(_page("Start", "zeta.html"))
    (tmp_path / "zeta.html").write_text(_page("Zeta", "alpha.html#sect1"))
    (tmp_path / "alpha.html").write_text(_page("Alpha", "index.html"))  # a cycle must not loop
    (tmp_path / "orphan.html").write_text(_page("Orphan", None))
    assert [p.name for p in manual_pages(tmp_path)] == ["index.html", "zeta.html", "alpha.html", "orphan.html"]
    text = read_manual(tmp_path)
    assert text == join_documents(read_document(tmp_path / name)
                                  for name in ("index.html", "zeta.html", "alpha.html", "orphan.html"))
    assert "Prev" not in text and "Repeated contents" not in text


def test_a_work_larger_than_the_ingest_caps_is_read_whole(tmp_path: Path) -> None:
    # The recipe holds a commentary of 11.8 MB; a user's `megalodoc ingest` of it stops at the byte cap.
    book = tmp_path / "commentary.txt"
    line = "Verse {n}. A line of commentary that is read like any other text.\n"
    size = IngestCaps().max_bytes + 1
    text = "".join(line.format(n=n) for n in range(size // len(line) + 2))
    book.write_text(text)
    assert book.stat().st_size > IngestCaps().max_bytes
    with pytest.raises(CapExceededError, match="--max-bytes"):
        open_source(book)
    assert read_document(book) == text


def test_join_documents_leaves_one_blank_line_between_documents() -> None:
    assert join_documents(["a\n", "b", " \n", "c\n\n\n"]) == "a\n\nb\n\nc\n"


# ---- text helpers ----


def test_strip_gutenberg_keeps_only_the_body() -> None:
    raw = ("The Project Gutenberg EBook of X\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
           "Call me Ishmael.\n\nEnd of Project Gutenberg's X\n\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicense")
    assert strip_gutenberg(raw) == "Call me Ishmael.\n\n"


def test_code_work_ids_group_packages_and_test_modules() -> None:
    assert code_work_id("asyncio/base_events.py") == "asyncio"
    assert code_work_id("os.py") == "os"
    assert code_work_id("test/test_asyncio/test_tasks.py") == "test.test_asyncio"
    assert code_work_id("test/test_os.py") == "test.test_os"
    assert code_work_id("test/__init__.py") == "test.__init__"
