"""TASD-A CPU kernels: extraction overhead against the work they save.

    .venv/bin/python benchmarks/bench_act_kernels.py [--reps 10] [--rounds 3] [--quick] [--threads N]

``--threads N`` sets both Numba's and OpenBLAS's thread count (default:
Numba's default and OpenBLAS's own, which may differ); run 1-thread numbers
with ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine.

For each shape (post-ReLU activations, i.e. ~50 % zeros, or sparser) and each
activation series it reports, from one run (methods interleaved in rounds,
median of all calls; load average printed):

* ``numpy``: the dense product on the *undecomposed* activation (OpenBLAS
  ``x @ w``; for convolutions the reference im2col + matmul);
* ``keep-all``: the TASD-A kernel with ``M:M`` (every entry kept): the same
  code doing the dense amount of work — the competitor that isolates what the
  series saves inside one kernel;
* ``extract``: the selection alone (what TASD units do), no product;
* ``series``: the TASD-A kernel (selection + product over kept entries);

and the ratios ``keep-all / series`` (work saved, > 1 = faster),
``extract / series`` (share of the series time spent selecting) and
``numpy / series`` (> 1: the kernel beats OpenBLAS dense).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numba
import numpy as np
from numba import njit, prange

from tasdc.reference import conv2d_nchw
from tasdc.runtime.cpu.act_kernels import _select, act_conv2d, act_matmul, series_arrays


@njit(parallel=True, cache=True)
def _extract_only(x, ns, ms):
    rows, k_total = x.shape
    kept = np.zeros(rows, dtype=np.int64)
    for t in prange(rows):
        mag = np.empty(k_total, dtype=np.float32)
        idx = np.empty(k_total, dtype=np.int64)
        kept[t] = _select(x[t], ns, ms, mag, idx)
    return kept


def _time(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _post_relu(rng: np.random.Generator, shape: tuple[int, ...], zero_fraction: float) -> np.ndarray:
    x = np.abs(rng.standard_normal(shape)).astype(np.float32)
    x[rng.random(shape) < zero_fraction] = 0.0
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--threads", type=int, default=None, help="threads for both numba and OpenBLAS")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # not a dependency: OpenBLAS then keeps its own count
            threadpool_limits = None
        if threadpool_limits is not None:
            threadpool_limits(limits=args.threads, user_api="blas")
    rng = np.random.default_rng(0)
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{i.get('internal_api')} {i.get('architecture')} threads={i.get('num_threads')}" for i in threadpool_info())
    except ImportError:
        blas = "threadpoolctl not installed"
    print(f"load average {os.getloadavg()}, numba threads {numba.get_num_threads()}, BLAS: {blas}")
    matmuls = [(128, 768, 768, 0.5), (128, 768, 3072, 0.5), (128, 3072, 768, 0.9)]
    convs = [((16, 32, 10, 10), (32, 32, 3, 3), 0.5), ((8, 64, 16, 16), (64, 64, 3, 3), 0.5)]
    if args.quick:
        matmuls, convs = matmuls[:1], convs[:1]
    header = (f"{'shape':<34} {'zeros':>5} {'series':<8} {'numpy ms':>9} {'keep-all':>9} {'extract':>9} "
              f"{'series ms':>9} {'saved x':>8} {'extr %':>7} {'np/ser':>7}")
    print(header)
    print("-" * len(header))
    for t, k, o, zeros in matmuls:
        x = _post_relu(rng, (t, k), zeros)
        w = rng.standard_normal((k, o)).astype(np.float32)
        out = np.empty((t, o), dtype=np.float32)
        for config, full in (("2:4", "4:4"), ("1:4", "4:4"), ("2:8", "8:8"), ("2:4+1:4", "4:4")):
            s, f = series_arrays(config), series_arrays(full)
            methods = {
                "numpy": lambda: np.matmul(x, w),
                "keep-all": lambda: act_matmul(x, w, *f, out=out),
                "extract": lambda: _extract_only(x, *s),
                "series": lambda: act_matmul(x, w, *s, out=out),
            }
            _report(f"matmul {t}x{k}x{o}", zeros, config, methods, args)
    for xs, ws, zeros in convs:
        x = _post_relu(rng, xs, zeros)
        w = rng.standard_normal(ws).astype(np.float32)
        wp = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))
        oh, ow = xs[2] - ws[2] + 1, xs[3] - ws[3] + 1
        out = np.empty((xs[0], ws[0], oh, ow), dtype=np.float32)
        pix = np.ascontiguousarray(np.moveaxis(x, 1, -1).reshape(-1, xs[1]))
        for config, full in (("2:4", "4:4"), ("1:4", "4:4"), ("2:8", "8:8")):
            s, f = series_arrays(config), series_arrays(full)
            methods = {
                "numpy": lambda: conv2d_nchw(x, w, (1, 1), (1, 1)),
                "keep-all": lambda: act_conv2d(x, wp, *f, (1, 1), (1, 1), out),
                "extract": lambda: _extract_only(pix, *s),
                "series": lambda: act_conv2d(x, wp, *s, (1, 1), (1, 1), out),
            }
            _report(f"conv {xs}*{ws[:2]}k{ws[2]}", zeros, config, methods, args)
    print(f"load average {os.getloadavg()}")


def _report(shape: str, zeros: float, config: str, methods: dict[str, Callable[[], object]], args: argparse.Namespace) -> None:
    for fn in methods.values():  # compile and warm up
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            times[name] += _time(fn, args.reps)
    med = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    print(f"{shape:<34} {zeros:>5.0%} {config:<8} {med['numpy']:>9.3f} {med['keep-all']:>9.3f} {med['extract']:>9.3f} "
          f"{med['series']:>9.3f} {med['keep-all'] / med['series']:>8.2f} {100 * med['extract'] / med['series']:>6.1f}% "
          f"{med['numpy'] / med['series']:>7.2f}")


if __name__ == "__main__":
    main()
