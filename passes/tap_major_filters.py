"""``tasd-cpu-tap-major-filters``: constant convolution filters stored tap-major for the implicit GEMM."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import linalg, tensor

from tasdc.module import ops_named, window_pair
from tasdc.passes.base import ModulePass

#: The dense conv entry's method (``runtime/cpu/dense.py``: ``IMPLICIT``, ``STACKED``, ``WINOGRAD``)
#: -> the permutation of ``[F, C, KH, KW]`` that is its filter layout in memory (per tap:
#: ``[KH, KW, F, C]``, also Winograd's, whose filter transform then reads C with unit
#: stride; column taps stacked: ``[KH, F, C, KW]``) and the one back.
LAYOUTS = {2: ([2, 3, 0, 1], [2, 3, 0, 1]), 3: ([2, 0, 1, 3], [1, 2, 0, 3]), 4: ([2, 3, 0, 1], [2, 3, 0, 1])}
#: Attribute on the transpose back to ``[F, C, KH, KW]`` that ``tasd-cpu-dense-to-library-calls``
#: turns into a strided view of the rearranged filter (no copy).
VIEW_ATTR = "tasd.tap_major_view"


def conv_method(channels: int, kh: int, kw: int, strides: list[int], dilations: list[int], tiles: int) -> int:
    """The method ``tasd_dense_conv2d`` picks for this shape (``runtime/cpu/dense.py``; ``tiles``:
    the 2×2 output tiles of all images, ``N·⌈OH/2⌉·⌈OW/2⌉``)."""
    from tasdc.runtime.cpu.dense import conv_method as entry_method

    return int(entry_method.py_func(channels, kh, kw, strides[0], strides[1], dilations[0], dilations[1], tiles))


@dataclasses.dataclass(frozen=True)
class TapMajorFilters(ModulePass):
    """Give the implicit GEMM its filter layout once, at load time, instead of on every call.

    Rule: a static f32 ``linalg.conv_2d_nchw_fchw`` whose filter is an
    ``arith.constant`` used by that convolution alone, of a shape the dense
    library entry runs as an implicit GEMM (:func:`conv_method`), reads
    ``transpose(transpose(W, forward), backward)`` instead of ``W`` (``LAYOUTS``);
    the outer transpose carries ``tasd.tap_major_view``. Run before
    ``tasd-cpu-bind-constants``: that pass binds the inner transpose's result
    (the filter as ``[KH, KW, F, C]`` or ``[KH, F, C, KW]``, transposed once when
    the weights are read) and ``tasd-cpu-dense-to-library-calls`` passes the
    convolution a transposed *view* of it (``memref.transpose``), which the
    entry recognises by its strides: each GEMM's filter matrix is then a plain
    operand.
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
        shape = list(t.shape)
        f, c, kh, kw = shape
        n, _, oh, ow = ir.RankedTensorType(op.results[0].type).shape
        method = conv_method(c, kh, kw, window_pair(op, "strides"), window_pair(op, "dilations"), n * ((oh + 1) // 2) * ((ow + 1) // 2))
        if method not in LAYOUTS:
            return
        forward, backward = LAYOUTS[method]
        with ir.InsertionPoint(op), op.location:
            inner = tensor.EmptyOp([shape[d] for d in forward], t.element_type).result
            tapped = _value(linalg.transpose(weight, outs=[inner], permutation=forward))
            outer = tensor.EmptyOp(shape, t.element_type).result
            back = _value(linalg.transpose(tapped, outs=[outer], permutation=backward))
        back.owner.attributes[VIEW_ATTR] = ir.UnitAttr.get()
        op.operation.operands[1] = back


def _value(result: ir.Value | ir.OpView) -> ir.Value:
    """The result of a builder that returns either the value or its op."""
    return result if isinstance(result, ir.Value) else result.results[0]
