"""Picks reported twice. Gradio's Dropdown reports one choice from its list as two `input` events, one
for the choice and one for the blur that follows it (a list opened and left reports one more), with the
same value, and runs them side by side. A pick handler that resets other components (a document's pick
clears the Session picker) answered the repeat after the person had already used the first answer,
and undid it: the session they had just picked from the list was cleared again, so Resume got none.

So each page keeps what its pickers list in a `PagePicks` (a gr.State holds one per page, and Gradio
hands every event of that page the same object), and a pick of the value already listed is a repeat that
only refreshes lists. Handlers read and change it under the page's own lock, so the two reports of one
pick are judged one after the other, while other people's pages never wait for this one."""

from __future__ import annotations

import threading
from typing import Any


class PagePicks:
    """What one page's dependent pickers list: the document whose sessions the Session picker lists, the
    session whose turns the turn picker lists. Read and change it only while holding `lock`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.document: Any = None
        self.session: Any = None

    def __deepcopy__(self, memo: dict) -> PagePicks:
        return PagePicks()  # gr.State copies its first value for every new page: each gets its own, empty

    def listed(self, document: Any, session: Any) -> None:
        """Record what a handler that set both pickers (ask, continue, resume, branch) now shows."""
        with self.lock:
            self.document, self.session = document, session


def repeated(value: Any, shown: Any) -> bool:
    """Whether a pick of `value` repeats `shown`, the value the page already shows (the same id, also
    when one of them was typed as digits)."""
    if value is None or shown is None:
        return value is shown
    return value == shown or str(value).strip() == str(shown).strip()
