"""``tasd-cpu-reassociate-reductions``: f32 reduction combiners of ``linalg.generic`` may be reassociated."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects.arith import FastMathFlags

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass

#: Combiners that get ``reassoc``: the op whose result a reduction yields.
COMBINERS = {"arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf", "arith.maxnumf", "arith.minnumf"}


def _is_reduction(op: ir.OpView) -> bool:
    return any("reduction" in str(k) for k in ir.ArrayAttr(op.attributes["iterator_types"]))


@dataclasses.dataclass(frozen=True)
class ReassociateReductions(ModulePass):
    """Mark the combiner of every f32 reduction in a ``linalg.generic`` as reassociable.

    Rule: in a ``linalg.generic`` with at least one ``reduction`` iterator,
    an f32 ``arith.addf`` / ``mulf`` / ``maximumf`` / ``minimumf`` /
    ``maxnumf`` / ``minnumf`` that is yielded and takes the output block
    argument it is yielded into as an operand gets ``fastmath<reassoc>``
    (other flags it carries are kept). Nothing else changes.

    Why: LLVM vectorizes a floating-point reduction loop only when it may
    reorder the sum (``reassoc``); without it softmax's row max and sum and
    layer norm's mean and variance run one element at a time. Reordering
    changes a sum of n terms by at most ~n·2⁻²⁴ relative to the sum of
    magnitudes (the bound of any order), max/min not at all.
    """

    name: ClassVar[str] = "tasd-cpu-reassociate-reductions"

    def run(self, module: ir.Module) -> None:
        with module.context:
            decode: dict[ir.Attribute, FastMathFlags] = {}
            for generic in ops_named(module, "linalg.generic"):
                if not _is_reduction(generic):
                    continue
                block = generic.regions[0].blocks[0]
                n_in = len(generic.operands) - len(generic.results)
                outs = list(block.arguments)[n_in:]
                terminator = list(block.operations)[-1]
                for value, out in zip(terminator.operands, outs):
                    owner = value.owner
                    if not isinstance(owner, ir.OpView) and not isinstance(owner, ir.Operation):
                        continue
                    if owner.name not in COMBINERS or not isinstance(value.type, ir.F32Type):
                        continue
                    if out not in list(owner.operands):
                        continue
                    current = owner.attributes["fastmath"] if "fastmath" in owner.attributes else None
                    owner.attributes["fastmath"] = _with_reassoc(current, decode)


def _fastmath(flags: FastMathFlags) -> ir.Attribute:
    """The ``#arith.fastmath`` attribute of ``flags`` (built the way the generated arith bindings build it)."""
    return ir.Attribute.parse(f"#arith.fastmath<{flags}>")


def _with_reassoc(current: ir.Attribute | None, decode: dict[ir.Attribute, FastMathFlags]) -> ir.Attribute:
    """``current`` (absent: none) with ``reassoc`` added."""
    if current is None:
        return _fastmath(FastMathFlags.reassoc)
    if not decode:  # attribute -> flags, for every combination (the bindings give no reader)
        decode.update({_fastmath(FastMathFlags(bits)): FastMathFlags(bits) for bits in range(int(FastMathFlags.fast) + 1)})
    return _fastmath(decode[current] | FastMathFlags.reassoc)
