"""Errors become page messages (expected ones as they are, bugs logged with their traceback); the
Settings tab's model card and sampling checks; the serve command's options."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from megalodoc.app.cli import main as cli_main
from megalodoc.app.commands.serve import parse_auth
from megalodoc.app.ui.errors import UiError
from megalodoc.app.ui.guard import guarded
from megalodoc.app.ui.settings_handlers import model_card_markdown, sampling_settings


def test_expected_errors_show_their_message_and_bugs_are_logged(caplog):
    @guarded
    def refuses() -> None:
        raise UiError("the question is empty")

    @guarded
    def buggy() -> None:
        return {}["missing"]

    @guarded
    def streams():
        yield 1
        raise UiError("stopped half way")

    with pytest.raises(gr.Error, match="the question is empty"):
        refuses()
    assert not caplog.records
    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error, match=r"Unexpected error \(KeyError: 'missing'\)"):
        buggy()
    [record] = caplog.records
    assert record.exc_info and record.exc_info[0] is KeyError  # the traceback goes to the log
    stream = streams()
    assert next(stream) == 1
    with pytest.raises(gr.Error, match="stopped half way"):
        next(stream)


def test_model_card_names_the_folder_fingerprint_and_architecture(service, tiny_model_dir):
    card = model_card_markdown(service)
    assert f"`{tiny_model_dir}`" in card and service.bundle.fingerprint[:16] in card
    assert "| chunk_size | 16 |" in card and "| vocab_size |" in card
    (tiny_model_dir / "README.md").write_text("# Tiny test model\n\nUntrained; for tests only.\n")
    try:
        assert model_card_markdown(service).endswith("# Tiny test model\n\nUntrained; for tests only.\n")
    finally:
        (tiny_model_dir / "README.md").unlink()


def test_sampling_settings_are_checked_and_a_negative_seed_means_random():
    assert sampling_settings(32, 0.7, 40, 0.9, False, 7) == {
        "max_new_tokens": 32, "temperature": 0.7, "top_k": 40, "top_p": 0.9, "greedy": False, "seed": 7}
    assert sampling_settings(32, 0.0, 0, 1.0, True, -1)["seed"] is None
    with pytest.raises(UiError, match=r"answer length 0 .*; temperature -1 must be >= 0 and finite; "
                                      r"top-p 0 must lie in"):
        sampling_settings(0, -1, 0, 0, False, None)
    nan, inf = float("nan"), float("inf")  # NaN passed the checks; inf failed later in int()
    with pytest.raises(UiError, match=r"temperature nan must be .*; top-k inf must be >= 0 and finite; "
                                      r"top-p nan must lie in \(0, 1\]; seed nan must be a whole number"):
        sampling_settings(32, nan, inf, nan, False, nan)
    with pytest.raises(UiError, match="seed -inf must be a whole number"):
        sampling_settings(32, 0.7, 40, 0.9, False, -inf)


def test_serve_refuses_a_port_outside_1_to_65535(capsys):
    for value in ("-1", "0", "65536", "http"):  # bind() raised OverflowError after the model had loaded
        with pytest.raises(SystemExit) as exit_:
            cli_main(["serve", "--port", value, "--db", "/nonexistent/never-opened.db"])
        assert exit_.value.code == 2
        assert "argument --port: " in capsys.readouterr().err


def test_serve_refuses_an_upload_limit_that_is_not_a_positive_number(capsys):
    for value in ("0", "-5", "nan", "inf", "ten"):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["serve", "--max-upload-mb", value, "--db", "/nonexistent/never-opened.db"])
        assert exit_.value.code == 2
        assert "argument --max-upload-mb: " in capsys.readouterr().err


def test_serve_auth_option():
    assert parse_auth("reader:s3cret:with:colons") == ("reader", "s3cret:with:colons")
    for bad in ("nocolon", ":pass", "user:"):
        with pytest.raises(ValueError, match="USER:PASS"):
            parse_auth(bad)
