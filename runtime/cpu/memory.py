"""Keep freed memory for reuse: no page faults from the compiled code's per-call buffers.

The lowered code allocates its intermediate tensors with ``malloc`` and frees
them before returning (``buffer-deallocation-pipeline``). glibc serves blocks
above its mmap threshold (128 KB, raised dynamically up to 32 MB) with a fresh
``mmap`` and gives freed memory at the top of the heap back to the kernel
beyond its trim threshold, so every call of a model whose temporaries are
large faults its pages in again: 9,200 minor faults per call and ~20 % of
the samples in the kernel for a MiniLM-sized BERT at batch 8 × 32 (``perf``).

:func:`retain_freed_memory` raises both thresholds once per process
(``mallopt``: blocks up to 256 MB come from the heap, up to 1 GB of freed
memory stays mapped), which is what a caching allocator would do for these
buffers; the same MiniLM then takes 8 faults per call. It is process-wide
(it also applies to numpy and torch), so ``TASDC_RETAIN_MEMORY=0`` turns it
off; on a C library without ``mallopt`` it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import threading

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 1 << 30

_lock = threading.Lock()
_done = False


def retain_freed_memory() -> bool:
    """Apply the thresholds above once per process; ``True`` when they are in effect."""
    global _done
    with _lock:
        if _done:
            return True
        if os.environ.get("TASDC_RETAIN_MEMORY", "1") == "0":
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except AttributeError:  # not glibc
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
        return _done
