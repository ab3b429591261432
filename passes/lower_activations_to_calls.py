"""``tasd-lower-activations-to-calls``: TASD-A contractions become calls into the CPU runtime."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith

from tasdc.contractions import conv_attr, scan
from tasdc.dialects.tasd import activation_source, dense_operand_of, sparse_operand_of
from tasdc.elements import make_elements
from tasdc.module import ops_named
from tasdc.passes.base import ModulePass
from tasdc.passes.decompose_weights import _erase_if_dead, _is_zero_fill
from tasdc.passes.lower_tasd_to_calls import _erase_dead, emit_kernel_call
from tasdc.reference import series_weight
from tasdc.report import LAYER_ATTR, to_attr

ACT_KERNEL_ATTR = "tasd.act_kernel"
ACT_WEIGHTS_ATTR = "tasd.act_weights"
ACT_KERNEL_PREFIX = "tasd_act_kernel_"

_KINDS = {"tasd.matmul": "matmul", "tasd.batch_matmul": "batch_matmul", "tasd.conv2d": "conv2d"}


@dataclasses.dataclass
class _Names:
    """Fresh ``@tasd_act_kernel_k`` symbol names."""

    existing: set[str]
    counter: int = 0

    def fresh(self) -> str:
        while f"{ACT_KERNEL_PREFIX}{self.counter}" in self.existing:
            self.counter += 1
        name = f"{ACT_KERNEL_PREFIX}{self.counter}"
        self.existing.add(name)
        return name


@dataclasses.dataclass(frozen=True)
class LowerActivationsToCalls(ModulePass):
    """Replace every contraction of a ``tasd.decompose_activation`` with a runtime call.

    The rule, per ``tasd.decompose_activation %a = (%x)``:

    * a ``linalg.matmul``/``batch_matmul``/``conv_2d_nchw_fchw`` contracting
      ``%a`` with a constant weight, or a ``tasd.series`` whose dense operand
      is ``%a`` (TASD-W and TASD-A combined: the weight is the exact sum of
      the series' terms), becomes ``func.call @tasd_act_kernel_k(%x, %out)``
      in destination-passing form; the declaration carries
      ``tasd.act_kernel`` (kind, which operand is the activation, series,
      axis, shapes, conv attributes, layer) and ``tasd.act_weights`` (the
      dense weight constant). A non-zero ``outs`` init is added back.
    * any other use gets the decomposed value itself from an
      ``act_decompose`` call (a dense result; e.g. activation x activation).

    The kernels (:mod:`tasdc.runtime.cpu.act_kernels`) extract the terms from
    ``%x`` while they multiply; the decomposed activation is never built.
    """

    name: ClassVar[str] = "tasd-lower-activations-to-calls"

    def run(self, module: ir.Module) -> None:
        if not ops_named(module, "tasd.decompose_activation"):
            return  # nothing to lower (and modules built by other passes need not satisfy the scan)
        names = _Names({ir.StringAttr(op.attributes["sym_name"]).value
                        for op in module.body.operations if op.operation.name == "func.func"})
        for candidate in scan(module).candidates:
            which = 1 - candidate.sparse_operand
            source = activation_source(candidate.op.operands[which])
            if source is None:
                continue
            weight = candidate.weight
            if candidate.kind == "conv2d":
                weight = weight.reshape(ir.RankedTensorType(candidate.op.operands[1].type).shape)
            # (a batch_matmul with a weight broadcast over the batch is the matmul of its folded rows)
            value = _call(names, module, candidate.op, source, which, weight, candidate.layer, candidate.kind)
            init = candidate.op.operands[len(candidate.op.operands) - 1]
            if not _is_zero_fill(init):
                with ir.InsertionPoint(candidate.op), candidate.op.location:
                    value = arith.AddFOp(value, init).result
            candidate.op.results[0].replace_all_uses_with(value)
            _erase_if_dead(candidate.op)
        for series in ops_named(module, "tasd.series"):
            terms = [t.owner for t in series.operands]
            source = activation_source(dense_operand_of(terms[0]))
            if source is None:
                continue
            which = 1 - sparse_operand_of(terms[0])[0]
            weight = series_weight(series)
            if terms[0].name == "tasd.conv2d":
                kh, kw = list(ir.DenseI64ArrayAttr(terms[0].attributes["kernel_size"]))
                weight = weight.reshape(weight.shape[0], -1, kh, kw)
            layer = ir.StringAttr(series.attributes[LAYER_ATTR]).value if LAYER_ATTR in series.attributes else "series"
            value = _call(names, module, series, source, which, weight, layer, _KINDS[terms[0].name],
                          contraction=terms[0])
            series.results[0].replace_all_uses_with(value)
            series.operation.erase()
            producers: list[ir.OpView] = []
            for term in terms:
                _, sparse = sparse_operand_of(term)
                producers.append(sparse)
                producers.extend(v.owner for v in sparse.operands if isinstance(v.owner, ir.OpView))
            _erase_dead(terms + producers)
        for source in ops_named(module, "tasd.decompose_activation"):
            if any(True for _ in source.results[0].uses):
                value = _call(names, module, source, source, 0, None, "activation", "")
                source.results[0].replace_all_uses_with(value)
            source.operation.erase()


def _call(names: "_Names", module: ir.Module, at: ir.OpView, source: ir.OpView, which: int,
          weight: np.ndarray | None, layer: str, kind: str, contraction: ir.OpView | None = None) -> ir.Value:
    """Emit the call before ``at`` (``kind``: matmul, batch_matmul or conv2d; ignored without a
    weight); returns the result tensor (``at``'s result type)."""
    name = names.fresh()
    x = source.operands[0]
    x_type = ir.RankedTensorType(x.type)
    result_type = ir.RankedTensorType(at.results[0].type)
    op = contraction if contraction is not None else at
    config = ir.StringAttr(source.attributes["config"]).value
    info: dict[str, object] = {
        "kind": f"act_{kind}" if weight is not None else "act_decompose",
        "act_operand": which,
        "config": config,
        "axis": int(ir.IntegerAttr(source.attributes["axis"]).value),
        "dense_shape": list(x_type.shape),
        "result_shape": list(result_type.shape),
        "layer": ir.StringAttr(at.attributes[LAYER_ATTR]).value if LAYER_ATTR in at.attributes else layer,
    }
    if weight is not None and kind == "conv2d":
        info["strides"] = conv_attr(op, "strides")
        info["dilations"] = conv_attr(op, "dilations")
    attributes = {ACT_KERNEL_ATTR: to_attr(info)}
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        attributes[ACT_WEIGHTS_ATTR] = ir.ArrayAttr.get([make_elements(weight, f"{name}_weight")])
    return emit_kernel_call(module, at, name, x, result_type, attributes)
