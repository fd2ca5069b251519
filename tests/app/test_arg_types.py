"""The argparse types of app/arg_types.py, and the commands that refuse a bad value with them before any
work: `--device` of `eval` and `train`."""

from __future__ import annotations

import argparse

import pytest
import torch

from megalodoc.app.arg_types import torch_device, whole_number
from megalodoc.app.cli import main as cli_main


def test_whole_number_keeps_to_its_range() -> None:
    parse = whole_number(1, 10)
    assert parse("1") == 1 and parse("10") == 10
    for text, message in (("0", "must be 1 to 10: '0'"), ("11", "must be 1 to 10"), ("x", "not a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


def test_torch_device_accepts_the_cpu_and_refuses_what_torch_cannot_compute_on() -> None:
    assert torch_device("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="not a torch device: 'bogus'"):
        torch_device("bogus")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (there may be none)
    with pytest.raises(argparse.ArgumentTypeError, match=f"'{missing}': "):
        torch_device(missing)
    with pytest.raises(argparse.ArgumentTypeError, match="'meta': not a device to compute on"):
        torch_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_torch_device_refuses_cuda_where_torch_has_none() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="'cuda': no CUDA device"):
        torch_device("cuda")


@pytest.mark.parametrize("command", [
    ["eval", "NO-SUCH-DOCUMENT", "--quiet"],
    ["train", "--config", "tiny", "--data", "NO-SUCH-CORPUS", "--tokenizer", "NO-SUCH.model", "--out", "run"],
])
def test_commands_refuse_an_unusable_device_before_any_work(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main([*command, "--device", "bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("error: argument --device: not a torch device: 'bogus' "
                                         "(e.g. cpu, cuda, cuda:1)")
    assert "Traceback" not in err
