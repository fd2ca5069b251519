"""Ids that come from outside (typed into a page, given on the command line) are checked against what the
id columns can hold before they reach SQL: a larger integer fails inside the driver (OverflowError on
SQLite, "integer out of range" on PostgreSQL) instead of finding nothing.

`get_row` looks a row up by its id, finding none for an id no row can have."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

SQLITE_MAX_ID = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY is 64-bit
INTEGER_MAX_ID = 2**31 - 1  # the id columns are INTEGER, 32-bit on PostgreSQL

RowT = TypeVar("RowT")


def can_exist(session: Session, row_id: int) -> bool:
    """Whether a row of this database can have `row_id`: ids are positive and fit the id column."""
    limit = SQLITE_MAX_ID if session.get_bind().dialect.name == "sqlite" else INTEGER_MAX_ID
    return 0 < row_id <= limit


def get_row(session: Session, model: type[RowT], row_id: int, *, lock: bool = False) -> RowT | None:
    """The row of `model` with primary key `row_id`, or None when there is none, also when no row can
    have that id. `lock` takes a row lock on PostgreSQL (SELECT ... FOR UPDATE)."""
    if not can_exist(session, row_id):
        return None
    return session.get(model, row_id, with_for_update=lock or None)

