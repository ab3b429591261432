"""End to end: a lossless series reproduces every dense layer bit for bit.

Each example model is imported, ``tasd-decompose-weights{config=2:4+2:4}``
runs (2:4+2:4 covers any 4-block, so it is lossless on any weight), and every
resulting ``tasd.series`` is evaluated with the numpy reference on a random
dense operand. The reference of the original layer uses the same contraction
routine on the original weight, so equality is exact (``np.array_equal``):
the terms' weights sum to the original weight exactly.

A lossy config (2:4) is checked against the same references with the
expected error: the output error must equal the error of the contraction with
the approximated weight (tolerance 1e-5 relative, float32 matmul rounding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch_mlir import ir

from conftest import MODELS
from tasdc.contractions import scan
from tasdc.importer import import_model
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.reference import conv2d_nchw, evaluate_series, evaluate_series_termwise, series_weight


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


@pytest.mark.parametrize("name", MODELS)
def test_lossless_series_is_bit_exact(example_dir: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    for layer, kind, which, weight, shape, op, series in _layers(example_dir / f"{name}.pt2", "2:4+2:4"):
        x = rng.standard_normal(shape).astype(np.float32)
        expected = _dense_reference(kind, which, x, weight, op)
        assert np.array_equal(series_weight(series), weight), layer
        assert np.array_equal(evaluate_series(series, x), expected), layer
        # Term by term (as hardware sums) is only equal up to float32 rounding.
        np.testing.assert_allclose(evaluate_series_termwise(series, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_lossy_series_matches_approximated_weight(example_dir: Path, name: str) -> None:
    rng = np.random.default_rng(1)
    for layer, kind, which, weight, shape, op, series in _layers(example_dir / f"{name}.pt2", "2:4"):
        x = rng.standard_normal(shape).astype(np.float32)
        approx = series_weight(series)
        # 2:4 keeps exactly half of every 4-block (dense weights, K padded).
        assert np.count_nonzero(approx) <= weight.size // 2 + weight.shape[0] * 4, layer
        got = evaluate_series(series, x)
        np.testing.assert_array_equal(got, _dense_reference(kind, which, x, approx, op))
        assert not np.array_equal(got, _dense_reference(kind, which, x, weight, op)), layer
