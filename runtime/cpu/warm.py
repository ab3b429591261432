"""Fill Numba's on-disk cache with the CPU runtime's functions, once, after install.

The N:M kernels and their C entries are Numba functions with ``cache=True``:
a process loads them from Numba's cache in about a second (the weight
readers are llvmlite loops, ``tasdc/blob_reader.py``, and need no cache).
With an empty cache (the first run after installing, or after an edit of
their source) they are compiled first: ~20 s on a 2-core machine, more than
the whole JIT of a BERT-base from an empty compile cache.
``python -m tasdc.runtime.cpu.warm`` (run by ``tools/dev.py`` setup) pays that
once at install time. The TASD-A kernels (``--act-config``) are not
warmed: they compile on their first use.
"""

from __future__ import annotations

import time

import numpy as np


def _warm_kernels() -> None:
    """The series kernel (Python path), the C entries of matmul and conv2d series
    (the conv entry's cfunc holds both layouts, X tiles and direct)."""
    from tasdc.runtime.cpu import kernels

    rng = np.random.default_rng(0)
    values = rng.standard_normal((8, 32)).astype(np.float32)
    indices = np.tile(np.array([0, 2], np.int8), (8, 16))
    packed = kernels.pack_series([kernels.pack_term(values, indices, 2, 4, 1, (8, 64), 0)])
    x = rng.standard_normal((4, 64)).astype(np.float32)
    kernels.series_matmul(x, packed)
    entry = kernels.make_cfunc_entry(packed)
    entry(x, np.empty((4, 8), np.float32))
    entry.check_status()
    kernels._conv_cfunc()


def _warm_dense() -> None:
    """The dense library entries (``runtime/cpu/dense.py``) and every convolution method
    behind ``tasd_dense_conv2d`` (im2col, implicit GEMM per tap and with stacked taps, Winograd)."""
    from tasdc.runtime.cpu import dense

    for name in dense.LIBRARY_ENTRIES:
        dense.library_entry(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 16, 3, 3)).astype(np.float32)
    for method in (dense.IM2COL, dense.IMPLICIT, dense.STACKED, dense.WINOGRAD):
        dense.conv2d(x, w, padding=(1, 1), method=method)


def warm() -> dict[str, float]:
    """Compile (or load) every cached Numba function of the CPU runtime; seconds per group."""
    seconds = {}
    for name, step in (("kernels", _warm_kernels), ("dense", _warm_dense)):
        start = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    seconds = warm()
    print("Numba cache of the CPU runtime warm: " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
