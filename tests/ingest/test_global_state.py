"""Library code changes no process-wide state per call: torch's thread count, the pypdf logger, the
warnings filters and matplotlib's backend are the same during and after ingest, PDF reading and plots."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import matplotlib
import pytest
import torch
from pipeline_support import make_model_folder

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.eval_report import write_plot
from megalodoc.ingest.evaluate import evaluate_paths
from megalodoc.ingest.library import Library
from megalodoc.ingest.sources.pdf_extract import quiet_pypdf


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("globals-model")
    (folder / "tok.model").write_bytes(tokenizer.model_bytes())
    return make_model_folder(folder / "model", folder / "tok.model", tokenizer.vocab_size)


def test_library_never_sets_torch_threads_and_the_cli_sets_them_once(tmp_path, model_dir, pdfkit, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    pdf = pdfkit.draw("book.pdf", [["A page about lava and basalt."] * 20] * 3)
    with pytest.raises(TypeError):
        Library(tmp_path / "x.db", model_dir, threads=2)  # no per-library thread setting any more
    with Library(tmp_path / "lib.db", model_dir) as lib:
        doc = lib.ingest(pdf)
        lib.state_at(doc, doc.token_count // 2)
    assert calls == []
    assert cli_main(["ingest", str(pdf), "--db", str(tmp_path / "cli.db"), "--model", str(model_dir),
                     "--threads", "1", "--quiet"]) == 0
    assert calls == [1]


def test_reading_a_pdf_in_one_thread_does_not_touch_logging_or_warnings_seen_by_others(caplog):
    pypdf_logger = logging.getLogger("pypdf")
    before = (pypdf_logger.propagate, list(pypdf_logger.handlers), pypdf_logger.level, list(pypdf_logger.filters))
    filters = warnings.filters
    filter_items = list(warnings.filters)
    inside, release = threading.Event(), threading.Event()
    collected: list[str] = []

    def page_reader() -> None:
        with quiet_pypdf() as complaints:
            logging.getLogger("pypdf._page").warning("damaged content stream on this page")
            inside.set()
            release.wait(10)
        collected.extend(complaints)

    worker = threading.Thread(target=page_reader)
    caplog.set_level(logging.WARNING)
    worker.start()
    try:
        assert inside.wait(10)
        # while the other thread is inside quiet_pypdf, this thread sees the same globals ...
        assert warnings.filters is filters and list(warnings.filters) == filter_items
        assert (pypdf_logger.propagate, list(pypdf_logger.handlers), pypdf_logger.level,
                list(pypdf_logger.filters)) == before
        # ... and its own pypdf records still reach the root logger, not the other thread's list
        logging.getLogger("pypdf._reader").warning("a complaint outside any page")
    finally:
        release.set()
        worker.join()
    assert collected == ["damaged content stream on this page"]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pypdf")] == ["a complaint outside any page"]
    assert warnings.filters is filters and list(warnings.filters) == filter_items


def test_plotting_does_not_switch_the_matplotlib_backend(tmp_path, model_dir, monkeypatch):
    monkeypatch.setitem(matplotlib.rcParams, "backend", "svg")
    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\n" * 40)
    png = write_plot(evaluate_paths([text], model_dir, max_tokens=200), tmp_path / "p.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert matplotlib.rcParams["backend"] == "svg"
