"""A loading process gives the memory a batch frees back to the system (glibc's mmap threshold, fixed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pgmill.ingest.allocator import ENV, glibc

pytestmark = pytest.mark.skipif(not glibc(), reason="the mmap threshold is glibc's")

# Allocate and free an 8 MB buffer (a batch's CSV chunk) twice, as a loader thread does, then report the
# free bytes glibc keeps in its arenas (mallinfo2().fordblks).
PROBE = """
import ctypes, sys
from pgmill.ingest.allocator import return_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert return_freed_memory() and return_freed_memory()  # the second call: already done
for _ in range(2):
    chunk = bytearray(8 << 20)
    del chunk
print(libc.mallinfo2().fordblks)
"""


def _free_after_batches(mode: str) -> int:
    # glibc's defaults: none of its malloc settings from the environment (Dask's nanny, for one, sets
    # MALLOC_TRIM_THRESHOLD_ in the process that starts a LocalCluster)
    env = {k: v for k, v in os.environ.items() if k != ENV and not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout)


def test_freed_batch_buffers_go_back_to_the_system() -> None:
    # glibc's default: the first free raises the threshold to 8 MB, the second buffer comes from the heap
    # and stays there once freed
    assert _free_after_batches("default") >= 8 << 20
    assert _free_after_batches("fixed") < 1 << 20
