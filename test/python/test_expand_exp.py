"""``tasd-cpu-expand-exp`` through ``compile_for_cpu`` against numpy's float64 exp.

Tolerance: over every f32 input whose exp is a normal f32 the expansion
(Cephes' polynomial after Cody–Waite range reduction, evaluated in f32
without FMA contraction) is within 0.99 ulp of the exact value (measured
over all 2³² bit patterns, docs/cpu-runtime.md); the test allows 2 ulp so
that a CPU or LLVM which contracts a multiply-add into an FMA (which moves
results by a fraction of an ulp) still passes, while a wrong coefficient,
split constant or exponent shift is off by thousands of ulp. Subnormal
results round once (at the last multiplication): within 1 unit of 2⁻¹⁴⁹ of
the correctly rounded value. Overflow, underflow, ±inf and NaN are exact.
"""

from __future__ import annotations

import numpy as np

from tasdc.module import new_context, parse_module
from tasdc.runtime.cpu.executor import compile_for_cpu

N = 1 << 20
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
TINY = float(np.finfo(np.float32).tiny)
BIG = float(np.finfo(np.float32).max)
SUBNORMAL_STEP = 2.0 ** -149


def _inputs() -> np.ndarray:
    """Every 4096th f32 bit pattern (both signs, all exponents, NaNs and infs) plus the edges."""
    bits = (np.arange(N - 64, dtype=np.uint64) * 4096 + 1234).astype(np.uint32)
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.72284, 88.8, 1e30, -87.33654, -87.33655,
                      -103.27893, -103.97208, -103.97209, -104.0, -1e30, 1e-45, -1e-45, 0.5 * np.log(2), -0.5 * np.log(2),
                      1.0, -1.0, 80.0, -80.0, 64 * np.log(2), -126 * np.log(2), -149 * np.log(2), -150 * np.log(2)]
                     + [np.nan] * 36, dtype=np.float32)
    return np.concatenate([bits.view(np.float32), edges])


def test_exp_matches_numpy_over_the_f32_range() -> None:
    x = _inputs()
    got = compile_for_cpu(parse_module(TEXT, new_context()), cache=False)(x)
    with np.errstate(over="ignore", invalid="ignore"):
        exact = np.exp(x.astype(np.float64))
    finite = np.isfinite(x)
    normal = finite & (exact >= TINY) & (exact <= BIG)
    ulp = np.spacing(exact[normal].astype(np.float32)).astype(np.float64)
    assert normal.sum() > N // 4  # every exponent of a normal result is sampled
    assert np.max(np.abs(got[normal].astype(np.float64) - exact[normal]) / ulp) <= 2.0
    small = finite & (exact < TINY)
    rounded = exact[small].astype(np.float32).astype(np.float64)
    assert np.max(np.abs(got[small].astype(np.float64) - rounded)) <= SUBNORMAL_STEP
    assert np.all(got[small] >= 0)
    assert np.all(np.isposinf(got[finite & (exact > BIG)]))
    assert np.all(np.isnan(got[np.isnan(x)]))
    assert np.all(got[x == np.inf] == np.inf) and np.all(got[x == -np.inf] == 0.0)
    assert got[-64 + 0] == 1.0 and got[-64 + 1] == 1.0  # exp(±0) = 1 exactly


def test_libm_path_is_kept_with_the_option_off() -> None:
    """``tasd-cpu-to-llvm{expand-exp=false}``: libm's expf (the reference path), same values within 2 ulp."""
    x = np.linspace(-100, 100, N).astype(np.float32)
    fast = compile_for_cpu(parse_module(TEXT, new_context()), cache=False)(x)
    libm = compile_for_cpu(parse_module(TEXT, new_context()), cache=False, lowering="tasd-cpu-to-llvm{expand-exp=false}")(x)
    finite = np.isfinite(libm) & (libm >= TINY)
    np.testing.assert_array_equal(np.isinf(fast), np.isinf(libm))
    assert np.max(np.abs(fast[finite] - libm[finite]) / np.spacing(libm[finite])) <= 2.0
