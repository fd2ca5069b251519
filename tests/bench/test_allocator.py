"""bench/allocator.py: the reason for its tcmalloc option holds on this machine (glibc hands 64 MiB blocks
back to the kernel, so each new one faults its pages in), and the option removes it. Each case runs in
its own process, as a benchmark script does, since the preload re-executes the process."""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# allocates and fills a (16 Mi,) fp32 tensor (64 MiB, a 2K x 8K logits tensor's size) four times, freeing
# each, and reports the allocator in use and the page faults of the last three
SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(BENCH)!r})
from allocator import loaded_allocator, minor_faults, run_under
run_under(sys.argv[1])
import torch
faults = []
for _ in range(4):
    before = minor_faults()
    torch.empty(16 << 20).fill_(1.0)
    faults.append(minor_faults() - before)
print(json.dumps({{"allocator": loaded_allocator(), "faults": faults[1:]}}))
"""


THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGES_ALWAYS = THP.exists() and "[always]" in THP.read_text()
NO_TCMALLOC = ctypes.util.find_library("tcmalloc_minimal") is None


def run_script(allocator: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}  # start on the system's
    result = subprocess.run([sys.executable, "-c", SCRIPT, allocator], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(HUGE_PAGES_ALWAYS, reason="transparent huge pages always on: a block takes ~32 faults")
def test_the_system_allocator_faults_every_64_mib_block_in_again():
    out = run_script("system")
    assert out["allocator"] == "system"
    assert min(out["faults"]) >= 16_000, out  # 16,384 pages of 4 KiB in each block, every time


@pytest.mark.skipif(NO_TCMALLOC, reason="libtcmalloc_minimal is not installed (.ci/run installs it)")
def test_tcmalloc_keeps_freed_blocks_and_reuses_them():
    out = run_script("tcmalloc")
    assert out["allocator"] == "tcmalloc"
    assert max(out["faults"]) < 1_000, out


def test_an_unknown_allocator_is_refused():
    spec = importlib.util.spec_from_file_location("bench_allocator", BENCH / "allocator.py")
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    with pytest.raises(ValueError, match="allocator must be one of"):
        allocator.run_under("jemalloc")
