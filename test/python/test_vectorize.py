"""``tasd-cpu-vectorize-contractions`` through ``compile_for_cpu`` against numpy.

The shapes are chosen so the register tiles (4×16) and cache tiles
(128×256×512) do not divide them: the pass splits off remainder strips
along M and N, and K-tiles only by divisors, so these exercise every kind of
part (full tiles, M strip, N strip, corner, untiled reduction).

Tolerance: inputs are uniform in [-1, 1] and the reference is computed in
float64; the vectorized code accumulates in float32 in a different order
(one FMA per k, in K-tile chunks), so the error grows like eps_f32·sqrt(K)
times the result scale (~sqrt(K)/3) for random signs. rtol = atol =
1e-5·sqrt(K) is about 100× that bound and still far below any indexing bug
(which gives O(1) errors).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasdc.module import new_context, parse_module
from tasdc.passes.vectorize_contractions import VectorizeContractions, contraction_sizes
from tasdc.runtime.cpu.executor import compile_for_cpu

from mlir_text import matmul_text as _matmul_text
from mlir_text import tensor_type as _t

# Compared against BLAS results: run again under the other OpenBLAS kernel (tools/dev.py).
pytestmark = pytest.mark.blas


def _check(op: str, a_shape, b_shape, c_shape, accumulate: bool = False) -> None:
    text = _matmul_text(op, a_shape, b_shape, c_shape, accumulate)
    module = parse_module(text, new_context())
    # The pass must take this op (otherwise the test would only test the loop path).
    probe = parse_module(text, module.context)
    VectorizeContractions().run(probe)
    assert op not in str(probe), f"{op} was not vectorized:\n{probe}"
    assert "vector.fma" in str(probe)

    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, a_shape).astype(np.float32)
    b = rng.uniform(-1, 1, b_shape).astype(np.float32)
    args = [a, b]
    expected = a.astype(np.float64) @ b.astype(np.float64)
    if accumulate:
        c = rng.uniform(-1, 1, c_shape).astype(np.float32)
        args.append(c)
        expected = expected + 2 * c.astype(np.float64)
    # Without the library entries (tasd-cpu-dense-to-library-calls would take these ops first).
    got = compile_for_cpu(module, lowering="tasd-cpu-to-llvm{library=false}")(*args)
    k = a_shape[-1]
    tol = 1e-5 * math.sqrt(k)
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "m,k,n",
    [
        (7, 13, 5),  # smaller than the register tile in M and N
        (64, 100, 48),  # tiles divide M and N, K odd-ish
        (16, 64, 256),  # the transformer's feed-forward shape
        (33, 17, 35),  # M and N strips and a corner
        (1, 1, 1),
        (130, 1000, 300),  # cache tiles: M/N not multiples of 128/256, K tiled by a divisor (500)
        (9, 1031, 18),  # prime K above the cache tile: reduction left untiled
    ],
)
@pytest.mark.parametrize("accumulate", [False, True])
def test_matmul_matches_numpy(m: int, k: int, n: int, accumulate: bool) -> None:
    _check("linalg.matmul", (m, k), (k, n), (m, n), accumulate)


@pytest.mark.parametrize(
    "b,m,k,n",
    [
        (3, 5, 7, 9),
        (64, 8, 16, 8),  # the transformer's attention shapes
        (64, 8, 8, 16),
        (2, 21, 3, 37),
    ],
)
@pytest.mark.parametrize("accumulate", [False, True])
def test_batch_matmul_matches_numpy(b: int, m: int, k: int, n: int, accumulate: bool) -> None:
    _check("linalg.batch_matmul", (b, m, k), (b, k, n), (b, m, n), accumulate)


def test_unsupported_forms_are_left_alone() -> None:
    text = """
#a = affine_map<(d0, d1, d2) -> (d2, d0)>
#b = affine_map<(d0, d1, d2) -> (d2, d1)>
#c = affine_map<(d0, d1, d2) -> (d0, d1)>
func.func @main(%a: tensor<13x7xf32>, %b: tensor<13x5xf32>, %d: tensor<?x4xf32>, %e: tensor<4x3xf32>,
                %x: tensor<1x1x10x10xf32>, %w: tensor<2x1x3x3xf32>, %f: tensor<4x4xf64>)
    -> (tensor<7x5xf32>, tensor<?x3xf32>, tensor<1x2x8x8xf32>, tensor<4x4xf64>) {
  %z = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : index
  %e0 = tensor.empty() : tensor<7x5xf32>
  %i0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<7x5xf32>) -> tensor<7x5xf32>
  %t = linalg.matmul indexing_maps = [#a, #b, #c] ins(%a, %b : tensor<13x7xf32>, tensor<13x5xf32>) outs(%i0 : tensor<7x5xf32>) -> tensor<7x5xf32>
  %n = tensor.dim %d, %c0 : tensor<?x4xf32>
  %e1 = tensor.empty(%n) : tensor<?x3xf32>
  %dyn = linalg.matmul ins(%d, %e : tensor<?x4xf32>, tensor<4x3xf32>) outs(%e1 : tensor<?x3xf32>) -> tensor<?x3xf32>
  %e2 = tensor.empty() : tensor<1x2x8x8xf32>
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %w : tensor<1x1x10x10xf32>, tensor<2x1x3x3xf32>) outs(%e2 : tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32>
  %f64 = linalg.matmul ins(%f, %f : tensor<4x4xf64>, tensor<4x4xf64>) outs(%f : tensor<4x4xf64>) -> tensor<4x4xf64>
  return %t, %dyn, %conv, %f64 : tensor<7x5xf32>, tensor<?x3xf32>, tensor<1x2x8x8xf32>, tensor<4x4xf64>
}"""
    module = parse_module(text, new_context())
    before = str(module)
    assert VectorizeContractions().plan(module) == []
    VectorizeContractions().run(module)
    assert str(module) == before


def test_plan_splits_remainders() -> None:
    pieces = VectorizeContractions()._pieces((33, 35, 17))
    assert [(p.sizes, p.inner) for p in pieces] == [
        ((32, 32, 17), (4, 16, 1)),
        ((32, 3, 17), (4, 3, 1)),
        ((1, 32, 17), (1, 16, 1)),
        ((1, 3, 17), (1, 3, 1)),
    ]
    assert contraction_sizes is not None
