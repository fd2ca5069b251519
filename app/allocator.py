"""The C allocator under a CPU process: which one is mapped in, and re-running the process on tcmalloc.

With glibc's malloc at its defaults, every block of 32 MiB or more is mapped fresh when it is allocated
and handed back to the kernel when it is freed (the dynamic mmap threshold stops rising at 32 MiB), so
every such allocation lands on pages the process does not hold, and the kernel faults each 4 KiB page in
on first touch. tcmalloc keeps freed memory in the process and reuses it: five training steps of the
shipped model (8 x 1,024 tokens, one process) took 0.48 million minor page faults on it against 0.91
million on glibc, and a peak RSS of 1,769 MiB against 2,186 MiB. PyTorch's CPU performance guide suggests
jemalloc or tcmalloc for this.

Choosing the allocator is a whole process's choice: `reexec_on("tcmalloc")` replaces the running process
(same interpreter, same arguments, same pid) by one with Debian's libtcmalloc_minimal preloaded. Only a
program that owns its process calls it (the `megalodoc train` command, the benchmark scripts); the library
never does.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

ALLOCATORS = ("system", "tcmalloc")
PACKAGE_HINT = "Debian: apt-get install libtcmalloc-minimal4"
_REEXEC_MARK = "MEGALODOC_TCMALLOC_PRELOADED"  # set on the re-executed process: a second attempt is an error


class AllocatorError(RuntimeError):
    """The asked-for allocator cannot run in this process (library missing, or the preload did not take)."""


def loaded_allocator() -> str:
    """'tcmalloc' when a tcmalloc library is mapped into this process, else 'system' (the C library's)."""
    maps = Path("/proc/self/maps")
    text = maps.read_text() if maps.exists() else ""
    return "tcmalloc" if "libtcmalloc" in text else "system"


def tcmalloc_library() -> str | None:
    """The name LD_PRELOAD takes for libtcmalloc_minimal (e.g. 'libtcmalloc_minimal.so.4'), None where it
    is not installed."""
    return ctypes.util.find_library("tcmalloc_minimal")


def reexec_on(allocator: str) -> None:
    """Makes sure this process runs on `allocator` (one of ALLOCATORS). For tcmalloc, unless it already
    runs, re-executes the process with the library preloaded: this call then never returns. "system"
    changes nothing (a library the caller preloaded stays). Raises AllocatorError off Linux, where the
    library is missing or where a preload did not take; ValueError for an unknown name."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")
    if allocator == "system" or loaded_allocator() == allocator:
        os.environ.pop(_REEXEC_MARK, None)  # the process runs as asked: its children start afresh
        return
    if not sys.platform.startswith("linux"):
        raise AllocatorError("tcmalloc: preloading it needs Linux (LD_PRELOAD, and /proc/self/maps to check it)")
    library = tcmalloc_library()
    if library is None:
        raise AllocatorError(f"tcmalloc: libtcmalloc_minimal is not installed ({PACKAGE_HINT})")
    if os.environ.get(_REEXEC_MARK):
        raise AllocatorError(f"tcmalloc: {library} was preloaded but is not mapped into the process")
    preload = " ".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))  # first, so that it serves malloc
    env = {**os.environ, "LD_PRELOAD": preload, _REEXEC_MARK: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # the interpreter's own arguments
    raise AssertionError("unreachable: execve returns only by raising")
