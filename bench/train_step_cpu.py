"""Where a one-shot training step's time goes on a CPU: the trunk (embedding, layers, final norm) and the
whole step (trunk, tied LM head and next-token cross-entropy), megalodoc against its same-width Llama,
forward + backward, measured in one process.

    python bench/train_step_cpu.py [--out bench/results/train_step_cpu] [--tokens 2048] [--repeats 9]

The four measurements take turns in every repeat and the median of each is kept. The trunk's backward
starts from a fixed random gradient on its output (B, L, D), so both systems run the same work that the
step's head and loss would hand them. "Head and loss" is a step's median minus its trunk's median: the
(L, D) x (D, V) head, log-softmax and their backward, the same shapes for both systems (tied heads, one
vocabulary). Writes train_step_cpu.json into --out and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_result import machine_meta, write_result

from megalodoc.model import load_model
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR

# long_context imports transformers' Llama with this folder off the path (bench/kernels.py would shadow
# the `kernels` package that transformers probes for); it gives the document
from llama_baseline import build_llama, llama_specs, megalodon_non_embedding_parameters
from long_context import document_ids


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results/train_step_cpu"), help="output folder")
    p.add_argument("--tokens", type=int, default=2048, help="tokens in the one-shot call")
    p.add_argument("--repeats", type=int, default=9, help="timed runs of each measurement (median kept)")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def seconds(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    mega = load_model().eval()
    spec = llama_specs(mega.config, megalodon_non_embedding_parameters(mega))[0]  # same width
    llama, _ = build_llama(spec, torch.device("cpu"), torch.float32, max_positions=2 * args.tokens)
    ids = document_ids(args.tokens, DEFAULT_MODEL_DIR / "tokenizer.model")[None]  # (1, L)
    grad = torch.randn(1, args.tokens, mega.config.model_dim, generator=torch.Generator().manual_seed(0))

    def loss(logits: torch.Tensor) -> torch.Tensor:  # logits (1, L, V)
        return F.cross_entropy(logits[0, :-1].float(), ids[0, 1:])

    def mega_trunk() -> None:
        x = mega.embed(ids)  # (1, L, D)
        for block in mega.layers:
            x, _ = block(x, None, mega.rope)
        x, _ = mega.output.final_norm(x, None)
        x.backward(grad)
        mega.zero_grad(set_to_none=True)

    def llama_trunk() -> None:
        llama.model(input_ids=ids).last_hidden_state.backward(grad)  # (1, L, D)
        llama.zero_grad(set_to_none=True)

    def mega_step() -> None:
        loss(mega(ids)[0]).backward()
        mega.zero_grad(set_to_none=True)

    def llama_step() -> None:
        loss(llama(input_ids=ids).logits).backward()
        llama.zero_grad(set_to_none=True)

    runs = {"megalodoc trunk": mega_trunk, "llama-width trunk": llama_trunk,
            "megalodoc step": mega_step, "llama-width step": llama_step}
    for fn in runs.values():  # warm-up: the first calls allocate
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(seconds(fn))
    median = {name: statistics.median(t) for name, t in times.items()}
    systems = {}
    for name in ("megalodoc", "llama-width"):
        trunk, step = median[f"{name} trunk"], median[f"{name} step"]
        systems[name] = {"trunk_s": trunk, "step_s": step, "head_and_loss_s": step - trunk,
                         "trunk_runs_s": times[f"{name} trunk"], "step_runs_s": times[f"{name} step"]}
    result = {
        "meta": machine_meta(model="shipped", tokens=args.tokens, repeats=args.repeats,
                             vocab=mega.config.vocab_size),
        "systems": systems,
    }
    print_report(result)
    write_result(args.out, "train_step_cpu.json", result)


def print_report(result: dict) -> None:
    meta, s = result["meta"], result["systems"]
    print(f"{meta['tokens']} tokens, forward + backward, {meta['threads']} thread(s), medians of {meta['repeats']}")
    print(f"{'system':<12} {'trunk ms':>9} {'step ms':>9} {'head+loss ms':>13}")
    for name, r in s.items():
        print(f"{name:<12} {1e3 * r['trunk_s']:>9.1f} {1e3 * r['step_s']:>9.1f} {1e3 * r['head_and_loss_s']:>13.1f}")
    m, b = s["megalodoc"], s["llama-width"]
    print(f"megalodoc x (llama-width time over megalodoc's): trunk {b['trunk_s'] / m['trunk_s']:.3f}x, "
          f"step {b['step_s'] / m['step_s']:.3f}x")


if __name__ == "__main__":
    main()
