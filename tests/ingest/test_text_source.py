"""Single text documents: plain text, Markdown, reStructuredText, HTML; encodings and bad input."""

from __future__ import annotations

import sysconfig
import unicodedata
from pathlib import Path

import pytest

from megalodoc.ingest.sources import (
    BinaryFileError,
    EmptySourceError,
    SourceError,
    SourceNotFoundError,
    SourceOptions,
    TextSource,
    open_source,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
GTK_DOC = Path("/usr/share/gtk-doc/html/libtasn1")


def test_plain_text_file_is_read_exactly(tmp_path: Path):
    license_file = STDLIB / "LICENSE.txt"
    if not license_file.exists():
        pytest.skip(f"{license_file} not present in this Python installation")
    source = open_source(license_file)
    assert isinstance(source, TextSource)
    assert (source.kind, source.format, source.encoding) == ("text", "plain", "utf-8")
    assert source.text() == unicodedata.normalize("NFC", license_file.read_text(encoding="utf-8"))
    assert source.warnings == []


def test_pieces_end_at_line_breaks_and_offsets_add_up(tmp_path: Path):
    lines = [f"Line {number}: " + "word " * (number % 17) for number in range(1, 400)]
    path = tmp_path / "notes.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = open_source(path, SourceOptions(text_piece_chars=300))
    assert source.format == "markdown"
    pieces = list(source.pieces())
    assert len(pieces) > 10
    position = 0
    next_line = 1
    for piece in pieces:
        loc = piece.locator
        assert loc.kind == "offset" and loc.char_start == position and loc.char_end == position + len(piece.text)
        assert loc.line_start == next_line
        assert piece.text.endswith("\n") and len(piece.text) <= 300
        assert piece.text.split("\n")[0] == lines[loc.line_start - 1]
        assert piece.text.rstrip("\n").split("\n")[-1] == lines[loc.line_end - 1]
        position = loc.char_end
        next_line = loc.line_end + 1
    assert "".join(piece.text for piece in pieces) == path.read_text(encoding="utf-8")
    assert list(source.pieces(start=5)) == pieces[5:]


def test_a_very_long_line_is_cut_at_spaces(tmp_path: Path):
    path = tmp_path / "one-line.txt"
    text = " ".join(f"w{n}" for n in range(3000)) + "\n"
    path.write_text(text, encoding="utf-8")
    pieces = list(open_source(path, SourceOptions(text_piece_chars=200)).pieces())
    assert "".join(piece.text for piece in pieces) == text
    assert all(piece.text.endswith((" ", "\n")) for piece in pieces)


def test_rst_crlf_bom_and_nfc(tmp_path: Path):
    path = tmp_path / "doc.rst"
    path.write_bytes("\ufeffTitle\r\n=====\r\n\r\nCafe\u0301 au lait.\rEnd".encode())
    source = open_source(path)
    assert source.format == "rst" and source.encoding == "utf-8-sig"
    assert source.text() == "Title\n=====\n\nCaf\u00e9 au lait.\nEnd"


def test_code_given_as_a_document_is_not_normalized(tmp_path: Path):
    path = tmp_path / "decomposed.py"
    path.write_text("name = 'Cafe\u0301'\n", encoding="utf-8")
    assert open_source(path).text() == "name = 'Cafe\u0301'\n"


def test_latin1_text_decodes_with_a_recorded_fallback(tmp_path: Path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Ça coûte 10 € ? Non: 10 £, naïve façade.\n".replace("€", "E").encode("latin-1"))
    source = open_source(path)
    assert source.encoding == "cp1252"
    assert source.encodings == {str(path): "cp1252"}
    assert source.text() == "Ça coûte 10 E ? Non: 10 £, naïve façade.\n"
    assert [str(notice) for notice in source.warnings] == [f"{path}: not valid UTF-8; decoded as cp1252"]


def test_utf16_with_bom(tmp_path: Path):
    path = tmp_path / "wide.txt"
    path.write_bytes("Grüße aus Köln\n".encode("utf-16"))
    source = open_source(path)
    assert source.encoding == "utf-16" and source.text() == "Grüße aus Köln\n"


def test_html_to_readable_text(tmp_path: Path):
    path = tmp_path / "page.html"
    path.write_text(
        "<!DOCTYPE html><html><head><title>The  Title</title><style>p { color: red }</style>"
        "<script>var hidden = '<p>not text</p>';</script></head><body>"
        "<h1>Heading &amp; more</h1><p>First   paragraph\nwraps here.</p>"
        "<ul><li>one</li><li>two &lt;b&gt;</li></ul>"
        "<pre>  indented\n    code</pre><p>caf&eacute;<br>next line</p>"
        "<table><tr><td>a</td><td>b</td></tr></table></body></html>", encoding="utf-8")
    source = open_source(path)
    assert source.format == "html"
    assert source.text() == ("The Title\n\nHeading & more\n\nFirst paragraph wraps here.\n\n- one\n- two <b>\n\n"
                             "  indented\n    code\n\ncafé\nnext line\n\na b\n")


def test_html_is_detected_without_an_extension_and_honours_meta_charset(tmp_path: Path):
    path = tmp_path / "index"
    path.write_bytes('<html><head><meta charset="iso-8859-1"></head><body><p>Gr\u00fc\u00dfe</p></body></html>'
                     .encode("latin-1"))
    source = open_source(path)
    assert source.format == "html" and source.encoding == "cp1252"
    assert source.text() == "Grüße\n"


@pytest.mark.parametrize("label", ["utf-16", "utf-16le", "UTF-16BE", "utf-32", "utf-7", "rot13", "base64", "hex",
                                   "zlib", "uu", "punycode", "bz2", "quopri", "cp500", "unicode_escape",
                                   "raw_unicode_escape"])
def test_a_meta_charset_that_is_not_an_ascii_compatible_text_encoding_is_ignored(tmp_path: Path, label: str):
    path = tmp_path / "page.html"  # ASCII of even length, as a UTF-16 reading would need; then one UTF-8 word
    path.write_bytes(f'<html><head><meta charset="{label}"></head><body><p>Hello world!!</p><p>caf\u00e9</p>'
                     '</body></html>'.encode())
    with open_source(path) as source:
        assert source.encoding == "utf-8"
        assert source.text() == "Hello world!!\n\ncafé\n"


@pytest.mark.parametrize(("label", "encoding", "word"), [("windows-1251", "cp1251", "\u043c\u0438\u0440"),
                                                         ("koi8-r", "koi8-r", "\u043c\u0438\u0440"),
                                                         ("shift_jis", "shift_jis", "\u65e5\u672c"),
                                                         ("ascii", "cp1252", "\u20ac")])
def test_a_meta_charset_of_a_text_encoding_is_honoured(tmp_path: Path, label: str, encoding: str, word: str):
    path = tmp_path / "page.html"
    path.write_bytes(f'<html><head><meta charset="{label}"></head><body><p>{word}</p></body></html>'.encode(encoding))
    with open_source(path) as source:
        assert source.encoding == encoding
        assert source.text() == f"{word}\n"


def test_real_gtk_doc_html_page():
    page = GTK_DOC / "libtasn1-libtasn1.html"
    if not page.exists():
        pytest.skip(f"{page} not present (Debian libtasn1-doc's gtk-doc HTML)")
    text = open_source(page).text()
    assert "asn1_create_element" in text
    assert "<div" not in text and "<a " not in text and "function" not in text.split("\n")[0]


def test_html_without_text_is_an_error(tmp_path: Path):
    path = tmp_path / "blank.html"
    path.write_text("<html><head><script>alert(1)</script><style>b{}</style></head><body> </body></html>")
    with pytest.raises(EmptySourceError, match="HTML file with no readable text"):
        open_source(path)


def test_empty_and_blank_files_are_errors_naming_them(tmp_path: Path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(EmptySourceError) as error:
        open_source(empty)
    assert str(error.value) == f"{empty}: empty file (0 bytes)"
    blank = tmp_path / "blank.md"
    blank.write_text("  \n\t\n\n")
    with pytest.raises(EmptySourceError) as error:
        open_source(blank)
    assert str(error.value) == f"{blank}: only whitespace (6 bytes), no text"


def test_binary_file_given_as_a_document_is_an_error_naming_it(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"header\x00\x01\x02" + bytes(range(256)))
    with pytest.raises(BinaryFileError) as error:
        open_source(path)
    message = str(error.value)
    assert message.startswith(f"{path}: binary file (NUL byte at offset 6); not a text document")
    elf = Path("/bin/ls")
    with pytest.raises(BinaryFileError):
        open_source(elf)


def test_missing_path_and_broken_symlink(tmp_path: Path):
    with pytest.raises(SourceNotFoundError) as error:
        open_source(tmp_path / "absent.txt")
    assert str(error.value) == f"{tmp_path / 'absent.txt'}: no such file or folder"
    link = tmp_path / "dangling.txt"
    link.symlink_to(tmp_path / "gone.txt")
    with pytest.raises(SourceNotFoundError, match="broken symlink"):
        open_source(link)
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    with pytest.raises(SourceError, match="symlink loop"):
        open_source(loop)


def test_a_gzip_that_is_not_a_tarball_is_unsupported(tmp_path: Path):
    import gzip

    path = tmp_path / "notes.txt.gz"
    path.write_bytes(gzip.compress(b"just text\n"))
    with pytest.raises(SourceError, match="gzip-compressed file that is not a tar archive"):
        open_source(path)


def test_office_documents_are_unsupported(tmp_path: Path):
    import zipfile

    path = tmp_path / "book.epub"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    with pytest.raises(SourceError, match=r"\.epub documents are not supported"):
        open_source(path)
