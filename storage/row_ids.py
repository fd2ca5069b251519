"""Ids that come from outside (typed into a page, given on the command line) are checked against what the
id columns can hold before they reach SQL: a larger integer fails inside the driver (OverflowError on
SQLite, "integer out of range" on PostgreSQL) instead of finding nothing."""

from __future__ import annotations

from sqlalchemy.orm import Session

SQLITE_MAX_ID = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY is 64-bit
INTEGER_MAX_ID = 2**31 - 1  # the id columns are INTEGER, 32-bit on PostgreSQL


def can_exist(session: Session, row_id: int) -> bool:
    """Whether a row of this database can have `row_id`: ids are positive and fit the id column."""
    limit = SQLITE_MAX_ID if session.get_bind().dialect.name == "sqlite" else INTEGER_MAX_ID
    return 0 < row_id <= limit
