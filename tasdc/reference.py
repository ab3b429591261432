"""Numpy reference semantics of the TASD ops: small, slow and obviously correct.

The oracle for tests of the decomposition and of every runtime:

* ``tasd.sparse_weight`` scatters ``values`` to ``block * m + index`` along
  ``axis`` and drops the ``padding`` tail;
* ``tasd.matmul`` / ``tasd.batch_matmul`` are ``np.matmul`` (float64
  accumulation optional), ``tasd.conv2d`` an explicit im2col;
* ``tasd.series`` is ``contract(dense, Σ term weights)``: the terms' supports
  are disjoint (zero fillers add exact zeros), so the weight sum is exact and
  a lossless series reproduces the dense layer bit for bit when both use the
  same contraction routine. :func:`evaluate_series_termwise` sums the term
  contractions instead, as hardware does;
* ``tasd.decompose_activation`` (TASD-A) is :func:`decompose_activation`:
  :func:`tasdc.decompose.decompose` of the live value (the weights' greedy
  and tie rule, one mechanism), summed back: ``x - residual``, exact.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch_mlir import ir

from tasdc.dialects.tasd import sparse_operand_of
from tasdc.diagnostics import resolve_location
from tasdc.elements import constant_elements
from tasdc.errors import InputError


def scatter_term(values: np.ndarray, indices: np.ndarray, n: int, m: int, axis: int, padding: int) -> np.ndarray:
    """The dense tensor of one compressed N:M term."""
    values = np.moveaxis(values, axis, -1)
    indices = np.moveaxis(indices, axis, -1).astype(np.int64)
    slots = values.shape[-1]
    blocks = slots // n
    dense = np.zeros(values.shape[:-1] + (blocks * m,), dtype=values.dtype)
    positions = (np.arange(slots) // n) * m + indices
    np.put_along_axis(dense, positions, values, axis=-1)
    if padding:
        dense = dense[..., : blocks * m - padding]
    return np.moveaxis(dense, -1, axis)


def decompose_activation(x: np.ndarray, config: str, axis: int) -> np.ndarray:
    """The value of ``tasd.decompose_activation``: the sum of the greedy N:M
    terms of ``x`` along ``axis`` (exact; non-finite inputs raise
    :class:`~tasdc.decompose.NonFiniteWeightError`)."""
    from tasdc.decompose import decompose

    return decompose(np.asarray(x), config, axis).approximation


def evaluate_decompose_activation(op: ir.OpView, x: np.ndarray) -> np.ndarray:
    """``tasd.decompose_activation`` op ``op`` applied to the value ``x``."""
    config = ir.StringAttr(op.attributes["config"]).value
    axis = int(ir.IntegerAttr(op.attributes["axis"]).value)
    return decompose_activation(x, config, axis)


def sparse_weight(op: ir.OpView) -> np.ndarray:
    """Dense value of a ``tasd.sparse_weight`` whose operands are constants."""
    values = constant_elements(op.operands[0])
    indices = constant_elements(op.operands[1])
    if values is None or indices is None:
        _, line, col = resolve_location(op.location)
        where = f" at line {line}:{col}" if line else ""
        raise InputError(f"'{op.name}'{where}: values and indices must be constants to evaluate the series at compile time")
    attrs = {k: int(ir.IntegerAttr(op.attributes[k]).value) for k in ("n", "m", "axis", "padding")}
    return scatter_term(values, indices, **attrs)


def conv2d_nchw(x: np.ndarray, filt: np.ndarray, strides: Sequence[int], dilations: Sequence[int]) -> np.ndarray:
    """Unpadded NCHW convolution with an FCHW filter via im2col and one matmul."""
    n, c, h, w = x.shape
    f, _, kh, kw = filt.shape
    sh, sw = strides
    dh, dw = dilations
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
    cols = cols.reshape(n, c * kh * kw, oh * ow)
    out = np.matmul(filt.reshape(f, -1), cols)
    return out.reshape(n, f, oh, ow)


def contract(op: ir.OpView, dense: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Apply contraction ``op`` (a TASD contraction) to ``dense`` and a dense ``weight``."""
    which, _ = sparse_operand_of(op)
    if op.name == "tasd.conv2d":
        kh, kw = list(op.attributes["kernel_size"])
        filt = weight.reshape(weight.shape[0], -1, kh, kw)
        return conv2d_nchw(dense, filt, list(op.attributes["strides"]), list(op.attributes["dilations"]))
    return np.matmul(dense, weight) if which == 1 else np.matmul(weight, dense)


def _term_ops(series: ir.OpView) -> list[ir.OpView]:
    return [term.owner for term in series.operands]


def series_weight(series: ir.OpView) -> np.ndarray:
    """The exact sum of a series' term weights (the approximated dense weight)."""
    total = None
    for term in _term_ops(series):
        _, weight_op = sparse_operand_of(term)
        weight = sparse_weight(weight_op)
        total = weight if total is None else total + weight
    assert total is not None
    return total


def evaluate_series(series: ir.OpView, dense: np.ndarray) -> np.ndarray:
    """``tasd.series`` on the dense operand value ``dense`` (weight-sum form)."""
    return contract(_term_ops(series)[0], dense, series_weight(series))


def evaluate_series_termwise(series: ir.OpView, dense: np.ndarray) -> np.ndarray:
    """``tasd.series`` as the sum of its term contractions (hardware order)."""
    out = None
    for term in _term_ops(series):
        _, weight_op = sparse_operand_of(term)
        part = contract(term, dense, sparse_weight(weight_op))
        out = part if out is None else out + part
    assert out is not None
    return out
