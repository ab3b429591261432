"""``tasd-cpu-outline-loops``: move each top-level loop nest into its own small function."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects.transform import interpreter

from tasdc.diagnostics import capture, record_mlir_error
from tasdc.errors import PipelineError
from tasdc.passes.base import ModulePass

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
    arguments (constants are cloned in). Nested loops stay inside their
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
        with capture(module.context) as log:
            try:
                script = ir.Module.parse(text, module.context)
                interpreter.apply_named_sequence(module.operation, script.body.operations[0], script.operation)
            except (ir.MLIRError, ValueError) as error:
                if isinstance(error, ir.MLIRError):
                    record_mlir_error(error)
                detail = "; ".join(d.format() for d in log.errors[:3]) if log.errors else str(error).splitlines()[0]
                raise PipelineError(f"{self.name} failed: {detail}") from None
        private = ir.StringAttr.get("private", module.context)
        for func_op in module.body.operations:
            if func_op.operation.name != "func.func":
                continue
            if ir.StringAttr(func_op.attributes["sym_name"]).value not in before:
                func_op.attributes["sym_visibility"] = private
                func_op.attributes["llvm.no_inline"] = unit

        def untag(op: ir.Operation) -> ir.WalkResult:
            if TAG in op.attributes:
                del op.attributes[TAG]
            return ir.WalkResult.ADVANCE

        module.operation.walk(untag)

    @staticmethod
    def _function_names(module: ir.Module) -> set[str]:
        return {
            ir.StringAttr(op.attributes["sym_name"]).value
            for op in module.body.operations
            if op.operation.name == "func.func"
        }
