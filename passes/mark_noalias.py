"""``tasd-cpu-mark-noalias``: memref arguments of private functions that never alias get LLVM ``noalias``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass

#: Function attribute carrying, between the two steps, the LLVM argument
#: positions (allocated and aligned pointer of each memref descriptor) to mark.
ATTR = "tasd.noalias_args"

#: Ops whose memref result is a view of their first operand's buffer.
_VIEWS = {"memref.expand_shape", "memref.collapse_shape", "memref.subview", "memref.cast",
          "memref.reinterpret_cast", "memref.transpose"}
#: Ops that create a buffer of their own.
_ALLOCS = {"memref.alloc", "memref.alloca"}


def _root(value: ir.Value) -> tuple[str, object] | None:
    """The buffer ``value`` is a view of: ``("alloc", op)``, ``("global", name)``, ``("arg", key)``; ``None`` if unknown."""
    while True:
        owner = value.owner
        if isinstance(owner, ir.Block):
            func = owner.owner
            if func.operation.name != "func.func":
                return None
            arg = ir.BlockArgument(value)
            if "arg_attrs" in func.attributes:
                attrs = ir.DictAttr(ir.ArrayAttr(func.attributes["arg_attrs"])[arg.arg_number])
                if "bufferization.writable" in attrs and not ir.BoolAttr(attrs["bufferization.writable"]).value:
                    return ("arg", arg.arg_number)  # a read-only argument (a bound constant): its own buffer
            return ("arg", "writable")  # writable arguments may be one caller array passed twice
        op = owner.opview if hasattr(owner, "opview") else owner
        if op.name in _VIEWS:
            value = op.operands[0]
            continue
        if op.name in _ALLOCS:
            return ("alloc", op.operation)
        if op.name == "memref.get_global":
            return ("global", str(op.attributes["name"]))
        return None


def _has_reduction_store(func: ir.OpView) -> bool:
    """Whether some ``memref.store`` in ``func`` leaves out the induction variable of a
    loop around it (it accumulates across that loop: a reduction)."""
    found = False

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal found
        if op.name != "memref.store":
            return ir.WalkResult.ADVANCE
        indices = list(op.operands)[2:]
        parent = op.parent
        while parent is not None and parent.name != "func.func":
            if parent.name == "scf.for":
                iv = parent.regions[0].blocks[0].arguments[0]
                if not any(index == iv for index in indices):
                    found = True
                    return ir.WalkResult.INTERRUPT
            parent = parent.parent
        return ir.WalkResult.ADVANCE

    func.operation.walk(visit)
    return found


def _llvm_positions(types: list[ir.Type]) -> list[list[int]] | None:
    """Per argument, its pointer positions after the LLVM conversion (``[]`` for a scalar); ``None``
    if an argument type expands in a way this pass does not model."""
    positions: list[list[int]] = []
    at = 0
    for t in types:
        if isinstance(t, ir.MemRefType):
            rank = ir.MemRefType(t).rank
            positions.append([at, at + 1])  # allocated, aligned; then offset, sizes, strides
            at += 3 + 2 * rank
        elif isinstance(t, (ir.IndexType, ir.IntegerType, ir.F32Type, ir.F64Type, ir.F16Type, ir.BF16Type)):
            positions.append([])
            at += 1
        else:
            return None
    return positions


@dataclasses.dataclass(frozen=True)
class MarkNoalias(ModulePass):
    """Give LLVM ``noalias`` to the memref arguments of private functions that no other argument aliases.

    Rule, on ``func.func`` (memrefs, after ``tasd-cpu-outline-loops``): a
    memref argument of a private function with a body is marked when, at
    every ``func.call`` of it, its buffer (followed through expand/collapse
    shape, subview, cast, reinterpret_cast, transpose to a ``memref.alloc`` /
    ``alloca``, a ``memref.get_global`` or an argument of the caller) is
    the buffer of no other memref operand of that call. Writable arguments
    of the caller count as one buffer (a caller may pass one array twice);
    read-only ones (``bufferization.writable = false``: the CPU runtime's
    bound weights, arrays it owns) as their own. If one operand's buffer
    cannot be traced, nothing is marked at that call. A function with a
    reduction (a ``memref.store`` whose indices leave out the induction
    variable of an ``scf.for`` around it) is not marked: with ``noalias``
    LLVM keeps the accumulator in a register, unrolls the row and vectorizes
    across rows with gathers (softmax over 64-wide rows: 1.6× slower,
    measured). The marked positions are stored as
    ``tasd.noalias_args`` (LLVM argument indices of the descriptors'
    allocated and aligned pointers), because the func-to-LLVM conversion
    drops memref argument attributes.

    On ``llvm.func`` (after ``convert-to-llvm``): ``tasd.noalias_args``
    becomes ``llvm.noalias`` on those pointer arguments, then is removed.

    Why: an outlined loop nest receives its buffers as plain pointers, so
    LLVM must assume that a store through one may change what another reads:
    it then reloads loop invariants (the row max in softmax's ``exp(x −
    max)`` computed in place) and vectorizes only behind run-time overlap
    checks, or not at all for short rows.
    """

    name: ClassVar[str] = "tasd-cpu-mark-noalias"

    def run(self, module: ir.Module) -> None:
        with module.context:
            self._record(module)
            self._apply(module)

    @staticmethod
    def _record(module: ir.Module) -> None:
        callees = {ir.StringAttr(op.attributes["sym_name"]).value: op for op in module.body.operations
                   if op.operation.name == "func.func" and "sym_visibility" in op.attributes
                   and ir.StringAttr(op.attributes["sym_visibility"]).value == "private" and len(op.regions[0].blocks)}
        eligible: dict[str, set[int]] = {}
        for call in ops_named(module, "func.call"):
            callee = ir.FlatSymbolRefAttr(call.attributes["callee"]).value
            if callee not in callees:
                continue
            roots = [(i, _root(v)) for i, v in enumerate(call.operands) if isinstance(v.type, ir.MemRefType)]
            if any(r is None for _, r in roots):
                here: set[int] = set()  # a buffer of unknown origin may be any of the others
            else:
                here = {i for i, r in roots if sum(1 for _, other in roots if other == r) == 1}
            eligible[callee] = eligible[callee] & here if callee in eligible else here
        for name, args in eligible.items():
            func = callees[name]
            if _has_reduction_store(func):
                continue
            types = [a.type for a in func.regions[0].blocks[0].arguments]
            positions = _llvm_positions(types)
            if positions is None or not args:
                continue
            marked = sorted(p for i in args for p in positions[i])
            func.attributes[ATTR] = ir.DenseI64ArrayAttr.get(marked)

    @staticmethod
    def _apply(module: ir.Module) -> None:
        for op in module.body.operations:
            if op.operation.name != "llvm.func" or ATTR not in op.attributes:
                continue
            marked = set(ir.DenseI64ArrayAttr(op.attributes[ATTR]))
            arguments = list(op.regions[0].blocks[0].arguments) if len(op.regions[0].blocks) else []
            old = list(ir.ArrayAttr(op.attributes["arg_attrs"])) if "arg_attrs" in op.attributes else [ir.DictAttr.get({})] * len(arguments)
            new = []
            for i, (arg, attrs) in enumerate(zip(arguments, old)):
                entries = {a.name: a.attr for a in ir.DictAttr(attrs)}
                if i in marked and str(arg.type) == "!llvm.ptr":
                    entries["llvm.noalias"] = ir.UnitAttr.get()
                new.append(ir.DictAttr.get(entries))
            op.attributes["arg_attrs"] = ir.ArrayAttr.get(new)
            del op.attributes[ATTR]
