"""`megalodoc ask DOC "question"`: evidence with citations, then a streamed answer (or --json)."""

from __future__ import annotations

import argparse

from megalodoc.app import reader_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ask", help="ask a question about a document: cited evidence, then an answer")
    parser.add_argument("document", metavar="DOC", help="document id or name (see `megalodoc list`)")
    parser.add_argument("question")
    parser.add_argument("--at", help=reader_cli.AT_HELP)
    parser.add_argument("--whole", action="store_true", help="search the whole document, past the reading point")
    parser.add_argument("--session", type=int, metavar="ID", help="ask inside this session (after its latest turn)")
    parser.add_argument("--new-session", metavar="TITLE", help="start a session with this title and ask there")
    parser.add_argument("--json", action="store_true", help="print answer and citations as JSON")
    reader_cli.add_service_options(parser)
    reader_cli.add_sampling_options(parser, max_tokens=96)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if reader_cli.session_options_clash("ask", args):
        return 2

    def work(service) -> int:
        sampling = {**reader_cli.sampling_from(args), "max_new_tokens": args.max_tokens}
        point = None
        if args.session is not None:
            point = service.resume(args.session)
        elif args.new_session is not None:
            point = service.start_session(args.document, args.at, args.new_session)
        if point is not None:
            answer = service.ask(args.document, args.question, whole_document=args.whole, sampling=sampling,
                                 seed=args.seed, session=point)
        else:
            answer = service.ask(args.document, args.question, args.at, whole_document=args.whole,
                                 sampling=sampling, seed=args.seed)
        return reader_cli.print_answer(answer, args.json)

    return reader_cli.run_with_service("ask", args, work)
