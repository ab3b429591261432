"""``tasd-expand-to-linalg``: TASD series back to dense linalg on the approximated weight."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import arith, linalg, tensor

from tasdc.dialects.tasd import dense_operand_of, sparse_operand_of
from tasdc.elements import make_elements
from tasdc.module import ops_named
from tasdc.passes.base import ModulePass
from tasdc.reference import series_weight



@dataclasses.dataclass(frozen=True)
class ExpandToLinalg(ModulePass):
    """Replace every ``tasd.series`` by one dense linalg contraction.

    The weight is the exact sum of the series' terms, scattered from the
    compressed constants at compile time by the numpy reference semantics
    (:mod:`tasdc.reference`), so the module computes what the series means
    with MLIR's own code. This is the oracle path the runtime kernels are
    tested against, and a fallback for targets without N:M kernels.
    """

    name: ClassVar[str] = "tasd-expand-to-linalg"

    def run(self, module: ir.Module) -> None:
        for index, series in enumerate(ops_named(module, "tasd.series")):
            terms = [t.owner for t in series.operands]
            first = terms[0]
            which, _ = sparse_operand_of(first)
            dense = dense_operand_of(first)
            weight = series_weight(series)
            kind = first.operation.name
            result_type = ir.RankedTensorType(series.results[0].type)
            with ir.InsertionPoint(series), series.location:
                if kind == "tasd.conv2d":
                    kh, kw = list(ir.DenseI64ArrayAttr(first.attributes["kernel_size"]))
                    weight = weight.reshape(weight.shape[0], -1, kh, kw)
                w_type = ir.RankedTensorType.get(list(weight.shape), result_type.element_type)
                w = arith.ConstantOp(w_type, make_elements(weight, f"tasd_expanded_{index}")).result
                zero = arith.ConstantOp(result_type.element_type, ir.FloatAttr.get(result_type.element_type, 0.0)).result
                empty = tensor.EmptyOp(list(result_type.shape), result_type.element_type).result
                init = linalg.fill(zero, outs=[empty])
                ins = [dense, w] if which == 1 else [w, dense]
                if kind == "tasd.matmul":
                    value = linalg.matmul(*ins, outs=[init])
                elif kind == "tasd.batch_matmul":
                    value = linalg.batch_matmul(*ins, outs=[init])
                else:
                    value = linalg.conv_2d_nchw_fchw(
                        dense, w, outs=[init],
                        strides=list(ir.DenseI64ArrayAttr(first.attributes["strides"])),
                        dilations=list(ir.DenseI64ArrayAttr(first.attributes["dilations"])),
                    )
            series.results[0].replace_all_uses_with(value)
            series.operation.erase()
            for term in terms:
                _, weight_op = sparse_operand_of(term)
                constants = [v.owner for v in weight_op.operands]
                term.operation.erase()
                if not any(len(list(r.uses)) for r in weight_op.results):
                    weight_op.operation.erase()
                for constant in constants:
                    if not any(len(list(r.uses)) for r in constant.results):
                        constant.operation.erase()
