"""Element-wise math through the CPU runtime's LLVM lowering, against numpy.

``math.fpowi`` (torch-mlir's ``pow(x, 3.0)``, GPT-2's gelu_new) once reached
LLVM as ``llvm.powi`` with an i64 exponent. LLVM expands powi into
multiplications only when it sees a constant exponent; after
``tasd-cpu-outline-loops`` passed the constant in as an argument, LLVM emitted
a call to ``__powisf2`` (which takes a C ``int``), printed "POWI exponent does
not match sizeof(int)" and the run returned garbage. Now
``math-expand-ops{ops=fpowi}`` expands every fpowi before LLVM and the
outlined functions see their call's constants again. Each case runs on the
uncached JIT path, then is stored in and loaded from the compile cache.

Tolerance: the reference is numpy's power in float64 (exact for these inputs
up to its own rounding, far below float32's). A constant exponent is expanded
into at most three float32 multiplications (|n| <= 4 by repeated squaring)
and a negative one adds a division: each rounds once with relative error at
most u = 2^-24, so the result is within 4u relative. A run-time exponent goes
to libm ``powf`` (glibc: under 1 ulp, i.e. 2u relative). ``rtol = 4u``,
``atol = 0`` (no sums, so no cancellation near zero); the inputs avoid 0 for
the negative exponents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasdc.module import new_context, parse_module
from tasdc.runtime.cpu.executor import compile_for_cpu

U = 2.0 ** -24
RTOL = 4 * U

_GENERIC = """#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @main(%x: tensor<4x8xf32>, %n: tensor<4x8xi64>) -> tensor<4x8xf32> {{
  %c = arith.constant {exponent} : i64
  %0 = tensor.empty() : tensor<4x8xf32>
  %1 = linalg.generic {{indexing_maps = [#map, #map, #map], iterator_types = ["parallel", "parallel"]}}
      ins(%x, %n : tensor<4x8xf32>, tensor<4x8xi64>) outs(%0 : tensor<4x8xf32>) {{
  ^bb0(%a: f32, %k: i64, %out: f32):
    %p = math.fpowi %a, {operand} : f32, i64
    linalg.yield %p : f32
  }} -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}}
"""


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.25, 2.0, (4, 8)).astype(np.float32) * rng.choice([-1, 1], (4, 8)).astype(np.float32)
    n = rng.integers(-3, 5, (4, 8)).astype(np.int64)
    return x, n


@pytest.mark.parametrize("exponent", ["3", "2", "-2", "4", "0", "run-time"])
def test_fpowi_matches_numpy_uncached_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 exponent: str) -> None:
    run_time = exponent == "run-time"
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    text = _GENERIC.format(exponent=0 if run_time else exponent, operand="%k" if run_time else "%c")
    x, n = _inputs()
    want = np.power(x.astype(np.float64), n if run_time else int(exponent))
    with new_context() as context:
        module = parse_module(text, context)
        outputs = []
        for cache in (False, True, True):  # uncached JIT; JIT and store; load the stored object
            executable = compile_for_cpu(module, cache=cache)
            outputs.append((executable.cache_hit, executable(x, n)))
    assert [hit for hit, _ in outputs] == [False, False, True]
    for _, got in outputs:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    # One code path per case: the cached object is the same machine code as the JIT's.
    np.testing.assert_array_equal(outputs[2][1], outputs[1][1])
