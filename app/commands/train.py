"""`megalodoc train`: train a Megalodon on a built corpus (one process, or data parallel under torchrun).

    megalodoc train --config megalodoc-6m --data CORPUS --tokenizer TOK.model --out RUN --steps 2000
    torchrun --standalone --nproc-per-node 2 -m megalodoc.app.cli train ...   # DDP, same global batch
    megalodoc train ... --resume                                              # continue RUN's checkpoint

On a Linux CPU the command runs on tcmalloc where it is installed and LD_PRELOAD is empty (`--allocator
auto`): it re-executes itself with the library preloaded, since glibc's malloc faults every large block of
a step in afresh (app/allocator.py; training the shipped model ran 1.04x-1.15x the tokens/s in README's
runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from megalodoc.app.arg_types import torch_device


def _handler(args: argparse.Namespace) -> int:
    """Train; an unusable input (config, tokenizer, corpus, token file, checkpoint, settings) is one line
    naming it on stderr and exit status 2."""
    from megalodoc.model.train.errors import TrainingInputError

    try:
        _choose_allocator(args)
        return _train(args)
    except TrainingInputError as exc:
        print(f"megalodoc train: {exc}", file=sys.stderr)
        return 2


def _choose_allocator(args: argparse.Namespace) -> None:
    """Runs the process on the allocator --allocator names, re-executing it with tcmalloc preloaded where
    that is asked for. auto: tcmalloc for CPU training on Linux where the library is installed and nothing
    else is preloaded; where that fails, one line says why and the process goes on as it is. Only a
    process started as this command is re-executed (`cli.run`): called from Python (`main([...])`), auto
    leaves the allocator as it is and tcmalloc must already be loaded."""
    import torch

    from megalodoc.app.allocator import PACKAGE_HINT, AllocatorError, loaded_allocator, reexec_on, tcmalloc_library
    from megalodoc.model.train.errors import TrainingInputError

    own = getattr(args, "own_process", False)
    first_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, one line for the run

    def say(message: str) -> None:
        if first_rank:
            print(f"megalodoc train: {message}", file=sys.stderr)

    if args.allocator == "auto":
        device = torch.device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available()
                                                                            else "cpu")
        if device.type != "cpu" or not own or not sys.platform.startswith("linux"):
            return  # LD_PRELOAD and /proc/self/maps, which tell what runs, are Linux's
        if loaded_allocator() != "tcmalloc" and os.environ.get("LD_PRELOAD"):
            say(f"LD_PRELOAD={os.environ['LD_PRELOAD']} is set: the allocator is left as it is")
            return
        if tcmalloc_library() is None:
            say(f"the system allocator runs; tcmalloc made CPU training faster and is not installed ({PACKAGE_HINT})")
            return
        try:
            reexec_on("tcmalloc")  # unless it already runs, the process starts again here with it
        except AllocatorError as exc:
            say(f"the system allocator runs ({exc})")
            return
    else:
        if args.allocator == "tcmalloc" and loaded_allocator() != "tcmalloc" and not own:
            raise TrainingInputError("--allocator tcmalloc: this process was not started as the megalodoc command, "
                                     "so it cannot be re-executed; start it with LD_PRELOAD=libtcmalloc_minimal.so.4")
        try:
            reexec_on(args.allocator)
        except AllocatorError as exc:
            raise TrainingInputError(f"--allocator {args.allocator}: {exc}") from exc
    say(f"C allocator {loaded_allocator()}")


def _train(args: argparse.Namespace) -> int:
    from megalodoc.model.train.distributed import barrier, setup, teardown
    from megalodoc.model.train.errors import TrainingInputError
    from megalodoc.model.train.token_data import corpus_token_file, open_token_file
    from megalodoc.model.train.tokenizer_train import load_processor
    from megalodoc.model.train.train_config import TrainConfig, resolve_model_config
    from megalodoc.model.train.trainer import train

    cfg = resolve_model_config(args.config)
    tokenizer = Path(args.tokenizer)
    sp = load_processor(tokenizer)
    # The model's vocabulary and special ids are the tokenizer's.
    try:
        cfg = dataclasses.replace(cfg, vocab_size=sp.get_piece_size(), pad_id=sp.pad_id(), unk_id=sp.unk_id(),
                                  bos_id=sp.bos_id(), eos_id=sp.eos_id())
    except ValueError as exc:  # e.g. no BOS piece: every text the model reads starts with one
        raise TrainingInputError(f"{tokenizer}: does not fit a model ({exc})") from exc
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    tcfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    _check_out(Path(args.out))
    data_path = Path(args.data)
    info = setup(args.device)  # joins the process group under torchrun
    try:
        if data_path.is_file():  # a token file made earlier
            data, val = open_token_file(data_path), None
        else:
            splits = ["train"] + (["heldout"] if args.val_batches != 0 else [])
            if info.local_rank == 0:  # one process per machine tokenizes the corpus (cached) ...
                for split in splits:
                    corpus_token_file(data_path, tokenizer, split)
            barrier(info)  # ... the others then read the cache
            data = corpus_token_file(data_path, tokenizer, "train")
            val = corpus_token_file(data_path, tokenizer, "heldout") if "heldout" in splits else None
        train(cfg, tcfg, data, Path(args.out), tokenizer_path=tokenizer, val_data=val, resume=args.resume,
              stop_at=args.stop_at, device=args.device)
    finally:
        teardown()
    return 0


def _check_out(out: Path) -> None:
    """--out must be a folder, or one that can be made, before the corpus is tokenized."""
    from megalodoc.model.train.errors import TrainingInputError

    if out.exists() and not out.is_dir():
        raise TrainingInputError(f"--out {out}: is a file, not a run folder")
    ancestor = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not ancestor.is_dir():
        raise TrainingInputError(f"--out {out}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise TrainingInputError(f"--out {out}: {ancestor} is not writable")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` to the CLI."""
    p = subparsers.add_parser("train", help="train a model on a corpus built by `megalodoc corpus build`",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="preset name (tiny, megalodoc-6m, ...) or a JSON config file")
    p.add_argument("--data", required=True, help="corpus folder (tokens are cached inside it) or a .u16 token file")
    p.add_argument("--tokenizer", required=True, help="sentencepiece .model file")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, train_log.jsonl, model/")
    p.add_argument("--steps", type=int, help="optimizer steps (default 1000)")
    p.add_argument("--seq-chunks", type=int, dest="seq_chunks", help="chunks per training sequence (default 4)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="global sequences per step (default 16)")
    p.add_argument("--micro-batch-size", type=int, dest="micro_batch_size",
                   help="sequences per forward pass per process (default: the whole per-process batch)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument("--min-lr-ratio", type=float, dest="min_lr_ratio", help="final lr / peak lr (default 0.1)")
    p.add_argument("--warmup-steps", type=int, dest="warmup_steps", help="linear warmup steps (default 100)")
    p.add_argument("--weight-decay", type=float, dest="weight_decay", help="AdamW weight decay (default 0.1)")
    p.add_argument("--grad-clip", type=float, dest="grad_clip", help="gradient norm clip (default 1.0)")
    p.add_argument("--seed", type=int, help="data order, initialization and dropout seed (default 0)")
    p.add_argument("--log-every", type=int, dest="log_every", help="steps between log lines (default 10)")
    p.add_argument("--checkpoint-every", type=int, dest="checkpoint_every",
                   help="steps between training checkpoints (default 500)")
    p.add_argument("--val-every", type=int, dest="val_every",
                   help="steps between held-out validation (default 0: at the end only)")
    p.add_argument("--val-batches", type=int, dest="val_batches",
                   help="validation micro-batches (default 4; 0 disables validation)")
    p.add_argument("--cema-max-half-life", type=float, dest="cema_max_half_life",
                   help="start half of each channel's CEMA modes with half-lives from this many tokens down to 8 "
                        "(default 0: the paper's init, ~2.4 tokens)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--stop-at", type=int, dest="stop_at", help="stop after this step (a checkpoint is written)")
    p.add_argument("--device", type=torch_device,
                   help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    p.add_argument("--allocator", choices=("auto", "system", "tcmalloc"), default="auto",
                   help="the C allocator: tcmalloc (preloaded; the command re-executes itself), system (whatever "
                        "the process started with), or auto (default): tcmalloc for CPU training on Linux where "
                        "it is installed and nothing else is preloaded")
    p.set_defaults(handler=_handler)
