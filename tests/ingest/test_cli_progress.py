"""The CLI's progress and logging: plain lines (no carriage returns, no escape codes) when stderr is not
a terminal, a tqdm bar per document on a terminal, and -v / --log-level for the package's log records."""

from __future__ import annotations

import io
import logging
import sysconfig
from pathlib import Path

import pytest

from megalodoc.app.cli import main as cli_main
from megalodoc.app.commands.ingest import ProgressLine
from megalodoc.app.progress_output import StreamProgress
from megalodoc.ingest.progress import IngestProgress

STDLIB = Path(sysconfig.get_paths()["stdlib"])


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
    drawn = terminal.getvalue()  # tqdm redraws its bar in place and ends it with a newline when done
    assert drawn.startswith("\rb.txt:  10%") and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "b.txt: 100%" in drawn and "100/100" in drawn and "1/1 bytes, 1 snapshots" in drawn


def test_plain_lines_come_at_the_interval_and_at_the_end_of_each_item():
    pipe = io.StringIO()
    output = StreamProgress(pipe, plain_interval=3600.0)
    for key in ("a", "b"):
        for done in (1, 2, 3):
            output.update(key, key, done, None, line=f"{key} {done}", finished=done == 3)
    assert pipe.getvalue() == "a 1\na 3\nb 3\n"  # the first line at once, then only the ends


def test_a_new_item_on_a_terminal_starts_a_new_bar():
    terminal = FakeTerminal()
    output = StreamProgress(terminal)
    output.update("a", "first", 5, None, line="")
    output.update("b", "second", 7, 10, line="")  # "a" never finished: its bar is ended, not overwritten
    output.close()
    lines = terminal.getvalue().split("\n")
    assert lines[0].split("\r")[-1].startswith("first: 5") and lines[1].split("\r")[-1].startswith("second:  70%")


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
