"""What identifying a model costs at load: the folder fingerprint (sha256 of the model's files, once per
process per file) against hashing every weight in memory (the scheme it replaced, which also changed
with the dtype), and a whole `load_bundle` in fp32 and bf16.

    python bench/fingerprint.py [--model FOLDER] [--iters 7] [--out bench/results/fingerprint.json]

Prints a table (median milliseconds) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from megalodoc.model import fingerprint as fp  # noqa: E402
from megalodoc.model import load_bundle  # noqa: E402
from megalodoc.model.checkpoint import load_folder  # noqa: E402

from bench_timing import time_ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fingerprint.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    loaded = load_folder(args.model)
    size = sum((loaded.folder / name).stat().st_size for name in loaded.files)
    tokenizer = (loaded.folder / loaded.files[-1]).read_bytes() if loaded.tokenizer_file else None

    def cold_folder() -> str:
        fp._file_digests.clear()  # what a fresh process pays (the files are in the page cache)
        return fp.folder_fingerprint(loaded.folder, loaded.files)

    def cold_bundle(dtype: torch.dtype):
        def run():
            fp._file_digests.clear()
            return load_bundle(args.model, dtype=dtype)
        return run

    rows = [
        ("in-memory weights, fp32 (old scheme's cost)", lambda: fp.weights_fingerprint(loaded.model, tokenizer)),
        ("in-memory weights, bf16 model", lambda: fp.weights_fingerprint(loaded.model.to(torch.bfloat16), tokenizer)),
        ("folder files, first time in a process", cold_folder),
        ("folder files, again in the same process", lambda: fp.folder_fingerprint(loaded.folder, loaded.files)),
        ("load_bundle fp32 (fresh process)", cold_bundle(torch.float32)),
        ("load_bundle bf16 (fresh process)", cold_bundle(torch.bfloat16)),
    ]
    results = []
    print(f"model {loaded.folder}: {loaded.model.num_parameters():,} parameters, {len(loaded.files)} files, "
          f"{size / 2**20:.1f} MiB; torch threads {torch.get_num_threads()}")
    print(f"{'what':<46}{'median ms':>10}")
    for name, fn in rows:
        ms = time_ms(fn, cpu, warmup=1, iters=args.iters)
        results.append({"what": name, "median_ms": ms})
        print(f"{name:<46}{ms:>10.1f}")
    same = load_bundle(args.model).fingerprint == load_bundle(args.model, dtype=torch.bfloat16).fingerprint
    print(f"fp32 and bf16 bundles share the fingerprint: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "model": str(loaded.folder), "parameters": loaded.model.num_parameters(), "file_bytes": size,
        "same_fingerprint_fp32_bf16": same, "rows": results,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
