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
