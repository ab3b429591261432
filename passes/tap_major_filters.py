"""``tasd-cpu-tap-major-filters``: constant convolution filters stored tap-major for the implicit GEMM."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import linalg, tensor

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass

#: ``[F, C, KH, KW]`` <-> ``[KH, KW, F, C]`` (the permutation is its own inverse).
TAP_MAJOR = [2, 3, 0, 1]
#: Attribute on the transpose back to ``[F, C, KH, KW]`` that ``tasd-cpu-dense-to-library-calls``
#: turns into a strided view of the tap-major filter (no copy).
VIEW_ATTR = "tasd.tap_major_view"


def implicit_gemm_shape(channels: int, kh: int, kw: int, strides: list[int], dilations: list[int]) -> bool:
    """The shapes for which ``tasd_dense_conv2d`` runs the implicit GEMM
    (``runtime/cpu/dense.py``: ``_implicit_wins``, same rule)."""
    from tasdc.runtime.cpu.dense import IMPLICIT_MIN_CHANNELS

    return kh * kw > 1 and channels >= IMPLICIT_MIN_CHANNELS and dilations == [1, 1] and max(strides) <= 2


def _pair(op: ir.OpView, name: str) -> list[int]:
    if name not in op.attributes:
        return [1, 1]
    return [int(v) for v in ir.DenseIntElementsAttr(op.attributes[name])]


@dataclasses.dataclass(frozen=True)
class TapMajorFilters(ModulePass):
    """Give the implicit GEMM its filter layout once, at load time, instead of on every call.

    Rule: a static f32 ``linalg.conv_2d_nchw_fchw`` whose filter is an
    ``arith.constant`` used by that convolution alone, of a shape the dense
    library entry runs as an implicit GEMM (:func:`implicit_gemm_shape`), reads
    ``transpose(transpose(W, [2, 3, 0, 1]), [2, 3, 0, 1])`` instead of ``W``;
    the outer transpose carries ``tasd.tap_major_view``. Run before
    ``tasd-cpu-bind-constants``: that pass binds the inner transpose's result
    (the filter as ``[KH, KW, F, C]``, transposed once when the weights are
    read) and ``tasd-cpu-dense-to-library-calls`` passes the convolution a
    transposed *view* of it (``memref.transpose``), which the entry recognises
    by its strides: each tap's ``[F, C]`` matrix is then a plain GEMM operand.
    Without the library calls the two transposes are two copies per call
    (correct, slower); without binding they stay on a constant.
    """

    name: ClassVar[str] = "tasd-cpu-tap-major-filters"

    def run(self, module: ir.Module) -> None:
        with module.context:
            for op in ops_named(module, "linalg.conv_2d_nchw_fchw"):
                self._rewrite(op)

    @staticmethod
    def _rewrite(op: ir.OpView) -> None:
        if len(op.operands) != 3:
            return
        weight = op.operands[1]
        owner = weight.owner
        if not isinstance(owner, ir.OpView) or owner.name != "arith.constant" or len(list(weight.uses)) != 1:
            return
        t = ir.RankedTensorType(weight.type)
        if t.rank != 4 or not t.has_static_shape or not isinstance(t.element_type, ir.F32Type):
            return
        f, c, kh, kw = t.shape
        if not implicit_gemm_shape(c, kh, kw, _pair(op, "strides"), _pair(op, "dilations")):
            return
        with ir.InsertionPoint(op), op.location:
            inner = tensor.EmptyOp([kh, kw, f, c], t.element_type).result
            tapped = _value(linalg.transpose(weight, outs=[inner], permutation=TAP_MAJOR))
            outer = tensor.EmptyOp([f, c, kh, kw], t.element_type).result
            back = _value(linalg.transpose(tapped, outs=[outer], permutation=TAP_MAJOR))
        back.owner.attributes[VIEW_ATTR] = ir.UnitAttr.get()
        op.operation.operands[1] = back


def _value(result: ir.Value | ir.OpView) -> ir.Value:
    """The result of a builder that returns either the value or its op."""
    return result if isinstance(result, ir.Value) else result.results[0]
