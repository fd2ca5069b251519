"""The reader service passes ids from its callers (the Python API, the CLI, the web pages) to the store: an
id no row can have (0, negative, beyond the id column) gets the same not-found error as a missing one."""

from __future__ import annotations

import pytest

MISSING = 987_654  # a well-formed id no row has
IMPOSSIBLE = [0, -1, 2**31, 2**63, 10**30]

# ReaderService methods taking a document, session or turn id, called with `i` there
CALLS = {
    "document": lambda svc, i: svc.document(i),
    "snapshots": lambda svc, i: svc.snapshots(i),
    "state_at": lambda svc, i: svc.state_at(i, 0),
    "resolve_position": lambda svc, i: svc.resolve_position(i),
    "where": lambda svc, i: svc.where(i, 0),
    "evidence": lambda svc, i: svc.evidence(i, "wrap"),
    "ask": lambda svc, i: svc.ask(i, "wrap"),
    "continue_": lambda svc, i: svc.continue_(i),
    "start_session": lambda svc, i: svc.start_session(i),
    "sessions": lambda svc, i: svc.sessions(i),
    "surprise": lambda svc, i: svc.surprise(i, stored_only=True),
    "delete_document": lambda svc, i: svc.delete_document(i),
    "session": lambda svc, i: svc.session(i),
    "turns": lambda svc, i: svc.turns(i),
    "resume": lambda svc, i: svc.resume(i),
    "session_start": lambda svc, i: svc.session_start(i),
    "rename_session": lambda svc, i: svc.rename_session(i, "renamed"),
    "delete_session": lambda svc, i: svc.delete_session(i),
    "export_session": lambda svc, i: svc.export_session(i),
    "turn_details": lambda svc, i: svc.turn_details(i),
    "branch": lambda svc, i: svc.branch(i),
}


def outcome(call, service, row_id: int) -> tuple:
    """What the call gives for `row_id`: ("returned", value) or ("raised", error class, message)."""
    try:
        return ("returned", call(service, row_id))
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("raised", type(exc), str(exc))


@pytest.mark.parametrize("name", list(CALLS))
def test_an_impossible_id_gives_what_a_missing_one_gives(service, name: str) -> None:
    call = CALLS[name]
    missing = outcome(call, service, MISSING)
    assert missing[0] == "raised" and missing[1].__name__.endswith("NotFoundError"), missing
    for row_id in IMPOSSIBLE:
        named = (*missing[:2], missing[2].replace(str(MISSING), str(row_id)))
        assert outcome(call, service, row_id) == named, f"{name} with id {row_id}"
