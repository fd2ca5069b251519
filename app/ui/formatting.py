"""Short human forms of sizes, durations, rates and ingest progress for the page."""

from __future__ import annotations

import re

from megalodoc.app.ui.jobs import FileTask
from megalodoc.ingest.sources.names import shortened

TABLE_NAME_CHARS = 60  # a name in a table row or a picker: longer ones (up to 120) pushed the other columns out

_MARKDOWN_MARKS = re.compile(r"([\\`*_\[\]<>~|#])")


def markdown_text(text: str) -> str:
    """Plain text (file names, messages naming them) for a Markdown component: the characters that
    would start emphasis, code, links, HTML or headings are backslash-escaped, so `__init__.py` shows as
    itself and not as a bold "init.py"."""
    return _MARKDOWN_MARKS.sub(r"\\\1", text)


def table_name(name: str) -> str:
    """A document's name as a table row or a picker shows it: its start and its end (the extension)."""
    return shortened(name, TABLE_NAME_CHARS)


def human_bytes(n: int) -> str:
    """1536 -> "1.5 KiB"."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float | None) -> str:
    """None -> "?", 75 -> "1 min 15 s"."""
    if seconds is None:
        return "?"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


PROGRESS_HEADERS = ["File", "Status", "Done", "Tokens", "Tokens/s", "ETA", "Pages / files", "Note"]


def progress_row(task: FileTask) -> list[str]:
    """One row of the ingest progress table."""
    p = task.progress
    percent = task.percent
    done = "" if percent is None else f"{percent:.0f}%"
    if p is None:
        return [table_name(task.name), str(task.status), done, "", "", "", "", task.message or ""]
    units = f"{p.units_done:,}/{p.unit_count:,} {p.unit_name}s" if p.unit_count else f"{p.units_done:,} {p.unit_name}s"
    if p.unit_name == "byte":
        units = f"{human_bytes(p.units_done)} of {human_bytes(p.unit_count)}" if p.unit_count else human_bytes(
            p.units_done)
    eta = "" if task.done else human_seconds(p.eta_seconds)
    return [table_name(task.name), str(task.status), done, f"{p.tokens_done:,}", f"{p.tokens_per_second:,.0f}", eta,
            units, task.message or ""]


def live_status(task: FileTask) -> str:
    """The status column of a document being read now: "reading 45% · 1,234 tok/s · ETA 12 s"."""
    p = task.progress
    if p is None:
        return str(task.status)
    percent = task.percent
    parts = ["reading" + ("" if percent is None else f" {percent:.0f}%"), f"{p.tokens_per_second:,.0f} tok/s",
             f"ETA {human_seconds(p.eta_seconds)}"]
    return " · ".join(parts)
