"""Presenting an EvaluationReport: a text table, the JSON file and a PNG plot of the two curves."""

from __future__ import annotations

import json
import os
from pathlib import Path

from megalodoc.ingest.evaluate import BUCKET_LABELS, EvaluationReport, LossTotals, chunk_offset_labels


def _bpb(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _row(label: str, totals: LossTotals) -> str:
    carried, reset = totals.bits_per_byte_carried, totals.bits_per_byte_reset
    ratio = f"{carried / reset:.3f}" if carried is not None and reset else "-"
    return f"  {label:10} {totals.tokens:>11,} {totals.bytes:>12,} {_bpb(carried):>9} {_bpb(reset):>9} {ratio:>8}"


def _block(title: str, totals: LossTotals, buckets: tuple[LossTotals, ...] | list[LossTotals],
           labels: tuple[str, ...] = BUCKET_LABELS, heading: str = "position") -> list[str]:
    lines = [title, f"  {heading:10} {'tokens':>11} {'bytes':>12} {'carried':>9} {'reset':>9} {'c/r':>8}"]
    lines += [_row(label, b) for label, b in zip(labels, buckets, strict=True) if b.tokens]
    lines.append(_row("all", totals))
    return lines


def format_table(report: EvaluationReport) -> str:
    """Bits per byte (state carried / reset, and their ratio) by position bucket: per document, then pooled."""
    model = report.model.get("path") or "model instance"
    lines = [f"model {model} (chunk size {report.chunk_size}, {report.model.get('parameters', 0):,} parameters); "
             "bits per byte of the scored tokens (the first token of every chunk is not scored)"]
    for d in report.documents:
        cut = f", first {d.tokens_read:,} tokens" if d.truncated else f", {d.tokens_read:,} tokens"
        lines += [""] + _block(f"{d.name} ({d.kind}{cut}, {d.seconds:.1f} s)", d.totals, d.buckets)
    pooled = f"pooled over {len(report.documents)} documents" if len(report.documents) > 1 else "all positions"
    if len(report.documents) > 1:
        lines += [""] + _block(pooled, report.totals, report.buckets)
    if report.documents:
        lines += [""] + _block(f"{pooled}, by offset of the token inside its chunk", report.totals,
                               report.chunk_offsets, chunk_offset_labels(report.chunk_size), "offset")
    return "\n".join(lines)


def write_json(report: EvaluationReport, path: str | os.PathLike) -> Path:
    """Write `report.to_dict()` as indented JSON; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def write_plot(report: EvaluationReport, path: str | os.PathLike) -> Path:
    """A PNG of pooled bits per byte over the position buckets, state carried vs reset. Uses matplotlib's
    object API with the Agg canvas directly: no pyplot, no backend switch, no global figure registry, so
    it is safe from any thread and leaves the process's matplotlib settings alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    buckets = report.buckets
    shown = [i for i, b in enumerate(buckets) if b.tokens]
    labels = [BUCKET_LABELS[i] for i in shown]
    carried = [buckets[i].bits_per_byte_carried for i in shown]
    reset = [buckets[i].bits_per_byte_reset for i in shown]
    figure = Figure(figsize=(7, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    x = list(range(len(shown)))
    axes.plot(x, carried, marker="o", label="state carried across chunks")
    axes.plot(x, reset, marker="s", linestyle="--", label="state reset at every chunk")
    axes.set_xticks(x, labels)
    axes.set_xlabel("token position in the document")
    axes.set_ylabel("bits per byte")
    names = ", ".join(d.name for d in report.documents[:3]) + (" ..." if len(report.documents) > 3 else "")
    axes.set_title(f"{names} (chunk size {report.chunk_size})", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path
