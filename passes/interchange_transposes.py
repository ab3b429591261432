"""``tasd-cpu-interchange-transposes``: inner transposes copied in a cache-friendly loop order."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import linalg

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass


def loop_order(permutation: list[int]) -> list[int] | None:
    """The output dims of a ``linalg.transpose`` with ``permutation``, outermost loop
    first, for a copy that reads its input's last dim in the innermost loop and
    writes its output's last dim in the next one; ``None`` when the transpose keeps
    the last dim last (its innermost loop is a contiguous row copy already)."""
    rank = len(permutation)
    if rank < 2 or permutation[-1] == rank - 1:
        return None
    inner = permutation.index(rank - 1)  # the output dim that walks the input's last dim
    return [d for d in range(rank) if d not in (inner, rank - 1)] + [rank - 1, inner]


@dataclasses.dataclass(frozen=True)
class InterchangeTransposes(ModulePass):
    """Rewrite each inner ``linalg.transpose`` as a ``linalg.generic`` copy whose loops
    read the input along its last dim.

    Rule: a ``linalg.transpose`` on ranked tensors whose permutation moves the
    input's last dim away from the last position (an inner transpose, e.g. a key
    tensor ``[tokens, batch, heads, d] -> [batch, heads, d, tokens]``) becomes a
    ``linalg.generic`` with the same operands and a body that yields the input
    element, its loops ordered by :func:`loop_order`: the other dims in output
    order, then the output's last dim, then the dim that walks the input's
    last dim. Transposes that keep the last dim last are left alone.

    Why: ``convert-linalg-to-loops`` lowers a transpose with the output's dims
    as loops in order, so the innermost loop reads the input with the stride
    of a whole input row block (8 KB for a 64-head-dim key of 8 × 4 heads);
    rows that far apart map to the same L1 set and every read misses. In the
    new order the innermost loop reads consecutive floats and its writes, one
    output row apart, stay in L1 for the next iteration of the loop around it.
    The copy moves the same elements: results are identical.
    """

    name: ClassVar[str] = "tasd-cpu-interchange-transposes"

    def run(self, module: ir.Module) -> None:
        with module.context:
            for op in ops_named(module, "linalg.transpose"):
                self._rewrite(op)

    @staticmethod
    def _rewrite(op: ir.OpView) -> None:
        if len(op.results) != 1 or not isinstance(op.results[0].type, ir.RankedTensorType):
            return  # on memrefs (after bufferization) there is nothing to replace
        permutation = [int(p) for p in ir.DenseI64ArrayAttr(op.attributes["permutation"])]
        order = loop_order(permutation)
        if order is None:
            return
        rank = len(permutation)
        position = {dim: loop for loop, dim in enumerate(order)}  # output dim -> its loop
        out_map = ir.AffineMap.get(rank, 0, [ir.AffineDimExpr.get(position[j]) for j in range(rank)])
        # input dim k is output dim j with permutation[j] == k
        in_map = ir.AffineMap.get(rank, 0, [ir.AffineDimExpr.get(position[permutation.index(k)]) for k in range(rank)])
        source, init = op.operands[0], op.operands[1]
        element = ir.RankedTensorType(op.results[0].type).element_type
        with ir.InsertionPoint(op), op.location:
            generic = linalg.GenericOp(
                [op.results[0].type], [source], [init],
                ir.ArrayAttr.get([ir.AffineMapAttr.get(in_map), ir.AffineMapAttr.get(out_map)]),
                ir.ArrayAttr.get([ir.Attribute.parse("#linalg.iterator_type<parallel>")] * rank),
            )
            block = generic.regions[0].blocks.append(element, element)
            with ir.InsertionPoint(block):
                linalg.YieldOp([block.arguments[0]])
        op.results[0].replace_all_uses_with(generic.results[0])
        op.operation.erase()
