"""Find the contractions whose weight is a compile-time constant.

The TASD passes share this analysis. A *candidate* is a contraction with one
constant operand (the weight) and one run-time operand:

* ``linalg.matmul`` with a constant operand;
* ``linalg.batch_matmul`` likewise, rank 3;
* ``linalg.conv_2d_nchw_fchw`` with a constant filter, reduced over C·KH·KW.

"Constant" means an ``arith.constant`` seen through a *view chain* of
data-movement ops that only rearrange or widen it: ``linalg.transpose``
(torch-mlir's ``nn.Linear`` is ``x · Wᵀ``), ``linalg.broadcast``, a copy /
broadcast / ``arith.extf`` ``linalg.generic`` (one input, a projected
permutation map, a body that yields the input, possibly widened),
``tensor.collapse_shape`` / ``tensor.expand_shape``. The weight the
contraction sees is that chain replayed on the stored values (f16 / bf16
weights are widened exactly). A ``batch_matmul`` whose right operand is a
constant broadcast over the batch (HF attention projections, ``nn.LSTM`` /
``nn.GRU`` input weights, ``nn.MultiheadAttention`` in-projections) is
described as the plain GEMM of the underlying matrix over the folded batch
(``fold_batch``): one weight, one set of terms for every batch entry. A
weight broadcast on the *left* (``W[M, K] · X[b]``) folds the same way with
the activation transposed to ``[K, B*N]``.

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
#: Why a contraction kind is left dense, and what decomposing it would need.
UNSUPPORTED_REASONS = {
    "linalg.depthwise_conv_2d_nchw_chw": (
        "a depthwise convolution reduces over one channel's KH*KW window only (no C axis); TASD would need a "
        "depthwise tasd.conv2d term with N:M blocks along KH*KW, which the dialect and the CPU kernels do not have"
    ),
    "linalg.conv_2d_ngchw_gfchw": (
        "a grouped convolution is one GEMM per group; with a series config it is split into one conv2d per "
        "group first (tasd-split-grouped-convs), which this one was not (a run-time filter, more than 64 "
        "groups, or TASDER's per-layer selection, which does not split)"
    ),
}
OTHER_CONTRACTIONS = (
    "linalg.depthwise_conv_2d_nchw_chw",
    "linalg.conv_2d_ngchw_gfchw",
    "linalg.matvec",
    "linalg.vecmat",
    "linalg.dot",
    "linalg.batch_matvec",
    "linalg.conv_2d_nhwc_hwcf",
    "linalg.conv_2d_nchw_fchw_q",
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

    ``constant`` holds the stored data and ``chain`` the view ops between it
    and the contraction (constant side first); :attr:`weight` is the weight
    *as the contraction sees it* (float32), reshaped so that its reduction
    axis is ``axis`` (conv filters become ``[F, C*KH*KW]``). With
    ``fold_batch`` the op is a ``batch_matmul`` whose weight is ``chain``'s
    last op broadcasting a matrix over the batch: ``kind`` is then
    ``"matmul"`` and :attr:`weight` that matrix: on the right (``[K, N]``)
    applied to the activation's ``[B*M, K]`` rows, on the left (``[M, K]``,
    ``sparse_operand`` 0) to the activation transposed to ``[K, B*N]``.
    """

    op: ir.OpView
    kind: Kind
    layer: str
    sparse_operand: int  # which operand of the op is the weight
    axis: int  # reduction axis of `weight`
    constant: ir.OpView  # the arith.constant holding the data
    chain: tuple[ir.OpView, ...]  # view ops from the constant to the op
    gemm: tuple[int, int, int, int]  # (batch, M, K, N) with the weight as A[M, K]
    fold_batch: bool = False

    @property
    def storage_dtype(self) -> str:
        """Element type of the stored weight (``f32``, ``f16``, ``bf16``, …)."""
        return str(ir.ShapedType(self.constant.results[0].type).element_type)

    @property
    def view_key(self) -> tuple:
        """Identifies the weight as seen (same stored constant, same view): one decomposition each."""
        attr = self.constant.attributes["value"]
        return (attr, tuple((v.name, str(v.results[0].type), _view_attrs(v)) for v in self._weight_chain),
                self.kind, self.axis)

    @property
    def _weight_chain(self) -> tuple[ir.OpView, ...]:
        return self.chain[:-1] if self.fold_batch else self.chain

    @cached_property
    def weight(self) -> np.ndarray:
        data = read_elements(self.constant.attributes["value"])
        for view in self._weight_chain:
            data = apply_view(view, data)
        data = np.ascontiguousarray(data, dtype=np.float32)
        if self.kind == "conv2d":
            data = data.reshape(data.shape[0], -1)
        if not np.isfinite(data).all():
            _, line, col = resolve_location(self.op.location)
            where = f" (line {line}:{col})" if line else ""
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise InputError(f"layer {self.layer} ({self.op.name}){where}: weight contains {bad} NaN/Inf values")
        return data

    def stored_positions(self) -> np.ndarray:
        """For every element of :attr:`weight`, the flat index of the stored
        constant element it is read from (same shape as :attr:`weight`)."""
        shape = ir.ShapedType(self.constant.results[0].type).shape
        index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        for view in self._weight_chain:
            index = apply_view(view, index, cast=False)
        index = np.ascontiguousarray(index)
        return index.reshape(index.shape[0], -1) if self.kind == "conv2d" else index

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


def _dims_of_map(attr: ir.Attribute) -> list[int] | None:
    """Result dimensions of a projected-permutation affine map, else None."""
    amap = ir.AffineMapAttr(attr).value
    dims = []
    for expr in amap.results:
        if not isinstance(expr, ir.AffineDimExpr):
            try:
                expr = ir.AffineDimExpr(expr)
            except (ValueError, TypeError):
                return None
        dims.append(expr.position)
    return dims if len(set(dims)) == len(dims) else None


def _copy_generic_dims(op: ir.OpView) -> list[int] | None:
    """For a copy / broadcast / ``extf`` ``linalg.generic``: the output dims its input maps to, else None."""
    if len(op.operands) != 2 or len(op.results) != 1:
        return None
    iterators = [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    if any("parallel" not in it for it in iterators):
        return None
    maps = ir.ArrayAttr(op.attributes["indexing_maps"])
    in_dims, out_dims = _dims_of_map(maps[0]), _dims_of_map(maps[1])
    if in_dims is None or out_dims != list(range(len(iterators))):
        return None
    block = op.regions[0].blocks[0]
    body = list(block.operations)
    arg = block.arguments[0]
    if len(body) == 1:
        yielded = body[0].operands[0]
        return in_dims if yielded == arg else None
    if len(body) == 2 and body[0].name == "arith.extf" and body[0].operands[0] == arg \
            and body[1].operands[0] == body[0].results[0]:
        return in_dims
    return None


def _view_attrs(op: ir.OpView) -> str:
    for key in ("permutation", "dimensions", "indexing_maps", "reassociation"):
        if key in op.attributes:
            return str(op.attributes[key])
    return ""


def _broadcast_dims(op: ir.OpView) -> tuple[list[int], list[int]] | None:
    """(input -> output dims, added output dims) of a broadcast-like view op, else None."""
    out_rank = ir.RankedTensorType(op.results[0].type).rank
    if op.name == "linalg.broadcast":
        added = [int(d) for d in ir.DenseI64ArrayAttr(op.attributes["dimensions"])]
        kept = [d for d in range(out_rank) if d not in added]
        return kept, added
    if op.name == "linalg.generic":
        dims = _copy_generic_dims(op)
        if dims is None:
            return None
        return dims, [d for d in range(out_rank) if d not in dims]
    return None


def apply_view(op: ir.OpView, data: np.ndarray, cast: bool = True) -> np.ndarray:
    """Replay one view op of a weight chain on numpy data (``cast=False``: keep
    ``data``'s dtype, e.g. to follow element indices through the chain)."""
    out_type = ir.RankedTensorType(op.results[0].type)
    shape = list(out_type.shape)
    if op.name == "linalg.transpose":
        return np.transpose(data, [int(p) for p in ir.DenseI64ArrayAttr(op.attributes["permutation"])])
    if op.name in ("tensor.collapse_shape", "tensor.expand_shape"):
        return np.reshape(np.ascontiguousarray(data), shape)
    dims = _broadcast_dims(op)
    assert dims is not None, op.name
    kept, _ = dims
    # Input axis i lands on output dim kept[i]: order the input axes by output dim, then broadcast.
    order = sorted(range(len(kept)), key=lambda i: kept[i])
    moved = np.transpose(data, order)
    sorted_kept = sorted(kept)
    view_shape = [shape[d] if d in sorted_kept else 1 for d in range(len(shape))]
    out = np.broadcast_to(moved.reshape(view_shape), shape)
    return out.astype(np.float32) if cast and isinstance(out_type.element_type, ir.F32Type) else out


_VIEW_OPS = ("linalg.transpose", "linalg.broadcast", "linalg.generic", "tensor.collapse_shape", "tensor.expand_shape")


def constant_chain(value: ir.Value) -> tuple[ir.OpView | None, tuple[ir.OpView, ...]]:
    """(arith.constant, view ops from it to ``value``) when ``value`` is a constant seen through views."""
    chain: list[ir.OpView] = []
    owner = value.owner
    while isinstance(owner, ir.OpView) and owner.name in _VIEW_OPS:
        if owner.name in ("linalg.broadcast", "linalg.generic") and _broadcast_dims(owner) is None:
            return None, ()
        chain.append(owner)
        owner = owner.operands[0].owner
    if not isinstance(owner, ir.OpView) or owner.name != "arith.constant":
        return None, ()
    attr = as_elements_attr(owner.attributes["value"])
    if attr is None:
        return None, ()
    if isinstance(attr, ir.DenseElementsAttr) and attr.is_splat:
        return None, ()
    if not isinstance(ir.ShapedType(attr.type).element_type, (ir.F32Type, ir.F16Type, ir.BF16Type)):
        return None, ()
    return owner, tuple(reversed(chain))


def _batch_broadcast(chain: tuple[ir.OpView, ...]) -> bool:
    """Whether the last view op broadcasts a matrix over a new leading batch dim (and nothing else)."""
    if not chain:
        return False
    dims = _broadcast_dims(chain[-1])
    return dims is not None and dims[1] == [0] and dims[0] == [1, 2]


def _shape(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def has_default_maps(op: ir.OpView, kind: str) -> bool:
    """Whether a ``linalg.matmul`` / ``batch_matmul`` (``kind`` with or without
    the ``linalg.`` prefix) has its plain maps: no
    ``indexing_maps`` attribute (ops built by the Python builders, e.g. after
    ``tasd-expand-to-linalg``) or one equal to the default (as torch-mlir
    prints them). Explicit maps that transpose or broadcast are not."""
    kind = kind.removeprefix("linalg.")
    return "indexing_maps" not in op.attributes or str(op.attributes["indexing_maps"]) == _DEFAULT_MAPS[kind]


def conv_attr(op: ir.OpView, name: str) -> list[int]:
    """A convolution's ``strides`` / ``dilations`` as integers ([1, 1] when absent)."""
    if name not in op.attributes:
        return [1, 1]
    attr = op.attributes[name]
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    return [int(v) for v in np.array(ir.DenseIntElementsAttr(attr))]


def _is_f32(value: ir.Value) -> bool:
    return isinstance(value.type, ir.RankedTensorType) and isinstance(
        ir.RankedTensorType(value.type).element_type, ir.F32Type
    )


def _classify(op: ir.OpView, kind: Kind, layer: str) -> Candidate | Skipped:
    lhs, rhs = op.operands[0], op.operands[1]
    if not (_is_f32(lhs) and _is_f32(rhs) and _is_f32(op.results[0])):
        return Skipped(op, layer, "only contractions computed in f32 are decomposed (f16/bf16 weights widened "
                                  "to f32 by arith.extf are)")
    if kind != "conv2d" and not has_default_maps(op, kind):
        return Skipped(op, layer, "a matmul with explicit indexing_maps (transposed/broadcast form) is not supported")
    lhs_const, lhs_chain = constant_chain(lhs)
    rhs_const, rhs_chain = constant_chain(rhs)
    if kind == "conv2d":
        if rhs_const is None:
            return Skipped(op, layer, "the filter is a run-time value")
        n, c, h, w = _shape(lhs)
        f, _, kh, kw = _shape(rhs)
        _, _, oh, ow = _shape(op.results[0])
        return Candidate(op, kind, layer, 1, 1, rhs_const, rhs_chain, (1, f, c * kh * kw, n * oh * ow))
    if lhs_const is None and rhs_const is None:
        return Skipped(op, layer, "both operands are run-time values (activation x activation)")
    batch = 1
    if kind == "batch_matmul":
        batch = _shape(lhs)[0]
    if rhs_const is not None:  # weight is B[K, N]; as the GEMM's A it is Bᵀ
        k, n = _shape(rhs)[-2:]
        m = _shape(lhs)[-2]
        if kind == "batch_matmul" and _batch_broadcast(rhs_chain):
            return Candidate(op, "matmul", layer, 1, 0, rhs_const, rhs_chain, (1, n, k, batch * m), fold_batch=True)
        axis = 1 if kind == "batch_matmul" else 0
        return Candidate(op, kind, layer, 1, axis, rhs_const, rhs_chain, (batch, n, k, m))
    assert lhs_const is not None
    m, k = _shape(lhs)[-2:]
    n = _shape(rhs)[-1]
    if kind == "batch_matmul" and _batch_broadcast(lhs_chain):  # W[M, K] · X[b]: W · (X as [K, B*N])
        return Candidate(op, "matmul", layer, 0, 1, lhs_const, lhs_chain, (1, m, k, batch * n), fold_batch=True)
    axis = 2 if kind == "batch_matmul" else 1
    return Candidate(op, kind, layer, 0, axis, lhs_const, lhs_chain, (batch, m, k, n))


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
                why = UNSUPPORTED_REASONS.get(name, "no TASD form for this contraction kind (only matmul, batch_matmul "
                                                    "and conv_2d_nchw_fchw)")
                found = Skipped(op, layer, f"'{name}' is not decomposed: {why}")
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
