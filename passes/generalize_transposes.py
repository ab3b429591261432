"""``tasd-cpu-generalize-transposes``: row-keeping transposes as generics, so elementwise fusion folds them away."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass, apply_transform_script, remove_attribute

#: Discardable attribute that tags the transposes the transform script generalizes.
TAG = "tasd.generalize"

_SCRIPT = """module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %transposes = transform.structured.match attributes {{TAG}} in %root : (!transform.any_op) -> !transform.any_op
    %generics = transform.structured.generalize %transposes : (!transform.any_op) -> !transform.any_op
    transform.yield
  }
}"""


@dataclasses.dataclass(frozen=True)
class GeneralizeTransposes(ModulePass):
    """Rewrite each ``linalg.transpose`` on tensors that keeps the last dim last as the
    equivalent ``linalg.generic`` copy (upstream ``transform.structured.generalize``).

    Rule: a ``linalg.transpose`` with a ranked-tensor result whose permutation
    ends with the input's last dim (``[1, 0, 2]``, ``[2, 0, 1, 3]``: whole rows
    move) becomes a ``linalg.generic`` with the same operands, a permuted input
    map, an identity output map and a body that yields the input element.
    Transposes that move the last dim (a key tensor's ``[..., d, tokens]``) are
    left for ``tasd-cpu-interchange-transposes``, whose loop order they need.

    Why: ``linalg-fuse-elementwise-ops`` fuses a generic producer into its
    consumer, not a named transpose. As generics, the layout changes of
    attention — batch-first to sequence-first and back, the ``[q | k | v]``
    split into heads, the heads merged again — are read in place by the bias
    add, scaling or residual add that follows (or precedes) them, instead of
    each copying the activations once more. A transpose feeding a library
    call (a GEMM operand) stays a copy, now as a generic. Same elements in
    the same order of arithmetic: results are identical.
    Run it on tensors, before elementwise fusion.
    """

    name: ClassVar[str] = "tasd-cpu-generalize-transposes"

    def run(self, module: ir.Module) -> None:
        unit = ir.UnitAttr.get(module.context)
        tagged = 0
        for op in ops_named(module, "linalg.transpose"):
            if len(op.results) != 1 or not isinstance(op.results[0].type, ir.RankedTensorType):
                continue  # on memrefs (after bufferization) fusion cannot use it
            permutation = [int(p) for p in ir.DenseI64ArrayAttr(op.attributes["permutation"])]
            if permutation and permutation[-1] == len(permutation) - 1:
                op.operation.attributes[TAG] = unit
                tagged += 1
        if not tagged:
            return
        apply_transform_script(module, _SCRIPT.replace("{TAG}", TAG), self.name)
        remove_attribute(module, TAG)
