"""Turn a handler's exceptions into messages on the page: an expected error (bad input, a refusal) shows
its own message; anything else is logged with its traceback and shown as a short notice. The server
keeps serving either way.

A handler guarded with a `HandlerGate` also counts as running while it works (a generator: from its
first item to its end), so that a stopping server can wait for the model calls in flight instead of
ending the process under them: Python stops the worker threads still running at exit, and a thread
stopped inside torch aborted the whole process ("terminate called without an active exception").
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from megalodoc.app.ui.errors import expected_errors

log = logging.getLogger(__name__)

# For quick events: no loading overlay on their outputs, so a refusal is shown by its message alone.
# Gradio marks every output of a failed event "Error" otherwise, and the marks cover (and block) the
# controls under them, pickers included, until each is closed by hand. Long events instead name the
# one output that shows their progress (show_progress_on), where a refusal's mark is then confined.
QUIET: dict[str, str] = {"show_progress": "hidden"}


def quiet_on(target: gr.components.Component) -> dict[str, Any]:
    """QUIET for a quick event whose outputs include the conversation (a gr.Chatbot): the Chatbot shows
    a failed event's "Error" over the whole conversation even when the event hides its progress, so the
    event's progress, and a refusal's mark, go to `target` (one of its text outputs) instead."""
    return {**QUIET, "show_progress_on": [target]}


def _message(exc: BaseException) -> gr.Error:
    # print_exception=False: Gradio would print every message's traceback; ours are logged below (bugs only)
    if isinstance(exc, expected_errors()):
        return gr.Error(str(exc) or type(exc).__name__, print_exception=False)
    log.error("unexpected error in a handler", exc_info=exc)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}); the details are in the server log.",
                    print_exception=False)


class HandlerGate:
    """The handler steps running now in one app; `close` refuses new ones and waits for those running."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._closed = False

    @contextmanager
    def step(self) -> Iterator[None]:
        """Count the enclosed work as running; refused (gr.Error) once the gate is closed."""
        with self._changed:
            if self._closed:
                raise gr.Error("the server is stopping; try again once it is back", print_exception=False)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @property
    def running(self) -> int:
        with self._changed:
            return self._running

    def close(self, timeout: float) -> bool:
        """Refuse new steps and wait up to `timeout` seconds for the running ones; True when none runs."""
        with self._changed:
            self._closed = True
            return self._changed.wait_for(lambda: self._running == 0, timeout)


def guarded_by(gate: HandlerGate | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`guarded`, counting the handler's work in `gate`: a decorator."""
    return functools.partial(guarded, gate=gate)


def guarded(handler: Callable[..., Any], gate: HandlerGate | None = None) -> Callable[..., Any]:
    """`handler` (a function or a generator function) with its errors shown as gr.Error messages, its
    work counted in `gate` when one is given."""
    gate = gate or HandlerGate()  # a gate of its own, never closed: counts nothing anyone waits for
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args: Any, **kwargs: Any) -> Any:
            # counted from its first item to its end: a stopping server lets an answer that streams finish
            # (its turn is stored at the end), and refuses only streams not yet started
            with gate.step():
                items = handler(*args, **kwargs)
                try:
                    while True:
                        try:
                            item = next(items)
                        except StopIteration:
                            return
                        except gr.Error:
                            raise
                        except Exception as exc:
                            raise _message(exc) from exc
                        yield item
                finally:
                    items.close()  # its own clean-up runs now (the page went away), not when it is collected

        return stream

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:
        with gate.step():
            try:
                return handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _message(exc) from exc

    return call
