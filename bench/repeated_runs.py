"""One row from a length's repeated streams of one system: the median stream, and decoding's own median."""

from __future__ import annotations

import statistics


def median_run(runs: list[dict]) -> dict:
    """runs: the completed streams of one system at one length (status "ok"), each a row of
    long_context.stream. Returns the run of median tokens/s with every run's tokens/s added; decoding,
    timed after each stream, gets its own median over the runs that decoded, and a decode that failed in
    any run (out of memory) is recorded as such, whichever run is the median."""
    median = sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]
    row = {k: v for k, v in median.items() if k not in ("decode_tokens_per_s", "decode_status")}
    row["tokens_per_s_runs"] = [r["tokens_per_s"] for r in runs]
    decoded = [r["decode_tokens_per_s"] for r in runs if "decode_tokens_per_s" in r]
    if decoded:
        row["decode_tokens_per_s"] = statistics.median(decoded)
        row["decode_tokens_per_s_runs"] = decoded
    failed = [r["decode_status"] for r in runs if "decode_status" in r]
    if failed:
        row["decode_status"] = f"{failed[0]} in {len(failed)} of {len(runs)} runs"
    return row
