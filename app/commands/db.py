"""`megalodoc db ...`: database maintenance (schema upgrade, status, integrity check, snapshot compaction).

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

    compact = commands.add_parser(
        "compact", help="thin documents' snapshots to one every K chunks (the last one is kept), delete "
        "state blobs nothing uses; state_at then re-reads up to K chunks of stored tokens")
    compact.add_argument("documents", nargs="+", metavar="DOC", help="document id or name (as `megalodoc "
                         "ingest` listed it)")
    compact.add_argument("--every", type=_positive, required=True, metavar="K", help="keep a snapshot every K chunks")
    compact.add_argument("--vacuum", action="store_true", help="then rebuild the SQLite file so the freed space "
                         "goes back to the file system (needs as much free space as the file; blocks writers)")
    compact.add_argument("--db", default=None, help=_DB_HELP)
    compact.set_defaults(handler=_compact)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"K must be a whole number >= 1, got {text!r}")
    return value


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _failed(command: str, exc: Exception) -> int:
    """Print why `megalodoc db COMMAND` failed, in one line; the exit status: 2 for a --db value that is
    not a usable URL (a usage error, like argparse's), else 1."""
    from megalodoc.storage import DatabaseUrlError

    print(f"megalodoc db {command}: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, DatabaseUrlError) else 1


def _upgrade(args: argparse.Namespace) -> int:
    from megalodoc.storage import StorageError, display_url, resolve_url, upgrade_database

    shown = display_url(resolve_url(args.db))
    try:
        before, after = upgrade_database(args.db)
    except StorageError as exc:
        return _failed("upgrade", exc)
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
        return _failed("status", exc)
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
        return _failed("check", exc)
    for problem in problems:
        print(problem)
    print(f"{store.url}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1


def _find_document(store, key: str):  # noqa: ANN001, ANN202 (storage types are imported lazily)
    """The document with id `key`, else the one named `key`; StorageError when none or several."""
    from megalodoc.storage import NotFoundError

    if key.isdigit():
        return store.get_document(int(key))
    named = [doc for doc in store.list_documents() if doc.name == key]
    if len(named) != 1:
        ids = ", ".join(str(doc.id) for doc in named)
        raise NotFoundError(f"no document named {key!r}" if not named else
                            f"{len(named)} documents are named {key!r} (ids {ids}): give the id")
    return named[0]


def _chunk_size(store, document) -> int:  # noqa: ANN001
    """The chunk size recorded in the document's last stored state."""
    from megalodoc.model.tensor_codec import decode_state
    from megalodoc.storage import NotFoundError

    snapshots = store.list_snapshots(document.id)
    if not snapshots:
        raise NotFoundError(f"{document.name} (document {document.id}) has no snapshots")
    _, metadata = decode_state(store.load_snapshot_bytes(snapshots[-1].id))
    if not metadata.get("chunk_size", "").isdigit():
        raise ValueError(f"{document.name}: its last state records no chunk size")
    return int(metadata["chunk_size"])


def _compact(args: argparse.Namespace) -> int:
    from megalodoc.storage import StorageError, open_store
    from megalodoc.storage.engine import sqlite_file

    try:
        with open_store(args.db, create=False) as store:
            path = sqlite_file(store.engine.url.render_as_string(hide_password=False))
            size_before = _file_bytes(path)
            for key in args.documents:
                document = _find_document(store, key)
                chunk = _chunk_size(store, document)
                report = store.thin_snapshots(document.id, args.every * chunk)
                print(f"{document.name} (document {document.id}): kept {report.kept} snapshot(s) every "
                      f"{args.every} chunk(s) of {chunk} tokens, deleted {report.deleted}; "
                      f"{report.blobs_deleted} state blob(s), {report.blob_bytes_freed:,} bytes freed")
            if args.vacuum and store.vacuum():
                print(f"{store.url}: {size_before:,} -> {_file_bytes(path):,} bytes on disk after VACUUM")
            elif args.vacuum:
                print(f"{store.url}: not SQLite; the database reuses the freed space itself")
    except (StorageError, ValueError) as exc:
        return _failed("compact", exc)
    return 0


def _file_bytes(path) -> int:  # noqa: ANN001
    """Bytes of a SQLite database with its WAL (0 when not a file)."""
    if path is None:
        return 0
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
