"""Ids that come from outside (typed into a page, given on the command line) are checked against what the
id columns can hold before they reach SQL: a larger integer fails inside the driver (OverflowError on
SQLite, "integer out of range" on PostgreSQL) instead of finding nothing.

`get_row` looks a row up by its id; `guard_ids` wraps the work of a query that filters by ids so that an id
no row can have finds nothing without reaching the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

SQLITE_MAX_ID = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY is 64-bit
INTEGER_MAX_ID = 2**31 - 1  # the id columns are INTEGER, 32-bit on PostgreSQL

RowT = TypeVar("RowT")
T = TypeVar("T")


def can_exist(session: Session, *row_ids: int | None) -> bool:
    """Whether rows of this database can have every one of `row_ids` (None, an id not given, is skipped):
    ids are positive and fit the id column."""
    limit = SQLITE_MAX_ID if session.get_bind().dialect.name == "sqlite" else INTEGER_MAX_ID
    return all(row_id is None or 0 < row_id <= limit for row_id in row_ids)


def get_row(
    session: Session, model: type[RowT], row_id: int, *, lock: bool = False, key_share: bool = False
) -> RowT | None:
    """The row of `model` with primary key `row_id`, or None when there is none, also when no row can
    have that id. `lock` takes a row lock on PostgreSQL (SELECT ... FOR UPDATE). `key_share` takes the
    weakest one (FOR KEY SHARE): the row cannot be deleted until the transaction ends, while others may
    still update it; a delete in progress elsewhere is waited for, and then the row is None. Rows that
    a new row will reference are read so: its foreign keys then hold when it is inserted."""
    if not can_exist(session, row_id):
        return None
    if lock:
        return session.get(model, row_id, with_for_update=True)
    return session.get(model, row_id, with_for_update={"key_share": True} if key_share else None)


def guard_ids(work: Callable[[Session], T], nothing: T, *row_ids: int | None) -> Callable[[Session], T]:
    """`work`, for a query that filters by `row_ids`; when one of them cannot exist, a function that
    returns `nothing` (what the query finds when no row matches) without running the query."""

    def run(session: Session) -> T:
        return work(session) if can_exist(session, *row_ids) else nothing

    return run
