"""The C allocator of a loading process: memory a batch frees goes back to the system, so a load's peak
memory does not grow with the amount of data.

A batch's large buffers (its CSV chunk, up to 8 MB; the COPY payload cut from it; numpy and list arrays of
its row positions) are allocated with malloc on the threads that read and write it. glibc serves a block
this large with mmap and gives it back on free, but the first such free also raises its mmap threshold to
the block's size (the "dynamic threshold", up to 32 MB): from then on, every buffer of that size comes from
a malloc arena and stays there once freed. Each thread that touches malloc gets an arena (up to 8 per
core), and a load starts new reader and writer threads for every file, so the memory kept grows with the
number of files until the arenas are all used. Measured on the demo shop (bench/bench_memory.py): glibc
held at most ~45 MB in use and ~60 MB free at 1x, ~60 MB in use but ~200 MB free at 10x (peak RSS +54%).
A fixed threshold (which turns the dynamic one off) keeps those buffers mmapped: each one is returned
when freed, and the free memory glibc kept stayed near 10 MB at both scales.

Only glibc (Linux) has this; elsewhere `return_freed_memory` does nothing. A MALLOC_MMAP_THRESHOLD_ set
in the environment is the user's choice and is left alone.
"""

from __future__ import annotations

import ctypes
import os
import threading

M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD_BYTES = 256 << 10  # blocks this large or larger are mmapped, and unmapped when freed
ENV = "MALLOC_MMAP_THRESHOLD_"

_lock = threading.Lock()
_set = False


def glibc() -> bool:
    """Whether this process's C library is glibc (the only one with these knobs)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):  # not a glibc name (musl, macOS) or no confstr (Windows)
        return False


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES for this process (once; later calls do nothing).
    True when the threshold is fixed (by this call, an earlier one, or the environment)."""
    global _set
    with _lock:
        if _set or os.environ.get(ENV):
            return True
        if not glibc():
            return False
        try:
            libc = ctypes.CDLL(None)
            _set = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
        except (OSError, AttributeError):  # no mallopt in this process's C library
            return False
        return _set
