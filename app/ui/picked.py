"""The id a picker holds: pickers accept typed text too, which must be one of their listed ids."""

from __future__ import annotations

from megalodoc.app.ui.errors import UiError


def picked_id(value: int | float | str | None, missing: str, listed: str) -> int:
    """The id in `value` (an int, or digits typed into the picker). UiError `missing` when nothing is
    picked, and one naming the typed text when it is not an id of the `listed` things."""
    if value is None or value == "":
        raise UiError(missing)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    text = str(value).strip()
    if text.isascii() and text.isdigit():
        return int(text)
    raise UiError(f"{text[:80]!r} is not one of the listed {listed}: pick one from the list")
