"""Benchmark the CEMA and timestep-norm kernels: PyTorch twin vs Triton, forward and forward+backward.

GPU run (the real one):
    python bench/kernels.py --out bench/results
      B=1, D in {1024, 2048}, N=16 (CEMA), G=D/32 (timestep norm), L in {4K, 16K, 64K}, bf16 inputs.
CPU smoke run (checks the script end to end with the Triton interpreter; timings mean nothing):
    python bench/kernels.py --cpu-smoke --out /tmp/bench

For each case it checks Triton against the twin (rel-RMS of y), then times both, and reports
achieved GB/s against a measured device copy and FLOP/s, from one model of bytes and FLOPs per op
(kernels/NOTES.md) applied to both implementations. Goals checked at the end: CEMA Triton >= 5x the
blocked twin at L=16K; timestep norm >= 60% of copy bandwidth. Prints a table; writes kernels.json.
"""

from __future__ import annotations

import os
import sys

if "--cpu-smoke" in sys.argv:  # must be set before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from megalodoc.kernels.cema.blocked import cema_blocked  # noqa: E402
from megalodoc.kernels.compare import rel_rms  # noqa: E402
from megalodoc.kernels.timestep_norm.cumulative import timestep_norm_cumulative  # noqa: E402

from bench_timing import time_ms  # noqa: E402

N_STATE = 16
GROUP_SIZE = 32  # D / G in the presets (1024/32, 2048/64)


# ---------------------------------------------------------------------------------------------------
# The model of useful work per element of x (B*L*D elements); see kernels/NOTES.md.
# ---------------------------------------------------------------------------------------------------


def model_bytes(B: int, L: int, D: int, itemsize: int, backward: bool) -> int:
    """Bytes an ideal single pass moves: read x, write y; the backward reads x and dy and writes dx.
    State, coefficient and statistics traffic (O(B*D*N) per segment, O(B*G) per token) is not counted."""
    per_element = 2 * itemsize + (3 * itemsize if backward else 0)
    return B * L * D * per_element


def model_flops(op: str, B: int, L: int, D: int, backward: bool) -> int:
    """FLOPs of the sequential recurrence (CEMA) or the direct formulas (timestep norm), per element:
    CEMA forward 12N+2 (complex state update 8N, output Re(gamma h) and its sum 4N, omega skip 2), backward
    42N+4 (recompute h 8N, tangent v 8N, dgamma 4N, dq 8N, adjoint 4N, dx 2N, dp 2N, carry 6N);
    timestep norm forward 10, backward 14."""
    if op == "cema":
        per = 12 * N_STATE + 2 + ((42 * N_STATE + 4) if backward else 0)
    else:
        per = 10 + (14 if backward else 0)
    return B * L * D * per


# ---------------------------------------------------------------------------------------------------
# Device copy bandwidth
# ---------------------------------------------------------------------------------------------------


def copy_gbps(device: torch.device, nbytes: int, warmup: int, iters: int) -> float:
    """Achieved bandwidth of a plain device copy (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup, iters)
    return 2 * nbytes / (ms * 1e-3) / 1e9



# ---------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------


def cema_inputs(B: int, L: int, D: int, dtype: torch.dtype, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(L + D)
    damp = torch.rand(D, N_STATE, generator=gen) * 0.5 + 1e-3
    angle = torch.rand(D, 1, generator=gen) * 2 * math.pi / N_STATE * torch.arange(1, N_STATE + 1)
    gamma = torch.view_as_complex(torch.randn(D, N_STATE, 2, generator=gen)) / math.sqrt(N_STATE)
    return {
        "x": torch.randn(B, L, D, generator=gen).to(device=device, dtype=dtype),
        "p": torch.rand(D, N_STATE, generator=gen).to(device),
        "q": torch.polar(1.0 - damp, angle).to(torch.complex64).to(device),
        "gamma": gamma.to(device),
        "omega": (torch.randn(D, generator=gen) * 0.25).to(device),
        "h0": torch.view_as_complex(torch.randn(B, D, N_STATE, 2, generator=gen)).to(device),
    }


def tsn_inputs(B: int, L: int, D: int, dtype: torch.dtype, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(L + D)
    G = D // GROUP_SIZE
    return {
        "x": (torch.randn(B, L, D, generator=gen) + 0.5).to(device=device, dtype=dtype),
        "weight": (torch.randn(D, generator=gen) * 0.1).to(device),
        "bias": (torch.randn(D, generator=gen) * 0.1).to(device),
        "G": G,
        "state": (
            torch.full((B,), 100, dtype=torch.int64, device=device),
            torch.randn(B, G, generator=gen).to(device),
            (torch.rand(B, G, generator=gen) + 0.5).to(device),
        ),
    }


def make_runner(op: str, impl: Callable, inputs: dict, backward: bool) -> Callable[[], object]:
    """A closure running one forward (and backward) of an implementation, state in and out."""
    if op == "cema":
        x = inputs["x"].detach().requires_grad_(backward)
        args = (inputs["p"], inputs["q"], inputs["gamma"], inputs["omega"])

        def run():
            y, h = impl(x, *args, initial_state=inputs["h0"], output_final_state=True)
            if backward:
                torch.autograd.grad(y.float().sum() + h.real.sum(), x)
            return y
    else:
        x = inputs["x"].detach().requires_grad_(backward)

        def run():
            y, (_, mean, var) = impl(
                x, inputs["weight"], inputs["bias"], num_groups=inputs["G"],
                initial_state=inputs["state"], output_final_state=True,
            )
            if backward:
                torch.autograd.grad(y.float().sum() + mean.sum() + var.sum(), x)
            return y
    return run


def run_case(op: str, B: int, L: int, D: int, dtype: torch.dtype, device: torch.device, args) -> list[dict]:
    from megalodoc.kernels.cema.triton_cema import cema_triton
    from megalodoc.kernels.timestep_norm.triton_tsn import timestep_norm_triton

    twin, fast = (cema_blocked, cema_triton) if op == "cema" else (timestep_norm_cumulative, timestep_norm_triton)
    inputs = (cema_inputs if op == "cema" else tsn_inputs)(B, L, D, dtype, device)
    with torch.no_grad():
        err = rel_rms(make_runner(op, fast, inputs, False)(), make_runner(op, twin, inputs, False)())
    rows = []
    for backward in (False, True):
        nbytes = model_bytes(B, L, D, inputs["x"].element_size(), backward)
        flops = model_flops(op, B, L, D, backward)
        for name, impl in (("twin", twin), ("triton", fast)):
            row = {"op": op, "impl": name, "pass": "fwd+bwd" if backward else "fwd", "B": B, "L": L, "D": D,
                   "dtype": str(dtype).replace("torch.", ""), "rel_rms_vs_twin": err,
                   "model_bytes": nbytes, "model_flops": flops}
            try:
                ms = time_ms(make_runner(op, impl, inputs, backward), device, args.warmup, args.iters)
                row.update(ms=ms, gbps=nbytes / (ms * 1e-3) / 1e9, tflops=flops / (ms * 1e-3) / 1e12)
            except torch.cuda.OutOfMemoryError:
                row.update(ms=None, gbps=None, tflops=None, note="out of memory")
                torch.cuda.empty_cache()
            rows.append(row)
    return rows


def goals(rows: list[dict], copy: float) -> dict:
    """The issue's two goals, evaluated on the measured rows (None where a case was not run)."""
    out: dict[str, object] = {}
    for D in sorted({r["D"] for r in rows}):
        pick = {(r["op"], r["impl"], r["pass"], r["L"]): r for r in rows if r["D"] == D}
        L16 = 16384 if any(k[3] == 16384 for k in pick) else max(k[3] for k in pick)
        for p in ("fwd", "fwd+bwd"):
            twin, fast = pick.get(("cema", "twin", p, L16)), pick.get(("cema", "triton", p, L16))
            if twin and fast and twin["ms"] and fast["ms"]:
                out[f"cema_speedup_vs_twin_L{L16}_D{D}_{p} (goal >= 5)"] = round(twin["ms"] / fast["ms"], 2)
        fracs = [r["gbps"] / copy for r in rows if r["op"] == "timestep_norm" and r["impl"] == "triton"
                 and r["D"] == D and r["pass"] == "fwd" and r["gbps"]]
        if fracs:
            out[f"tsn_fwd_min_fraction_of_copy_D{D} (goal >= 0.6)"] = round(min(fracs), 3)
    return out


def print_table(rows: list[dict], copy: float) -> None:
    head = f"{'op':<14}{'pass':<9}{'D':>6}{'L':>7}  {'impl':<7}{'ms':>10}{'GB/s':>9}{'%copy':>7}{'TFLOP/s':>9}  rel-RMS"
    print(head)
    print("-" * len(head))
    for r in rows:
        ms = f"{r['ms']:.3f}" if r["ms"] else r.get("note", "-")
        gb = f"{r['gbps']:.1f}" if r["gbps"] else "-"
        pc = f"{100 * r['gbps'] / copy:.0f}" if r["gbps"] else "-"
        tf = f"{r['tflops']:.3f}" if r["tflops"] else "-"
        print(f"{r['op']:<14}{r['pass']:<9}{r['D']:>6}{r['L']:>7}  {r['impl']:<7}{ms:>10}{gb:>9}{pc:>7}{tf:>9}"
              f"  {r['rel_rms_vs_twin']:.1e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for kernels.json (or a .json path)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU with the interpreter")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="dtype of x (GPU runs)")
    parser.add_argument("--lengths", type=int, nargs="*", default=[4096, 16384, 65536])
    parser.add_argument("--dims", type=int, nargs="*", default=[1024, 2048])
    parser.add_argument("--ops", nargs="*", default=["cema", "timestep_norm"], choices=["cema", "timestep_norm"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if args.cpu_smoke:
        device, dtype = torch.device("cpu"), torch.float32
        args.lengths, args.dims, args.warmup, args.iters = [64, 130], [64], 0, 1
        copy = copy_gbps(device, 64 << 20, 1, 3)
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --cpu-smoke to check the script on the CPU", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        copy = copy_gbps(device, 1 << 30, 3, 20)
    import triton

    rows = []
    for op in args.ops:
        for D in args.dims:
            for L in args.lengths:
                rows.extend(run_case(op, 1, L, D, dtype, device, args))
                print(f"done {op} D={D} L={L}", file=sys.stderr, flush=True)
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}"
          f"  copy bandwidth: {copy:.1f} GB/s" + ("  (CPU smoke run: interpreter timings)" if args.cpu_smoke else ""))
    print_table(rows, copy)
    summary = goals(rows, copy)
    for k, v in summary.items():
        print(f"{k}: {v}")
    result = {
        "mode": "cpu-smoke" if args.cpu_smoke else "gpu",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "copy_gbps": copy,
        "rows": rows,
        "goals": summary,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = args.out if args.out.suffix == ".json" else args.out / "kernels.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    bad = [r for r in rows if r["rel_rms_vs_twin"] > 5e-3 * (4 if dtype == torch.bfloat16 else 1)]
    if bad:
        print(f"{len(bad)} rows disagree with the twin beyond tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
