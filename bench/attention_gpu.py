"""Chunk-local attention on a GPU: PyTorch SDPA vs reference-style materialized scores.

Megalodon attends only inside chunks of C tokens (block-diagonal causal: chunks folded into the batch),
with softmax scale 1.0 and value heads much wider than key heads (d_v = 2048, d_z = 256). Variants:
  materialized  scores = q k^T in the compute dtype, causal mask, fp32 softmax, cast, @ v (upstream style)
  sdpa          F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0), PyTorch picks a backend
  sdpa-<name>   the same with one backend forced (flash, efficient, cudnn, math); refused ones are listed
  sdpa-splitv   v cut into d_v/d_z slices of width d_z folded into the heads (q, k repeated), so every
                backend with equal head dims applies; the output slices are concatenated back
Each variant is first checked against an fp32 materialized reference (output and the gradients of q, k,
v), then timed forward and forward+backward. Prints a table, writes attention.json, and names the
fastest correct variant per configuration (what the model should use).

    python bench/attention_gpu.py --out bench/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from megalodoc.kernels.compare import rel_rms

from bench_timing import time_ms

# name: (batch B, length L, chunk C, heads H, d_z, d_v) - the 200M and 7B presets at 16K tokens.
CONFIGS = {
    "mega200M": (1, 16384, 2048, 1, 256, 2048),
    "mega7B": (1, 16384, 4096, 4, 256, 2048),
}
TOL_OUT = 2e-2  # bf16 compute vs fp32 reference, rel-RMS
TOL_GRAD = 5e-2



def materialized(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(Z, H, C, d) inputs; scale 1.0; causal; softmax in fp32 and cast back (the reference path)."""
    C = q.shape[-2]
    scores = torch.matmul(q, k.transpose(-1, -2)).float()  # (Z, H, C, C)
    mask = torch.ones(C, C, dtype=torch.bool, device=q.device).triu(1)
    probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1).to(q.dtype)
    return torch.matmul(probs, v)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)


def sdpa_backend(backend) -> Callable:
    from torch.nn.attention import sdpa_kernel

    def run(q, k, v):
        with sdpa_kernel([backend]):
            return sdpa(q, k, v)

    return run


def sdpa_split_v(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Slices of v of width d_z as extra heads: (Z, H, C, d_v) -> (Z, H*S, C, d_z), q and k repeated."""
    Z, H, C, dz = q.shape
    S = v.shape[-1] // dz
    qs = q.repeat_interleave(S, dim=1)  # (Z, H*S, C, dz)
    ks = k.repeat_interleave(S, dim=1)
    vs = v.reshape(Z, H, C, S, dz).permute(0, 1, 3, 2, 4).reshape(Z, H * S, C, dz)
    o = sdpa(qs, ks, vs)  # (Z, H*S, C, dz)
    return o.reshape(Z, H, S, C, dz).permute(0, 1, 3, 2, 4).reshape(Z, H, C, S * dz)


def attention_flops(Z: int, H: int, C: int, dz: int, dv: int, backward: bool) -> float:
    """Causal (half the score matrix) matmul FLOPs: QK^T and PV forward; backward about 2.5x forward."""
    fwd = 2.0 * Z * H * C * C * (dz + dv) / 2
    return fwd * (3.5 if backward else 1.0)


def make_inputs(cfg: tuple, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    B, L, C, H, dz, dv = cfg
    Z = B * L // C  # chunks folded into the batch
    gen = torch.Generator(device="cuda").manual_seed(seed)
    # q, k as the model makes them: RMS-normalised rows scaled by 1/sqrt(d_z), so scores are O(1)
    q = torch.randn(Z, H, C, dz, device="cuda", generator=gen) / dz**0.5
    k = torch.randn(Z, H, C, dz, device="cuda", generator=gen) / dz**0.5
    v = torch.randn(Z, H, C, dv, device="cuda", generator=gen)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def check(fn: Callable, q, k, v, ref: dict) -> dict:
    """Output and gradients of one variant against the fp32 reference."""
    qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
    o = fn(qq, kk, vv)
    o.backward(ref["do"].to(o.dtype))
    return {
        "out": rel_rms(o, ref["o"]),
        "dq": rel_rms(qq.grad, ref["dq"]),
        "dk": rel_rms(kk.grad, ref["dk"]),
        "dv": rel_rms(vv.grad, ref["dv"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for attention.json (or a .json path)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("attention_gpu.py needs a CUDA device", file=sys.stderr)
        return 2
    from torch.nn.attention import SDPBackend

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    variants: dict[str, Callable] = {"materialized": materialized, "sdpa": sdpa, "sdpa-splitv": sdpa_split_v}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        if hasattr(SDPBackend, name):
            variants[f"sdpa-{name.split('_')[0].lower()}"] = sdpa_backend(getattr(SDPBackend, name))
    rows = []
    for cfg_name in args.configs:
        cfg = CONFIGS[cfg_name]
        B, L, C, H, dz, dv = cfg
        q, k, v = make_inputs(cfg, dtype)
        # fp32 reference on a slice of the chunks (the check does not need all of them)
        n_ref = min(q.shape[0], 2)
        q32, k32, v32 = (t[:n_ref].float().requires_grad_(True) for t in (q, k, v))
        o32 = materialized(q32, k32, v32)
        do = torch.randn_like(o32)
        o32.backward(do)
        ref = {"o": o32, "do": do, "dq": q32.grad, "dk": k32.grad, "dv": v32.grad}
        for name, fn in variants.items():
            row = {"config": cfg_name, "variant": name, "B": B, "L": L, "C": C, "H": H, "d_z": dz, "d_v": dv,
                   "dtype": args.dtype}
            try:
                errs = check(fn, q[:n_ref], k[:n_ref], v[:n_ref], ref)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                row.update(correct=False, note=f"refused: {str(exc).splitlines()[0][:120]}")
                rows.append(row)
                torch.cuda.empty_cache()
                continue
            ok = errs["out"] <= TOL_OUT and max(errs["dq"], errs["dk"], errs["dv"]) <= TOL_GRAD
            row.update(correct=ok, errors=errs)
            if ok:
                for backward in (False, True):
                    qq, kk, vv = (t.detach().requires_grad_(backward) for t in (q, k, v))

                    def run(fn=fn, qq=qq, kk=kk, vv=vv, backward=backward):
                        o = fn(qq, kk, vv)
                        if backward:
                            torch.autograd.grad(o, (qq, kk, vv), torch.ones_like(o))

                    key = "fwdbwd" if backward else "fwd"
                    try:
                        ms = time_ms(run, torch.device("cuda"), args.warmup, args.iters)
                        row[f"{key}_ms"] = ms
                        row[f"{key}_tflops"] = attention_flops(q.shape[0], H, C, dz, dv, backward) / ms / 1e9
                    except torch.cuda.OutOfMemoryError:
                        row[f"{key}_ms"] = None
                        row["note"] = "out of memory while timing"
                        torch.cuda.empty_cache()
                row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
                torch.cuda.reset_peak_memory_stats()
            rows.append(row)
            print(f"done {cfg_name} {name}", file=sys.stderr, flush=True)
    head = (f"{'config':<10}{'variant':<16}{'ok':<4}{'out err':>9}{'grad err':>10}{'fwd ms':>9}{'f+b ms':>9}"
            f"{'TFLOP/s f+b':>12}")
    print(f"device: {torch.cuda.get_device_name()}  dtype: {args.dtype}")
    print(head)
    print("-" * len(head))
    best: dict[str, dict] = {}
    for r in rows:
        e = r.get("errors", {})
        ge = max((e.get(n, float("nan")) for n in ("dq", "dk", "dv")), default=float("nan"))
        fw = f"{r['fwd_ms']:.2f}" if r.get("fwd_ms") else "-"
        fb = f"{r['fwdbwd_ms']:.2f}" if r.get("fwdbwd_ms") else "-"
        tf = f"{r['fwdbwd_tflops']:.1f}" if r.get("fwdbwd_tflops") else "-"
        print(f"{r['config']:<10}{r['variant']:<16}{'y' if r['correct'] else 'n':<4}"
              f"{e.get('out', float('nan')):>9.1e}{ge:>10.1e}{fw:>9}{fb:>9}{tf:>12}  {r.get('note', '')}")
        if r["correct"] and r.get("fwdbwd_ms"):
            cur = best.get(r["config"])
            if cur is None or r["fwdbwd_ms"] < cur["fwdbwd_ms"]:
                best[r["config"]] = r
    choice = {c: {"variant": r["variant"], "fwdbwd_ms": r["fwdbwd_ms"]} for c, r in best.items()}
    for c, r in choice.items():
        print(f"fastest correct for {c}: {r['variant']} ({r['fwdbwd_ms']:.2f} ms fwd+bwd)")
    out = args.out if args.out.suffix == ".json" else args.out / "attention.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows, "fastest": choice,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
