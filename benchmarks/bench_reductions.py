"""Softmax and layer norm alone: torch eager vs tasdc's CPU lowering, with and without the reduction passes.

Each case is a one-op ``torch.nn.Module`` compiled with ``compile_model``
(dense) and lowered several ways (``--lowerings``, ``;``-separated
``tasd-cpu-to-llvm{…}`` pipelines; the default compares everything off,
each pass added in turn, and the default lowering). Times are medians over
``--repeat`` rounds of one call each, torch and every lowering in turn in
the same process (load changes hit all alike), one thread; each call of a
compiled module includes the executor's per-call cost (a few µs).
``max err`` is against torch in float64.

Shapes: the attention scores of BERT-base (1 × 12 heads × 128 × 128) and of
the 4-layer encoder of ``bench_end_to_end.py`` (8 × 4 × 64 × 64); the layer
norms of the same models (1 × 128 × 768, 8 × 64 × 256).

Run: ``.venv/bin/python benchmarks/bench_reductions.py [--repeat 300] [--lowerings 'a;b']``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

OFF = "tasd-cpu-to-llvm{reassociate=false expand-exp=false noalias=false}"
DEFAULT_LOWERINGS = ";".join([
    OFF,
    "tasd-cpu-to-llvm{reassociate=false noalias=false}",  # + expand-exp
    "tasd-cpu-to-llvm{noalias=false}",  # + reassociate-reductions
    "tasd-cpu-to-llvm",  # + mark-noalias (the default)
])


class Softmax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, -1)


CASES: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...]]] = {
    "softmax 12x128x128": (Softmax, (1, 12, 128, 128)),
    "softmax 8x4x64x64": (Softmax, (8, 4, 64, 64)),
    "layernorm 128x768": (lambda: torch.nn.LayerNorm(768), (1, 128, 768)),
    "layernorm 8x64x256": (lambda: torch.nn.LayerNorm(256), (8, 64, 256)),
}


def medians(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    for fn in fns:
        for _ in range(5):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeat):
        for k in range(len(fns)):  # the order rotates: no one always runs right after torch
            i = (round_ + k) % len(fns)
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--lowerings", default=DEFAULT_LOWERINGS)
    args = parser.parse_args()
    import numba

    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.runtime.cpu.executor import compile_for_cpu

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    lowerings = args.lowerings.split(";")
    print(f"one thread, repeat {args.repeat}, load {os.getloadavg()[0]:.2f}; µs medians, (torch / lowering), max err vs f64")
    for i, lowering in enumerate(lowerings):
        print(f"  L{i}: {lowering}")
    header = f"{'case':<20} {'torch':>8} " + " ".join(f"{'L' + str(i):>22}" for i in range(len(lowerings)))
    print(header)
    print("-" * len(header))
    for name, (make, shape) in CASES.items():
        model = make().eval()
        x = 3 * torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        result = compile_model(model, (x,), CompileOptions(config="dense"))
        exes = [compile_for_cpu(result.module, cache=False, lowering=lowering) for lowering in lowerings]
        xn = x.numpy()
        with torch.no_grad():
            exact = model.double()(x.double()).numpy()
            model.float()
            times = medians([lambda: model(x)] + [lambda e=e: e(xn) for e in exes], args.repeat)
        cells = []
        for exe, t in zip(exes, times[1:]):
            err = float(np.abs(exe(xn).astype(np.float64) - exact).max())
            cells.append(f"{t * 1e6:7.1f} ({times[0] / t:4.2f}x) {err:7.1e}")
        print(f"{name:<20} {times[0] * 1e6:8.1f} " + " ".join(f"{c:>22}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
