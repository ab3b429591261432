"""Throughput of the vectorised cost model (layer x config evaluations / s).

Usage: .venv/bin/python benchmarks/bench_costmodel.py [--quick]
Goal: >= 100k evaluations/s for the vectorised ``evaluate``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasdc.runtime.accel.costmodel import LayerShapes, cost_layer, evaluate  # noqa: E402

CONFIGS = {
    "stc": ["dense", "2:4", "2:4+2:4", "1:4", "1:8", "2:8+1:8", "1:4+1:4+1:4"],
    "vegeta": ["dense", "1:4", "2:4", "2:4+1:4", "1:4+1:4", "2:4+2:4", "1:4+1:4+1:4"],
    "ttc-m8": ["dense", "1:8", "2:8", "4:8", "2:8+1:8", "4:8+2:8", "4:8+2:8+1:8", "1:8+1:8+1:8+1:8"],
    "dense": ["dense"],
}


def random_layers(n: int, seed: int = 0) -> LayerShapes:
    rng = np.random.default_rng(seed)
    m = rng.integers(16, 4097, n)
    k = rng.integers(16, 9217, n)
    nn = rng.integers(1, 50177, n)
    b = rng.choice([1, 1, 1, 8, 12], n)
    return LayerShapes.from_arrays(m, k, nn, b)


def timeit(fn, min_time: float = 0.3) -> float:
    fn()  # warm-up (fills the series-resolution cache, as TASDER would)
    reps, t = 0, 0.0
    t0 = time.perf_counter()
    while t < min_time:
        fn()
        reps += 1
        t = time.perf_counter() - t0
    return t / reps


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    sizes = [(1, 8), (100, 8), (1000, 8), (10000, 8)] if not quick else [(1, 8), (1000, 8)]
    print(f"{'target':>8} {'layers':>7} {'configs':>7} {'evals':>9} {'ms/call':>9} {'evals/s':>12}")
    worst_big = float("inf")
    for target in ("stc", "vegeta", "ttc-m8"):
        cfgs = CONFIGS[target]
        for nl, _ in sizes:
            layers = random_layers(nl)
            dt = timeit(lambda: evaluate(target, layers, cfgs, mode="map"))
            ev = nl * len(cfgs)
            rate = ev / dt
            if nl >= 1000:
                worst_big = min(worst_big, rate)
            print(f"{target:>8} {nl:>7} {len(cfgs):>7} {ev:>9} {dt * 1e3:>9.3f} {rate:>12,.0f}")
    # the convenience per-layer wrapper (same core, 1x1 tables)
    dt = timeit(lambda: cost_layer("stc", 1024, 1024, 1024, "2:4+2:4"))
    print(f"{'stc':>8} {'(cost_layer, 1 layer x 1 config)':>36} {dt * 1e3:>6.3f} ms/call {1 / dt:>10,.0f}/s")
    print(f"vectorised throughput at >= 1000 layers: {worst_big:,.0f} evals/s "
          f"(goal 100,000/s: {'met' if worst_big >= 1e5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
