"""``tasd-cpu-to-llvm``: bufferize linalg-on-tensors and lower it to the LLVM dialect."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from tasdc.diagnostics import capture, record_mlir_error
from tasdc.errors import PipelineError
from tasdc.passes.base import ModulePass
from tasdc.passes.dedup_functions import DedupFunctions
from tasdc.passes.demote_f64 import DemoteF64
from tasdc.passes.dense_to_calls import DenseToLibraryCalls
from tasdc.passes.expand_erf import ExpandErf
from tasdc.passes.expand_exp import ExpandExp
from tasdc.passes.generalize_transposes import GeneralizeTransposes
from tasdc.passes.inline_entry import InlineEntry
from tasdc.passes.interchange_transposes import InterchangeTransposes
from tasdc.passes.keep_inner_loops import KeepInnerLoops
from tasdc.passes.mark_noalias import MarkNoalias
from tasdc.passes.outline_loops import OutlineLoops
from tasdc.passes.reassociate_reductions import ReassociateReductions
from tasdc.passes.tile_batch import TileBatch, strip_batch_operands
from tasdc.passes.vectorize_contractions import VectorizeContractions

#: The upstream pipeline, in order. ``refback-munge-memref-copy`` rewrites
#: ``memref.copy`` into loops because the wheel ships no C runner utils.
#: ``convert-bufferization-to-memref`` turns the ``bufferization.clone`` that
#: buffer deallocation puts on a returned buffer the function does not own
#: (an argument returned as is, a constant, one value returned twice) into
#: an allocation and a copy; left alone it reached LLVM as an unrealized cast.
#: The vector passes lower what ``tasd-cpu-vectorize-contractions`` left
#: (transfers of rank > 1, then 1-D vectors to LLVM); without vector ops
#: they do nothing. ``expand-strided-metadata`` must precede ``lower-affine``.
#: ``math-expand-ops{ops=fpowi}`` turns ``math.fpowi`` (torch-mlir's
#: ``pow(x, 3.0)``, e.g. GPT-2's gelu_new) into multiplications for a
#: constant exponent and into ``math.powf`` (libm ``pow``) otherwise, so no
#: ``llvm.powi`` reaches LLVM: with an i64 exponent LLVM can only expand it
#: when the exponent is a visible constant and otherwise emits a call to
#: ``__powisf2``, which takes a C ``int`` ("POWI exponent does not match
#: sizeof(int)", then garbage).
UPSTREAM_PIPELINE = (
    "func.func(convert-elementwise-to-linalg)",
    # (with fuse: FUSION runs here, on tensors, before bufferization)
    "func.func(math-expand-ops{ops=fpowi})",
    "one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map "
    "unknown-type-conversion=identity-layout-map}",
    "buffer-deallocation-pipeline",
    "convert-bufferization-to-memref",
    "func.func(refback-munge-memref-copy)",
    "func.func(convert-linalg-to-loops)",
    "func.func(convert-vector-to-scf{full-unroll=true})",
    # (tasd-cpu-outline-loops runs here, see OUTLINE_BEFORE)
    "expand-strided-metadata",
    "lower-affine",
    "convert-scf-to-cf",
    "convert-vector-to-llvm",
    "convert-math-to-llvm",
    "convert-math-to-libm",
    "convert-to-llvm",
    "reconcile-unrealized-casts",
)

#: Elementwise fusion on tensors: producers of elementwise ``linalg.generic``
#: ops (bias adds, activations, broadcasts, casts, scalings) are fused into
#: their consumers, so one loop nest computes the chain without
#: materialising the intermediate tensors; canonicalize and cse clean up.
FUSION = ("func.func(linalg-fuse-elementwise-ops)", "canonicalize", "cse")
FUSE_AFTER = "func.func(convert-elementwise-to-linalg)"

#: ``tasd-cpu-interchange-transposes`` runs on tensors, right before this step;
#: ``tasd-cpu-tile-batch`` on memrefs right after it, before buffer deallocation
#: (which then frees the per-image buffers it allocates).
BUFFERIZE = "one-shot-bufferize"

#: ``tasd-cpu-outline-loops`` runs on loops over memrefs, right before this step.
OUTLINE_BEFORE = "expand-strided-metadata"

#: bfloat16 without compiler-rt: each bf16 arithmetic or math op is computed in
#: f32 and rounded back (``math-extend-to-supported-types``,
#: ``arith-emulate-unsupported-floats``: what LLVM's own promotion does), then
#: every f32↔bf16 conversion becomes integer arithmetic (round to nearest even,
#: a NaN stays a quiet NaN: ``arith-expand{include-bf16}``).
#: Without AVX-512 BF16 (or AVX-NE-CONVERT) LLVM would lower each rounding to a
#: call of compiler-rt's ``__truncsfbf2``, which neither this process nor libgcc
#: 12 defines ("Symbols not found: [ __truncsfbf2 ]" on an AVX2 machine). Added
#: right before the conversion to LLVM, and only to modules with bfloat16
#: values: ``arith-expand`` also rewrites ``maximumf`` and the like.
EXPAND_BF16 = ("func.func(math-extend-to-supported-types{target-type=f32})",
               "func.func(arith-emulate-unsupported-floats{source-types=bf16 target-type=f32})",
               "func.func(arith-expand{include-bf16=true})")
EXPAND_BF16_BEFORE = "convert-vector-to-llvm"

#: torch-mlir's TMTensor ops (``tm_tensor.scan`` for ``cumsum`` — RoBERTa's
#: position ids —, ``scatter``, ``sort``, ``attention``, …) are part of its
#: linalg-on-tensors output but implement no one-shot bufferization: they are
#: bufferized first by their own pass (each result a fresh ``memref.alloc``
#: behind a ``bufferization.to_tensor``, marked ``restrict`` so one-shot
#: analysis takes it, each input read where the op reads it:
#: ``_PrepareTmTensorBuffers``) and lowered to loops with the linalg ops. Added only to
#: modules that hold such ops.
TM_TENSOR_BUFFERIZE = "func.func(tm-tensor-bufferize)"
TM_TENSOR_TO_LOOPS = "func.func(tm-tensor-to-loops)"
TM_TENSOR_TO_LOOPS_BEFORE = "func.func(convert-linalg-to-loops)"


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

    With ``library`` (the default), dense f32 matmuls, batch matmuls and
    convolutions (also grouped and depthwise) become calls of the runtime's
    library entries (``tasd-cpu-dense-to-library-calls``: OpenBLAS
    ``sgemm``, im2col, a vectorized depthwise loop); with ``epilogues`` (the
    default) a convolution's bias and ReLU / ReLU6 go into the call. With ``vectorize`` (the
    default), the dense ``linalg.matmul`` / ``linalg.batch_matmul`` on static
    f32 tensors still left are tiled and vectorized by
    ``tasd-cpu-vectorize-contractions``; everything else (generics, fills)
    takes the loop path.

    With ``demote_f64`` (the default), f64 tensor arithmetic that only
    widens f32 data and is narrowed back (torch-mlir's layer-norm variance)
    is done in f32 (``tasd-cpu-demote-f64``).

    With ``expand_erf`` (the default), scalar f32 ``math.erf`` (GELU) becomes
    arithmetic LLVM can vectorize instead of a libm call per element
    (``tasd-cpu-expand-erf``, after the elementwise ops are linalg). With
    ``expand_exp`` (the default), scalar f32 ``math.exp`` (softmax, sigmoid,
    SiLU) likewise becomes a polynomial (``tasd-cpu-expand-exp``). With
    ``reassociate`` (the default), the combiners of f32 reductions (sums,
    max) may be reordered, so LLVM vectorizes softmax's and layer norm's
    row reductions (``tasd-cpu-reassociate-reductions``).

    With ``fuse`` (the default), elementwise ops are fused into one loop
    nest per chain on tensors, before bufferization (``FUSION``).

    With ``expand_bf16`` (the default), a module that holds bfloat16 values
    gets its f32↔bf16 conversions as integer arithmetic (``EXPAND_BF16``), so
    the code needs no compiler-rt helper on CPUs without bfloat16
    instructions; the results are the same bits (round to nearest even).

    With ``generalize_transposes`` (the default, with ``fuse``), a transpose that keeps
    the last dim last becomes a generic before the fusion
    (``tasd-cpu-generalize-transposes``), so the fusion folds it into the
    elementwise op next to it instead of copying the tensor.

    With ``interchange`` (the default), a transpose that moves the last dim
    is copied in a loop order that reads its input along rows
    (``tasd-cpu-interchange-transposes``, on tensors before bufferization).

    With ``outline`` (the default), every top-level loop nest is moved into
    its own never-inlined function by ``tasd-cpu-outline-loops`` once the
    loops exist, so LLVM optimises many small functions instead of one
    huge one (JIT time linear in the model size); with ``dedup`` (the
    default) identical outlined functions (the same layer repeated) are
    then merged by ``tasd-cpu-dedup-functions``, so LLVM compiles each loop
    nest once however deep the model is. With ``noalias`` (the default),
    the outlined nests' memref arguments that no other argument of the call
    aliases get LLVM ``noalias`` (``tasd-cpu-mark-noalias``), so LLVM can
    hoist loop-invariant loads and vectorize without overlap checks.

    With ``tile_batch`` (the default), a run of per-image ops (convolution
    calls, batch-parallel generics) whose buffers are large is put in a loop
    over the images right after bufferization (``tasd-cpu-tile-batch``), so
    one image's intermediates stay in cache from one call to the next
    (``tile_min_bytes`` / ``tile_trigger_bytes``: the pass's thresholds).

    With ``keep_inner_loops`` (the default), innermost scalar loops of 16 or
    more iterations are marked so that LLVM does not unroll them fully
    (``tasd-cpu-keep-inner-loops``); it then vectorizes them along the row
    instead of gathering across rows.

    Last, ``tasd-cpu-inline-entry`` inlines each public function into its
    C-interface wrapper (no call with thousands of scalar arguments left).
    """

    name: ClassVar[str] = "tasd-cpu-to-llvm"

    library: bool = True
    vectorize: bool = True
    expand_erf: bool = True
    expand_exp: bool = True
    reassociate: bool = True
    noalias: bool = True
    demote_f64: bool = True
    outline: bool = True
    fuse: bool = True
    dedup: bool = True
    expand_bf16: bool = True
    interchange: bool = True
    generalize_transposes: bool = True
    epilogues: bool = True
    tile_batch: bool = True
    keep_inner_loops: bool = True
    tile_min_bytes: int = TileBatch.min_bytes
    tile_trigger_bytes: int = TileBatch.trigger_bytes

    def __post_init__(self) -> None:
        TileBatch(self.tile_min_bytes, self.tile_trigger_bytes)  # their checks, as option errors

    def run(self, module: ir.Module) -> None:
        leftover: list[str] = []

        def visit(op: ir.Operation) -> ir.WalkResult:
            if op.name.startswith("tasd."):
                leftover.append(op.name)
                return ir.WalkResult.INTERRUPT
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
        if leftover:
            first = "tasd-lower-activations-to-calls" if leftover[0] == "tasd.decompose_activation" else "tasd-lower-to-runtime-calls"
            raise PipelineError(f"tasd-cpu-to-llvm: '{leftover[0]}' must be lowered first (run {first})")
        if self.demote_f64:
            DemoteF64().run(module)
        if self.library:
            DenseToLibraryCalls(epilogues=self.epilogues).run(module)
        if self.vectorize:
            VectorizeContractions().run(module)
        for op in module.body.operations:
            if op.operation.name == "func.func" and "sym_visibility" not in op.attributes:
                op.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        pipeline = UPSTREAM_PIPELINE
        if self.expand_bf16 and _has_bf16(module):
            at = pipeline.index(EXPAND_BF16_BEFORE)
            pipeline = pipeline[:at] + EXPAND_BF16 + pipeline[at:]
        if self.fuse:
            at = pipeline.index(FUSE_AFTER) + 1
            pipeline = pipeline[:at] + FUSION + pipeline[at:]
        tm_tensor = _has_tm_tensor(module)
        if tm_tensor:
            at = pipeline.index(TM_TENSOR_TO_LOOPS_BEFORE)
            pipeline = pipeline[:at] + (TM_TENSOR_TO_LOOPS,) + pipeline[at:]
        # The upstream steps in order, with tasdc's own passes where they run.
        steps: list[str | ModulePass] = list(pipeline)
        # On the scalar bodies of linalg.generic, i.e. after convert-elementwise-to-linalg:
        steps[1:1] = [p for p, on in ((ExpandErf(), self.expand_erf), (ExpandExp(), self.expand_exp),
                                      (ReassociateReductions(), self.reassociate)) if on]
        if self.fuse and self.generalize_transposes:  # on tensors, right before the fusion
            steps.insert(steps.index(FUSION[0]), GeneralizeTransposes())
        at = next(i for i, step in enumerate(steps) if isinstance(step, str) and step.startswith(BUFFERIZE))
        steps.insert(at + 1, _StripBatchOperands())  # the annotation is not for LLVM
        if self.tile_batch:  # on memrefs, right after bufferization
            steps.insert(at + 1, TileBatch(self.tile_min_bytes, self.tile_trigger_bytes))
        if tm_tensor:  # right before one-shot bufferization (after every pass on tensors)
            steps[at:at] = [TM_TENSOR_BUFFERIZE, _PrepareTmTensorBuffers()]
        if self.interchange:  # on tensors, right before bufferization
            steps.insert(at, InterchangeTransposes())
        if self.outline:
            at = steps.index(OUTLINE_BEFORE)
            # MarkNoalias first records which arguments to mark (before dedup, which then keeps
            # call sites apart), and at the end puts llvm.noalias on the recorded pointers.
            steps[at:at] = [p for p, on in ((OutlineLoops(), True), (MarkNoalias(), self.noalias),
                                            (DedupFunctions(), self.dedup)) if on]
            if self.noalias:
                steps.append(MarkNoalias())
        if self.keep_inner_loops:
            # Marks the loops right before they become branches; after the conversion to
            # LLVM it moves the forwarded mark onto the latch branches.
            steps.insert(steps.index(OUTLINE_BEFORE), KeepInnerLoops())
            steps.append(KeepInnerLoops())
        steps.append(InlineEntry())
        batch: list[str] = []
        for step in steps:
            if isinstance(step, str):
                batch.append(step)
                continue
            if batch:
                self._upstream(module, tuple(batch))
                batch = []
            step.run(module)

    @staticmethod
    def _upstream(module: ir.Module, passes: tuple[str, ...]) -> None:
        with capture(module.context) as log:
            try:
                PassManager.parse(f"builtin.module({','.join(passes)})", module.context).run(module.operation)
            except ir.MLIRError as error:
                record_mlir_error(error)
                detail = log.errors[0].format() if log.errors else str(error).splitlines()[0]
                raise PipelineError(f"tasd-cpu-to-llvm failed: {detail}") from None


@dataclasses.dataclass(frozen=True)
class _StripBatchOperands(ModulePass):
    """Drop ``tasd.batch_operands`` from the declarations once ``tasd-cpu-tile-batch`` ran (or not)."""

    name: ClassVar[str] = ""

    def run(self, module: ir.Module) -> None:
        strip_batch_operands(module)


@dataclasses.dataclass(frozen=True)
class _PrepareTmTensorBuffers(ModulePass):
    """Make what ``tm-tensor-bufferize`` leaves fit one-shot bufferization.

    * every ``bufferization.to_tensor`` of a ``memref.alloc`` (a TMTensor op's
      fresh result buffer, which no other tensor aliases) is marked
      ``restrict``, as one-shot analysis requires;
    * every ``bufferization.to_buffer`` that only TMTensor ops read (their
      ``ins``) moves right before its first reader. The type conversion puts it
      right after the tensor's producer; one-shot analysis sees the read there
      and may let an op in between write into the same buffer in place
      (the zero fill of ``cumsum``'s own output, made from the same
      ``tensor.empty`` as its input: RoBERTa's position ids all became 1).
    """

    name: ClassVar[str] = ""

    def run(self, module: ir.Module) -> None:
        to_buffers: list[ir.Operation] = []

        def visit(op: ir.Operation) -> ir.WalkResult:
            if op.name == "bufferization.to_tensor" and "restrict" not in op.attributes:
                owner = op.operands[0].owner
                owner = owner.operation if isinstance(owner, ir.OpView) else owner
                if isinstance(owner, ir.Operation) and owner.name == "memref.alloc":
                    op.attributes["restrict"] = ir.UnitAttr.get()
            elif op.name == "bufferization.to_buffer":
                to_buffers.append(op)
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
        for op in to_buffers:
            users = [use.owner for use in op.results[0].uses]
            users = [u.operation if isinstance(u, ir.OpView) else u for u in users]
            if not users or not all(u.name.startswith("tm_tensor.") and u.block == op.block for u in users):
                continue
            first = users[0]
            for user in users[1:]:
                if user.is_before_in_block(first):
                    first = user
            op.move_before(first)


def _has_tm_tensor(module: ir.Module) -> bool:
    """Whether ``module`` holds a torch-mlir TMTensor op (``tm_tensor.*``)."""
    found = False

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal found
        if op.name.startswith("tm_tensor."):
            found = True
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _has_bf16(module: ir.Module) -> bool:
    """Whether any operation of ``module`` has a bfloat16 operand or result (scalar,
    tensor, memref or vector)."""
    found = False

    def bf16(t: ir.Type) -> bool:
        if isinstance(t, ir.ShapedType):
            t = ir.ShapedType(t).element_type
        return isinstance(t, ir.BF16Type)

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal found
        if any(bf16(r.type) for r in op.results) or any(bf16(v.type) for v in op.operands):
            found = True
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found
