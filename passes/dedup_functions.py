"""``tasd-cpu-dedup-functions``: keep one copy of structurally identical private functions."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import ClassVar

from torch_mlir import ir

from tasdc.passes.base import ModulePass

#: The name every candidate carries while it is printed for its digest.
_PLACEHOLDER = "__tasd_dedup__"


@dataclasses.dataclass(frozen=True)
class DedupFunctions(ModulePass):
    """Merge private ``func.func`` definitions that are identical up to their
    name: every ``func.call`` of a duplicate calls the first one instead, and
    the duplicate is erased.

    Rule: two private functions with a body are identical when MLIR's own
    printer gives the same text for both once each is renamed to one
    placeholder (same signature, attributes, operations, types and
    constants; SSA names are numbered per function; no locations). The
    comparison is a SHA-256 of that text. The first function in module
    order is kept. Public functions and declarations are never merged or
    erased, nor is a function that a ``func.constant`` names; a body that
    calls other functions matches only a body that calls the same ones.

    Why: once weights are bound as arguments (``tasd-cpu-bind-constants``)
    and loop nests are outlined (``tasd-cpu-outline-loops``), the N layers of
    an encoder become N copies of the same loop nests; merging them lets
    LLVM optimise and generate each nest once, so the JIT time no longer
    grows with the depth of the model. The code that runs is the same
    function for every copy, so results do not change. Run it after
    ``tasd-cpu-outline-loops`` (it only looks at ``func.func``).
    """

    name: ClassVar[str] = "tasd-cpu-dedup-functions"

    def run(self, module: ir.Module) -> None:
        kept: dict[bytes, str] = {}
        replace: dict[str, str] = {}
        duplicates: dict[str, ir.Operation] = {}
        placeholder = ir.StringAttr.get(_PLACEHOLDER, module.context)
        for op in module.body.operations:
            if not self._candidate(op):
                continue
            name = ir.StringAttr(op.attributes["sym_name"]).value
            op.attributes["sym_name"] = placeholder
            try:
                text = op.operation.get_asm(binary=True, use_local_scope=True, assume_verified=True)
            finally:
                op.attributes["sym_name"] = ir.StringAttr.get(name, module.context)
            digest = hashlib.sha256(text).digest()
            if digest in kept:
                replace[name] = kept[digest]
                duplicates[name] = op.operation
            else:
                kept[digest] = name
        if not replace:
            return
        calls: list[ir.Operation] = []

        def collect(op: ir.Operation) -> ir.WalkResult:
            if op.name == "func.call":
                if ir.FlatSymbolRefAttr(op.attributes["callee"]).value in replace:
                    calls.append(op)
            elif op.name == "func.constant":  # a function used as a value: keep it as it is
                replace.pop(ir.FlatSymbolRefAttr(op.attributes["value"]).value, None)
            return ir.WalkResult.ADVANCE

        module.operation.walk(collect)
        for call in calls:
            callee = ir.FlatSymbolRefAttr(call.attributes["callee"]).value
            if callee in replace:
                call.attributes["callee"] = ir.FlatSymbolRefAttr.get(replace[callee], module.context)
        for name in replace:
            duplicates[name].erase()

    @staticmethod
    def _candidate(op: ir.OpView) -> bool:
        if op.operation.name != "func.func" or not op.regions[0].blocks:
            return False
        visibility = op.attributes["sym_visibility"] if "sym_visibility" in op.attributes else None
        return visibility is not None and ir.StringAttr(visibility).value == "private"
