"""`megalodoc continue DOC`: continue a document's text from a reading point, streamed."""

from __future__ import annotations

import argparse

from megalodoc.app import reader_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("continue", help="continue a document's text from a reading point")
    parser.add_argument("document", metavar="DOC", help="document id or name (see `megalodoc list`)")
    parser.add_argument("--at", help=reader_cli.AT_HELP)
    parser.add_argument("--session", type=int, metavar="ID",
                        help="continue inside this session (after its latest turn)")
    parser.add_argument("--json", action="store_true", help="print the continuation as JSON")
    reader_cli.add_service_options(parser)
    reader_cli.add_sampling_options(parser, max_tokens=128)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if reader_cli.session_options_clash("continue", args):
        return 2

    def work(service) -> int:
        sampling = reader_cli.sampling_from(args)
        if args.session is not None:
            answer = service.continue_(args.document, max_tokens=args.max_tokens, sampling=sampling, seed=args.seed,
                                       session=service.resume(args.session))
        else:
            answer = service.continue_(args.document, args.at, args.max_tokens, sampling, seed=args.seed)
        return reader_cli.print_answer(answer, args.json)

    return reader_cli.run_with_service("continue", args, work)
