"""`megalodoc train` on CPU under the system allocator (glibc) and under tcmalloc, taking turns.

    python bench/train_cli_allocators.py [--out bench/results/train_cli_allocators] [--steps 10] [--rounds 2]
                                         [--processes 2]   # under torchrun, as README's training recipe

glibc maps every large block fresh and faults its pages in at each step, tcmalloc keeps and reuses them
(app/allocator.py).
Each round runs the same command once per allocator (the order swapped from one round to the next), in a
fresh process with `--allocator system` or `--allocator tcmalloc` (the command then re-executes itself with
the library preloaded, and names the allocator it runs on), on a corpus of Python standard-library modules
written into --out (or --data). Records each run's tokens/s per step from its train_log.jsonl (median of the
steps after the first two), its wall time, and the sha256 of the weights it saved: the allocator must not
change a single bit. Writes
train_cli_allocators.json into --out and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from allocator import ALLOCATORS, tcmalloc_library
from bench_result import machine_meta, write_result

from megalodoc.ingest.corpus.build import write_corpus
from megalodoc.ingest.corpus.works import Work
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR

SKIPPED_STEPS = 2  # the first steps allocate and warm up
LOADED_LINE = "megalodoc train: C allocator "  # the line the command prints once it runs on its allocator


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results/train_cli_allocators"), help="output folder")
    p.add_argument("--data", type=Path, default=None,
                   help="a built corpus folder (default: the standard library's first --modules modules)")
    p.add_argument("--modules", type=int, default=120, help="standard-library modules in the default corpus")
    p.add_argument("--config", default="megalodoc-6m", help="model preset to train")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-chunks", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2, help="runs of each allocator, taking turns")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the training processes")
    p.add_argument("--processes", type=int, default=1,
                   help="training processes: more than 1 runs the command under torchrun (gloo, data parallel)")
    args = p.parse_args()
    if args.steps <= SKIPPED_STEPS:
        p.error(f"--steps must be more than {SKIPPED_STEPS} (the first {SKIPPED_STEPS} steps are not timed)")
    return args


def stdlib_corpus(folder: Path, modules: int) -> Path:
    """A corpus of the first `modules` top-level standard-library .py files (the first one held out)."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:modules]
    works = [Work(f.stem, "code", f.name, "python", f.read_text(encoding="utf-8")) for f in files]
    write_corpus(works, {}, folder, heldout=(f"code/{files[0].stem}",), excluded={})
    return folder


def train_command(args: argparse.Namespace, data: Path, out: Path, steps: int, allocator: str) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.processes)] \
        if args.processes > 1 else []
    return [sys.executable, *launcher, "-m", "megalodoc.app.cli", "train", "--config", args.config, "--data", str(data),
            "--tokenizer", str(DEFAULT_MODEL_DIR / "tokenizer.model"), "--out", str(out), "--steps", str(steps),
            "--warmup-steps", "1", "--seq-chunks", str(args.seq_chunks), "--batch-size", str(args.batch_size),
            "--log-every", "1", "--val-every", "0", "--checkpoint-every", str(10 * steps), "--allocator", allocator]


def shown_command(args: argparse.Namespace, steps: int) -> str:
    """The training command as a reader would type it: no interpreter, corpus or run paths of this machine."""
    command = train_command(args, Path("CORPUS"), Path("RUN"), steps, "ALLOCATOR")[1:]
    command[command.index("--tokenizer") + 1] = "model/default/tokenizer.model"
    return "python3 " + " ".join(command)


def run_training(args: argparse.Namespace, data: Path, out: Path, steps: int, allocator: str) -> dict:
    """One `megalodoc train --allocator allocator` process into `out` (emptied first); the allocator it
    reported, its per-step records, wall time and the weights' sha256."""
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env.pop("LD_PRELOAD", None)
    t0 = time.perf_counter()
    done = subprocess.run(train_command(args, data, out, steps, allocator), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"megalodoc train exited {done.returncode} (--allocator {allocator}):\n{done.stderr[-3000:]}")
    loaded = [line[len(LOADED_LINE):].strip() for line in done.stderr.splitlines() if line.startswith(LOADED_LINE)]
    if loaded != [allocator]:
        sys.exit(f"megalodoc train --allocator {allocator} reported the allocators {loaded}")
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps_done = [r for r in records if "tokens_per_s" in r]
    weights = hashlib.sha256()
    for shard in sorted((out / "model").glob("*.safetensors")):
        weights.update(shard.read_bytes())
    timed = [r["tokens_per_s"] for r in steps_done if r["step"] > SKIPPED_STEPS]
    return {"loaded": loaded[0], "wall_s": wall,
            "tokens_per_s_steps": [r["tokens_per_s"] for r in steps_done],
            "tokens_per_s": statistics.median(timed) if timed else None, "final_loss": steps_done[-1]["loss"],
            "weights_sha256": weights.hexdigest()}


def main() -> None:
    args = parse_args()
    tcmalloc = tcmalloc_library()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or stdlib_corpus(args.out / "corpus", args.modules)
    run_training(args, data, args.out / "runs" / "warm-up", 2, "system")  # builds the corpus's token cache
    runs: list[dict] = []
    for round_index in range(args.rounds):
        for name in ALLOCATORS if round_index % 2 == 0 else ALLOCATORS[::-1]:
            run = run_training(args, data, args.out / "runs" / f"{name}-{round_index + 1}", args.steps, name)
            runs.append({"allocator": name, "round": round_index + 1, **run})
            print(f"round {round_index + 1} {name:<8} {run['tokens_per_s']:>8,.0f} tok/s  {run['wall_s']:6.1f} s",
                  flush=True)
    result = {
        "meta": machine_meta(command=shown_command(args, args.steps),
                             training_threads=args.threads, processes=args.processes, steps=args.steps,
                             rounds=args.rounds, skipped_steps=SKIPPED_STEPS, tcmalloc=tcmalloc),
        "runs": runs,
        "weights_identical": len({r["weights_sha256"] for r in runs}) == 1,
    }
    print_report(result)
    write_result(args.out, "train_cli_allocators.json", result)


def print_report(result: dict) -> None:
    runs = result["runs"]
    meta = result["meta"]
    print(f"megalodoc train, {meta['steps']} steps, {meta.get('processes', 1)} process(es), "
          f"OMP_NUM_THREADS={meta['training_threads']}")
    print(f"{'allocator':<10} {'round':>5} {'tok/s':>8} {'wall s':>7} {'final loss':>11}")
    for r in runs:
        print(f"{r['allocator']:<10} {r['round']:>5} {r['tokens_per_s']:>8,.0f} {r['wall_s']:>7.1f} "
              f"{r['final_loss']:>11.6f}")
    median = {name: statistics.median(r["tokens_per_s"] for r in runs if r["allocator"] == name)
              for name in ("system", "tcmalloc")}
    print(f"tcmalloc over system: {median['tcmalloc'] / median['system']:.2f}x tokens/s; "
          f"weights identical in every run: {result['weights_identical']}")


if __name__ == "__main__":
    main()
