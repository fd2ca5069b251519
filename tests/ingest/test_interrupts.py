"""Ctrl-C at random points of a command-line ingest: the process exits within a few seconds, leaves no
extracted archive files behind, and the store passes `megalodoc db check`; running the same command
again completes the documents."""

from __future__ import annotations

import gc
import io
import os
import queue
import random
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from megalodoc.app.cli import main as cli_main
from megalodoc.app.interrupts import stop_on_interrupt
from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken
from megalodoc.ingest.sources import repo_tree
from megalodoc.ingest.sources.repo_tree import TarTree, remove_tree
from megalodoc.storage import open_store

ACK_SECONDS = 2.0
"""How long the process may take to say it was interrupted (cleanup done, store closed)."""
PROMPT_SECONDS = 4.0
"""How long the process may take to exit after the interrupt, beyond what a process that only imports torch
takes to shut down on this machine at this moment (1.5-2 s on a loaded 2-core machine)."""


def bare_teardown_seconds() -> float:
    """Seconds between the last statement of a process that imported torch and its exit."""
    script = "import sys, time, torch; sys.stdout.write(repr(time.time())); sys.stdout.flush()"
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    return max(0.0, time.time() - float(process.stdout))


def archive_with_many_files(path: Path, count: int) -> Path:
    """A .tar.gz whose `count` binary files are all extracted (then skipped), plus one small source file:
    the extraction and its cleanup are large, the text to read is small."""
    with tarfile.open(path, "w:gz") as archive:
        for number in range(count):
            data = b"\0binary\0" + number.to_bytes(4, "little")
            info = tarfile.TarInfo(f"many/blobs/b{number // 100}/{number}.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        data = b"def main():\n    return 0\n"
        info = tarfile.TarInfo("many/main.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("interrupts")
    model = tiny_model_dir
    book = root / "book.txt"
    # Long enough (about 10,000 tokens, seconds of reading) that an interrupt up to 1 s after reading starts
    # lands while reading: with a shorter book a quiet machine finished first, and the interrupt then hit
    # the interpreter's shutdown, which ends by the signal (-2) as any Python program does.
    book.write_text("".join(f"Line {n}: the reader keeps its state at every chunk.\n" for n in range(400)))
    return {"root": root, "model": model, "book": book,
            "archive": archive_with_many_files(root / "many.tar.gz", 1000)}


def run_and_interrupt(command: list[str], tmpdir: Path, delay: float, after: str | None = None
                      ) -> tuple[int | None, tuple[float, float] | None, str]:
    """Start `command` in its own session; `delay` s after its stderr shows a line containing `after`
    (or after the start), send SIGINT to the group, as a terminal's Ctrl-C does, unless it already ended.
    Returns (exit code, seconds from the signal to the "interrupted" message and to the exit, or None if
    it ended before the signal, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmpdir)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []
    acknowledged: list[float] = []

    def pump() -> None:
        for line in process.stderr:
            if "interrupted" in line:
                acknowledged.append(time.monotonic())
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 300
    while after is not None and time.monotonic() < deadline:
        line = lines.get(timeout=300)
        if line is None:  # ended before the marker
            process.wait()
            return process.returncode, None, "".join(seen)
        seen.append(line)
        if after in line:
            break
    try:
        process.wait(timeout=delay)
        return process.returncode, None, "".join(seen)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(process.pid, signal.SIGINT)
    signalled = time.monotonic()
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    exited = time.monotonic() - signalled
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    said = acknowledged[0] - signalled if acknowledged else float("inf")
    return process.returncode, (said, exited), "".join(seen)


# Where the interrupts land: three while starting (imports of torch, where an interrupt was once swallowed
# or aborted the process from C++; the model; the store), just after the estimate (the archive being
# extracted, hashed and cleaned up), and while the model reads and snapshots are written.
PHASES = ((None, 0.1, 2.5), (None, 0.1, 2.5), (None, 0.1, 2.5), ("estimate:", 0.0, 0.8), ("tokens", 0.0, 1.0))


def test_sigint_at_random_points_exits_promptly_and_leaves_a_sound_store(setup, tmp_path):
    db = tmp_path / "store.db"
    open_store(str(db)).close()  # the store exists; the runs below add to it
    command = [sys.executable, "-m", "megalodoc.app.cli", "ingest", str(setup["archive"]), str(setup["book"]),
               "--db", str(db), "--model", str(setup["model"]), "--snapshot-every", "2"]
    rng = random.Random(int(os.environ.get("MEGALODOC_INTERRUPT_SEED", "12")))
    interrupted = 0
    limit = bare_teardown_seconds() + PROMPT_SECONDS
    for after, low, high in PHASES:
        delay = rng.uniform(low, high)
        scratch = tmp_path / f"tmp-{interrupted}-{delay:.2f}"
        scratch.mkdir()
        code, seconds, stderr = run_and_interrupt(command, scratch, delay, after)
        where = f"interrupt {delay:.2f} s after {after or 'the start'!r}"
        print(f"{where}: exit {code}, (message, exit) {seconds} s after the signal")
        if seconds is not None:
            interrupted += 1
            said, exited = seconds
            shown = f"exit {code}; stderr:\n{stderr[-3000:]}"
            assert said < ACK_SECONDS, f"{where}: said so after {said:.2f} s, {shown}"
            assert exited < limit, f"{where} took {exited:.2f} s to exit (limit {limit:.2f} s), {shown}"
            assert code == 130, (code, stderr[-2000:])
        assert list(scratch.iterdir()) == [], f"extracted files left behind after an {where}"
        assert cli_main(["db", "check", "--db", str(db)]) == 0, where
    assert interrupted >= 4, "the runs ended before their interrupts; the inputs are too small"
    # reading again (here in-process) finishes what the interrupts left
    with Library(db, setup["model"], snapshot_every=2) as library:
        assert all(outcome.ok for outcome in library.ingest_many([setup["archive"], setup["book"]]))
        assert {doc.status for doc in library.documents()} == {"complete"}
        assert library.store.check_integrity() == []


def test_removing_extracted_copies_finishes_despite_an_interrupt(tmp_path: Path, monkeypatch):
    folder = tmp_path / "copies"
    for number in range(50):
        (folder / str(number % 5)).mkdir(parents=True, exist_ok=True)
        (folder / str(number % 5) / f"{number}.py").write_text("x = 1\n")
    calls = []
    real_rmtree = __import__("shutil").rmtree

    def interrupted_once(path, ignore_errors=False):
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle of the first removal
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr("megalodoc.ingest.sources.repo_tree.shutil.rmtree", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        remove_tree(folder)
    assert not folder.exists() and len(calls) == 2


class InterruptAtLine:
    """A trace function that raises KeyboardInterrupt before the `at`-th line run in repo_tree.py (counting
    from 1), as a Ctrl-C delivered between two statements of the tar tree does."""

    def __init__(self, at: int) -> None:
        self.at, self.seen, self.raised = at, 0, False

    def __call__(self, frame, event, _arg):
        if frame.f_code.co_filename != repo_tree.__file__:
            return None  # no line events for other files' frames
        if event == "line":
            self.seen += 1
            if self.seen == self.at:
                self.raised = True
                raise KeyboardInterrupt
        return self


def test_an_interrupt_before_any_line_of_extraction_or_cleanup_leaves_no_copies(tmp_path: Path, monkeypatch):
    # What the reader does with a tar input: open it, copy the files out (prepare), close it. An interrupt
    # may land before any line of that (tempfile.mkdtemp once left a gap before the removal was
    # registered); the copies must be gone once the tree is closed, or collected if it was never made.
    archive = archive_with_many_files(tmp_path / "small.tar.gz", 3)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    paths = ["main.py", "blobs/b0/0.bin", "blobs/b0/2.bin"]
    at, with_copies = 0, 0
    while True:
        at += 1
        trace = InterruptAtLine(at)
        tree = None
        try:
            sys.settrace(trace)
            try:
                tree = TarTree(archive)
                tree.prepare(paths)
                tree.close()
            finally:
                sys.settrace(None)
        except KeyboardInterrupt:
            with_copies += bool(list(scratch.iterdir()))
        if tree is not None:
            tree.close()  # what the reader's `with` and error paths do after an interrupt ...
        del tree
        if list(scratch.iterdir()):
            gc.collect()  # ... or, where it never got the tree, the collector (slow: only when needed)
        assert list(scratch.iterdir()) == [], f"copies left after an interrupt before line event {at}"
        if not trace.raised:
            break
    assert with_copies > 10  # interrupts landed while the copies existed, not only before


class SigintWhenCollected:
    """Sends SIGINT from its finalizer: an interrupt that lands while the garbage collector runs one."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupts
def test_an_interrupt_that_python_drops_inside_a_finalizer_still_stops_the_reading(setup, tmp_path: Path):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    SigintWhenCollected()  # its KeyboardInterrupt is printed as "ignored" and never reaches this frame

    def interrupt_once(fired: list[int]):
        def on_progress(report) -> None:
            if report.snapshots_written >= 1 and not fired:
                fired.append(report.tokens_done)
                SigintWhenCollected()
        return on_progress

    with Library(tmp_path / "store.db", setup["model"], snapshot_every=2) as library:
        # as `megalodoc ingest` reads: the interrupt also cancels, and the reading stops at its next model call
        cancel, fired = CancelToken(), []
        with stop_on_interrupt(cancel.cancel):
            outcome = library.ingest_many([setup["book"]], on_progress=interrupt_once(fired), cancel=cancel)[0]
        assert fired and cancel.cancelled
        assert outcome.status == "cancelled", outcome
        assert outcome.document.committed_position >= fired[0]
        stopped_at = outcome.document.committed_position
        # without it the same interrupt is lost: the reading goes on to the end
        fired = []
        outcome = library.ingest_many([setup["book"]], on_progress=interrupt_once(fired))[0]
        assert fired and outcome.status == "complete" and outcome.resumed_from == stopped_at
        assert outcome.document.committed_position == outcome.document.token_count > stopped_at
        assert library.store.check_integrity() == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt
def test_the_command_stops_reading_and_says_so_when_python_drops_the_interrupt(setup, tmp_path, monkeypatch,
                                                                              capsys):
    from megalodoc.app.commands import ingest as ingest_command

    fired: list[int] = []
    real_call = ingest_command.ProgressLine.__call__

    def call(self, report) -> None:  # the progress line, plus an interrupt dropped after the first snapshot
        real_call(self, report)
        if report.snapshots_written >= 1 and not fired:
            fired.append(report.tokens_done)
            SigintWhenCollected()

    monkeypatch.setattr(ingest_command.ProgressLine, "__call__", call)
    db = tmp_path / "store.db"
    code = cli_main(["ingest", str(setup["book"]), "--db", str(db), "--model", str(setup["model"]),
                     "--snapshot-every", "2"])
    out, err = capsys.readouterr()
    assert fired and code == 130, (code, err[-2000:])
    assert err.rstrip().endswith("interrupted: the last snapshot is kept; run the same command again to resume")
    assert "summary:" in out and "cancelled" in out  # what was read is still reported
    with Library(db, setup["model"], snapshot_every=2) as library:
        (document,) = library.documents()
        assert document.status == "cancelled" and document.committed_position >= fired[0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt
def test_the_command_reads_nothing_when_python_drops_an_interrupt_during_the_estimate(setup, tmp_path,
                                                                                     monkeypatch, capsys):
    from megalodoc.app.commands import ingest as ingest_command

    real_estimate = ingest_command._print_estimate

    def estimate_then_interrupt(*args, **kwargs):
        estimate = real_estimate(*args, **kwargs)
        SigintWhenCollected()
        return estimate

    monkeypatch.setattr(ingest_command, "_print_estimate", estimate_then_interrupt)
    db = tmp_path / "store.db"
    code = cli_main(["ingest", str(setup["book"]), "--db", str(db), "--model", str(setup["model"])])
    err = capsys.readouterr().err
    assert code == 130 and err.rstrip().endswith("interrupted before reading anything"), err[-2000:]
    with Library(db, setup["model"]) as library:
        assert library.documents() == []


def test_a_command_started_with_interrupts_ignored_keeps_ignoring_them(setup, tmp_path):
    """As `megalodoc ingest ... &` in a shell script: SIGINT is ignored from the start, and a Ctrl-C meant
    for the script neither stops nor cancels the ingest."""
    db = tmp_path / "store.db"
    start = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
             "from megalodoc.app.cli import main; sys.exit(main(sys.argv[1:]))")
    command = [sys.executable, "-c", start, "ingest", str(setup["book"]), "--db", str(db),
               "--model", str(setup["model"]), "--snapshot-every", "2"]
    code, seconds, stderr = run_and_interrupt(command, tmp_path, 0.2, "estimate:")
    assert seconds is not None, "the ingest ended before the signal"
    assert code == 0 and "interrupted" not in stderr, (code, stderr[-2000:])
    with Library(db, setup["model"], snapshot_every=2) as library:
        assert [doc.status for doc in library.documents()] == ["complete"]
