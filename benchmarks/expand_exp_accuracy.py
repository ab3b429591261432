"""Accuracy of ``tasd-cpu-expand-exp`` over every f32 input (all 2³² bit patterns, or every ``--step``-th).

Runs the expansion through ``compile_for_cpu`` in chunks of 2²² inputs and
compares with numpy's float64 ``exp``: the largest error in ulp where the
result is a normal f32, the largest error on subnormal results (in units of
2⁻¹⁴⁹, against the correctly rounded value), and checks that overflow gives
+inf, ±inf give +inf / +0 and NaN stays NaN. The whole sweep takes ~2.5 min
on one core.

Run: ``.venv/bin/python benchmarks/expand_exp_accuracy.py [--step 1]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tasdc.module import new_context, parse_module
from tasdc.runtime.cpu.executor import compile_for_cpu

N = 1 << 22
TEXT = f"""
func.func @main(%x: tensor<{N}xf32>) -> tensor<{N}xf32> {{
  %e = tensor.empty() : tensor<{N}xf32>
  %y = linalg.generic {{indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}}
      ins(%x : tensor<{N}xf32>) outs(%e : tensor<{N}xf32>) {{
  ^bb0(%a: f32, %b: f32):
    %r = math.exp %a : f32
    linalg.yield %r : f32
  }} -> tensor<{N}xf32>
  return %y : tensor<{N}xf32>
}}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=1, help="test every step-th bit pattern")
    args = parser.parse_args()
    exe = compile_for_cpu(parse_module(TEXT, new_context()), cache=False)
    tiny, big = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    worst, worst_x, worst_sub = 0.0, 0.0, 0.0
    start = time.perf_counter()
    for first in range(0, 1 << 32, N * args.step):
        x = (np.arange(N, dtype=np.uint64) * args.step + first).astype(np.uint32).view(np.float32)
        y = exe(x).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            exact = np.exp(x.astype(np.float64))
        finite = np.isfinite(x)
        normal = finite & (exact >= tiny) & (exact <= big)
        err = np.abs(y[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32)).astype(np.float64)
        if err.size and err.max() > worst:
            worst, worst_x = float(err.max()), float(x[normal][err.argmax()])
        small = finite & (exact < tiny)
        if small.any():
            rounded = exact[small].astype(np.float32).astype(np.float64)
            worst_sub = max(worst_sub, float(np.abs(y[small] - rounded).max()) / 2.0 ** -149)
        assert np.all(np.isposinf(y[finite & (exact > big)])), "an overflow did not give +inf"
        assert np.all(np.isnan(y[np.isnan(x)])), "a NaN input did not give NaN"
        assert np.all(y[np.isinf(x)] == np.where(x[np.isinf(x)] > 0, np.inf, 0.0)), "exp(±inf) wrong"
    print(f"normal results: max {worst:.3f} ulp (at x = {worst_x!r}); subnormal results: max {worst_sub:.1f} × 2^-149; "
          f"edges exact; {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
