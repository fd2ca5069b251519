"""bench/repeated_runs.py: how a length's repeated streams of one system become its row in long_context.json."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "repeated_runs.py"
_spec = importlib.util.spec_from_file_location("repeated_runs", _PATH)
repeated_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(repeated_runs)


def run(tokens_per_s: float, **extra: object) -> dict:
    return {"system": "megalodoc", "length": 2048, "status": "ok", "tokens_per_s": tokens_per_s, **extra}


def test_the_median_stream_is_kept_with_every_runs_speed() -> None:
    row = repeated_runs.median_run([run(30.0, end=3), run(10.0, end=1), run(20.0, end=2)])
    assert row["tokens_per_s"] == 20.0 and row["end"] == 2
    assert row["tokens_per_s_runs"] == [30.0, 10.0, 20.0]


def test_decoding_gets_its_own_median_not_the_median_streams() -> None:
    runs = [run(10.0, decode_tokens_per_s=90.0), run(20.0, decode_tokens_per_s=50.0),
            run(30.0, decode_tokens_per_s=70.0)]
    row = repeated_runs.median_run(runs)
    assert row["decode_tokens_per_s"] == 70.0  # the median stream decoded at 50
    assert row["decode_tokens_per_s_runs"] == [90.0, 50.0, 70.0]
    assert "decode_status" not in row


def test_a_failed_decode_in_any_run_is_recorded() -> None:
    """The median stream decoded; another run's decode ran out of memory: the row says so."""
    runs = [run(10.0, decode_status="out of memory"), run(20.0, decode_tokens_per_s=50.0),
            run(30.0, decode_tokens_per_s=70.0)]
    row = repeated_runs.median_run(runs)
    assert row["decode_status"] == "out of memory in 1 of 3 runs"
    assert row["decode_tokens_per_s"] == 60.0 and row["decode_tokens_per_s_runs"] == [50.0, 70.0]


def test_a_median_run_that_failed_to_decode_carries_no_speed_of_its_own() -> None:
    runs = [run(10.0, decode_tokens_per_s=90.0), run(20.0, decode_status="out of memory"),
            run(30.0, decode_status="out of memory")]
    row = repeated_runs.median_run(runs)
    assert row["tokens_per_s"] == 20.0
    assert row["decode_status"] == "out of memory in 2 of 3 runs"
    assert row["decode_tokens_per_s"] == 90.0


def test_the_table_shows_a_failed_decode_beside_the_streams_status() -> None:
    spec = importlib.util.spec_from_file_location("long_context_report", _PATH.parent / "long_context_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    row = repeated_runs.median_run([run(10.0, decode_status="out of memory"), run(20.0, decode_tokens_per_s=5.0)])
    table = report.stream_table({"stream": [row]})
    assert table[1][-2:] == ["5.0", "ok; decode: out of memory in 1 of 2 runs"]
