"""Progress of the CLI's long commands on a stream: a tqdm bar per item on a terminal; on anything else (a
pipe, a log file, a CI log) plain lines, one every `plain_interval` seconds plus the last of each item,
with no carriage returns or escape sequences."""

from __future__ import annotations

import time
from typing import TextIO

from tqdm import tqdm

TERMINAL_REFRESH_SECONDS = 0.2  # at most 5 redraws a second


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class StreamProgress:
    """Shows `update(key, done, total, ...)` calls: one bar per `key` (a new key closes the previous bar)
    on a terminal, plain lines (`line`, as given) elsewhere."""

    def __init__(self, stream: TextIO, *, unit: str = "tok", plain_interval: float = 10.0) -> None:
        self.stream, self.unit, self.plain_interval = stream, unit, plain_interval
        self.terminal = is_terminal(stream)
        self._bar: tqdm | None = None
        self._key: object = None
        self._last_line = float("-inf")

    def update(self, key: object, label: str, done: int, total: int | None, *, line: str, note: str = "",
               finished: bool = False) -> None:
        """`done` of `total` (None: unknown yet) units of item `key`; `line` is the whole plain-text line,
        `note` what a bar shows after its counts."""
        if not self.terminal:
            now = time.monotonic()
            if finished or now - self._last_line >= self.plain_interval:
                self._last_line = now
                self.stream.write(line + "\n")
                self.stream.flush()
            return
        if self._bar is None or key != self._key:
            self.close()
            self._key = key
            self._bar = tqdm(total=total, initial=done, desc=label, unit=self.unit, unit_scale=True,
                             file=self.stream, mininterval=TERMINAL_REFRESH_SECONDS, dynamic_ncols=True,
                             leave=True)  # initial: resumed units count as done, not in the rate
        bar = self._bar
        if total != bar.total:  # totals are estimates until the item is read
            bar.total = total
        if note:
            bar.set_postfix_str(note, refresh=False)
        bar.update(done - bar.n)
        if finished:
            self.close()

    def close(self) -> None:
        """End the current bar (it stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar, self._key = None, None
