"""``tasd-cpu-expand-erf`` through ``compile_for_cpu`` against the exact erf.

Tolerance: the rational approximation (Eigen's / XLA's f32 erf on [-4, 4])
is within 4.3e-7 absolute of erf over the whole line (measured on 2·10⁶
points plus tiny magnitudes, 7 ulp near ±1); evaluated in f32 with or
without FMA contraction the result moves by a few 1e-8 more. 1e-6 absolute
and relative (for tiny inputs, where erf(x) ≈ 1.13·x) holds on any x86 CPU;
a wrong coefficient or clamp gives errors of 1e-3 or more.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from tasdc.module import new_context, parse_module
from tasdc.runtime.cpu.executor import compile_for_cpu

N = 65536
TEXT = f"""
func.func @main(%x: tensor<{N}xf32>) -> tensor<{N}xf32> {{
  %e = tensor.empty() : tensor<{N}xf32>
  %y = linalg.generic {{indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}}
      ins(%x : tensor<{N}xf32>) outs(%e : tensor<{N}xf32>) {{
  ^bb0(%a: f32, %b: f32):
    %r = math.erf %a : f32
    linalg.yield %r : f32
  }} -> tensor<{N}xf32>
  return %y : tensor<{N}xf32>
}}"""


def test_erf_matches_scipy_everywhere() -> None:
    x = np.concatenate([np.linspace(-7, 7, N - 1024), np.geomspace(1e-30, 1e-3, 512), -np.geomspace(1e-30, 1e-3, 512)]).astype(np.float32)
    x[0], x[1], x[2] = np.inf, -np.inf, np.nan
    got = compile_for_cpu(parse_module(TEXT, new_context()), cache=False)(x)
    exact = erf(x.astype(np.float64))
    assert np.isnan(got[2]) and got[0] == 1.0 and got[1] == -1.0
    finite = np.isfinite(x)
    err = np.abs(got[finite].astype(np.float64) - exact[finite])
    assert np.all(err <= np.maximum(1e-6 * np.abs(exact[finite]), np.where(np.abs(x[finite]) < 1e-3, 2e-7 * np.abs(x[finite]), 1e-6)))


def test_libm_path_is_kept_with_the_option_off() -> None:
    """``tasd-cpu-to-llvm{expand-erf=false}``: libm's erff (the reference path) — same values within 1e-6."""
    x = np.linspace(-5, 5, N).astype(np.float32)
    fast = compile_for_cpu(parse_module(TEXT, new_context()), cache=False)(x)
    libm = compile_for_cpu(parse_module(TEXT, new_context()), cache=False, lowering="tasd-cpu-to-llvm{expand-erf=false}")(x)
    np.testing.assert_allclose(fast, libm, atol=1e-6, rtol=0)
    np.testing.assert_allclose(libm, erf(x.astype(np.float64)), atol=1e-7, rtol=0)
