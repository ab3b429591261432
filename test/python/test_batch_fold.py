"""A weight broadcast over the batch of a ``batch_matmul`` runs as one series over the folded batch.

Right (``X[b] · W``, HF attention projections): the activation's rows are
folded to ``[B*M, K]``. Left (``W · X[b]``): the activation is transposed to
``[K, B, N]`` and collapsed to ``[K, B*N]``, the result expanded and
transposed back. Both are checked on the N:M kernels and on the reference
path (``tasd-expand-to-linalg``) against float64 numpy with the weight the
decomposition library approximates (lossless ``2:4+2:4``: the weight itself).

Tolerance: float32 sums of K = 16 products, in a different order than numpy:
|ŷ − y| ≤ γ_K (|W|·|X|), γ_K = K·u / (1 − K·u), u = 2^-24 (Higham §3.1),
elementwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasdc.compiler import CompileOptions, compile_model
from tasdc.decompose import decompose, parse_config

B, M, K, N = 3, 8, 16, 5
U = 2.0 ** -24


def _model(path: Path, w: np.ndarray, side: str) -> None:
    wt = f"tensor<{w.shape[0]}x{w.shape[1]}xf32>"
    values = np.array2string(w, separator=",", threshold=10**6, floatmode="unique").replace("\n", "")
    if side == "left":  # y[b] = W[M, K] · x[b][K, N]
        x_t, wb_t, y_t, operands = f"tensor<{B}x{K}x{N}xf32>", f"tensor<{B}x{M}x{K}xf32>", f"tensor<{B}x{M}x{N}xf32>", "%wb, %x"
        types = f"{wb_t}, {x_t}"
    else:  # y[b] = x[b][M, K] · W[K, N]
        x_t, wb_t, y_t, operands = f"tensor<{B}x{M}x{K}xf32>", f"tensor<{B}x{K}x{N}xf32>", f"tensor<{B}x{M}x{N}xf32>", "%x, %wb"
        types = f"{x_t}, {wb_t}"
    path.write_text(f"""func.func @main(%x: {x_t}) -> {y_t} {{
  %w = arith.constant dense<{values}> : {wt}
  %eb = tensor.empty() : {wb_t}
  %wb = linalg.broadcast ins(%w : {wt}) outs(%eb : {wb_t}) dimensions = [0]
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : {y_t}
  %init = linalg.fill ins(%zero : f32) outs(%e : {y_t}) -> {y_t}
  %y = linalg.batch_matmul ins({operands} : {types}) outs(%init : {y_t}) -> {y_t}
  return %y : {y_t}
}}
""")


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("config", ["2:4+2:4", "2:4"])
def test_broadcast_weight_folds_into_one_series(tmp_path: Path, side: str, config: str) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((M, K) if side == "left" else (K, N)).astype(np.float32)
    x = rng.standard_normal((B, K, N) if side == "left" else (B, M, K)).astype(np.float32)
    _model(tmp_path / "m.mlir", w, side)
    result = compile_model(tmp_path / "m.mlir", options=CompileOptions(config=config))
    (row,) = result.report.layers
    assert row.op == "tasd.series" and row.stats["folded_batch"] == B
    assert list(row.stats["gemm"]) == ([1, M, K, B * N] if side == "left" else [1, N, K, B * M])
    approx = decompose(w, parse_config(config), 1 if side == "left" else 0).approximation.astype(np.float64)
    if config == "2:4+2:4":
        np.testing.assert_array_equal(approx, w)
    x64 = x.astype(np.float64)

    def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("mk,bkn->bmn", a, b) if side == "left" else np.einsum("bmk,kn->bmn", b, a)

    want = product(approx, x64)
    bound = K * U / (1 - K * U) * product(np.abs(approx), np.abs(x64))
    for executable in (result.cpu(), result.cpu(expand=True)):
        got = executable(x)
        assert got.shape == (B, M, N)
        assert (np.abs(got - want) <= bound).all(), float((np.abs(got - want) / bound).max())
    assert result.cpu().kernels and not result.cpu(expand=True).kernels


def test_left_broadcast_calibrates_and_measures(tmp_path: Path) -> None:
    """TASDER's calibration sees the folded activation too: the search runs and its measured quality is the
    cosine similarity of the compiled and dense models' outputs, computed here independently."""
    from tasdc.tasder import TasderSession

    rng = np.random.default_rng(1)
    w = rng.standard_normal((M, K)).astype(np.float32)
    _model(tmp_path / "m.mlir", w, "left")
    x = rng.standard_normal((4 * B, K, N)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    session = TasderSession(tmp_path / "m.mlir", calib=tmp_path / "calib.npz", progress=False)
    result = session.compile("vegeta", "edp", 0.95)
    assert result.quality_metric == "cosine similarity"
    dense = session.compile_with([], "dense")
    got = np.concatenate([result(x[i:i + B]) for i in range(0, len(x), B)])
    ref = np.concatenate([dense(x[i:i + B]) for i in range(0, len(x), B)])
    cos = np.sum(got * ref, -1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1))
    assert result.measured["calibration"].value == pytest.approx(float(cos.mean()), rel=1e-5)
    assert result.meets_bound
