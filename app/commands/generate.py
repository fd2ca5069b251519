"""`megalodoc generate`: continue a text prompt with a model, streaming tokens as they come."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="continue a prompt with the model (tokens stream as they come)")
    parser.add_argument("prompt", help="the text to continue")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the shipped model)")
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--seed", type=int)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from megalodoc.model import CheckpointError, Generation, SamplingSettings, load_bundle
    from megalodoc.model.tokenizer import IncrementalDecoder, TokenizerError

    try:
        bundle = load_bundle(args.model)
        tokenizer = bundle.require_tokenizer()
        config = bundle.model.config
        settings = SamplingSettings(max_new_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                                    top_p=args.top_p, greedy=args.greedy, seed=args.seed,
                                    stop_tokens=(config.eos_id,))
        prompt = [config.bos_id, *tokenizer.encode(args.prompt)]  # UnencodableTextError is a ValueError
    except (CheckpointError, TokenizerError, ValueError) as exc:
        print(f"megalodoc generate: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(args.prompt)
    decoder = IncrementalDecoder(tokenizer)  # byte-fallback pieces are joined into whole characters
    for token in Generation(bundle, prompt, settings=settings):
        text = decoder.push(token)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write(decoder.finish() + "\n")
    return 0
