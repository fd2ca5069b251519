"""Turn a handler's exceptions into messages on the page: an expected error (bad input, a refusal) shows
its own message; anything else is logged with its traceback and shown as a short notice. The server
keeps serving either way."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from megalodoc.app.ui.errors import expected_errors

log = logging.getLogger(__name__)

# For quick events: no loading overlay on their outputs, so a refusal is shown by its message alone.
# Gradio marks every output of a failed event "Error" otherwise, and the marks cover (and block) the
# controls under them, pickers included, until each is closed by hand. Long events instead name the
# one output that shows their progress (show_progress_on), where a refusal's mark is then confined.
QUIET: dict[str, str] = {"show_progress": "hidden"}


def _message(exc: BaseException) -> gr.Error:
    # print_exception=False: Gradio would print every message's traceback; ours are logged below (bugs only)
    if isinstance(exc, expected_errors()):
        return gr.Error(str(exc) or type(exc).__name__, print_exception=False)
    log.error("unexpected error in a handler", exc_info=exc)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}); the details are in the server log.",
                    print_exception=False)


def guarded(handler: Callable[..., Any]) -> Callable[..., Any]:
    """`handler` (a function or a generator function) with its errors shown as gr.Error messages."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _message(exc) from exc

        return stream

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _message(exc) from exc

    return call
