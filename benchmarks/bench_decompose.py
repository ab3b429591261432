"""Throughput of the TASD decomposition on a BERT-base-sized set of weights.

    .venv/bin/python benchmarks/bench_decompose.py [--layers 12] [--repeats 3] [--quick]

Weights: ``--layers`` encoder layers, each with q, k, v, o ``[768, 768]``,
ffn1 ``[3072, 768]`` and ffn2 ``[768, 3072]`` in torch's ``[out, in]`` layout
(12 layers: 84.9 M weights), random normal float32, plus a copy
magnitude-pruned to 80 % per tensor. Every weight is decomposed separately
along its reduction axis (``in``, axis 1), as the compiler does.

One table, one run: for each method and data set the median over
``--repeats`` full passes of the wall time (and of the process CPU time,
steadier when other processes compete for the cores; rounds interleave the
methods), the throughput, and the time
relative to the competitor ``np.sort(|w|, axis=1)`` on the same data (a full
SIMD sort of every row: more work than a top-k, but numpy's fastest
primitive on this shape). Extra rows, for scale: ``torch.topk`` on blocks
(one thread, one term, no tie guarantee) and the naive numpy formulation
(stable ``argsort`` per block, one term). A second table gives the
model-level error of each series (not timed). The machine may be shared:
the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from tasdc.decompose import decompose

CONFIGS = ["2:4+1:4", "2:8+1:8"]
HIDDEN, FFN = 768, 3072


def bert_weights(layers: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for layer in range(layers):
        for name, shape in [
            ("q", (HIDDEN, HIDDEN)),
            ("k", (HIDDEN, HIDDEN)),
            ("v", (HIDDEN, HIDDEN)),
            ("o", (HIDDEN, HIDDEN)),
            ("ffn1", (FFN, HIDDEN)),
            ("ffn2", (HIDDEN, FFN)),
        ]:
            out.append((f"layer{layer}.{name}", rng.standard_normal(shape, dtype=np.float32)))
    return out


def magnitude_pruned(weights: list[tuple[str, np.ndarray]], sparsity: float) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, w in weights:
        a = np.abs(w).reshape(-1)
        cut = int(sparsity * a.size)
        threshold = np.partition(a, cut)[cut]
        out.append((name, np.where(np.abs(w) < threshold, np.float32(0), w)))
    return out


def one_pass(fn: Callable[[np.ndarray], object], weights: list[tuple[str, np.ndarray]]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one full pass over all weights."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _, w in weights:
        fn(w)
    return time.perf_counter() - wall, time.process_time() - cpu


def model_error(weights: list[tuple[str, np.ndarray]], config: str) -> tuple[float, float, int]:
    """Model-level relative Frobenius error, dropped L1 mass, lossless tensors."""
    err2 = norm2 = l1_res = l1 = 0.0
    lossless = 0
    for _, w in weights:
        d = decompose(w, config, 1)
        r = d.residual.astype(np.float64)
        err2 += float(np.sum(r * r))
        l1_res += float(np.sum(np.abs(r)))
        norm2 += float(np.sum(np.square(w, dtype=np.float64)))
        l1 += float(np.sum(np.abs(w), dtype=np.float64))
        lossless += d.is_exact
    return (err2 / norm2) ** 0.5, l1_res / l1, lossless


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 layers, 1 repeat (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch.topk rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.repeats = 2, 1

    dense = bert_weights(args.layers)
    pruned = magnitude_pruned(dense, 0.80)
    datasets = [("random normal", dense), ("80% pruned", pruned)]
    total = sum(w.size for _, w in dense)

    torch = None
    if not args.no_torch:
        try:
            import torch  # type: ignore[no-redef]

            torch.set_num_threads(1)
        except ImportError:
            torch = None

    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{len(dense)} weights ({args.layers} BERT-base layers), {total / 1e6:.1f} M elements per data set, "
          f"float32, reduction axis 1; median of {args.repeats} full passes\n")

    methods: list[tuple[str, Callable[[np.ndarray], object]]] = [
        ("np.sort(|w|, axis=1)  [competitor]", lambda w: np.sort(np.abs(w), axis=1)),
    ]
    for config in CONFIGS:
        methods.append((f"tasdc decompose {config}", lambda w, c=config: decompose(w, c, 1)))
    for m in (4, 8):
        methods.append((
            f"numpy argsort per {m}-block (1 term)",
            lambda w, m=m: np.argsort(-np.abs(w).reshape(-1, m), axis=1, kind="stable")[:, :2],
        ))
    if torch is not None:
        for m in (4, 8):
            methods.append((
                f"torch.topk k=2 per {m}-block (1 thread)",
                lambda w, m=m: torch.topk(torch.from_numpy(w).abs().view(-1, m), 2, dim=1),
            ))

    header = (f"{'method':40s} {'data':14s} {'weights':>8s} {'seconds':>8s} {'cpu s':>7s} {'Mw/s':>7s} "
              f"{'vs np.sort':>10s}")
    print(header)
    print("-" * len(header))
    for data_name, weights in datasets:
        for _, fn in methods:
            fn(weights[0][1])  # warm-up (lookup tables, caches)
        # rounds interleave the methods so that load from other processes
        # hits all of them alike
        walls: dict[str, list[float]] = {name: [] for name, _ in methods}
        cpus: dict[str, list[float]] = {name: [] for name, _ in methods}
        for _ in range(args.repeats):
            for name, fn in methods:
                wall, cpu = one_pass(fn, weights)
                walls[name].append(wall)
                cpus[name].append(cpu)
        base = statistics.median(walls[methods[0][0]])
        for name, _ in methods:
            seconds = statistics.median(walls[name])
            cpu = statistics.median(cpus[name])
            print(f"{name:40s} {data_name:14s} {total / 1e6:7.1f}M {seconds:8.3f} {cpu:7.3f} "
                  f"{total / seconds / 1e6:7.1f} {seconds / base:9.2f}x", flush=True)
        print()

    print(f"{'config':10s} {'data':14s} {'rel. Frobenius error':>21s} {'L1 dropped':>11s} {'lossless tensors':>17s}")
    for data_name, weights in datasets:
        for config in CONFIGS:
            err, l1, lossless = model_error(weights, config)
            print(f"{config:10s} {data_name:14s} {err:21.4f} {l1:11.4f} {lossless:>10d}/{len(weights)}")
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
