"""``tasd-cpu-fold-batch-broadcasts``: a matrix broadcast over a batch_matmul's batch becomes one matmul."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import linalg, tensor

from tasdc.contractions import _broadcast_dims
from tasdc.module import ops_named
from tasdc.passes.base import ModulePass
from tasdc.contractions import has_default_maps


def _reassociation(groups: list[list[int]]) -> ir.ArrayAttr:
    i64 = ir.IntegerType.get_signless(64)
    return ir.ArrayAttr.get([ir.ArrayAttr.get([ir.IntegerAttr.get(i64, d) for d in g]) for g in groups])


def _broadcast_matrix(value: ir.Value) -> ir.Value | None:
    """The ``[K, N]`` matrix that ``value`` (``[B, K, N]``) broadcasts over its leading dim, else None."""
    owner = value.owner
    if not isinstance(owner, ir.OpView) or owner.name not in ("linalg.broadcast", "linalg.generic"):
        return None
    dims = _broadcast_dims(owner)
    if dims is None or dims[1] != [0] or dims[0] != [1, 2]:
        return None
    matrix = owner.operands[0]
    if ir.RankedTensorType(matrix.type).element_type != ir.RankedTensorType(value.type).element_type:
        return None  # a widening copy (arith.extf): left to the loop path
    return matrix


def _static(value: ir.Value) -> bool:
    return isinstance(value.type, ir.RankedTensorType) and ir.RankedTensorType(value.type).has_static_shape


@dataclasses.dataclass(frozen=True)
class FoldBatchBroadcasts(ModulePass):
    """Rewrite ``linalg.batch_matmul(A, broadcast(W))`` as one ``linalg.matmul``.

    Rule: a ``linalg.batch_matmul`` (default indexing maps, static shapes)
    whose right operand ``[B, K, N]`` is a ``[K, N]`` matrix broadcast over
    the batch (``linalg.broadcast`` with ``dimensions = [0]`` or the
    equivalent copy ``linalg.generic``) becomes ``collapse_shape`` of ``A``
    and of the init to ``[B*M, K]`` / ``[B*M, N]``, a ``linalg.matmul`` with
    ``W``, and ``expand_shape`` of the result back to ``[B, M, N]``
    (``tasd.*`` attributes move to the matmul). The broadcast is erased when
    nothing else uses it.

    Why: torch-mlir lowers attention projections (``nn.MultiheadAttention``,
    Hugging Face models) this way, and the broadcast materialises ``B``
    copies of the weight on every call (50 MB per layer of a 4-layer
    encoder at batch 8 × 64); one matmul over the folded batch reads the
    weight once. ``tasd-decompose-weights`` folds the same pattern for
    decomposed weights; this pass does it for the dense ones.
    """

    name: ClassVar[str] = "tasd-cpu-fold-batch-broadcasts"

    def run(self, module: ir.Module) -> None:
        with module.context:
            for op in ops_named(module, "linalg.batch_matmul"):
                self._fold(op)

    @staticmethod
    def _fold(op: ir.OpView) -> None:
        if len(op.operands) != 3 or len(op.results) != 1:
            return
        if not has_default_maps(op, "batch_matmul"):
            return  # a transposed or broadcast form of its own
        lhs, rhs, init = op.operands
        matrix = _broadcast_matrix(rhs)
        if matrix is None or not all(_static(v) for v in (lhs, init, matrix)):
            return
        b, m, k = ir.RankedTensorType(lhs.type).shape
        result_type = ir.RankedTensorType(op.results[0].type)
        element = result_type.element_type
        n = result_type.shape[2]
        with ir.InsertionPoint(op), op.location:
            flat = _reassociation([[0, 1], [2]])
            lhs2 = tensor.CollapseShapeOp(ir.RankedTensorType.get([b * m, k], ir.RankedTensorType(lhs.type).element_type), lhs, flat).result
            init2 = tensor.CollapseShapeOp(ir.RankedTensorType.get([b * m, n], element), init, flat).result
            product = linalg.matmul(lhs2, matrix, outs=[init2])
            for name in [getattr(a, "name", a) for a in op.attributes]:
                if name.startswith("tasd."):
                    product.owner.attributes[name] = op.attributes[name]
            value = tensor.ExpandShapeOp(result_type, product, flat, [], [b, m, n]).result
        op.results[0].replace_all_uses_with(value)
        broadcast = rhs.owner
        op.operation.erase()
        if not any(True for _ in broadcast.results[0].uses):
            out = broadcast.operands[len(broadcast.operands) - 1]
            broadcast.operation.erase()
            if isinstance(out.owner, ir.OpView) and out.owner.name == "tensor.empty" and not any(True for _ in out.uses):
                out.owner.erase()
