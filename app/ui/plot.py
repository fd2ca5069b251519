"""The plot along a document: the reading point, where the evidence came from, and the surprise curve
(bits per byte per chunk). matplotlib's object API only: no pyplot, no global state, safe in threads."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

SURPRISE_COLOR = "#4a6fa5"
EVIDENCE_COLOR = "#e07b39"
POINT_COLOR = "#2a9d4b"


def document_plot(name: str, length: int, position: int, evidence: Sequence[tuple[int, int]] = (),
                  surprise: Sequence[tuple[int, int, float]] = ()) -> Figure:
    """A wide, short figure over token positions [0, length]: the surprise curve (bits per byte of each
    chunk [start, end)), orange bands where evidence passages lie, and a green line at the reading point."""
    figure = Figure(figsize=(10, 2.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    if surprise:
        xs = [(start + end) / 2 for start, end, _ in surprise]
        ys = [bits for _, _, bits in surprise]
        axes.plot(xs, ys, color=SURPRISE_COLOR, linewidth=1.0, label="surprise (bits/byte)")
        axes.set_ylabel("bits / byte")
    else:
        axes.set_yticks([])
        axes.text(0.5, 0.5, "surprise curve not computed yet (Compute surprise)", transform=axes.transAxes,
                  ha="center", va="center", color="#888888")
    for number, (start, end) in enumerate(evidence):
        axes.axvspan(start, max(end, start + 1), color=EVIDENCE_COLOR, alpha=0.35,
                     label="evidence" if number == 0 else None)
    axes.axvline(position, color=POINT_COLOR, linewidth=2.0, label="reading point")
    margin = max(1, length) * 0.01  # the reading point at the very end stays visible
    axes.set_xlim(-margin, max(1, length) + margin)
    axes.set_xlabel("token position")
    axes.set_title(name, fontsize=10)
    axes.legend(loc="upper right", fontsize=8, framealpha=0.8)
    return figure
