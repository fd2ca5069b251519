"""Where a one-shot training step's time goes on a CPU: the trunk (embedding, layers, final norm) and the
whole step (trunk, tied LM head and next-token cross-entropy), megalodoc against its same-width Llama,
forward + backward, measured in one process.

    python bench/train_step_cpu.py [--out bench/results/train_step_cpu] [--tokens 2048] [--repeats 9]
                                   [--allocator tcmalloc]

The trunk is `Megalodon.hidden_states` and the Llama's LlamaModel; the step is long_context.py's one-shot
forward + backward. The four measurements take turns in every repeat and the median of each is kept. The
trunk's backward starts from a fixed random gradient on its output (B, L, D), so both systems run the same
work that the step's head and loss would hand them. "Head and loss" is a step's median minus its trunk's
median: the (L, D) x (D, V) head, log-softmax and their backward, the same shapes for both systems (tied
heads, one vocabulary). Each measurement also records the minor page faults it took (median);
--allocator tcmalloc reruns the script on tcmalloc, which keeps freed memory in the process, so that
those faults leave the comparison (bench/allocator.py). Writes train_step_cpu.json into --out and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from allocator import ALLOCATORS, loaded_allocator, minor_faults, run_under
from bench_result import machine_meta, write_result

from megalodoc.model import load_model
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR

# long_context imports transformers' Llama with this folder off the path (bench/kernels.py would shadow
# the `kernels` package that transformers probes for); it gives the systems, the document and the step
from llama_baseline import build_llama, llama_specs, megalodon_non_embedding_parameters
from long_context import LlamaSystem, MegalodocSystem, document_ids, one_shot_once


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results/train_step_cpu"), help="output folder")
    p.add_argument("--tokens", type=int, default=2048, help="tokens in the one-shot call")
    p.add_argument("--repeats", type=int, default=9, help="timed runs of each measurement (median kept)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--allocator", choices=ALLOCATORS, default="system",
                   help="the C allocator under the run: the system's (glibc) or tcmalloc, preloaded")
    return p.parse_args()


def seconds(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def faulted(run: Callable[[], float]) -> tuple[float, int]:
    """run's seconds and the minor page faults taken while it ran."""
    before = minor_faults()
    took = run()
    return took, minor_faults() - before


def main() -> None:
    args = parse_args()
    run_under(args.allocator)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    mega = MegalodocSystem(load_model().eval())
    spec = llama_specs(mega.model.config, megalodon_non_embedding_parameters(mega.model))[0]  # same width
    model, config = build_llama(spec, cpu, torch.float32, max_positions=2 * args.tokens)
    llama = LlamaSystem(spec.name, model, config, spec.kv_bytes_per_token(4))
    ids = document_ids(args.tokens, DEFAULT_MODEL_DIR / "tokenizer.model")[None]  # (1, L)
    grad = torch.randn(1, args.tokens, spec.hidden, generator=torch.Generator().manual_seed(0))  # (1, L, D)

    def mega_trunk() -> None:
        mega.model.hidden_states(ids)[0].backward(grad)  # (1, L, D)
        mega.model.zero_grad(set_to_none=True)

    def llama_trunk() -> None:
        llama.model.model(input_ids=ids).last_hidden_state.backward(grad)  # (1, L, D)
        llama.model.zero_grad(set_to_none=True)

    runs = {  # name -> a callable returning its seconds; the steps are long_context's one-shot forward+backward
        f"{mega.name} trunk": partial(seconds, mega_trunk), f"{llama.name} trunk": partial(seconds, llama_trunk),
        f"{mega.name} step": partial(one_shot_once, mega, ids, cpu, True),
        f"{llama.name} step": partial(one_shot_once, llama, ids, cpu, True),
    }
    for run in runs.values():  # warm-up: the first calls allocate
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    faults: dict[str, list[int]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            took, taken = faulted(run)
            times[name].append(took)
            faults[name].append(taken)
    median = {name: statistics.median(t) for name, t in times.items()}
    systems = {}
    for name in (mega.name, llama.name):
        trunk, step = median[f"{name} trunk"], median[f"{name} step"]
        systems[name] = {"trunk_s": trunk, "step_s": step, "head_and_loss_s": step - trunk,
                         "trunk_runs_s": times[f"{name} trunk"], "step_runs_s": times[f"{name} step"],
                         "trunk_minor_faults": statistics.median(faults[f"{name} trunk"]),
                         "step_minor_faults": statistics.median(faults[f"{name} step"]),
                         "trunk_minor_faults_runs": faults[f"{name} trunk"],
                         "step_minor_faults_runs": faults[f"{name} step"]}
    result = {
        "meta": machine_meta(model="shipped", tokens=args.tokens, repeats=args.repeats,
                             vocab=mega.model.config.vocab_size, allocator=loaded_allocator()),
        "systems": systems,
    }
    print_report(result)
    write_result(args.out, "train_step_cpu.json", result)


def print_report(result: dict) -> None:
    meta, s = result["meta"], result["systems"]
    print(f"{meta['tokens']} tokens, forward + backward, {meta['threads']} thread(s), medians of {meta['repeats']}, "
          f"allocator: {meta.get('allocator', 'system')}")
    print(f"{'system':<12} {'trunk ms':>9} {'step ms':>9} {'head+loss ms':>13} {'trunk faults':>13} "
          f"{'step faults':>12}")
    for name, r in s.items():
        print(f"{name:<12} {1e3 * r['trunk_s']:>9.1f} {1e3 * r['step_s']:>9.1f} {1e3 * r['head_and_loss_s']:>13.1f} "
              f"{r.get('trunk_minor_faults', float('nan')):>13.0f} {r.get('step_minor_faults', float('nan')):>12.0f}")
    (mega, m), (llama, b) = s.items()
    print(f"{mega} x ({llama} time over {mega}'s): trunk {b['trunk_s'] / m['trunk_s']:.3f}x, "
          f"step {b['step_s'] / m['step_s']:.3f}x")


if __name__ == "__main__":
    main()
