"""Find the contractions whose weight is a compile-time constant.

The TASD passes share this analysis. A *candidate* is a contraction with one
constant operand (the weight) and one run-time operand:

* ``linalg.matmul`` with a constant operand, or with ``linalg.transpose`` of a
  constant (torch-mlir's form of ``nn.Linear``: ``x · Wᵀ``);
* ``linalg.batch_matmul`` likewise, rank 3;
* ``linalg.conv_2d_nchw_fchw`` with a constant filter, reduced over C·KH·KW.

Everything else that contracts (two run-time operands such as attention's
QKᵀ, ``linalg.generic`` contractions, other element types) is listed as
*skipped* with the reason, never dropped silently.

Every candidate is described as the GEMM ``C[M, N] = A[M, K] · B[K, N]`` of its
weight (batch and conv folded in), which is what the cost model consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from torch_mlir import ir

from tasdc.diagnostics import resolve_location
from tasdc.elements import as_elements_attr, read_elements
from tasdc.errors import InputError

Kind = Literal["matmul", "batch_matmul", "conv2d"]
CONTRACTION_NAMES = {
    "linalg.matmul": "matmul",
    "linalg.batch_matmul": "batch_matmul",
    "linalg.conv_2d_nchw_fchw": "conv2d",
}
OTHER_CONTRACTIONS = (
    "linalg.matvec",
    "linalg.vecmat",
    "linalg.dot",
    "linalg.batch_matvec",
    "linalg.conv_2d_nhwc_hwcf",
    "linalg.conv_2d_nchw_fchw_q",
    "linalg.depthwise_conv_2d_nchw_chw",
    "linalg.conv_2d_ngchw_gfchw",
    "linalg.conv_1d_ncw_fcw",
    "linalg.conv_3d_ncdhw_fcdhw",
    "linalg.contract",
)


_DEFAULT_MAPS = {
    "matmul": "[affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, "
    "affine_map<(d0, d1, d2) -> (d0, d1)>]",
    "batch_matmul": "[affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>, affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>, "
    "affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>]",
}


@dataclass
class Candidate:
    """A contraction with a constant weight, ready to be decomposed.

    ``weight_value`` is the constant (or the constant under a transpose);
    :attr:`weight` is the weight *as the contraction sees it*, reshaped so that
    its reduction axis is ``axis`` (conv filters become ``[F, C*KH*KW]``).
    """

    op: ir.OpView
    kind: Kind
    layer: str
    sparse_operand: int  # which operand of the op is the weight
    axis: int  # reduction axis of `weight`
    constant: ir.OpView  # the arith.constant holding the data
    transposed: ir.OpView | None  # the linalg.transpose between constant and op, if any
    gemm: tuple[int, int, int, int]  # (batch, M, K, N) with the weight as A[M, K]

    @cached_property
    def weight(self) -> np.ndarray:
        data = read_elements(self.constant.attributes["value"])
        if self.transposed is not None:
            perm = list(self.transposed.attributes["permutation"])
            data = np.ascontiguousarray(np.transpose(data, perm))
        if self.kind == "conv2d":
            data = data.reshape(data.shape[0], -1)
        if not np.isfinite(data).all():
            _, line, col = resolve_location(self.op.location)
            where = f" (line {line}:{col})" if line else ""
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise InputError(f"layer {self.layer} ({self.op.name}){where}: weight contains {bad} NaN/Inf values")
        return data

    @property
    def size(self) -> int:
        batch, m, k, n = self.gemm
        return batch * m * k

    @property
    def macs(self) -> int:
        batch, m, k, n = self.gemm
        return batch * m * k * n


@dataclass
class Skipped:
    """A contraction left alone, and why."""

    op: ir.OpView
    layer: str
    reason: str


@dataclass
class ContractionScan:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _constant_source(value: ir.Value) -> tuple[ir.OpView | None, ir.OpView | None]:
    """(arith.constant, linalg.transpose or None) feeding ``value``, if constant."""
    owner = value.owner
    if not isinstance(owner, ir.OpView):
        return None, None
    transpose = None
    if owner.name == "linalg.transpose":
        transpose = owner
        source = owner.operands[0].owner
        if not isinstance(source, ir.OpView):
            return None, None
        owner = source
    if owner.name != "arith.constant":
        return None, None
    attr = as_elements_attr(owner.attributes["value"])
    if attr is None:
        return None, None
    if isinstance(attr, ir.DenseElementsAttr) and attr.is_splat:
        return None, None
    return owner, transpose


def _shape(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def _is_f32(value: ir.Value) -> bool:
    return isinstance(value.type, ir.RankedTensorType) and isinstance(
        ir.RankedTensorType(value.type).element_type, ir.F32Type
    )


def _classify(op: ir.OpView, kind: Kind, layer: str) -> Candidate | Skipped:
    lhs, rhs = op.operands[0], op.operands[1]
    if not (_is_f32(lhs) and _is_f32(rhs) and _is_f32(op.results[0])):
        return Skipped(op, layer, "only f32 contractions are decomposed")
    if kind != "conv2d" and str(op.attributes["indexing_maps"]) != _DEFAULT_MAPS[kind]:
        return Skipped(op, layer, "a matmul with explicit indexing_maps (transposed/broadcast form) is not supported")
    lhs_const, lhs_t = _constant_source(lhs)
    rhs_const, rhs_t = _constant_source(rhs)
    if kind == "conv2d":
        if rhs_const is None:
            return Skipped(op, layer, "the filter is a run-time value")
        if rhs_t is not None:
            return Skipped(op, layer, "a transposed filter is not supported")
        n, c, h, w = _shape(lhs)
        f, _, kh, kw = _shape(rhs)
        _, _, oh, ow = _shape(op.results[0])
        return Candidate(op, kind, layer, 1, 1, rhs_const, None, (1, f, c * kh * kw, n * oh * ow))
    if lhs_const is None and rhs_const is None:
        return Skipped(op, layer, "both operands are run-time values (activation x activation)")
    batch = 1
    if kind == "batch_matmul":
        batch = _shape(lhs)[0]
    if rhs_const is not None:  # weight is B[K, N]; as the GEMM's A it is Bᵀ
        if rhs_t is not None and list(rhs_t.attributes["permutation"]) not in ([1, 0], [0, 2, 1]):
            return Skipped(op, layer, "the weight's transpose is not a plain matrix transpose")
        k, n = _shape(rhs)[-2:]
        m = _shape(lhs)[-2]
        axis = 1 if kind == "batch_matmul" else 0
        return Candidate(op, kind, layer, 1, axis, rhs_const, rhs_t, (batch, n, k, m))
    assert lhs_const is not None
    if lhs_t is not None and list(lhs_t.attributes["permutation"]) not in ([1, 0], [0, 2, 1]):
        return Skipped(op, layer, "the weight's transpose is not a plain matrix transpose")
    m, k = _shape(lhs)[-2:]
    n = _shape(rhs)[-1]
    axis = 2 if kind == "batch_matmul" else 1
    return Candidate(op, kind, layer, 0, axis, lhs_const, lhs_t, (batch, m, k, n))


def scan(module: ir.Module) -> ContractionScan:
    """Candidates and skipped contractions of ``module``, in program order.

    Layers are named ``<kind>_<i>`` by order of appearance; a layer already
    carrying a ``tasd.layer`` attribute keeps that name.
    """
    result = ContractionScan()
    counter = [0]

    def visit(operation: ir.Operation) -> ir.WalkResult:
        op = operation.opview
        name = op.name
        if name in CONTRACTION_NAMES or name in OTHER_CONTRACTIONS or _is_generic_contraction(op):
            kind = CONTRACTION_NAMES.get(name, name.split(".")[-1])
            layer = (
                ir.StringAttr(op.attributes["tasd.layer"]).value
                if "tasd.layer" in op.attributes
                else f"{kind}_{counter[0]}"
            )
            counter[0] += 1
            if name in CONTRACTION_NAMES:
                found = _classify(op, CONTRACTION_NAMES[name], layer)  # type: ignore[arg-type]
            elif name == "linalg.generic":
                found = Skipped(op, layer, "linalg.generic contractions are not decomposed (only named linalg ops)")
            else:
                found = Skipped(op, layer, f"'{name}' is not supported by TASD decomposition")
            if isinstance(found, Candidate):
                result.candidates.append(found)
            else:
                result.skipped.append(found)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return result


# Contractions TASD does not decompose but the accelerator model costs as dense GEMMs.
GROUPED_CONVS = {
    "linalg.depthwise_conv_2d_nchw_chw": "depthwise_conv2d",
    "linalg.conv_2d_ngchw_gfchw": "grouped_conv2d",
}


def grouped_conv_gemm(op: ir.OpView) -> tuple[int, int, int, int] | None:
    """``[batch, M, K, N]`` of a depthwise / grouped convolution as one GEMM
    per group (filter rows x (channels per group * KH * KW) x output pixels),
    or None (not one of those, or dynamic shapes)."""
    if op.name not in GROUPED_CONVS:
        return None
    values = [*op.operands, *op.results]
    if not all(isinstance(v.type, ir.RankedTensorType) and ir.RankedTensorType(v.type).has_static_shape
               for v in values):
        return None
    if op.name == "linalg.depthwise_conv_2d_nchw_chw":
        n, c, _, _ = _shape(op.operands[0])
        _, kh, kw = _shape(op.operands[1])
        _, _, oh, ow = _shape(op.results[0])
        return (c, 1, kh * kw, n * oh * ow)
    n, g, cg, _, _ = _shape(op.operands[0])
    _, fg, _, kh, kw = _shape(op.operands[1])
    _, _, _, oh, ow = _shape(op.results[0])
    return (g, fg, cg * kh * kw, n * oh * ow)


def b_source_elems(op: ir.OpView, gemm: tuple[int, int, int, int]) -> int:
    """Elements of the GEMM's B operand as stored before im2col, per batch
    element: a convolution's input ``N*C*H*W`` (``linalg.conv_2d_nchw_fchw``,
    ``tasd.conv2d``, depthwise), else ``K*N``. The cost model reads a
    convolution's input once from DRAM and forms the im2col on chip."""
    _, _, k, n = gemm
    if "conv" in op.name:
        shape = _shape(op.operands[0])
        elems = 1
        for d in shape:
            elems *= d
        if op.name in GROUPED_CONVS:  # one GEMM per group: per group its share of the input
            elems //= max(shape[1], 1)
        return int(min(elems, k * n)) if elems > 0 else k * n
    return k * n


def _is_generic_contraction(op: ir.OpView) -> bool:
    if op.name != "linalg.generic" or "iterator_types" not in op.attributes:
        return False
    iterators = [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    if not any("reduction" in it for it in iterators):
        return False
    body = op.regions[0].blocks[0]
    return any(inner.name == "arith.mulf" for inner in body.operations) and len(op.operands) >= 3
