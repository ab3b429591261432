"""``tasd-cpu-outline-loops``: move each top-level loop nest into its own small function."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from tasdc.passes.base import ModulePass, apply_transform_script, remove_attribute

#: Discardable attribute that tags the loops the transform script outlines.
TAG = "tasd.outline"

#: Ops that start a loop nest at the top level of a function.
_LOOPS = ("scf.for", "scf.parallel", "scf.forall")

_SCRIPT = """module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %loops = transform.structured.match attributes {{TAG}} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %loops : !transform.any_op {
    ^bb0(%loop: !transform.any_op):
      %f, %c = transform.loop.outline %loop {func_name = "{PREFIX}"} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    }
    transform.yield
  }
}"""


@dataclasses.dataclass(frozen=True)
class OutlineLoops(ModulePass):
    """Outline every loop nest at the top level of a function body into a
    private, never-inlined function ``@<prefix>_<k>`` (upstream
    ``transform.loop.outline``), replacing it with a call.

    Rule: an ``scf.for`` / ``scf.parallel`` / ``scf.forall`` whose parent is
    a ``func.func`` body becomes a call; values it uses from outside become
    arguments. An argument that receives an ``arith.constant`` at the call
    is replaced inside the new function by a clone of that constant (the
    argument stays, unused), so LLVM still sees every constant the nest
    saw before outlining: trip counts, scalars such as the exponent of
    ``math.fpowi`` (a constant exponent is expanded into multiplications;
    a variable one becomes a libm call). Nested loops stay inside their
    outlined nest. Functions that are only declarations are untouched.

    Why: after bufferization a whole model is one function with thousands of
    blocks, and LLVM's loop analyses (ScalarEvolution) grow superlinearly
    with function size. One function per loop nest keeps every function
    small, so the JIT time grows linearly with the model. The outlined
    functions carry ``llvm.no_inline`` so the LLVM inliner does not rebuild the
    large function; a call per loop nest costs nanoseconds.
    Run it on memrefs and ``scf`` (after bufferization, before
    ``convert-scf-to-cf``).
    """

    name: ClassVar[str] = "tasd-cpu-outline-loops"

    prefix: str = "tasd_nest"

    def __post_init__(self) -> None:
        if not self.prefix.isidentifier():
            raise ValueError(f"prefix must be an identifier, got '{self.prefix}'")

    def run(self, module: ir.Module) -> None:
        unit = ir.UnitAttr.get(module.context)
        before = self._function_names(module)
        tagged = 0
        for func_op in module.body.operations:
            if func_op.operation.name != "func.func" or not func_op.regions[0].blocks:
                continue
            for op in func_op.regions[0].blocks[0].operations:
                if op.operation.name in _LOOPS:
                    op.operation.attributes[TAG] = unit
                    tagged += 1
        if not tagged:
            return
        text = _SCRIPT.replace("{TAG}", TAG).replace("{PREFIX}", self.prefix)
        apply_transform_script(module, text, self.name)
        private = ir.StringAttr.get("private", module.context)
        for func_op in module.body.operations:
            if func_op.operation.name != "func.func":
                continue
            if ir.StringAttr(func_op.attributes["sym_name"]).value not in before:
                func_op.attributes["sym_visibility"] = private
                func_op.attributes["llvm.no_inline"] = unit

        remove_attribute(module, TAG)
        self._propagate_constants(module, before)

    @staticmethod
    def _propagate_constants(module: ir.Module, before: set[str]) -> None:
        """Inside every new function, use a clone of each constant its call passes instead of the argument."""
        functions = {
            ir.StringAttr(op.attributes["sym_name"]).value: op
            for op in module.body.operations
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value not in before
        }
        calls: dict[str, list[ir.Operation]] = {}

        def collect(op: ir.Operation) -> ir.WalkResult:
            if op.name == "func.call":
                callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
                if callee in functions:
                    calls.setdefault(callee, []).append(op)
            return ir.WalkResult.ADVANCE

        module.operation.walk(collect)
        for callee, sites in calls.items():
            entry = functions[callee].regions[0].blocks[0]
            start = ir.InsertionPoint(entry.operations[0])
            for index, argument in enumerate(entry.arguments):
                if not list(argument.uses):
                    continue
                constants = [_constant_of(site.operands[index]) for site in sites]
                first = constants[0]
                if first is None or not all(c is not None and c.attributes["value"] == first.attributes["value"]
                                            for c in constants):
                    continue
                argument.replace_all_uses_with(first.clone(ip=start).results[0])

    @staticmethod
    def _function_names(module: ir.Module) -> set[str]:
        return {
            ir.StringAttr(op.attributes["sym_name"]).value
            for op in module.body.operations
            if op.operation.name == "func.func"
        }


def _constant_of(value: ir.Value) -> ir.Operation | None:
    """The ``arith.constant`` that defines ``value``, if one does."""
    owner = value.owner
    if isinstance(owner, ir.OpView):
        owner = owner.operation
    if isinstance(owner, ir.Operation) and owner.name == "arith.constant":
        return owner
    return None
