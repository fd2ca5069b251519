"""`megalodoc db ...`: database maintenance (schema upgrade, status, integrity check).

The storage package is imported only when a db command runs, so building the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import sys

_DB_HELP = "database URL or SQLite file (default: $MEGALODOC_DB, else ./megalodoc.db)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `db` command with its `upgrade`, `status` and `check` subcommands."""
    parser = subparsers.add_parser("db", help="database maintenance: upgrade, status, check")
    parser.set_defaults(handler=lambda _args: _help(parser))
    commands = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND")

    upgrade = commands.add_parser("upgrade", help="create the database or bring its schema up to date")
    upgrade.add_argument("--db", default=None, help=_DB_HELP)
    upgrade.set_defaults(handler=_upgrade)

    status = commands.add_parser("status", help="show the database's schema revision against this version's")
    status.add_argument("--db", default=None, help=_DB_HELP)
    status.set_defaults(handler=_status)

    check = commands.add_parser("check", help="check database integrity and every stored state's checksum")
    check.add_argument("--db", default=None, help=_DB_HELP)
    check.add_argument("--no-blobs", action="store_true", help="skip re-hashing the stored states")
    check.set_defaults(handler=_check)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _upgrade(args: argparse.Namespace) -> int:
    from megalodoc.storage import StorageError, resolve_url, upgrade_database
    from megalodoc.storage.engine import display_url

    shown = display_url(resolve_url(args.db))
    try:
        before, after = upgrade_database(args.db)
    except StorageError as exc:
        print(f"megalodoc db upgrade: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{shown}: already at schema revision {after}")
    elif before is None:
        print(f"{shown}: created at schema revision {after}")
    else:
        print(f"{shown}: upgraded from schema revision {before} to {after}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from megalodoc.storage import StorageError, database_status

    try:
        status = database_status(args.db)
    except StorageError as exc:
        print(f"megalodoc db status: {exc}", file=sys.stderr)
        return 1
    advice = {
        "current": "up to date",
        "missing": "no database file: `megalodoc db upgrade` creates it",
        "empty": "no schema yet: `megalodoc db upgrade` creates it",
        "behind": "behind: run `megalodoc db upgrade`",
        "newer": "written by a newer megalodoc: upgrade megalodoc",
        "foreign": "another application's database, not megalodoc's",
        "damaged": f"a damaged SQLite database ({status.detail})",
        "not-database": f"not a database ({status.detail})",
    }[status.state]
    print(f"{status.url}: schema revision {status.current or '-'} (this version: {status.head}); {advice}")
    return 0 if status.state == "current" else 1


def _check(args: argparse.Namespace) -> int:
    from megalodoc.storage import StorageError, open_store

    try:
        with open_store(args.db, create=False) as store:
            problems = store.check_integrity(verify_blobs=not args.no_blobs)
    except StorageError as exc:
        print(f"megalodoc db check: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    print(f"{store.url}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1
