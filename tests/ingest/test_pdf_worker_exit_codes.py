"""Exit codes of PDF extraction workers read while another thread reaps the same process, as the
process pool's manager thread does when a worker dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

from megalodoc.ingest.sources.pdf_workers import exit_code


def _reaped_by_another_thread(delay: float) -> tuple[multiprocessing.process.BaseProcess, threading.Thread]:
    """A spawned process killed with SIGKILL and waited for outside multiprocessing, whose exit code a
    second thread stores ``delay`` seconds later: the state a losing waiter sees mid-race."""
    process = multiprocessing.get_context("spawn").Process(target=signal.pause)
    process.start()
    os.kill(process.pid, signal.SIGKILL)
    _, status = os.waitpid(process.pid, 0)
    recorder = threading.Timer(delay, lambda: setattr(process._popen, "returncode",
                                                      os.waitstatus_to_exitcode(status)))
    recorder.start()
    return process, recorder


def test_exit_code_of_a_worker_reaped_by_another_thread_is_read_once_stored():
    process, recorder = _reaped_by_another_thread(0.3)
    try:
        process.join(0.1)
        assert process.exitcode is None, "multiprocessing alone reads None while the other thread records it"
        assert exit_code(process, 5.0) == -signal.SIGKILL
    finally:
        recorder.join()


def test_exit_code_of_a_running_worker_is_none_after_the_wait():
    process = multiprocessing.get_context("spawn").Process(target=signal.pause)
    process.start()
    try:
        assert exit_code(process, 0.2) is None
        assert process.is_alive()
    finally:
        process.kill()
        process.join()
    assert exit_code(process, 0.0) == -signal.SIGKILL
