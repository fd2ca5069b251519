"""The Gradio app: a thin shell over the reader service.

`build_ui(service)` (in `build.py`) only wires events; the handlers are plain functions in
`library_handlers.py`, `reader_handlers.py` and `settings_handlers.py` that tests call directly; long
work (ingest) runs in background threads (`jobs.py`). Importing this package does not import gradio:
`build_ui` is loaded on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "build_ui":
        from megalodoc.app.ui.build import build_ui

        return build_ui
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
