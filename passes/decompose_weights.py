"""``tasd-decompose-weights``: contractions with constant weights become TASD series."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, linalg, tensor

from tasdc.contractions import Candidate, scan
from tasdc.decompose import Decomposition, SeriesConfig, decompose, l1_dropped, parse_config, relative_error
from tasdc.diagnostics import remark
from tasdc.dialects.tasd import BatchMatmulOp, Conv2dOp, MatmulOp, SeriesOp, SparseWeightOp
from tasdc.elements import make_elements
from tasdc.module import fill_value
from tasdc.passes.base import ModulePass
from tasdc.report import annotate, read_stats
from tasdc.progress import progress

#: Per-layer override written by a selection pass (e.g. ``tasd-select``).
CONFIG_ATTR = "tasd.config"


def _i64(value: int) -> ir.IntegerAttr:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)


def _dense_i64_array(attr: ir.Attribute | None, default: list[int]) -> list[int]:
    if attr is None:
        return default
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    return [int(v) for v in np.array(ir.DenseIntElementsAttr(attr))]


def _is_zero_fill(value: ir.Value) -> bool:
    """``value`` is a ``linalg.fill`` of 0.0 (either sign)."""
    return fill_value(value) == 0.0


def _erase_if_dead(op: ir.OpView | None) -> None:
    """Erase ``op`` and, recursively, producers it was the last user of."""
    if op is None or any(len(list(r.uses)) for r in op.results):
        return
    producers: list[ir.OpView] = []
    for v in op.operands:
        owner = v.owner
        if isinstance(owner, ir.OpView) and not any(owner == p for p in producers):
            producers.append(owner)
    op.operation.erase()
    for producer in producers:
        if producer.name in _ERASABLE:
            _erase_if_dead(producer)


#: Producers erased with a rewritten contraction once nothing else uses them (the weight and its view chain).
_ERASABLE = ("arith.constant", "linalg.transpose", "linalg.fill", "tensor.empty", "linalg.broadcast",
             "linalg.generic", "tensor.collapse_shape", "tensor.expand_shape")


def _reassociation(groups: list[list[int]]) -> ir.ArrayAttr:
    i64 = ir.IntegerType.get_signless(64)
    return ir.ArrayAttr.get([ir.ArrayAttr.get([ir.IntegerAttr.get(i64, d) for d in g]) for g in groups])


def _transpose_batch(value: ir.Value) -> ir.Value:
    """``[A, B, C]`` -> ``[B, A, C]`` (``linalg.transpose``) at the current insertion point."""
    a, b, c = ir.RankedTensorType(value.type).shape
    init = tensor.EmptyOp([b, a, c], ir.F32Type.get()).result
    op = linalg.transpose(value, outs=[init], permutation=[1, 0, 2])
    return op if isinstance(op, ir.Value) else op.results[0]


def folded_activation(candidate: Candidate, value: ir.Value) -> ir.Value:
    """The activation of a ``fold_batch`` candidate as its ``tasd.matmul`` terms see it, built at the
    current insertion point: ``[B, M, K]`` -> ``[B*M, K]`` rows (weight on the right), ``[B, K, N]`` ->
    ``[K, B*N]`` columns (weight on the left: transposed to ``[K, B, N]`` first)."""
    b, d1, d2 = ir.RankedTensorType(value.type).shape
    if candidate.sparse_operand == 1:
        return tensor.CollapseShapeOp(ir.RankedTensorType.get([b * d1, d2], ir.F32Type.get()), value,
                                      _reassociation([[0, 1], [2]])).result
    return tensor.CollapseShapeOp(ir.RankedTensorType.get([d1, b * d2], ir.F32Type.get()), _transpose_batch(value),
                                  _reassociation([[0], [1, 2]])).result


def _unfolded_result(candidate: Candidate, value: ir.Value, result_type: ir.Type) -> ir.Value:
    """The inverse of :func:`folded_activation` on the series' result, back to ``result_type`` ``[B, M, N]``."""
    b, m, n = ir.RankedTensorType(result_type).shape
    if candidate.sparse_operand == 1:
        return tensor.ExpandShapeOp(result_type, value, _reassociation([[0, 1], [2]]), [], [b, m, n]).result
    expanded = tensor.ExpandShapeOp(ir.RankedTensorType.get([m, b, n], ir.F32Type.get()), value,
                                    _reassociation([[0], [1, 2]]), [], [m, b, n]).result
    return _transpose_batch(expanded)


def term_attributes(candidate: Candidate, decomposition: Decomposition) -> list[tuple[ir.Attribute, ir.Attribute]]:
    """(values, indices) ``dense_resource`` attributes of every term."""
    out = []
    for i, term in enumerate(decomposition.terms):
        stem = f"{candidate.layer}_t{i}_{term.pattern.n}of{term.pattern.m}"
        out.append((make_elements(term.values, f"{stem}_values"), make_elements(term.indices, f"{stem}_indices")))
    return out


def build_series(candidate: Candidate, decomposition: Decomposition,
                 attributes: list[tuple[ir.Attribute, ir.Attribute]] | None = None) -> ir.Value:
    """Emit the TASD ops for ``candidate`` before it; returns the series' result.

    ``attributes`` (from :func:`term_attributes`) lets several contractions of
    one weight share the same term constants. A ``fold_batch`` candidate (a
    ``batch_matmul`` of ``[B, M, K]`` with a broadcast ``[K, N]`` weight) is
    emitted as ``collapse_shape`` to ``[B*M, K]``, the series of
    ``tasd.matmul`` terms, and ``expand_shape`` back to ``[B, M, N]``; with
    the broadcast ``[M, K]`` weight on the left, the activation ``[B, K, N]``
    is transposed to ``[K, B, N]`` and collapsed to ``[K, B*N]``, and the
    ``[M, B*N]`` result expanded and transposed back to ``[B, M, N]``.
    """
    op = candidate.op
    loc = op.location
    result_type = op.results[0].type
    dense_operand = op.operands[1 - candidate.sparse_operand]
    weight_type = ir.RankedTensorType.get(list(candidate.weight.shape), ir.F32Type.get())
    if attributes is None:
        attributes = term_attributes(candidate, decomposition)
    terms: list[ir.Value] = []
    with ir.InsertionPoint(op), loc:
        series_type = result_type
        if candidate.fold_batch:
            b, m, n = ir.RankedTensorType(result_type).shape
            dense_operand = folded_activation(candidate, dense_operand)
            rows, cols = (b * m, n) if candidate.sparse_operand == 1 else (m, b * n)
            series_type = ir.RankedTensorType.get([rows, cols], ir.F32Type.get())
        for term, (values_attr, indices_attr) in zip(decomposition.terms, attributes):
            values = arith.ConstantOp(
                ir.RankedTensorType.get(list(term.values.shape), ir.F32Type.get()), values_attr
            ).result
            indices = arith.ConstantOp(
                ir.RankedTensorType.get(list(term.indices.shape), ir.IntegerType.get_signless(8)), indices_attr
            ).result
            weight = SparseWeightOp(
                values,
                indices,
                _i64(term.pattern.n),
                _i64(term.pattern.m),
                _i64(term.axis),
                _i64(term.padding),
                weight_type,
            ).result
            operands = (dense_operand, weight) if candidate.sparse_operand == 1 else (weight, dense_operand)
            if candidate.kind == "matmul":
                contraction = MatmulOp(*operands, _i64(candidate.sparse_operand), series_type)
            elif candidate.kind == "batch_matmul":
                contraction = BatchMatmulOp(*operands, _i64(candidate.sparse_operand), result_type)
            else:
                _, _, kh, kw = ir.RankedTensorType(op.operands[1].type).shape
                contraction = Conv2dOp(
                    *operands,
                    _i64(1),
                    ir.DenseI64ArrayAttr.get([kh, kw]),
                    ir.DenseI64ArrayAttr.get(_dense_i64_array(op.attributes["strides"] if "strides" in op.attributes else None, [1, 1])),
                    ir.DenseI64ArrayAttr.get(_dense_i64_array(op.attributes["dilations"] if "dilations" in op.attributes else None, [1, 1])),
                    result_type,
                )
            terms.append(contraction.result)
        series = SeriesOp(terms, ir.StringAttr.get(str(decomposition.config)), series_type)
        # The builder adds a segment attribute that a single variadic operand
        # list does not need; drop it so built and parsed IR look alike.
        del series.attributes["operandSegmentSizes"]
        value = series.result
        if candidate.fold_batch:
            value = _unfolded_result(candidate, value, result_type)
        init = op.operands[len(op.operands) - 1]
        if not _is_zero_fill(init):
            value = arith.AddFOp(value, init).result
    return value


@dataclasses.dataclass(frozen=True)
class DecomposeWeights(ModulePass):
    """Rewrite contractions with constant weights as TASD series of N:M terms.

    Matches ``linalg.matmul`` and ``linalg.batch_matmul`` with a constant
    operand and ``linalg.conv_2d_nchw_fchw`` with a constant filter, the
    constant possibly seen through transposes, broadcasts, reshapes and
    ``arith.extf`` (see :mod:`tasdc.contractions`). A ``batch_matmul`` with a
    weight broadcast over the batch becomes a ``tasd.matmul`` series over the
    folded batch (one set of terms for every batch entry). A weight seen the
    same way by several contractions (an LSTM's hidden weight at every time
    step) is decomposed once and its term constants are shared.
    The weight is decomposed greedily along its reduction axis with
    ``config`` (a layer's own ``tasd.config`` attribute, set by a selection
    pass, takes precedence) and the op becomes ``tasd.series`` of
    ``tasd.matmul``/``batch_matmul``/``conv2d`` terms over compressed
    constants; a non-zero ``outs`` init is added back with ``arith.addf``.
    Weights with fewer than ``min-size`` elements, run-time x run-time
    contractions and unsupported forms are left alone with a remark. The
    series op records the layer's error statistics in ``tasd.stats``.
    """

    name: ClassVar[str] = "tasd-decompose-weights"
    config: str = "2:4"
    min_size: int = 0

    def __post_init__(self) -> None:
        parse_config(self.config)
        if self.min_size < 0:
            raise ValueError(f"min-size must be >= 0, got {self.min_size}")

    def _config_for(self, candidate: Candidate) -> SeriesConfig:
        if CONFIG_ATTR in candidate.op.attributes:
            return parse_config(ir.StringAttr(candidate.op.attributes[CONFIG_ATTR]).value)
        return parse_config(self.config)

    def run(self, module: ir.Module) -> None:
        shared: dict[tuple, tuple[Decomposition, list[tuple[ir.Attribute, ir.Attribute]]]] = {}
        found = scan(module)
        for skipped in found.skipped:
            remark(skipped.op.location, f"{skipped.layer} ({skipped.op.name}) left dense: {skipped.reason}")
        for candidate in progress(found.candidates, desc=self.name, unit="layer"):
            config = self._config_for(candidate)
            if config.is_dense:
                continue
            if candidate.size < self.min_size:
                remark(
                    candidate.op.location,
                    f"{candidate.layer} left dense: weight has {candidate.size} elements < min-size {self.min_size}",
                )
                continue
            self._rewrite(candidate, config, shared)

    def _rewrite(self, candidate: Candidate, config: SeriesConfig, shared: dict) -> None:
        weight = candidate.weight
        key = (candidate.view_key, str(config))
        if key not in shared:
            decomposition = decompose(weight, config, candidate.axis)
            shared[key] = (decomposition, term_attributes(candidate, decomposition))
        decomposition, attributes = shared[key]
        value = build_series(candidate, decomposition, attributes)
        series = value.owner
        while series.name != "tasd.series":  # through the init add and the batch unfold
            series = series.operands[0].owner
        stats = read_stats(candidate.op)
        stats.update(
            kind=candidate.kind,
            gemm=list(candidate.gemm),
            density=float(np.count_nonzero(weight)) / weight.size,
            config=str(config),
            kept_density=float(config.density),
            rel_error=relative_error(weight, decomposition.approximation),
            l1_dropped=l1_dropped(weight, decomposition.approximation),
            lossless=bool(decomposition.is_exact),
            weight_dtype=candidate.storage_dtype,
        )
        if candidate.fold_batch:
            stats["folded_batch"] = int(ir.RankedTensorType(candidate.op.operands[0].type).shape[0])
        annotate(series, candidate.layer, stats)
        candidate.op.results[0].replace_all_uses_with(value)
        # Erases the transpose, the weight constant and the init fill with it
        # once nothing else uses them.
        _erase_if_dead(candidate.op)
