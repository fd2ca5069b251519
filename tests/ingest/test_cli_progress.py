"""The CLI's progress and logging: plain lines (no carriage returns, no escape codes) when stderr is not
a terminal, a rewritten line on a terminal, and -v / --log-level for the package's log records."""

from __future__ import annotations

import io
import logging
import sysconfig
from pathlib import Path

import pytest
from pipeline_support import make_model_folder

from megalodoc.app.cli import main as cli_main
from megalodoc.app.commands.ingest import ProgressLine
from megalodoc.ingest.progress import IngestProgress

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-model")
    (folder / "tok.model").write_bytes(tokenizer.model_bytes())
    return make_model_folder(folder / "model", folder / "tok.model", tokenizer.vocab_size)


@pytest.fixture(autouse=True)
def restore_package_logger():
    package = logging.getLogger("megalodoc")
    level, handlers = package.level, list(package.handlers)
    yield
    package.setLevel(level)
    package.handlers[:] = handlers


def progress(done: int, finished: bool = False) -> IngestProgress:
    return IngestProgress("b.txt", "b.txt", 1, done, 100, 50.0, 1.0, 1, 1, "byte", 1, finished)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_pipe_is_plain_lines_and_on_a_terminal_one_rewritten_line():
    pipe = io.StringIO()
    line = ProgressLine(pipe, plain_interval=0.0)
    for done in (10, 50, 100):
        line(progress(done, finished=done == 100))
    text = pipe.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.count("\n") == 3 and text.splitlines()[-1].startswith("b.txt: 100.0%")
    terminal = FakeTerminal()
    line = ProgressLine(terminal)
    line(progress(10))
    line(progress(100, finished=True))
    assert terminal.getvalue().startswith("\r\x1b[K") and terminal.getvalue().endswith("\n")


def test_cli_ingest_to_a_log_file_has_no_control_sequences_and_logs_at_the_chosen_level(tmp_path, model_dir, capsys):
    book = tmp_path / "b.txt"
    book.write_text((STDLIB / "textwrap.py").read_text()[:2500])
    args = ["ingest", str(book), "--db", str(tmp_path / "lib.db"), "--model", str(model_dir)]
    assert cli_main(["--log-level", "info", *args]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert "b.txt: 100.0%" in err
    assert "INFO megalodoc.ingest.pipeline: reading" in err
    assert cli_main(args) == 0  # default WARNING: no INFO records
    assert "INFO" not in capsys.readouterr().err
    assert cli_main(["-v", *args]) == 0
    assert "INFO megalodoc.model.bundle: loaded model" in capsys.readouterr().err
