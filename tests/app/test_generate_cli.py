"""`megalodoc generate` on a real (tiny, untrained) model folder with a real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import stdlib_model_folder

from megalodoc.app.cli import main as cli_main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gen")
    return stdlib_model_folder(folder)


def test_generate_streams_text_and_is_reproducible_with_a_seed(model_dir, capsys):
    args = ["generate", "def wrap(text):", "--model", str(model_dir), "--max-tokens", "12", "--seed", "3"]
    assert cli_main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("def wrap(text):") and len(first) > len("def wrap(text):\n")
    assert cli_main(args) == 0
    assert capsys.readouterr().out == first


def test_generate_reports_a_missing_model(tmp_path, capsys):
    assert cli_main(["generate", "hi", "--model", str(tmp_path / "none")]) == 2
    assert "no such model folder" in capsys.readouterr().err


def test_generate_refuses_a_prompt_that_is_not_utf8(model_dir, capsys):
    prompt = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # a Latin-1 byte, as argv gives it
    assert cli_main(["generate", prompt, "--model", str(model_dir), "--max-tokens", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("megalodoc generate: the text is not valid Unicode at character 4 ('\\udce9', perhaps "
                            "a byte that is not UTF-8): write it in UTF-8\n")
    assert captured.out == ""
