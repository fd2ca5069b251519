"""Every GPU measurement and check of this project in one command, each step under its own time limit, so
that one slow or hanging step cannot take the time of the others.

    python3 bench/gpu_checks.py OUTPUT_FOLDER [--minutes 9]

Steps, in this order (each one's command, exit status, seconds and output go into OUTPUT_FOLDER):
  1. kernels:      python3 -m pytest -m gpu tests/kernels       (Triton kernels and the whole model against
                   their PyTorch twins on the GPU, the decoding step included)
  2. long_context: python3 bench/long_context.py --device cuda --dtype bf16 --config mega200M --quick
                   --cuda-graph --call-tokens 8192 --stream-repeats 1 --out OUTPUT_FOLDER/long_context
  3. call_cost:    python3 bench/gpu_call_cost.py OUTPUT_FOLDER/call_cost
Writes gpu_checks.json (machine, steps) and one <step>.log per step. Refuses to start, exit status 2,
where torch sees no CUDA device. Exit status 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# share of --minutes per step: the kernel tests ~2 min, long_context ~4 min (--quick), call_cost ~2 min
SHARES = {"kernels": 0.25, "long_context": 0.45, "call_cost": 0.30}


def steps(out: Path) -> dict[str, list[str]]:
    """Each step's command, run from the repository root."""
    py = sys.executable
    return {
        "kernels": [py, "-m", "pytest", "-m", "gpu", "tests/kernels", "-q"],
        "long_context": [py, "bench/long_context.py", "--device", "cuda", "--dtype", "bf16", "--config", "mega200M",
                         "--quick", "--cuda-graph", "--call-tokens", "8192", "--stream-repeats", "1",
                         "--out", str(out / "long_context")],
        "call_cost": [py, "bench/gpu_call_cost.py", str(out / "call_cost")],
    }


def run_step(name: str, command: list[str], seconds: float, out: Path) -> dict:
    """Runs one step with its output in out/<name>.log; a step past its limit is killed."""
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    with log.open("w") as handle:
        try:
            rc = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                timeout=seconds, check=False).returncode
            status = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, f"stopped after {seconds:.0f} s"
    elapsed = time.perf_counter() - t0
    tail = log.read_text(errors="replace").splitlines()[-5:]
    print(f"{name}: {status} in {elapsed:.0f} s ({log})", flush=True)
    return {"command": command, "status": status, "returncode": rc, "seconds": elapsed, "last_lines": tail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_checks.json, the logs and each step's results")
    parser.add_argument("--minutes", type=float, default=9.0, help="time for all steps together")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error(f"--minutes {args.minutes:g}: must be positive")
    if not torch.cuda.is_available():
        print(f"gpu_checks: no CUDA device here (torch {torch.__version__}); nothing was run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "python": sys.version.split()[0]},
        "steps": {},
    }
    for name, command in steps(args.out).items():
        results["steps"][name] = run_step(name, command, SHARES[name] * args.minutes * 60, args.out)
        (args.out / "gpu_checks.json").write_text(json.dumps(results, indent=2))  # kept after every step
    return 0 if all(s["status"] == "passed" for s in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
