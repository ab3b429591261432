"""``tasd-conv1d-as-conv2d``: a 1-D convolution (``nn.Conv1d``) becomes a 2-D one with a unit height."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import linalg, tensor

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass

#: ``[N, C, W] -> [N, C, 1, W]`` (and the same for the filter and the output).
_UNIT_HEIGHT = [[0], [1], [2, 3]]


def _static_tensor(value: ir.Value) -> ir.RankedTensorType | None:
    t = value.type
    if not isinstance(t, ir.RankedTensorType) or not ir.RankedTensorType(t).has_static_shape:
        return None
    return ir.RankedTensorType(t)


def _reassociation() -> ir.ArrayAttr:
    i64 = ir.IntegerType.get_signless(64)
    return ir.ArrayAttr.get([ir.ArrayAttr.get([ir.IntegerAttr.get(i64, d) for d in group]) for group in _UNIT_HEIGHT])


def _with_unit_height(value: ir.Value, t: ir.RankedTensorType) -> ir.Value:
    n, c, w = t.shape
    shape = [n, c, 1, w]
    return tensor.expand_shape(ir.RankedTensorType.get(shape, t.element_type), value, _reassociation(), [], shape)


def _pair(op: ir.OpView, name: str) -> list[int]:
    """``[1, v]`` for the 1-D ``strides`` / ``dilations`` attribute ``v`` (default 1)."""
    if name not in op.attributes:
        return [1, 1]
    values = [int(v) for v in ir.DenseIntElementsAttr(op.attributes[name])]
    return [1, values[0]]


@dataclasses.dataclass(frozen=True)
class Conv1dAsConv2d(ModulePass):
    """Rewrite ``linalg.conv_1d_ncw_fcw`` as ``linalg.conv_2d_nchw_fchw`` over a unit height.

    Rule, on tensors with static shapes: ``conv_1d_ncw_fcw(X[N, C, W], F[F, C, K])
    -> Y[N, F, OW]`` with strides ``s`` and dilations ``d`` becomes
    ``collapse_shape(conv_2d_nchw_fchw(expand(X)[N, C, 1, W], expand(F)[F, C, 1,
    K]) -> [N, F, 1, OW])`` with strides ``[1, s]`` and dilations ``[1, d]``
    (``tensor.expand_shape`` / ``collapse_shape`` of the unit dim: no copy). The
    arithmetic is the same sum over ``C·K`` in the same element order.

    Why: TASD, the accelerator model and the CPU runtime's dense and N:M
    convolution entries know 2-D convolutions; ``nn.Conv1d`` (wav2vec2's
    and Whisper's front-ends, temporal CNNs) was left dense ("no TASD form")
    and ran as plain loops. As a 2-D convolution its filter is decomposed
    like any other (a constant behind an ``expand_shape`` is a weight
    the contraction scan follows), simulated as a GEMM, and run by the
    library or N:M kernels. Runs on the imported module, before the TASD
    passes.
    """

    name: ClassVar[str] = "tasd-conv1d-as-conv2d"

    def run(self, module: ir.Module) -> None:
        with module.context:
            for op in ops_named(module, "linalg.conv_1d_ncw_fcw"):
                self._rewrite(op)

    @staticmethod
    def _rewrite(op: ir.OpView) -> None:
        if len(op.results) != 1:
            return  # on memrefs: not this pass's stage
        types = [_static_tensor(v) for v in (op.operands[0], op.operands[1], op.operands[2])]
        if any(t is None for t in types):
            return
        x_type, f_type, y_type = types
        assert x_type is not None and f_type is not None and y_type is not None
        with ir.InsertionPoint(op), op.location:
            x = _with_unit_height(op.operands[0], x_type)
            f = _with_unit_height(op.operands[1], f_type)
            y = _with_unit_height(op.operands[2], y_type)
            conv = linalg.conv_2d_nchw_fchw(x, f, outs=[y], strides=_pair(op, "strides"),
                                            dilations=_pair(op, "dilations"))
            if "tasd.layer" in op.attributes:
                conv.owner.attributes["tasd.layer"] = op.attributes["tasd.layer"]
            flat = tensor.collapse_shape(y_type, conv, _reassociation())
        op.results[0].replace_all_uses_with(flat)
        op.operation.erase()
