"""Writing the corpus: split by whole work, manifest, determinism; the real recipe end to end (slow)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from megalodoc.app.cli import main as cli_main
from megalodoc.app.commands.corpus import default_workdir
from megalodoc.ingest.corpus.build import EXCLUDED, HELDOUT, build_corpus, split_of, write_corpus
from megalodoc.ingest.corpus.works import Work
from megalodoc.model.train.corpus import split_files

_WORKS = [
    Work("moby", "books", "Moby Dick", "r-cran-tokenizers", "Call me Ishmael.  \nSome years ago\n\n\n"),
    Work("emma", "books", "Emma", "r-cran-janeaustenr", "Emma Woodhouse, handsome, clever, and rich\n"),
    Work("stdlib_json", "code", "json", "libpython3.11-stdlib", "# file: json/x.py\nx = 1  \n"),
    Work("stdlib_test_test_json", "code", "json tests", "libpython3.11-testsuite", "import json\n"),
    Work("stdlib_os", "code", "os", "libpython3.11-minimal", "import sys\n\n"),
]
_RULES = {"heldout": ("books/moby", "code/stdlib_json"),
          "excluded": {"code/stdlib_test_test_json": "tests of a held-out package"}}


def test_works_are_split_whole_and_listed_in_the_manifest(tmp_path: Path) -> None:
    manifest = write_corpus(_WORKS, {}, tmp_path / "c", **_RULES)
    root = tmp_path / "c"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.txt")) == [
        "heldout/books/moby.txt", "heldout/code/stdlib_json.txt", "train/books/emma.txt", "train/code/stdlib_os.txt"]
    # a work's text is written as the readers made it, byte for byte
    for work in _WORKS:
        path = root / split_of(work.key, **_RULES) / work.slice / f"{work.name}.txt"
        if work.key not in _RULES["excluded"]:
            assert path.read_bytes() == work.text.encode("utf-8")
    by_key = {w["key"]: w for w in manifest["works"]}
    assert by_key["code/stdlib_test_test_json"]["split"] == "excluded"
    assert by_key["code/stdlib_test_test_json"]["path"] is None
    for w in manifest["works"]:
        if w["path"]:
            data = (root / w["path"]).read_bytes()
            assert w["bytes"] == len(data) and w["sha256"] == hashlib.sha256(data).hexdigest()
    assert by_key["books/emma"]["license"].startswith("public domain")
    assert manifest["totals"]["train"]["books"] == {"works": 1, "bytes": by_key["books/emma"]["bytes"]}
    assert json.loads((root / "manifest.json").read_text()) == manifest
    assert [p.name for p in split_files(root, "heldout")] == ["moby.txt", "stdlib_json.txt"]
    assert [p.name for p in split_files(root, "train", ["code"])] == ["stdlib_os.txt"]


def test_rebuilding_gives_identical_bytes_and_replaces_the_old_build(tmp_path: Path) -> None:
    first = write_corpus(_WORKS, {}, tmp_path / "c", **_RULES)
    (tmp_path / "c/train/books/stale.txt").write_text("from an older recipe")
    second = write_corpus(_WORKS, {}, tmp_path / "c", **_RULES)
    assert first == second
    assert not (tmp_path / "c/train/books/stale.txt").exists()


def test_refuses_a_folder_that_is_not_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a corpus folder"):
        write_corpus(_WORKS, {}, tmp_path, **_RULES)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_build_refuses_an_output_that_is_not_a_corpus_folder_before_downloading(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine too")
    work = tmp_path / "work"
    for out, cause in ((tmp_path / "out", "not a corpus folder (contains ['notes.txt'])"),
                       (tmp_path / "file.txt", "not a folder")):
        assert cli_main(["corpus", "build", str(out), "--workdir", str(work)]) == 2
        err = capsys.readouterr().err
        assert err == f"megalodoc corpus build: {out}: {cause}" + err.split(cause, 1)[1]
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not work.exists()  # nothing fetched
    assert (tmp_path / "out/notes.txt").read_text() == "mine" and (tmp_path / "file.txt").read_text() == "mine too"


def test_tokenizer_and_stats_report_a_folder_that_is_not_a_corpus(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tok.model"
    assert cli_main(["corpus", "tokenizer", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"megalodoc corpus tokenizer: {tmp_path}: no manifest.json; build it with "
                   f"`megalodoc corpus build {tmp_path}`\n")
    assert not out.exists()
    write_corpus(_WORKS, {}, tmp_path / "c", **_RULES)
    (tmp_path / "bad.model").write_text("not a model")
    assert cli_main(["corpus", "stats", str(tmp_path / "c"), "--tokenizer", str(tmp_path / "bad.model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"megalodoc corpus stats: {tmp_path / 'bad.model'}: not a sentencepiece model")
    assert "Traceback" not in err


def test_tokenizer_and_stats_report_a_manifest_that_is_not_json(tmp_path: Path, capsys) -> None:
    (tmp_path / "manifest.json").write_text("{bad")
    tok = tmp_path / "tok.model"
    for argv in (["tokenizer", str(tmp_path), "--out", str(tok)], ["stats", str(tmp_path), "--tokenizer", str(tok)]):
        assert cli_main(["corpus", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"megalodoc corpus {argv[0]}: {tmp_path / 'manifest.json'}: not valid JSON")
        assert err.count("\n") == 1


@pytest.mark.parametrize("option, value, message", [
    ("--vocab-size", "0", "must be 261 to 65536: '0'"), ("--vocab-size", "-5", "must be 261 to 65536: '-5'"),
    ("--vocab-size", "100000", "must be 261 to 65536: '100000'"), ("--threads", "0", "must be 1 to 1024: '0'"),
])
def test_tokenizer_options_out_of_range_are_refused_while_parsing(tmp_path: Path, capsys, option: str,
                                                                  value: str, message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["corpus", "tokenizer", str(tmp_path), "--out", str(tmp_path / "t.model"), option, value])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: argument {option}: {message}")


@pytest.mark.parametrize("vocab, message", [
    ("60000", "Vocabulary size too high (60000)"), ("261", "Vocabulary size is smaller than required_chars"),
])
def test_a_vocabulary_size_the_train_split_cannot_fill_is_one_line(tmp_path: Path, capsys, vocab: str,
                                                                    message: str) -> None:
    write_corpus(_WORKS, {}, tmp_path / "c", **_RULES)
    out = tmp_path / "t.model"
    assert cli_main(["corpus", "tokenizer", str(tmp_path / "c"), "--out", str(out), "--vocab-size", vocab]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"megalodoc corpus tokenizer: vocabulary size {vocab} does not fit the training text: "
                          f"{message}") and err.count("\n") == 1, err
    assert not out.exists()


def test_the_default_work_folder_sits_beside_the_output(tmp_path: Path, monkeypatch) -> None:
    assert default_workdir(tmp_path / "corpus") == tmp_path / "corpus-work"
    monkeypatch.chdir(tmp_path / "..")
    assert default_workdir(Path(tmp_path.name)) == tmp_path.parent / f"{tmp_path.name}-work"
    monkeypatch.chdir(tmp_path)
    assert default_workdir(Path(".")) == tmp_path.parent / f"{tmp_path.name}-work"  # not ./-work
    assert default_workdir(Path("/")) == Path("/corpus-work")


def test_a_held_out_work_the_recipe_no_longer_makes_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="books/persuasion"):
        write_corpus(_WORKS, {}, tmp_path / "c", heldout=("books/persuasion",), excluded={})


def test_a_work_of_an_unknown_slice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slice 'poems'"):
        write_corpus([Work("odes", "poems", "Odes", "x", "text\n")], {}, tmp_path / "c", heldout=(), excluded={})


def test_duplicate_work_names_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two works named books/emma"):
        write_corpus([_WORKS[1], _WORKS[1]], {}, tmp_path / "c", heldout=(), excluded={})


def test_recipe_split_rules() -> None:
    for key in ("books/melville_moby_dick", "books/austen_persuasion", "books/shakespeare_hamlet",
                "books/shakespeare_folio_hamlet", "books/milton_paradise_regained", "tech/debian_handbook",
                "code/stdlib_asyncio", "code/stdlib_email", "code/stdlib_json"):
        assert split_of(key) == "heldout"
    assert len(HELDOUT) == 9
    assert split_of("code/stdlib_test_test_asyncio") == "excluded" and len(EXCLUDED) == 3
    assert split_of("books/bible_kjv") == "train" and split_of("code/stdlib_asyncore") == "train"


def _apt_ready() -> bool:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return False
    probe = subprocess.run(["apt-cache", "policy", "abs-guide"], capture_output=True, text=True)
    return "Candidate: (none)" not in probe.stdout and "Candidate" in probe.stdout


@pytest.mark.slow
@pytest.mark.skipif(not _apt_ready(), reason="needs apt-get with package lists (apt-get update)")
def test_real_recipe_builds_the_full_corpus(tmp_path: Path) -> None:
    manifest = build_corpus(tmp_path / "corpus", tmp_path / "work")
    totals = manifest["totals"]
    assert totals["train"]["books"]["bytes"] > 35e6 and totals["train"]["tech"]["bytes"] > 55e6
    assert totals["train"]["code"]["bytes"] > 25e6
    assert {w["key"] for w in manifest["works"] if w["split"] == "heldout"} == set(HELDOUT)
    moby = (tmp_path / "corpus/heldout/books/melville_moby_dick.txt").read_text()
    assert "Call me Ishmael" in moby and "Project Gutenberg" not in moby[-2000:]
    again = build_corpus(tmp_path / "corpus", tmp_path / "work")  # reuses the downloads
    assert again["corpus_sha256"] == manifest["corpus_sha256"]
