"""The C allocator under a CPU measurement: which one runs, the page faults it takes, and tcmalloc on request.

With glibc's malloc at its defaults, every block of 32 MiB or more is mapped fresh when it is allocated
and handed back to the kernel when it is freed (the dynamic mmap threshold stops rising at 32 MiB), so
every such allocation lands on pages the process does not hold, and the kernel faults each 4 KiB page in
on first touch. A 2K-token one-shot step with logits allocates several (2048, 8192) fp32 tensors (64 MiB
each) in the LM head and the loss: about 100,000 faults per step, whose count and cost depend on the state
of the heap that the previous call left. glibc's own settings (MALLOC_MMAP_MAX_=0 and a 1 GB
MALLOC_TRIM_THRESHOLD_) still faulted those blocks in at 4 of 6 steps of the head and loss, as the heap
grew around them. tcmalloc keeps freed memory in the process and reuses it, handing it back only
gradually (its scavenger, TCMALLOC_RELEASE_RATE, left at its default here), so under it a comparison
measures the systems' compute. PyTorch's CPU performance guide suggests jemalloc or tcmalloc for this.

`run_under("tcmalloc")` re-executes the running process once with Debian's libtcmalloc_minimal preloaded
(a benchmark's own process-wide choice; the library never makes it). Memory it keeps stays in the
process, so peak RSS under tcmalloc includes what earlier measurements left: read memory figures from
runs under the system allocator. `minor_faults()` counts faults, so a run can record what each
measurement paid.
"""

from __future__ import annotations

import ctypes.util
import os
import resource
import sys
from pathlib import Path

ALLOCATORS = ("system", "tcmalloc")
_REEXEC_MARK = "MEGALODOC_BENCH_PRELOADED"  # set on the re-executed process: a second attempt is an error


def loaded_allocator() -> str:
    """'tcmalloc' when a tcmalloc library is mapped into this process, else 'system' (the C library's)."""
    maps = Path("/proc/self/maps")
    text = maps.read_text() if maps.exists() else ""
    return "tcmalloc" if "libtcmalloc" in text else "system"


def tcmalloc_library() -> str:
    """The name LD_PRELOAD takes for libtcmalloc_minimal; exits with the package to install where it is missing."""
    library = ctypes.util.find_library("tcmalloc_minimal")
    if library is None:
        sys.exit("tcmalloc: libtcmalloc_minimal is not installed (Debian: apt-get install libtcmalloc-minimal4)")
    return library


def run_under(allocator: str) -> None:
    """Makes sure this process runs on `allocator` (one of ALLOCATORS): for tcmalloc,
    re-executes the process (same interpreter and arguments) with the library preloaded, unless it already
    is. Exits with a message where the library is missing or the preload did not take. "system" changes
    nothing (a library the caller preloaded stays): results record `loaded_allocator()`, what runs."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")
    if allocator == "system" or loaded_allocator() == allocator:
        return
    library = tcmalloc_library()
    if os.environ.get(_REEXEC_MARK):
        sys.exit(f"--allocator tcmalloc: {library} was preloaded but is not mapped into the process")
    preload = " ".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))  # first, so that it serves malloc
    env = {**os.environ, "LD_PRELOAD": preload, _REEXEC_MARK: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # the interpreter's own arguments
    raise AssertionError("unreachable: execve returns only by raising")


def minor_faults() -> int:
    """Page faults this process has taken so far that needed no disk read (getrusage's ru_minflt)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
