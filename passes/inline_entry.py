"""``tasd-cpu-inline-entry``: inline each public function into its C-interface wrapper."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from tasdc.passes.base import ModulePass

#: Prefix of the wrapper ``llvm.emit_c_interface`` generates for a function.
CIFACE_PREFIX = "_mlir_ciface_"


@dataclasses.dataclass(frozen=True)
class InlineEntry(ModulePass):
    """Give every public ``llvm.func @f`` whose C-interface wrapper
    ``@_mlir_ciface_f`` is defined in the module, and which nothing else
    calls, the ``alwaysinline`` attribute and internal linkage: LLVM
    inlines it into the wrapper and drops the original.

    Rule: ``@f`` has a body, is public (no linkage or external linkage),
    ``@_mlir_ciface_f`` has a body, and every ``llvm.call`` of ``@f`` is in
    that wrapper. Anything else is left as it is. Run it on the LLVM
    dialect (after ``convert-to-llvm``).

    Why: the wrapper unpacks each memref descriptor into its fields and
    calls ``@f`` with all of them. An entry with a few hundred memref
    arguments (weights bound as arguments by ``tasd-cpu-bind-constants``)
    is then called with over a thousand scalars, most of them stored to the
    stack in one basic block, and LLVM's store merging in instruction
    selection is quadratic in such a block (BERT-base: ~6 of ~9 s of code
    generation). Inlined, the wrapper reads the fields where they are used
    and no call with thousands of arguments is left. The public entry
    point that callers use is the wrapper; it is unchanged.
    """

    name: ClassVar[str] = "tasd-cpu-inline-entry"

    def run(self, module: ir.Module) -> None:
        functions = {
            ir.StringAttr(op.attributes["sym_name"]).value: op
            for op in module.body.operations
            if op.operation.name == "llvm.func"
        }
        callers: dict[str, set[str]] = {}
        for name, op in functions.items():
            def visit(inner: ir.Operation, caller: str = name) -> ir.WalkResult:
                if inner.name == "llvm.call" and "callee" in inner.attributes:
                    callee = ir.FlatSymbolRefAttr(inner.attributes["callee"]).value
                    callers.setdefault(callee, set()).add(caller)
                return ir.WalkResult.ADVANCE

            if op.regions[0].blocks:
                op.operation.walk(visit)
        context = module.context
        external = ir.Attribute.parse("#llvm.linkage<external>", context)
        for name, op in functions.items():
            wrapper = functions.get(CIFACE_PREFIX + name)
            if wrapper is None or not wrapper.regions[0].blocks or not op.regions[0].blocks:
                continue
            if "linkage" in op.attributes and op.attributes["linkage"] != external:
                continue
            if callers.get(name, set()) - {CIFACE_PREFIX + name}:
                continue
            passthrough = list(ir.ArrayAttr(op.attributes["passthrough"])) if "passthrough" in op.attributes else []
            passthrough = [a for a in passthrough if not (isinstance(a, ir.StringAttr) and a.value == "noinline")]
            passthrough.append(ir.StringAttr.get("alwaysinline", context))
            op.attributes["passthrough"] = ir.ArrayAttr.get(passthrough, context)
            op.attributes["linkage"] = ir.Attribute.parse("#llvm.linkage<internal>", context)
