"""The C allocator policy of a CPU training or verifying process.

glibc's malloc returns freed blocks above its mmap threshold (128 KiB at first, raised
dynamically up to 32 MiB) straight to the OS, and trims the heap top when more than 128 KiB is
free. A training step frees and reallocates the same multi-MB activation buffers every step, so
with the default policy every step page-faults them in again: on the 2-core CPU the ``small``
net's ``mr`` step (one [x; x+; x-] batch of 3B) took 3.9x a plain step, and 3.2-3.35x with
freed memory kept (``bench/train_overhead.py``, ``bench/fidelity.py``: the same interleaved
step measurement with both policies). That is the effect the PyTorch CPU performance guide
gets from jemalloc / tcmalloc; glibc itself can do it with two ``mallopt`` calls, no new
dependency. The verifier's workers (``runs/dataset.verify_one``, and the child that decides each
VNN-LIB instance, ``decide/instance_limit.instance_in_child``) set it too: every bound pass
allocates the same back-substitution chunks (``bounds/engine.MEMORY_FLOATS``, sized below the
mmap ceiling for this). The cost: freed heap memory stays with the process (for a trainer, its own next
step's buffers) instead of going back to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of free heap top
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum (HEAP_MAX/2 on 64-bit): blocks below it come from the heap


def keep_freed_memory() -> bool:
    """glibc: no heap trimming (below 1 GiB free) and no mmap for blocks up to 32 MiB, so freed
    buffers are reused without page faults. Process-wide and not undone (it changes speed and
    resident memory, never a result). False where it is not possible (not Linux/glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success, 0 on an unknown parameter or value (musl has no mallopt)
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
