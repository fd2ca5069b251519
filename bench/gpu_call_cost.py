"""What one streaming call costs on a GPU: eager calls of 1 to 8,192 tokens (Triton kernels and PyTorch
twins), a profile of one call, and chunk-aligned calls replayed from captured CUDA graphs
(model/cuda_graph.py) with their state compared to the eager calls' bit for bit.

    python3 bench/gpu_call_cost.py OUTPUT_FOLDER          # mega200M in bf16 on cuda

Writes gpu_call_cost.json and prof_L1.txt / prof_L<C>.txt (profiler tables, C the chunk size) into
OUTPUT_FOLDER. --config picks another preset.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.cuda_graph import GraphedStream


def sync() -> None:
    torch.cuda.synchronize()


def host_cost_us() -> float:
    """Microseconds of host time per tiny CUDA op (the launch cost an eager call pays per kernel)."""
    x = torch.zeros(16, device="cuda")
    for _ in range(100):
        x.add_(1)
    sync()
    start = time.perf_counter()
    for _ in range(2000):
        x.add_(1)
    sync()
    return (time.perf_counter() - start) / 2000 * 1e6


def eager_ms(model: Megalodon, ids: torch.Tensor, state, repeats: int = 5) -> float:
    for _ in range(2):
        model(ids, state, compute_logits=False)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        model(ids, state, compute_logits=False)
    sync()
    return (time.perf_counter() - start) / repeats * 1e3


def profile_call(model: Megalodon, ids: torch.Tensor, state, path: Path) -> None:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model(ids, state, compute_logits=False)
        sync()
    averages = prof.key_averages()
    path.write_text(averages.table(sort_by="self_cpu_time_total", row_limit=25) + "\n\n"
                    + averages.table(sort_by="self_cuda_time_total", row_limit=20) + "\n")


def states_differ(a, b) -> float:
    """Largest absolute difference over the two states' tensors."""
    fa, fb = a.to_flat(), b.to_flat()
    return max(((fa[k].to(torch.complex128) if fa[k].is_complex() else fa[k].double())
                - (fb[k].to(torch.complex128) if fb[k].is_complex() else fb[k].double())).abs().max().item()
               if fa[k].numel() else 0.0 for k in fa)


def graphed_tokens_per_s(model: Megalodon, ids: torch.Tensor, state, call: int, calls: int) -> tuple[float, float]:
    """Tokens/s of `calls` graph replays of `call` tokens from `state`, and the largest difference of the
    state reached from the eager model's."""
    stream = GraphedStream(model)
    C = model.config.chunk_size
    pieces = [ids[:, C + i * call : C + (i + 1) * call] for i in range(calls)]
    stream(pieces[0], state)  # the first eligible call captures the graph
    graphed = eager = state
    for piece in pieces[:4]:
        graphed = stream(piece, graphed)
        _, eager = model(piece, eager, compute_logits=False)
    diff = states_differ(graphed, eager)
    sync()
    start = time.perf_counter()
    s = state
    for piece in pieces:
        s = stream(piece, s)
    sync()
    return calls * call / (time.perf_counter() - start), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder")
    parser.add_argument("--config", default="mega200M")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error(f"needs a CUDA device; none here (torch {torch.__version__})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = MegalodonConfig.preset(args.config)
    model = Megalodon(cfg).cuda().to(torch.bfloat16).eval()
    C = cfg.chunk_size
    ids = torch.randint(4, cfg.vocab_size, (1, C * 48), device="cuda")
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "config": args.config,
                 "us_per_tiny_op": host_cost_us()}
    print(f"host cost per tiny op: {res['us_per_tiny_op']:.1f} us", flush=True)
    with torch.no_grad():
        _, state = model(ids[:, :C], compute_logits=False)
        for backend in ("triton", "torch"):
            os.environ["MEGALODOC_BACKEND"] = backend
            for L in (1, 128, C, 4 * C):
                ms = eager_ms(model, ids[:, C : C + L], state)
                res[f"eager_{backend}_ms_L{L}"] = ms
                print(f"eager {backend} L={L}: {ms:.2f} ms/call, {L / ms * 1e3:,.0f} tok/s", flush=True)
        os.environ.pop("MEGALODOC_BACKEND")
        for L in (1, C):
            profile_call(model, ids[:, C : C + L], state, out / f"prof_L{L}.txt")
        for chunks in (1, 4):
            call = chunks * C
            calls = min(40 // chunks, (ids.shape[1] - C) // call)
            tok_s, diff = graphed_tokens_per_s(model, ids, state, call, calls)
            res[f"graph_{call}_tok_s"], res[f"graph_{call}_max_diff_vs_eager"] = tok_s, diff
            print(f"graph L={call}: {tok_s:,.0f} tok/s ({call / tok_s * 1e3:.2f} ms/call), "
                  f"max |graph - eager| {diff}", flush=True)
    (out / "gpu_call_cost.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
