"""``tasd-cpu-demote-f64``: f64 tensor arithmetic between f32 inputs and f32 results is done in f32."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import arith

from tasdc.passes.base import ModulePass

#: Ops a demoted function may apply to f64 tensors (anything else keeps the function as it is).
_TENSOR_OPS = {"linalg.generic", "linalg.fill", "tensor.empty"}
#: Scalar ops allowed in the body of a generic that touches f64 tensors.
_BODY_OPS = {
    "arith.addf", "arith.subf", "arith.mulf", "arith.divf", "arith.maximumf", "arith.minimumf", "arith.negf",
    "arith.extf", "arith.truncf", "arith.constant", "arith.select", "arith.cmpf", "math.sqrt", "math.rsqrt",
    "linalg.yield",
}


def _is_f64_tensor(t: ir.Type) -> bool:
    return isinstance(t, ir.RankedTensorType) and isinstance(ir.RankedTensorType(t).element_type, ir.F64Type)


def _f32_like(t: ir.Type) -> ir.Type:
    if isinstance(t, ir.RankedTensorType):
        return ir.RankedTensorType.get(list(ir.RankedTensorType(t).shape), ir.F32Type.get())
    return ir.F32Type.get()


def _reduction_size(op: ir.OpView) -> int:
    """Product of the reduction loop extents of a ``linalg.generic`` (1 if it has none)."""
    kinds = [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    if not any("reduction" in k for k in kinds):
        return 1
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    extents: dict[int, int] = {}
    for value, amap in zip(op.operands, maps):
        if not isinstance(value.type, ir.RankedTensorType):
            continue
        for size, expr in zip(ir.RankedTensorType(value.type).shape, amap.results):
            if isinstance(expr, ir.AffineDimExpr):
                extents[ir.AffineDimExpr(expr).position] = size
    size = 1
    for i, k in enumerate(kinds):
        if "reduction" in k:
            size *= extents.get(i, 1)
    return size


@dataclasses.dataclass(frozen=True)
class DemoteF64(ModulePass):
    """Compute a function's f64 tensor arithmetic in f32 when it only widens f32 data.

    Rule, per function: if every f64 tensor in it is made and used only by
    ``linalg.generic`` / ``linalg.fill`` / ``tensor.empty`` (no f64 argument,
    result, call operand or tensor constant), every such generic's body uses
    only element arithmetic (``addf subf mulf divf maximumf minimumf negf
    select cmpf sqrt rsqrt``, ``extf``/``truncf``, constants), and no such
    reduction sums more than ``max-reduction`` elements, then all of them
    become f32: tensor types are rewritten, ``extf f32→f64`` and
    ``truncf f64→f32`` disappear, f64 scalar constants become f32. Otherwise
    the function is left unchanged.

    Why: torch-mlir's decomposition of ``layer_norm`` computes the variance
    in f64 (widen the f32 input, two f64 reductions, narrow), which doubles
    the memory traffic and halves the vector width of layer norm. The
    variance is a two-pass (centered) sum, so in f32 its relative error is
    at most about ``n·2⁻²⁴`` for ``n`` summed terms (6e-5 at ``n`` = 1024,
    typically ``√n·2⁻²⁴``); ``max-reduction`` bounds ``n``.
    """

    name: ClassVar[str] = "tasd-cpu-demote-f64"

    max_reduction: int = 16384

    def __post_init__(self) -> None:
        if self.max_reduction < 1:
            raise ValueError(f"max-reduction must be >= 1, got {self.max_reduction}")

    def run(self, module: ir.Module) -> None:
        with module.context, ir.Location.unknown():
            for op in module.body.operations:
                if op.operation.name == "func.func" and op.regions[0].blocks:
                    self._function(op)

    def _function(self, fn: ir.OpView) -> None:
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        if any(_is_f64_tensor(t) for t in list(ftype.inputs) + list(ftype.results)):
            return
        touched: list[ir.OpView] = []
        ok = True

        def visit(op: ir.Operation) -> ir.WalkResult:
            nonlocal ok
            values = list(op.operands) + list(op.results)
            if not any(_is_f64_tensor(v.type) for v in values):
                return ir.WalkResult.ADVANCE
            if op.name not in _TENSOR_OPS:
                ok = False
                return ir.WalkResult.INTERRUPT
            view = op.opview
            if op.name == "linalg.generic":
                body = view.regions[0].blocks[0]
                if any(inner.operation.name not in _BODY_OPS for inner in body.operations):
                    ok = False
                    return ir.WalkResult.INTERRUPT
                if _reduction_size(view) > self.max_reduction:
                    ok = False
                    return ir.WalkResult.INTERRUPT
            touched.append(view)
            return ir.WalkResult.SKIP if op.name == "linalg.generic" else ir.WalkResult.ADVANCE

        fn.operation.walk(visit)
        if not ok or not touched:
            return
        f32 = ir.F32Type.get()
        for op in touched:
            for result in op.results:
                if _is_f64_tensor(result.type):
                    result.set_type(_f32_like(result.type))
            if op.operation.name == "linalg.fill":
                scalar = op.operands[0]
                if isinstance(scalar.type, ir.F64Type):
                    with ir.InsertionPoint(op), op.location:
                        op.operands[0] = self._narrow(scalar)
                for block in op.regions[0].blocks:  # the named op's implicit body
                    for arg in block.arguments:
                        if isinstance(arg.type, ir.F64Type):
                            arg.set_type(f32)
            elif op.operation.name == "linalg.generic":
                self._body(op, f32)

    @staticmethod
    def _narrow(value: ir.Value) -> ir.Value:
        """An f32 version of the f64 scalar ``value`` (at the current insertion point)."""
        owner = value.owner
        f32 = ir.F32Type.get()
        if isinstance(owner, ir.OpView) and owner.name == "arith.constant":
            return arith.ConstantOp(f32, ir.FloatAttr.get(f32, ir.FloatAttr(owner.attributes["value"]).value)).result
        return arith.TruncFOp(f32, value).result

    def _body(self, op: ir.OpView, f32: ir.Type) -> None:
        body = op.regions[0].blocks[0]
        inputs = list(op.operands)
        for arg, operand in zip(body.arguments, inputs):
            element = ir.RankedTensorType(operand.type).element_type if isinstance(operand.type, ir.RankedTensorType) else operand.type
            if isinstance(arg.type, ir.F64Type) and isinstance(element, ir.F32Type):
                arg.set_type(f32)  # its tensor operand is f32 now
        for inner in list(body.operations):
            name = inner.operation.name
            if name == "linalg.yield":
                continue
            if name == "arith.extf" and isinstance(inner.results[0].type, ir.F64Type) and isinstance(inner.operands[0].type, ir.F32Type):
                inner.results[0].replace_all_uses_with(inner.operands[0])
                inner.operation.erase()
                continue
            if name == "arith.truncf" and isinstance(inner.operands[0].type, ir.F32Type):
                inner.results[0].replace_all_uses_with(inner.operands[0])
                inner.operation.erase()
                continue
            if name == "arith.constant":
                continue  # narrowed where used
            if any(isinstance(v.type, ir.F32Type) for v in inner.operands) or name in ("math.sqrt", "math.rsqrt"):
                for i, v in enumerate(inner.operands):
                    if isinstance(v.type, ir.F64Type):
                        with ir.InsertionPoint(inner), inner.location:
                            inner.operands[i] = self._narrow(v)
                for result in inner.results:
                    if isinstance(result.type, ir.F64Type):
                        result.set_type(f32)
        for inner in list(body.operations):  # constants inside the body left without users
            if inner.operation.name == "arith.constant" and not any(True for _ in inner.results[0].uses):
                inner.operation.erase()
