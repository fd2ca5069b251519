"""Names of uploaded files: what is kept of them on disk and how they show on the page."""

from __future__ import annotations

import pytest

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.formatting import markdown_text
from megalodoc.app.ui.uploads import NAME_BYTES, NAME_CHARS, safe_name


@pytest.mark.parametrize(("given", "kept"), [
    ("ünïcødé näme 文档.txt", "ünïcødé näme 文档.txt"),  # was "_n_c_d_ n_me _.txt"
    ("e\u0301te\u0301.md", "été.md"),  # decomposed accents are composed, not dropped
    ("__init__.py", "__init__.py"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\notes.txt", "notes.txt"),
    ("evil\u202etxt.exe", "evil_txt.exe"),  # a right-to-left override would make it read "exe.txt"
    ("a\x00\x01b.txt", "a_b.txt"),
    (".hidden", "hidden"),
    ("  .. ", "upload"),
])
def test_names_keep_every_script_and_lose_only_what_is_unsafe(given, kept):
    assert safe_name(given) == kept


@pytest.mark.parametrize("given", ["a" * 200 + ".txt", "b" * 130 + ".pdf", "文" * 100 + ".txt", "x" * 300])
def test_long_names_are_shortened_before_their_extension(given):
    kept = safe_name(given)
    assert len(kept) <= NAME_CHARS and len(kept.encode()) <= NAME_BYTES and kept[:1] == given[:1]
    assert kept.endswith(given[-4:]) if "." in given else kept == given[:NAME_CHARS]


def test_names_show_as_themselves_in_the_pages_messages(ctx, tmp_path):
    upload = tmp_path / "__init__.py"
    upload.write_text("def main():\n    return 1\n" * 20)
    [stored] = h.stage_uploads(ctx, [str(upload)])
    assert stored.name == "__init__.py"
    estimate = h.upload_estimate(ctx, [stored])
    assert "- \\_\\_init\\_\\_.py: " in estimate  # escaped: Markdown made it a bold "init.py"
    assert markdown_text("a*b [c](d) <e> `f` #g ~h| \\") == "a\\*b \\[c\\](d) \\<e\\> \\`f\\` \\#g \\~h\\| \\\\"
