"""``tasd-fold-weight-gathers``: a weight that torch-mlir gathers from a constant (a flipped, transposed filter) becomes that constant."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from tasdc.elements import constant_elements, make_elements
from tasdc.module import constant_int, ops_named
from tasdc.passes.base import ModulePass
from tasdc.passes.fold_batch_norm import erase_dead

#: Contractions and the operands that may be weights.
_WEIGHT_OPERANDS = {
    "linalg.conv_2d_nchw_fchw": (1,),
    "linalg.matmul": (0, 1),
    "linalg.batch_matmul": (0, 1),
}
#: Reshapes between the gather and the contraction (``ConvTranspose1d``'s filter, made 4-D).
_RESHAPES = ("tensor.expand_shape", "tensor.collapse_shape")
#: Index arithmetic the gather body may use (on int64 index grids).
_INDEX_OPS = {"arith.addi": np.add, "arith.subi": np.subtract, "arith.muli": np.multiply}


def _gather_value(op: ir.OpView, sources: list[ir.Value]) -> np.ndarray | None:
    """The tensor a ``linalg.generic`` computes when it only gathers elements of constants.

    The generic has no inputs, all-parallel iterators, and a body of
    ``linalg.index``, integer constants, ``addi`` / ``subi`` / ``muli`` and
    ``index_cast`` on them, and ``tensor.extract`` from constant tensors at
    in-bounds indices, yielding an extracted element. ``None`` otherwise. The
    constants read are appended to ``sources``.
    """
    if op.name != "linalg.generic" or len(op.results) != 1 or len(op.inputs) != 0:
        return None
    if any(str(t) != "#linalg.iterator_type<parallel>" for t in ir.ArrayAttr(op.attributes["iterator_types"])):
        return None
    out_map = ir.AffineMapAttr(ir.ArrayAttr(op.attributes["indexing_maps"])[0]).value
    if list(out_map.results) != list(ir.AffineMap.get_identity(out_map.n_dims).results):
        return None
    result_type = op.results[0].type
    if not isinstance(result_type, ir.RankedTensorType) or not ir.RankedTensorType(result_type).has_static_shape:
        return None
    shape = list(ir.RankedTensorType(result_type).shape)
    block = op.regions[0].blocks[0]
    if any(True for _ in block.arguments[0].uses):
        return None  # reads its init
    grid = np.indices(shape, sparse=True)
    env: dict[ir.Value, np.ndarray] = {}

    def get(v: ir.Value) -> np.ndarray | None:
        if v in env:
            return env[v]
        number = constant_int(v)  # an integer constant defined anywhere
        return None if number is None else np.array(number, np.int64)

    for inner in block.operations:
        name = inner.operation.name
        if name == "linalg.index":
            env[inner.results[0]] = grid[ir.IntegerAttr(inner.attributes["dim"]).value]
        elif name == "arith.constant" and isinstance(inner.attributes["value"], ir.IntegerAttr):
            continue  # read by get()
        elif name in _INDEX_OPS or name == "arith.index_cast":
            operands = [get(v) for v in inner.operands]
            if any(o is None for o in operands):
                return None
            env[inner.results[0]] = operands[0] if name == "arith.index_cast" else _INDEX_OPS[name](*operands)
        elif name == "tensor.extract":
            source = constant_elements(inner.operands[0])
            indices = [get(v) for v in list(inner.operands)[1:]]
            if source is None or any(i is None for i in indices) or len(indices) != source.ndim:
                return None
            for axis, index in enumerate(indices):
                if index.min() < 0 or index.max() >= source.shape[axis]:
                    return None
            env[inner.results[0]] = source[tuple(indices)]
            sources.append(inner.operands[0])
        elif name == "linalg.yield":
            value = env.get(inner.operands[0])
            if value is None or value.dtype.kind in "iu" and not isinstance(ir.RankedTensorType(result_type).element_type, ir.IntegerType):
                return None
            return np.ascontiguousarray(np.broadcast_to(value, shape))
        else:
            return None
    return None


@dataclasses.dataclass(frozen=True)
class FoldWeightGathers(ModulePass):
    """Replace a contraction's weight operand that is gathered from a constant by the gathered constant.

    Rule, on tensors: the filter of a ``linalg.conv_2d_nchw_fchw`` (or an
    operand of a ``linalg.matmul`` / ``batch_matmul``) produced by a
    ``linalg.generic`` with no inputs whose body only computes indices from
    ``linalg.index`` with integer add / sub / mul and yields a
    ``tensor.extract`` of a constant tensor (torch-mlir's
    ``ConvTranspose2d``: ``F[o, i, h, w] = W[i, o, KH-1-h, KW-1-w]``, the
    filter transposed and flipped; ``ConvTranspose1d``'s, reshaped to 4-D on
    its way to the convolution) becomes a constant holding those
    elements, computed with numpy at compile time. The generic (and the fill
    and constant it leaves unused) is erased. Same elements: results are
    identical.

    Why: the contraction scan, the accelerator model and the CPU runtime
    take weights that are constants (through reshapes); a weight computed at
    run time from a constant was reported as "the filter is a run-time value"
    and left dense, and the gather ran on every call. Runs on the imported
    module, before the TASD passes.
    """

    name: ClassVar[str] = "tasd-fold-weight-gathers"

    def run(self, module: ir.Module) -> None:
        with module.context:
            folded = 0
            for name, positions in _WEIGHT_OPERANDS.items():
                for op in ops_named(module, name):
                    for position in positions:
                        operand = op.operands[position]
                        owner = operand.owner
                        while isinstance(owner, ir.OpView) and owner.name in _RESHAPES:
                            operand = owner.operands[0]
                            owner = operand.owner
                        if not isinstance(owner, ir.OpView) or owner.name != "linalg.generic":
                            continue
                        sources: list[ir.Value] = []
                        value = _gather_value(owner, sources)
                        if value is None:
                            continue
                        with ir.InsertionPoint(owner), owner.location:
                            attr = make_elements(value, f"tasd_gathered_weight_{folded}",
                                                 ir.RankedTensorType(operand.type))
                            constant = ir.Operation.create("arith.constant", results=[operand.type],
                                                           attributes={"value": attr})
                        folded += 1
                        operand.replace_all_uses_with(constant.results[0])
                        erase_dead(operand)
                        for source in sources:  # read inside the generic's body, not as its operands
                            if not any(True for _ in source.uses) and isinstance(source.owner, ir.OpView):
                                source.owner.operation.erase()
