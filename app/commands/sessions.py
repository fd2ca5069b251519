"""`megalodoc sessions list|show|rename|delete|export`: the stored reading sessions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megalodoc.app import reader_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sessions", help="list, show, rename, delete or export reading sessions")
    parser.set_defaults(handler=lambda _args: _help(parser))
    commands = parser.add_subparsers(dest="sessions_command", metavar="SUBCOMMAND")
    listing = commands.add_parser("list", help="sessions (of one document), most recent first")
    listing.add_argument("document", nargs="?", metavar="DOC", help="document id or name")
    listing.set_defaults(handler=_list)
    show = commands.add_parser("show", help="a session's turns (every branch)")
    show.add_argument("session", type=int, metavar="ID")
    show.set_defaults(handler=_show)
    rename = commands.add_parser("rename", help="set a session's title")
    rename.add_argument("session", type=int, metavar="ID")
    rename.add_argument("title")
    rename.set_defaults(handler=_rename)
    delete = commands.add_parser("delete", help="delete a session with its turns")
    delete.add_argument("session", type=int, metavar="ID")
    delete.set_defaults(handler=_delete)
    export = commands.add_parser("export", help="a session as Markdown with its citations")
    export.add_argument("session", type=int, metavar="ID")
    export.add_argument("-o", "--output", help="write to this file instead of standard output")
    export.set_defaults(handler=_export)
    for sub in (listing, show, rename, delete, export):
        reader_cli.add_service_options(sub)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _list(args: argparse.Namespace) -> int:
    def work(service) -> int:
        from megalodoc.app.reader.sessions import one_line

        sessions = service.sessions(args.document)
        if not sessions:
            print("no sessions")
        for s in sessions:
            turns = len(service.turns(s))
            print(f"{s.id:5}  doc {s.document_id:<4} at token {s.position:<8} {turns:3} turn(s)  "
                  f"{s.updated_at:%Y-%m-%d %H:%M}  {one_line(s.title or '')}")
        return 0

    return reader_cli.run_with_service("sessions list", args, work)


def _show(args: argparse.Namespace) -> int:
    def work(service) -> int:
        from megalodoc.app.reader.sessions import one_line

        session = service.session(args.session)
        document = service.document(session.document_id)
        print(f"session {session.id} {one_line(session.title or '')}: {document.name} at token {session.position}")
        for turn in service.turns(session):
            after = "" if turn.parent_turn_id is None else f" after {turn.parent_turn_id}"
            asked = one_line(turn.prompt) or "(continue)"
            print(f"  turn {turn.id}{after}: {asked}\n    -> {' '.join(turn.answer.split())[:200]}")
        return 0

    return reader_cli.run_with_service("sessions show", args, work)


def _rename(args: argparse.Namespace) -> int:
    def work(service) -> int:
        service.rename_session(args.session, args.title)
        print(f"session {args.session} renamed to {args.title!r}")
        return 0

    return reader_cli.run_with_service("sessions rename", args, work)


def _delete(args: argparse.Namespace) -> int:
    def work(service) -> int:
        service.delete_session(args.session)
        print(f"session {args.session} deleted")
        return 0

    return reader_cli.run_with_service("sessions delete", args, work)


def _export(args: argparse.Namespace) -> int:
    def work(service) -> int:
        markdown = service.export_session(args.session)
        if args.output:
            try:
                Path(args.output).write_text(markdown, encoding="utf-8")
            except OSError as exc:  # a folder, a missing folder, no permission, a full disk
                print(f"megalodoc sessions export: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
                return 2
            print(f"session {args.session} written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(markdown)
        return 0

    return reader_cli.run_with_service("sessions export", args, work)
