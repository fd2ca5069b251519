"""Staging an upload copies and hashes it outside the lock that guards the upload copies, so one person's
large upload does not hold up other people's uploads and deletes; a refused or interrupted upload leaves
nothing behind in the data folder."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.errors import UiError
from megalodoc.app.ui.uploads import INCOMING

WAIT = 60.0  # seconds before a blocked step counts as blocked for good


def incoming_files(ctx) -> list[str]:
    return sorted(p.name for p in (ctx.data_dir / "uploads" / INCOMING).iterdir())


def test_a_slow_upload_does_not_hold_up_other_uploads_and_deletes(ctx, atlas_pdf, tmp_path):
    slow = tmp_path / "slow.txt"
    os.mkfifo(slow)  # reading it waits until a writer comes: an upload still arriving from a slow disk
    staged: list = []
    slow_stage = threading.Thread(target=lambda: staged.extend(ctx.stage([str(slow)])), daemon=True)
    slow_stage.start()
    others: list = []

    def other_people() -> None:
        [copy] = ctx.stage([str(atlas_pdf)])
        others.append(copy)
        others.append(ctx.remove_copy_unless_used(copy.path))  # still staged: kept
        ctx.unstage([copy])
        others.append(ctx.remove_copy_unless_used(copy.path))  # released: removed

    other = threading.Thread(target=other_people, daemon=True)
    other.start()
    other.join(WAIT)
    done_while_slow_waits = not other.is_alive()
    with open(slow, "w") as writer:  # the slow upload arrives (and unblocks the old code's lock)
        writer.write("the slow upload's text\n")
    slow_stage.join(WAIT)
    other.join(WAIT)
    assert done_while_slow_waits, "another upload waited for the slow upload's copy"
    copy, kept, removed = others
    assert kept is False and removed is True and not copy.path.exists()
    [slow_copy] = staged
    assert slow_copy.path.read_text() == "the slow upload's text\n" and slow_copy.name == "slow.txt"
    assert slow_copy.path.parent.parent == ctx.data_dir / "uploads" and incoming_files(ctx) == []


def test_an_upload_whose_file_cannot_be_read_leaves_nothing_behind(ctx, atlas_pdf, tmp_path):
    unreadable = tmp_path / "notes.txt"
    unreadable.mkdir()  # passes the size check, then cannot be opened
    with pytest.raises(UiError, match=r"notes\.txt: the upload cannot be read"):
        h.stage_uploads(ctx, [str(atlas_pdf), str(unreadable)])
    uploads = ctx.data_dir / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == [INCOMING] and incoming_files(ctx) == []
    assert ctx.staged == {}


def test_two_uploads_of_one_file_at_once_share_one_whole_copy(ctx, atlas_pdf):
    results: list = []
    barrier = threading.Barrier(4)

    def upload() -> None:
        barrier.wait(WAIT)
        results.extend(ctx.stage([str(atlas_pdf)]))

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len({r.path for r in results}) == 1 and len(results) == 4
    assert results[0].path.read_bytes() == atlas_pdf.read_bytes() and incoming_files(ctx) == []
    assert ctx.staged[results[0].path] == 4


def test_copies_left_by_a_stopped_server_are_removed_when_the_next_one_starts(service, tmp_path):
    incoming = tmp_path / "data" / "uploads" / INCOMING
    incoming.mkdir(parents=True)
    stale, fresh = incoming / "tmpold.part", incoming / "tmpnew.part"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 1000)  # being received by another server on this folder right now
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    AppContext.create(service, tmp_path / "data", max_upload_mb=1)
    assert not stale.exists() and fresh.exists()


def test_a_full_disk_is_named_as_the_servers_problem_and_leaves_nothing(tmp_path):
    # a file size limit stands in for a nearly full disk, in a process of its own
    source = tmp_path / "book.txt"
    source.write_bytes(b"a line of a book\n" * 20_000)  # 340 kB
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from megalodoc.app.ui.errors import UiError\n"
        "from megalodoc.app.ui.uploads import receive_uploads\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "try:\n"
        "    receive_uploads([sys.argv[1]], Path(sys.argv[2]), 2**30)\n"
        "except UiError as error:\n"
        "    print(error)\n"
    )
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-c", script, str(source), str(data)], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "book.txt: the server could not store the upload (File too large)", done
    assert list((data / "uploads" / INCOMING).iterdir()) == []


def test_stored_copies_get_the_mode_a_new_file_gets(ctx, atlas_pdf, tmp_path):
    [copy] = ctx.stage([str(atlas_pdf)])
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"")
    assert stat.S_IMODE(copy.path.stat().st_mode) == stat.S_IMODE(fresh.stat().st_mode)


def test_a_failed_placing_leaves_no_copy_that_nothing_holds(ctx, atlas_pdf, long_text, monkeypatch):
    from megalodoc.app.ui import context as context_module

    placed, place = [], context_module.place_upload

    def place_then_fail(received, data_dir):
        if placed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        placed.append(place(received, data_dir))
        return placed[-1]

    monkeypatch.setattr(context_module, "place_upload", place_then_fail)
    with pytest.raises(UiError, match=r"^long\.txt: the server could not store the upload \(No space left"):
        ctx.stage([str(atlas_pdf), str(long_text)])
    assert not placed[0].path.exists() and ctx.staged == {} and incoming_files(ctx) == []
