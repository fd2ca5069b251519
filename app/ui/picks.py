"""Picks reported twice. Gradio's Dropdown reports one choice from its list as two `input` events, one
for the choice and one for the blur that follows it (a list opened and left reports one more), with the
same value, and runs them side by side. A pick handler that resets other components (a document's pick
clears the Session picker) answered the repeat after the person had already used the first answer,
and undid it: the session they had just picked from the list was cleared again, so Resume got none.

So a pick handler keeps the value the page shows in a gr.State (its last input and last output; a
handler that sets the picker itself sets that State too), treats a pick of that value as a repeat that
only refreshes lists, and runs one at a time (`ONE_AT_A_TIME`) so that a repeat reads the State its
first report wrote."""

from __future__ import annotations

from typing import Any

ONE_AT_A_TIME: dict[str, int] = {"concurrency_limit": 1}


def repeated(value: Any, shown: Any) -> bool:
    """Whether a pick of `value` repeats `shown`, the value the page already shows (the same id, also
    when one of them was typed as digits)."""
    if value is None or shown is None:
        return value is shown
    return value == shown or str(value).strip() == str(shown).strip()
