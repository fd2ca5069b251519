"""`megalodoc train` on unusable inputs (corpus manifest, works, --config, --out): one line naming the input
on stderr and exit status 2, before any training step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.corpus.build import write_corpus
from megalodoc.ingest.corpus.works import Work
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR

TOKENIZER = DEFAULT_MODEL_DIR / "tokenizer.model"
_TEXT = "\n".join(f"line {i}: the cat sat on the mat while the dog ran far away" for i in range(200)) + "\n"


def _write_corpus(folder: Path, heldout_text: str) -> Path:
    works = [Work("a", "books", "A", "test", _TEXT), Work("b", "books", "B", "test", _TEXT[::-1]),
             Work("h", "books", "H", "test", heldout_text)]
    write_corpus(works, {}, folder, heldout=("books/h",), excluded={})
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _write_corpus(tmp_path / "corpus", _TEXT)


def _train(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(corpus), "--tokenizer", str(TOKENIZER), "--out", str(out), "--steps", "1",
            "--batch-size", "1", "--seq-chunks", "1", "--warmup-steps", "0", *extra]


def _refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("megalodoc train: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _edit_manifest(corpus: Path, edit) -> None:
    path = corpus / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_manifest_that_is_not_a_corpus_manifest_is_named(corpus: Path, tmp_path: Path, capsys) -> None:
    manifest = corpus / "manifest.json"
    argv = _train(corpus, tmp_path / "run", "--config", "tiny")
    manifest.write_text("{bad")
    assert f"{manifest}: not valid JSON" in _refused(argv, capsys)
    manifest.write_text("[]")
    assert f"{manifest}: not a corpus manifest" in _refused(argv, capsys)
    manifest.write_text(json.dumps({"works": []}))
    assert f"{manifest}: no corpus_sha256" in _refused(argv, capsys)
    manifest.write_text(json.dumps({"corpus_sha256": "x", "works": [{"path": "train/a.txt"}]}))
    assert f"{manifest}: works[0] needs a split and a slice" in _refused(argv, capsys)
    assert not (tmp_path / "run").exists()


def test_a_missing_work_is_named(corpus: Path, tmp_path: Path, capsys) -> None:
    (corpus / "train/books/a.txt").unlink()
    err = _refused(_train(corpus, tmp_path / "run", "--config", "tiny"), capsys)
    assert f"{corpus / 'manifest.json'}: lists train/books/a.txt, which is not a file" in err
    (corpus / "train/books/a.txt").write_bytes(b"caf\xe9\n")
    err = _refused(_train(corpus, tmp_path / "run", "--config", "tiny"), capsys)
    assert f"{corpus / 'train/books/a.txt'}: not UTF-8 text" in err


@pytest.mark.parametrize("path", ["../outside.txt", "train/../../outside.txt", "/etc/hostname"])
def test_a_work_path_that_leaves_the_corpus_folder_is_refused(corpus: Path, tmp_path: Path, capsys,
                                                              path: str) -> None:
    (tmp_path / "outside.txt").write_text(_TEXT)

    def point_outside(manifest: dict) -> None:
        manifest["works"][0]["path"] = path

    _edit_manifest(corpus, point_outside)
    err = _refused(_train(corpus, tmp_path / "run", "--config", "tiny"), capsys)
    assert f"{corpus / 'manifest.json'}: the path {path!r} leaves the corpus folder" in err
    assert not (corpus / "tokens").exists()  # nothing was read or tokenized


@pytest.mark.parametrize("content, message", [
    ("[]", "not a JSON object of config fields"),
    ('{"preset": "tiny", "model_dim": -1}', "model_dim=-1 must be a positive integer"),
    ('{"preset": "tiny", "bogus": 1}', "unknown MegalodonConfig field(s): bogus"),
    ('{"preset": 5}', "\"preset\" must be a preset name"),
])
def test_an_unusable_config_file_is_named(corpus: Path, tmp_path: Path, capsys, content: str, message: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    err = _refused(_train(corpus, tmp_path / "run", "--config", str(config)), capsys)
    assert err.startswith(f"megalodoc train: {config}: ") and message in err


def test_an_out_that_cannot_be_a_run_folder_is_refused_before_tokenizing(corpus: Path, tmp_path: Path,
                                                                         capsys) -> None:
    (tmp_path / "a_file").write_text("mine")
    for out, reason in ((tmp_path / "a_file", "is a file, not a run folder"),
                        (tmp_path / "a_file/run", f"{tmp_path / 'a_file'} is not a folder")):
        assert f"--out {out}: {reason}" in _refused(_train(corpus, out, "--config", "tiny"), capsys)
    assert (tmp_path / "a_file").read_text() == "mine"
    assert not (corpus / "tokens").exists()


def test_an_out_the_system_refuses_to_create_is_named(corpus: Path, capsys) -> None:
    out = Path("/proc/megalodoc-run")  # /proc takes no new folders, whoever asks
    assert f"{out}: cannot create the run folder" in _refused(_train(corpus, out, "--config", "tiny"), capsys)


def test_a_held_out_split_too_short_for_validation_is_refused_before_the_first_step(tmp_path: Path,
                                                                                   capsys) -> None:
    corpus = _write_corpus(tmp_path / "corpus", "The end.\n")
    run = tmp_path / "run"
    err = _refused(_train(corpus, run, "--config", "tiny", "--seq-chunks", "2", "--steps", "2"), capsys)
    assert "heldout.u16: " in err and "tokens are too few for validation windows of 32" in err
    assert not (run / "train_log.jsonl").exists() and not (run / "checkpoints").exists()
    # without validation the same corpus trains
    assert cli_main(_train(corpus, run, "--config", "tiny", "--seq-chunks", "2", "--val-batches", "0")) == 0


def test_a_tokenizer_without_a_bos_piece_is_named(corpus: Path, tmp_path: Path, capsys) -> None:
    import sentencepiece as spm

    text = tmp_path / "text.txt"
    text.write_text(_TEXT)
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "no-bos"), vocab_size=40,
                                   bos_id=-1, minloglevel=2)
    argv = _train(corpus, tmp_path / "run", "--config", "tiny")
    argv[argv.index("--tokenizer") + 1] = str(tmp_path / "no-bos.model")
    said = _refused(argv, capsys)
    assert f"{tmp_path / 'no-bos.model'}: does not fit a model" in said and "bos_id=-1" in said
    assert not (tmp_path / "run").exists()
