"""The C allocator under a CPU measurement: which one runs, the page faults it takes, and tcmalloc on request.

Why the allocator matters is in app/allocator.py. For a 2K-token one-shot step with logits, which
allocates several (2048, 8192) fp32 tensors (64 MiB each) in the LM head and the loss, glibc faults about
100,000 pages in per step, a count and cost that depend on the state of the heap the previous call left.
glibc's own settings (MALLOC_MMAP_MAX_=0 and a 1 GB MALLOC_TRIM_THRESHOLD_) still faulted those blocks in
at 4 of 6 steps of the head and loss, as the heap grew around them. tcmalloc keeps freed memory in the
process, handing it back only gradually (its scavenger, TCMALLOC_RELEASE_RATE, left at its default here),
so under it a comparison measures the systems' compute.

`run_under("tcmalloc")` re-executes the running process once with Debian's libtcmalloc_minimal preloaded
(a benchmark's own process-wide choice). Memory it keeps stays in the process, so peak RSS under tcmalloc
includes what earlier measurements left: read memory figures from runs under the system allocator.
`minor_faults()` counts faults, so a run can record what each measurement paid.
"""

from __future__ import annotations

import resource
import sys

from megalodoc.app.allocator import ALLOCATORS, AllocatorError, loaded_allocator, reexec_on
from megalodoc.app.allocator import tcmalloc_library as find_tcmalloc

__all__ = ["ALLOCATORS", "loaded_allocator", "minor_faults", "run_under", "tcmalloc_library"]


def tcmalloc_library() -> str:
    """The name LD_PRELOAD takes for libtcmalloc_minimal; exits with the package to install where it is missing."""
    library = find_tcmalloc()
    if library is None:
        sys.exit("tcmalloc: libtcmalloc_minimal is not installed (Debian: apt-get install libtcmalloc-minimal4)")
    return library


def run_under(allocator: str) -> None:
    """Makes sure this process runs on `allocator` (one of ALLOCATORS): for tcmalloc, re-executes the
    process (same interpreter and arguments) with the library preloaded, unless it already is. Exits with a
    message where the library is missing or the preload did not take. "system" changes nothing (a library
    the caller preloaded stays): results record `loaded_allocator()`, what runs."""
    try:
        reexec_on(allocator)
    except AllocatorError as exc:
        sys.exit(f"--allocator {allocator}: {exc}")


def minor_faults() -> int:
    """Page faults this process has taken so far that needed no disk read (getrusage's ru_minflt)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
