"""End to end: a lossless series reproduces every dense layer.

Each example model is imported, ``tasd-decompose-weights{config=2:4+2:4}``
runs (2:4+2:4 covers any 4-block, so it is lossless on any weight), and every
resulting ``tasd.series`` is checked with the numpy reference.

What is exact, on every machine: the terms' weights sum to the original
weight bit for bit (disjoint supports, zero fillers), and the compiled
lossless model run through the reference path (``tasd-expand-to-linalg``)
gives the compiled dense model's outputs bit for bit, because both are the
same MLIR-generated code on the same weight.

What is not: two ``np.matmul`` calls on equal weights. OpenBLAS picks its
kernel per CPU (SkylakeX with AVX-512, Haswell with AVX2) and its summation
order also depends on the operands' memory layout, so they agree only up to
float32 rounding. Those comparisons use the standard summation error bound:
a float32 dot product of length K is within ``γ_K·(|x|·|w|)`` of the exact
value (``γ_K = K·u / (1 − K·u)``, ``u = 2⁻²⁴``), so two of them differ by at
most ``2·γ_K·(|x|·|w|)``; summing T term contractions adds ``T·u`` more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch_mlir import ir

from conftest import MODELS
from tasdc.compiler import CompileOptions, compile_model
from tasdc.contractions import scan
from tasdc.importer import import_model
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.reference import conv2d_nchw, evaluate_series, evaluate_series_termwise, series_weight

# Compared against BLAS results: run again under the other OpenBLAS kernel (tools/dev.py).
pytestmark = pytest.mark.blas


def _dense_reference(kind: str, sparse_operand: int, x: np.ndarray, weight: np.ndarray, op: ir.OpView) -> np.ndarray:
    if kind == "conv2d":
        strides = [int(v) for v in np.array(ir.DenseIntElementsAttr(op.attributes["strides"]))]
        dilations = [int(v) for v in np.array(ir.DenseIntElementsAttr(op.attributes["dilations"]))]
        return conv2d_nchw(x, weight.reshape(ir.RankedTensorType(op.operands[1].type).shape), strides, dilations)
    return np.matmul(x, weight) if sparse_operand == 1 else np.matmul(weight, x)


def _series_ops(module: ir.Module) -> dict[str, ir.OpView]:
    found: dict[str, ir.OpView] = {}

    def visit(operation: ir.Operation) -> ir.WalkResult:
        op = operation.opview
        if op.name == "tasd.series":
            found[ir.StringAttr(op.attributes["tasd.layer"]).value] = op
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _layers(path: Path, config: str):
    """(layer, kind, sparse_operand, weight, dense-operand shape, original op, series op)."""
    original = import_model(path)
    candidates = scan(original.module).candidates
    assert candidates, "every example model has decomposable layers"
    decomposed = import_model(path)
    run_pipeline(decomposed.module, parse_pipeline(f"tasd-decompose-weights{{config={config}}}", decomposed.context))
    series = _series_ops(decomposed.module)
    assert set(series) == {c.layer for c in candidates}
    for c in candidates:
        dense_shape = list(ir.RankedTensorType(c.op.operands[1 - c.sparse_operand].type).shape)
        yield c.layer, c.kind, c.sparse_operand, c.weight, dense_shape, c.op, series[c.layer]


U32 = 2.0**-24  # float32 unit roundoff


def _gamma(k: int) -> float:
    return k * U32 / (1 - k * U32)


def _rounding_bound(kind: str, which: int, x: np.ndarray, weight: np.ndarray, op: ir.OpView) -> tuple[np.ndarray, int]:
    """``|x|·|w|`` per output (float64) and the reduction length K."""
    magnitude = _dense_reference(kind, which, np.abs(x).astype(np.float64), np.abs(weight).astype(np.float64), op)
    k = weight.size // weight.shape[0] if kind == "conv2d" else weight.shape[-2 if which == 1 else -1]
    return magnitude, k


@pytest.mark.parametrize("name", MODELS)
def test_lossless_series_reproduces_the_weight(example_dir: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    for layer, kind, which, weight, shape, op, series in _layers(example_dir / f"{name}.pt2", "2:4+2:4"):
        # Exact on any machine: no arithmetic but adding zeros.
        assert np.array_equal(series_weight(series), weight), layer
        x = rng.standard_normal(shape).astype(np.float32)
        expected = _dense_reference(kind, which, x, weight, op)
        magnitude, k = _rounding_bound(kind, which, x, weight, op)
        terms = len(list(series.operands))
        # Two BLAS contractions of equal weights: within 2·γ_K of each other.
        error = np.abs(evaluate_series(series, x).astype(np.float64) - expected)
        assert (error <= 2 * _gamma(k) * magnitude).all(), layer
        # Term by term (as hardware sums): T contractions plus T-1 additions.
        error = np.abs(evaluate_series_termwise(series, x).astype(np.float64) - expected)
        assert (error <= (2 * _gamma(k) + terms * U32) * magnitude).all(), layer


@pytest.mark.parametrize("name", MODELS)
def test_compiled_lossless_equals_compiled_dense(example_dir: Path, name: str) -> None:
    """One code path computes both sides: MLIR's JIT of the same dense
    contraction on the same weight (the lossless series expanded back), so
    the outputs agree bit for bit whatever the BLAS or the CPU."""
    x = np.load(example_dir / f"{name}-eval.npz")["x"][:16]  # the exported batch size
    dense = compile_model(example_dir / f"{name}.pt2", options=CompileOptions(config="dense"))
    lossless = compile_model(example_dir / f"{name}.pt2", options=CompileOptions(config="2:4+2:4"))
    np.testing.assert_array_equal(lossless.cpu(expand=True)(x), dense.cpu()(x))


@pytest.mark.parametrize("name", MODELS)
def test_lossy_series_matches_approximated_weight(example_dir: Path, name: str) -> None:
    rng = np.random.default_rng(1)
    for layer, kind, which, weight, shape, op, series in _layers(example_dir / f"{name}.pt2", "2:4"):
        x = rng.standard_normal(shape).astype(np.float32)
        approx = series_weight(series)
        # 2:4 keeps exactly half of every 4-block (dense weights, K padded).
        assert np.count_nonzero(approx) <= weight.size // 2 + weight.shape[0] * 4, layer
        got = evaluate_series(series, x)
        # One code path: the same np.matmul on the same weight array and layout.
        np.testing.assert_array_equal(got, _dense_reference(kind, which, x, approx, op))
        assert not np.array_equal(got, _dense_reference(kind, which, x, weight, op)), layer
