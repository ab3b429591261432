"""``tasd-cpu-to-llvm``: bufferize linalg-on-tensors and lower it to the LLVM dialect."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from tasdc.diagnostics import capture, record_mlir_error
from tasdc.errors import PipelineError
from tasdc.passes.base import ModulePass

#: The upstream pipeline, in order. ``refback-munge-memref-copy`` rewrites
#: ``memref.copy`` into loops because the wheel ships no C runner utils.
UPSTREAM_PIPELINE = (
    "func.func(convert-elementwise-to-linalg)",
    "one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map "
    "unknown-type-conversion=identity-layout-map}",
    "buffer-deallocation-pipeline",
    "func.func(refback-munge-memref-copy)",
    "func.func(convert-linalg-to-loops)",
    "expand-strided-metadata",
    "lower-affine",
    "convert-scf-to-cf",
    "convert-math-to-llvm",
    "convert-math-to-libm",
    "convert-to-llvm",
    "reconcile-unrealized-casts",
)


@dataclasses.dataclass(frozen=True)
class LowerCpuToLLVM(ModulePass):
    """Lower a linalg-on-tensors module (with TASD series already lowered to
    runtime calls) to the LLVM dialect for MLIR's ExecutionEngine.

    Public functions get ``llvm.emit_c_interface`` so they can be invoked
    with memref descriptors; elementwise tensor arithmetic becomes linalg;
    then one-shot bufferization across function boundaries, buffer
    deallocation, loops, and the conversion to LLVM (see
    ``UPSTREAM_PIPELINE``). Any remaining ``tasd.*`` op is an error: run
    ``tasd-lower-to-runtime-calls`` first.
    """

    name: ClassVar[str] = "tasd-cpu-to-llvm"

    def run(self, module: ir.Module) -> None:
        leftover: list[str] = []

        def visit(op: ir.Operation) -> ir.WalkResult:
            if op.name.startswith("tasd."):
                leftover.append(op.name)
                return ir.WalkResult.INTERRUPT
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
        if leftover:
            raise PipelineError(f"tasd-cpu-to-llvm: '{leftover[0]}' must be lowered first (run tasd-lower-to-runtime-calls)")
        for op in module.body.operations:
            if op.operation.name == "func.func" and "sym_visibility" not in op.attributes:
                op.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        with capture(module.context) as log:
            try:
                PassManager.parse(f"builtin.module({','.join(UPSTREAM_PIPELINE)})").run(module.operation)
            except ir.MLIRError as error:
                record_mlir_error(error)
                detail = log.errors[0].format() if log.errors else str(error).splitlines()[0]
                raise PipelineError(f"tasd-cpu-to-llvm failed: {detail}") from None
