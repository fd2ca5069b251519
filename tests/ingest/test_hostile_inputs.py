"""Every kind of hostile input from `hostile_inputs` through the real pipeline (tiny model, SQLite store):
the outcome (read, read with named parts skipped, refused naming the file), nothing outside the given
paths opened (a Python audit hook here; strace on the command line in `test_hostile_strace.py`), nothing
of the outside stored, no document left behind by a refusal, and a store that passes its checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from db_targets import TARGETS, snapshot_folder
from hostile_inputs import HOSTILE_CAPS, MAKERS, PROSE, SECRET, Hostile, build
from open_audit import recording

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.library import Library

SPECIAL_ROOTS = ("/proc/", "/sys/", "/dev/")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, Hostile]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, {case.kind: case for case in build(root)}


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def library(hostile, model):
    root, _ = hostile
    with Library(root / "store.db", model, snapshot_every=8, caps=HOSTILE_CAPS) as lib:
        yield lib


def test_the_generator_makes_at_least_30_kinds_of_each_outcome(hostile):
    _, cases = hostile
    assert len(cases) >= 30
    assert {case.outcome for case in cases.values()} == {"ingest", "skip", "refuse"}


@pytest.mark.parametrize("index", range(len(MAKERS)), ids=[maker.__name__ for maker in MAKERS])
def test_hostile_input(index: int, hostile, library):
    root, cases = hostile
    case = list(cases.values())[index]
    if case.unprivileged and os.geteuid() == 0:
        pytest.skip("root reads chmod-000 files; judged as nobody in test_hostile_unprivileged.py")
    with recording() as opened:
        outcome = library.ingest_many([case.path])[0]
    notes = [*outcome.warnings, *outcome.skipped]
    if case.outcome == "refuse":
        assert outcome.status == "failed", (case.kind, outcome)
        assert outcome.message.startswith(f"{case.path}: ") and case.words in outcome.message, outcome.message
        assert outcome.document is None  # refused before any document (or snapshot) was made
    else:
        assert outcome.status == "complete", (case.kind, outcome.message)
        if case.outcome == "skip":
            assert any(case.words in note for note in outcome.skipped), notes
        else:
            assert not outcome.skipped, outcome.skipped
            assert not case.words or any(case.words in note for note in notes), notes
        document = outcome.document
        text = library.bundle.tokenizer.decode(library.store.token_ids(document.id, 0, document.token_count))
        assert SECRET not in text
        assert "\udcff" not in text and text.encode("utf-8")  # names were escaped, the text is storable
    outside = str(root / "outside")
    assert not [path for path in opened if os.path.realpath(path).startswith(outside)]
    assert not [path for path in opened if os.path.realpath(path).startswith(SPECIAL_ROOTS)]
    for unread in case.unread:
        assert not [path for path in opened if os.path.realpath(path) == os.path.realpath(unread)]
    assert library.store.check_integrity() == []


def test_the_store_passes_db_check_after_every_hostile_input(hostile, library, capsys):
    root, cases = hostile
    for case in cases.values():
        if not (case.unprivileged and os.geteuid() == 0):
            library.ingest_many([case.path])  # again: complete ones are not read twice, refusals repeat
    assert cli_main(["db", "check", "--db", str(root / "store.db")]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")
    statuses = {doc.status for doc in library.documents()}
    assert statuses == {"complete"}  # no failed document with snapshots left behind by any refusal


@pytest.mark.parametrize("kind", ["folder", "text-file", "truncated-store", "overwritten-store", "foreign-wal",
                                  "newer-store", "read-only", "dev-null"])
def test_ingest_into_a_bad_db_target_is_refused_and_changes_nothing(kind: str, model: Path, tmp_path: Path, capsys):
    make, _, words = TARGETS[kind]
    stores = tmp_path / "stores"
    stores.mkdir()
    target = make(stores / f"{kind}.db")
    document = tmp_path / "notes.txt"
    document.write_text(PROSE)
    before = snapshot_folder(stores)
    assert cli_main(["ingest", str(document), "--db", str(target), "--model", str(model), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert words in error and (str(target) in error or os.path.realpath(target) in error), error
    assert snapshot_folder(stores) == before
