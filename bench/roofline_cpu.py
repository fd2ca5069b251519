"""How close streaming comes to this CPU's matrix-product roofline: megalodoc and its same-width Llama,
measured in one process.

    python bench/roofline_cpu.py [--out bench/results/roofline_cpu] [--tokens 2048] [--repeats 7] \
        [--call-chunks 1,4]

1. Records every matrix product (mm, addmm, bmm, baddbmm, and the Llama's fused CPU attention) that a
   stream of --tokens tokens in chunks runs, with its operands' shapes and strides, and counts its FLOPs
   (2 M K N; attention 2 Lq Lk (d_k + d_v) per head, every score counted, as FlopCounterMode counts SDPA
   on a GPU). The matrix products' count is checked against PyTorch's FlopCounterMode.
2. Times each recorded product alone at its own shapes and strides (operands hot in cache), and a large
   square product: the peak is the best FLOP/s of any of them.
3. Streams the same tokens of one real document (see long_context.py) from an empty state under
   torch.inference_mode (as ingest reads; 1. records under no_grad, which decomposes linear), the systems
   taking turns, the median of --repeats runs kept.

Each of 1.-3. is done for every call size in --call-chunks (chunks per streaming call, the same for
every system): 1 is one chunk per call; megalodoc's ingest reads CALL_CHUNKS chunks per call
(megalodoc.model.boundary).

A system's roofline share is (its product FLOPs per token x its tokens/s) / the peak. Its products timed
alone, summed, give the time a stream would take if nothing else (CEMA's scan, the norms, softmax, gates,
rotary, copies, Python) cost anything and the products ran from a hot cache; the rest of the time is
everything else, plus what the products lose to a cold cache inside the stream. Writes roofline_cpu.json
into --out and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from functools import partial
from pathlib import Path

import torch
from bench_result import machine_meta, write_result
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from megalodoc.model import load_model
from megalodoc.model.boundary import CALL_CHUNKS
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR

# long_context imports transformers' Llama with this folder off the path (bench/kernels.py would shadow
# the `kernels` package that transformers probes for); it gives the systems and the document
from llama_baseline import build_llama, llama_specs, megalodon_non_embedding_parameters
from long_context import LlamaSystem, MegalodocSystem, document_ids

aten = torch.ops.aten
MATRIX_PRODUCTS = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}  # every overload, the out= ones included
ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu}  # what SDPA runs on a CPU
OP_NAMES = {aten._scaled_dot_product_flash_attention_for_cpu: "sdpa"}


def op_flops(func, args) -> int:
    """FLOPs of one recorded product: 2 M K N (times the batch); attention (B, H, L, d) as two products."""
    packet = func.overloadpacket
    if packet in ATTENTION:
        q, k, v = args[:3]
        return 2 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * (q.shape[3] + v.shape[3])
    a, b = (args[1], args[2]) if packet in (aten.addmm, aten.baddbmm) else (args[0], args[1])
    batch = a.shape[0] if a.dim() == 3 else 1
    return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


def _spec(value):
    """A tensor as (shape, stride, dtype), anything else as itself."""
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), tuple(value.stride()), value.dtype)
    return value


def _is_tensor_spec(value) -> bool:
    return isinstance(value, tuple) and len(value) == 3 and isinstance(value[2], torch.dtype)


def replay(spec):
    """A fresh random operand with the recorded shape and strides (anything else kept as recorded)."""
    if _is_tensor_spec(spec):
        shape, stride, dtype = spec
        return torch.empty_strided(shape, stride, dtype=dtype).normal_()
    return spec


class ProductRecorder(TorchDispatchMode):
    """Counts every product run inside it by (op, operand shapes and strides, other arguments), and FLOPs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()
        self.matrix_flops = 0
        self.attention_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in MATRIX_PRODUCTS or packet in ATTENTION:
            key = (func, tuple(_spec(a) for a in args), tuple(sorted((k, _spec(v)) for k, v in kwargs.items())))
            self.calls[key] += 1
            if packet in ATTENTION:
                self.attention_flops += op_flops(func, args)
            else:
                self.matrix_flops += op_flops(func, args)
        return func(*args, **kwargs)


def median_seconds(fn, repeats: int, min_seconds: float = 0.05) -> float:
    """Median wall time of fn() over batches that each last at least min_seconds (after a warm-up)."""
    fn()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds:
        fn()
        n += 1
    n = max(n, 1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def stream_seconds(system, ids: torch.Tensor, chunk: int) -> float:
    """Wall time of streaming ids (1, L) chunk by chunk from an empty state (no logits)."""
    system.reset()
    t0 = time.perf_counter()
    for start in range(0, ids.shape[1], chunk):
        system.step(ids[:, start:start + chunk])
    seconds = time.perf_counter() - t0
    system.reset()
    return seconds


def record_stream(system, ids: torch.Tensor, chunk: int) -> ProductRecorder:
    """The products of one stream, their matrix-product FLOPs checked against PyTorch's own counter."""
    recorder = ProductRecorder()
    with recorder:
        stream_seconds(system, ids, chunk)
    counter = FlopCounterMode(display=False)
    with counter:
        stream_seconds(system, ids, chunk)
    counted = sum(flops for op, flops in counter.get_flop_counts()["Global"].items() if op in MATRIX_PRODUCTS)
    if counted != recorder.matrix_flops:
        raise RuntimeError(f"{system.name}: matrix-product FLOPs recorded here ({recorder.matrix_flops:,}) "
                           f"differ from PyTorch's FlopCounterMode ({counted:,}): an op is missed")
    return recorder


def time_products(recorder: ProductRecorder, repeats: int) -> list[dict]:
    """Each distinct recorded product timed alone with fresh operands of its shapes and strides."""
    rows = []
    for (func, spec, kwspec), count in sorted(recorder.calls.items(), key=lambda kv: -kv[1]):
        operands = [replay(a) for a in spec]
        kwargs = {k: replay(v) for k, v in kwspec}
        seconds = median_seconds(partial(func, *operands, **kwargs), repeats)
        flops = op_flops(func, operands)
        rows.append({
            "op": OP_NAMES.get(func.overloadpacket, func.overloadpacket.__name__), "count": count,
            "operands": [list(a[0]) for a in spec if _is_tensor_spec(a)],
            "strides": [list(a[1]) for a in spec if _is_tensor_spec(a)],
            "flops": flops, "us": seconds * 1e6, "gflops": flops / seconds / 1e9,
        })
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results/roofline_cpu"), help="output folder")
    p.add_argument("--tokens", type=int, default=2048, help="tokens streamed per timed run")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per system (median kept)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--square", type=int, default=1024, help="size of the square product in the peak")
    p.add_argument("--no-baseline", action="store_true", help="megalodoc alone (no transformers needed)")
    p.add_argument("--call-chunks", default=f"1,{CALL_CHUNKS}",
                   help=f"chunks per streaming call, comma-separated (ingest reads {CALL_CHUNKS})")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model = load_model().eval()
    chunk = model.config.chunk_size
    call_chunks = [int(k) for k in args.call_chunks.split(",")]
    if min(call_chunks) < 1 or any(args.tokens % (chunk * k) or args.tokens < 2 * chunk * k for k in call_chunks):
        raise SystemExit(f"--tokens must be a multiple of the chunk size {chunk} times every --call-chunks, "
                         "at least two calls of each")
    systems: list = [MegalodocSystem(model)]
    if not args.no_baseline:
        spec = llama_specs(model.config, megalodon_non_embedding_parameters(model))[0]  # same width
        llama, lcfg = build_llama(spec, torch.device("cpu"), torch.float32, max_positions=2 * args.tokens)
        systems.append(LlamaSystem(spec.name, llama, lcfg, spec.kv_bytes_per_token(4)))
    ids = document_ids(args.tokens, DEFAULT_MODEL_DIR / "tokenizer.model")[None]  # (1, tokens)

    results: dict[str, dict] = {}
    runs = [(system, k, f"{system.name} x{k}") for k in call_chunks for system in systems]  # x: chunks per call
    # recorded under no_grad: under inference_mode linear and matmul reach the recorder undecomposed
    with torch.no_grad():
        recorders = {label: record_stream(system, ids, chunk * k) for system, k, label in runs}
    with torch.inference_mode():  # timed as ingest reads (and long_context.py streams)
        for system, k, label in runs:
            recorder = recorders[label]
            results[label] = {
                "system": system.name, "call_chunks": k,
                "matrix_flops": recorder.matrix_flops, "attention_flops": recorder.attention_flops,
                "products": time_products(recorder, args.repeats),
            }
        n = args.square
        a, b = torch.randn(n, n), torch.randn(n, n)
        square_gflops = 2 * n ** 3 / median_seconds(partial(torch.mm, a, b), args.repeats) / 1e9
        times: dict[str, list[float]] = {label: [] for _, _, label in runs}
        for system, k, _ in runs:  # warm-up
            stream_seconds(system, ids, chunk * k)
        for _ in range(args.repeats):
            for system, k, label in runs:
                times[label].append(stream_seconds(system, ids, chunk * k))

    peak = max([square_gflops] + [p["gflops"] for r in results.values() for p in r["products"]])
    chunks = args.tokens // chunk
    for name, r in results.items():
        seconds = statistics.median(times[name])
        flops = r["matrix_flops"] + r["attention_flops"]
        alone_ms = sum(p["us"] * p["count"] for p in r["products"]) / 1e3 / chunks
        r.update({
            "flops_per_token": flops / args.tokens, "stream_runs_s": times[name],
            "tokens_per_s": args.tokens / seconds, "ms_per_chunk": seconds * 1e3 / chunks,
            "achieved_gflops": flops / seconds / 1e9, "roofline_share": flops / seconds / 1e9 / peak,
            "products_alone_ms_per_chunk": alone_ms, "rest_ms_per_chunk": seconds * 1e3 / chunks - alone_ms,
        })
    result = {
        "meta": machine_meta(model="shipped", chunk=chunk, tokens=args.tokens, repeats=args.repeats,
                             call_chunks=call_chunks),
        "square_product": {"n": n, "gflops": square_gflops},
        "peak_gflops": peak,
        "systems": results,
    }
    print_report(result)
    write_result(args.out, "roofline_cpu.json", result)


def print_report(r: dict) -> None:
    for name, s in r["systems"].items():
        print(f"\n{name}: products per {r['meta']['tokens']}-token stream")
        print(f"{'op':<8}{'calls':>6}  {'operands':<36}{'us':>9}{'GFLOP/s':>9}")
        for p in s["products"][:12]:
            shapes = " x ".join("(" + ",".join(map(str, sh)) + ")" for sh in p["operands"][-2:])
            print(f"{p['op']:<8}{p['count']:>6}  {shapes:<36}{p['us']:>9.1f}{p['gflops']:>9.1f}")
        if len(s["products"]) > 12:
            print(f"... {len(s['products']) - 12} more shapes (in the JSON)")
    print(f"\nsquare {r['square_product']['n']}^3 product {r['square_product']['gflops']:.1f} GFLOP/s; "
          f"peak (best of all) {r['peak_gflops']:.1f} GFLOP/s")
    print("per chunk: ms of the stream, of its products timed alone, and of the rest")
    print(f"{'system x chunks/call':<22}{'MFLOP/token':>12}{'tokens/s':>10}{'ms/chunk':>10}{'GFLOP/s':>9}{'of peak':>9}"
          f"{'products alone':>16}{'rest':>10}")
    for name, s in r["systems"].items():
        print(f"{name:<22}{s['flops_per_token'] / 1e6:>12.2f}{s['tokens_per_s']:>10,.0f}{s['ms_per_chunk']:>10.2f}"
              f"{s['achieved_gflops']:>9.1f}{100 * s['roofline_share']:>8.1f}%"
              f"{s['products_alone_ms_per_chunk']:>13.2f} ms{s['rest_ms_per_chunk']:>7.2f} ms")


if __name__ == "__main__":
    main()
