"""``tasd-cpu-keep-inner-loops``: innermost scalar loops of 16+ iterations are not fully unrolled by LLVM."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from tasdc.errors import PipelineError
from tasdc.module import constant_int
from tasdc.passes.base import ModulePass

#: The discardable attribute ``convert-scf-to-cf`` copies from an ``scf.for``
#: to its latch branch (it forwards every LLVM-dialect attribute), and the
#: inherent attribute of ``llvm.br`` / ``llvm.cond_br`` that becomes the
#: ``!llvm.loop`` metadata of the translated branch.
LOOP_ATTR = "llvm.loop_annotation"
BRANCH_ATTR = "loop_annotation"
ANNOTATION = "#llvm.loop_annotation<unroll = <disable = true>>"

_LOOPS = {"scf.for", "scf.parallel", "scf.while", "scf.forall", "affine.for", "affine.parallel"}


def trip_count(loop: ir.Operation) -> int | None:
    """The iterations of an ``scf.for`` with constant bounds and step, else ``None``."""
    lower, upper, step = (constant_int(v) for v in list(loop.operands)[:3])
    if lower is None or upper is None or step is None or step <= 0:
        return None
    return max(0, -(-(upper - lower) // step))


def _unit_last_stride(memref: ir.Type) -> bool:
    """Whether consecutive indices of the last dim of ``memref`` are consecutive in memory."""
    try:
        strides, _ = ir.MemRefType(memref).get_strides_and_offset()
    except RuntimeError:  # a layout map that is not strided
        return False
    return bool(strides) and strides[-1] == 1


def _vectorizes_along(loop: ir.Operation) -> bool:
    """Whether the body of ``loop`` is scalar, loop-free, and stores along the loop or not at all.

    Every ``memref.store`` must index its (unit-stride) last dim with the
    loop's induction variable, or not use that variable (an accumulator of
    a reduction over the loop). A store that steps through another dim as
    the loop runs (a transpose written column-wise) is left to LLVM's
    default: it vectorizes such a copy across the enclosing loop, along
    the stored rows, faster than along the strided one.
    """
    iv = loop.regions[0].blocks[0].arguments[0]
    good = True

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal good
        if op.name in _LOOPS or any(isinstance(v.type, ir.VectorType) for v in (*op.operands, *op.results)):
            good = False
        elif op.name == "memref.store":
            memref, indices = op.operands[1], list(op.operands)[2:]
            if any(index == iv for index in indices[:-1]):
                good = False
            elif indices and indices[-1] == iv and not _unit_last_stride(memref.type):
                good = False
        return ir.WalkResult.INTERRUPT if not good else ir.WalkResult.ADVANCE

    for op in loop.regions[0].blocks[0].operations:
        op.operation.walk(visit)
        if not good:
            break
    return good


@dataclasses.dataclass(frozen=True)
class KeepInnerLoops(ModulePass):
    """Mark innermost scalar ``scf.for`` loops of ``min_trip``+ iterations "do not unroll" for LLVM.

    On loops (memrefs, before ``convert-scf-to-cf``): an ``scf.for`` with
    constant bounds, at least ``min_trip`` iterations (default 16, one
    AVX-512 vector of f32), no loop and no vector value in its body, whose
    stores all write along the loop (its induction variable indexes their
    unit-stride last dim) or do not depend on it (a reduction's
    accumulator), gets ``llvm.loop_annotation =
    #llvm.loop_annotation<unroll = <disable = true>>``.
    ``convert-scf-to-cf`` forwards it to the loop's latch branch.

    On LLVM (after ``convert-to-llvm``): the forwarded attribute is
    discardable there, which the translation to LLVM IR ignores; the pass
    moves it to the branch's own ``loop_annotation``, which becomes
    ``!llvm.loop !{"llvm.loop.unroll.disable"}``.

    Why: the loops of an elementwise op over ``[8, 12, 32, 32]`` (attention
    heads of 32, a mask add, a bias add with a head split) have a
    contiguous innermost loop of 32. LLVM's O3 fully unrolls it before the
    loop vectorizer runs, then vectorizes the loop *around* it, across
    rows 32 floats apart, with gathers and scatters. Kept as a loop, the
    vectorizer takes it along the row with plain 16-lane loads and stores.
    Measured (one thread, AVX-512, ``[8, C, H, W]`` loop nests): elementwise
    4.3–5.6× faster for inner extents 16, 24, 28 and 32, transposed reads
    or not, 1.0–1.2× for 56 and 64; a row max 1.2–2.0× faster for 16–64.
    Below 16 the full unroll is kept (extents 7 and 14 were 0.8× without
    it); a transpose that writes along the enclosing loop was 0.7–0.8×
    without it, hence the store rule. Unrolling by the vectorizer itself
    (interleaving) is unaffected.
    """

    name: ClassVar[str] = "tasd-cpu-keep-inner-loops"

    min_trip: int = 16

    def __post_init__(self) -> None:
        if self.min_trip < 2:
            raise PipelineError(f"tasd-cpu-keep-inner-loops: min-trip must be at least 2, got {self.min_trip}")

    def run(self, module: ir.Module) -> None:
        with module.context:
            annotation = ir.Attribute.parse(ANNOTATION)
            loops: list[ir.Operation] = []
            branches: list[ir.Operation] = []

            def visit(op: ir.Operation) -> ir.WalkResult:
                if op.name == "scf.for" and LOOP_ATTR not in op.attributes:
                    loops.append(op)
                elif op.name in ("llvm.br", "llvm.cond_br") and LOOP_ATTR in op.attributes:
                    branches.append(op)
                return ir.WalkResult.ADVANCE

            module.operation.walk(visit)
            for loop in loops:
                count = trip_count(loop)
                if count is not None and count >= self.min_trip and _vectorizes_along(loop):
                    loop.attributes[LOOP_ATTR] = annotation
            for branch in branches:
                branch.attributes[BRANCH_ATTR] = branch.attributes[LOOP_ATTR]
                del branch.attributes[LOOP_ATTR]
