"""TASD-A CPU kernels against the numpy reference semantics.

Tolerances: the kernels accumulate in float32 in a different order than the
float64 reference, so an output differs by at most the standard summation
bound ``γ_K · Σ_k |x̂_k w_k|`` with ``γ_K = K·u/(1 - K·u)``, ``u = 2⁻²⁴``
(we use ``2·K·u``, covering the float32 rounding of the result too). The
kept set itself involves no arithmetic, so the decomposed activation is
compared bit for bit, and two runs of one kernel are compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from tasdc.decompose import NonFiniteWeightError
from tasdc.reference import conv2d_nchw, decompose_activation
from tasdc.runtime.cpu.act_kernels import ActKernel, act_conv2d, act_decompose, act_matmul, series_arrays

CONFIGS = ["2:4", "1:4", "2:4+1:4", "2:8+1:4", "1:2", "4:8+2:8"]
U = 2.0 ** -24


def _tied(rng: np.random.Generator, shape: tuple[int, ...], zeros: float = 0.4) -> np.ndarray:
    """Small integers (many magnitude ties, both signs) with a share of zeros."""
    x = rng.integers(-3, 4, size=shape).astype(np.float32)
    x[rng.random(shape) < zeros] = 0.0
    return x


def _assert_within_bound(got: np.ndarray, ref: np.ndarray, magnitude: np.ndarray, k: int) -> None:
    bound = 2 * k * U * magnitude + 1e-30
    excess = np.abs(got.astype(np.float64) - ref) - bound
    assert excess.max() <= 0, f"max error above the summation bound by {excess.max():.3g}"


@pytest.mark.parametrize("config", CONFIGS)
def test_extraction_is_the_reference_bit_for_bit(config: str) -> None:
    rng = np.random.default_rng(0)
    for shape, axis in (((7, 13), 1), ((6, 5, 16), 1), ((2, 9, 3, 4), 1)):
        x = _tied(rng, shape)
        ns, ms = series_arrays(config)
        got = act_decompose(x, ns, ms, axis, np.empty_like(x))
        np.testing.assert_array_equal(got, decompose_activation(x, config, axis))


@pytest.mark.parametrize("config", CONFIGS)
def test_matmul_matches_reference(config: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 37)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0
    w = rng.standard_normal((37, 11)).astype(np.float32)
    approx = decompose_activation(x, config, 1).astype(np.float64)
    ref = approx @ w.astype(np.float64)
    got = act_matmul(x, w, *series_arrays(config))
    _assert_within_bound(got, ref, np.abs(approx) @ np.abs(w.astype(np.float64)), 37)


def test_lossless_equals_keep_everything_exactly() -> None:
    """Every 4-block holds <= 2 non-zeros: 2:4 keeps them all, so it is the
    same computation as 4:4 (keep everything) in the same kernel."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    blocks = x.reshape(16, 16, 4)
    for row in blocks:
        for block in row:
            block[rng.permutation(4)[: rng.integers(2, 5)]] = 0.0
    assert (np.count_nonzero(blocks, axis=2) <= 2).all()
    w = rng.standard_normal((64, 24)).astype(np.float32)
    lossless = act_matmul(x, w, *series_arrays("2:4"))
    everything = act_matmul(x, w, *series_arrays("4:4"))
    np.testing.assert_array_equal(lossless, everything)
    ref = x.astype(np.float64) @ w.astype(np.float64)
    _assert_within_bound(lossless, ref, np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)), 64)


@pytest.mark.parametrize("strides,dilations", [((1, 1), (1, 1)), ((2, 1), (1, 2))])
@pytest.mark.parametrize("config", ["2:4", "1:4+1:4", "2:8+1:4"])
def test_conv2d_matches_reference(config: str, strides: tuple[int, int], dilations: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((2, 12, 9, 8)), 0).astype(np.float32)  # post-ReLU
    w = rng.standard_normal((5, 12, 3, 2)).astype(np.float32)
    approx = decompose_activation(x, config, 1).astype(np.float64)
    ref = conv2d_nchw(approx, w.astype(np.float64), strides, dilations)
    magnitude = conv2d_nchw(np.abs(approx), np.abs(w.astype(np.float64)), strides, dilations)
    oh, ow = ref.shape[2:]
    out = np.empty((2, 5, oh, ow), dtype=np.float32)
    wp = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))
    got = act_conv2d(x, wp, *series_arrays(config), strides, dilations, out)
    _assert_within_bound(got, ref, magnitude, 12 * 3 * 2)


def test_kernel_orientations() -> None:
    """The activation as rhs (Y = W·X) and batched, through ActKernel.run."""
    rng = np.random.default_rng(4)
    x = _tied(rng, (3, 16, 5))  # [B, K, N], rhs operand
    w = rng.standard_normal((3, 4, 16)).astype(np.float32)  # [B, M, K]
    info = {"kind": "act_batch_matmul", "act_operand": 1, "config": "2:4", "axis": 1,
            "dense_shape": [3, 16, 5], "result_shape": [3, 4, 5]}
    y = np.empty((3, 4, 5), dtype=np.float32)
    ActKernel("k", info, w).run(x, y)
    approx = decompose_activation(x, "2:4", 1).astype(np.float64)
    ref = w.astype(np.float64) @ approx
    _assert_within_bound(y, ref, np.abs(w.astype(np.float64)) @ np.abs(approx), 16)


def test_nan_is_kept_and_propagates_but_the_reference_refuses() -> None:
    x = np.array([[np.nan, 1.0, 2.0, 3.0]], dtype=np.float32)
    w = np.ones((4, 2), dtype=np.float32)
    assert np.isnan(act_matmul(x, w, *series_arrays("1:4"))).all()
    with pytest.raises(NonFiniteWeightError):
        decompose_activation(x, "1:4", 1)


def test_shape_mismatch_is_an_error() -> None:
    info = {"kind": "act_matmul", "act_operand": 0, "config": "2:4", "axis": 1, "dense_shape": [2, 8], "result_shape": [2, 3]}
    kernel = ActKernel("k", info, np.ones((8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="compiled for"):
        kernel.run(np.ones((2, 4), dtype=np.float32), np.empty((2, 3), dtype=np.float32))
