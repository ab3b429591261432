"""``tasd-lower-to-runtime-calls``: each TASD series becomes a call into the CPU runtime."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import bufferization, func, memref

from tasdc.dialects.tasd import dense_operand_of, sparse_operand_of
from tasdc.errors import TasdcError
from tasdc.module import ops_named
from tasdc.passes.base import ModulePass
from tasdc.report import LAYER_ATTR, STATS_ATTR, to_attr

KERNEL_ATTR = "tasd.kernel"
WEIGHTS_ATTR = "tasd.weights"
KERNEL_PREFIX = "tasd_kernel_"


def dynamic_memref(rank: int, element_type: ir.Type) -> ir.MemRefType:
    """``memref<?x…xT, strided<[?, …], offset: ?>>``: any layout may be passed."""
    dyn = ir.ShapedType.get_dynamic_size()
    layout = ir.StridedLayoutAttr.get(ir.ShapedType.get_dynamic_stride_or_offset(), [ir.ShapedType.get_dynamic_stride_or_offset()] * rank)
    return ir.MemRefType.get([dyn] * rank, element_type, layout)


def emit_kernel_call(module: ir.Module, at: ir.OpView, name: str, dense: ir.Value, result_type: ir.RankedTensorType,
                     attributes: dict[str, ir.Attribute]) -> ir.Value:
    """Declare ``func.func private @name(memref, memref)`` (``llvm.emit_c_interface``,
    plus ``attributes``) and call it before ``at`` in destination-passing form::

        %x = bufferization.to_buffer %dense read_only
        %y = memref.alloc()
        func.call @name(%x, %y)
        %r = bufferization.to_tensor %y restrict writable

    Both memrefs are passed fully dynamic and strided; returns ``%r``."""
    dense_type = ir.RankedTensorType(dense.type)
    in_type = dynamic_memref(dense_type.rank, dense_type.element_type)
    out_type = dynamic_memref(result_type.rank, result_type.element_type)
    with ir.InsertionPoint.at_block_begin(module.body), ir.Location.unknown():
        decl = func.FuncOp(name, ir.FunctionType.get([in_type, out_type], []), visibility="private")
    decl.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
    for key, value in attributes.items():
        decl.attributes[key] = value
    dyn = ir.ShapedType.get_dynamic_stride_or_offset()
    with ir.InsertionPoint(at), at.location:
        static_in = ir.MemRefType.get(list(dense_type.shape), dense_type.element_type,
                                      ir.StridedLayoutAttr.get(dyn, [dyn] * dense_type.rank))
        buffer = memref.CastOp(in_type, bufferization.ToBufferOp(static_in, dense, read_only=True).result).result
        out = memref.AllocOp(ir.MemRefType.get(list(result_type.shape), result_type.element_type), [], [],
                             alignment=64).result
        func.CallOp(decl, [buffer, memref.CastOp(out_type, out).result])
        return bufferization.ToTensorOp(result_type, out, restrict=True, writable=True).result


def zero_pad_of(value: ir.Value) -> tuple[ir.Value, list[int]] | None:
    """``(source, [ph_before, pw_before, ph_after, pw_after])`` when ``value``
    is a ``tensor.pad`` of an NCHW tensor with static, non-negative padding
    of the two spatial dimensions only and a constant zero (either sign) as
    padding value; else ``None``. A conv call reads such a pad's source and
    treats the padding as zeros, so the padded copy is never made."""
    owner = value.owner
    if not isinstance(owner, ir.OpView) or owner.operation.name != "tensor.pad":
        return None
    source = owner.operands[0]
    if len(list(owner.operands)) != 1 or ir.RankedTensorType(source.type).rank != 4:
        return None  # dynamic padding amounts
    low = list(ir.DenseI64ArrayAttr(owner.attributes["static_low"]))
    high = list(ir.DenseI64ArrayAttr(owner.attributes["static_high"]))
    if low[:2] != [0, 0] or high[:2] != [0, 0] or min(low + high) < 0:
        return None
    body = owner.regions[0].blocks[0]
    yields = list(body.operations)
    if len(yields) != 1 or yields[0].operation.name != "tensor.yield":
        return None
    scalar = yields[0].operands[0].owner
    if not isinstance(scalar, ir.OpView) or scalar.operation.name != "arith.constant":
        return None
    attr = scalar.attributes["value"]
    if not isinstance(attr, ir.FloatAttr) or ir.FloatAttr(attr).value != 0.0:
        return None
    return source, [low[2], low[3], high[2], high[3]]


def _erase_dead(ops: list[ir.OpView]) -> None:
    """Erase ``ops`` (consumers first) when nothing uses them any more."""
    for op in ops:
        if not any(len(list(r.uses)) for r in op.results):
            op.operation.erase()


@dataclasses.dataclass(frozen=True)
class LowerTasdToCalls(ModulePass):
    """Replace every ``tasd.series`` with a call to a runtime kernel.

    For series ``k`` the pass declares ``func.func private @tasd_kernel_k``
    taking the dense operand and the output as fully dynamic strided memrefs
    (``llvm.emit_c_interface``), and rewrites the series into
    destination-passing form::

        %x = bufferization.to_buffer %dense read_only
        %y = memref.alloc()
        func.call @tasd_kernel_k(%x, %y)
        %r = bufferization.to_tensor %y restrict writable

    The declaration carries what the runtime needs to build the kernel:
    ``tasd.kernel`` (kind, sparse operand, series config, per-term n/m/axis/
    padding, conv attributes, the layer name and dense shapes) and
    ``tasd.weights`` (each term's values and indices constants). The term ops
    and their constants are erased.

    A ``tasd.conv2d`` whose input is a ``tensor.pad`` with zeros on the two
    spatial dimensions (static amounts; how torch-mlir expresses a conv's
    ``padding``) takes the pad's *source*, and ``tasd.kernel`` records
    ``padding = [ph_before, pw_before, ph_after, pw_after]``: the kernel reads
    the padding as zeros, so the padded copy is not made (the pad is erased
    when nothing else uses it). ``fold-padding=false`` keeps the pad.
    """

    name: ClassVar[str] = "tasd-lower-to-runtime-calls"
    fold_padding: bool = True

    def run(self, module: ir.Module) -> None:
        existing = {
            ir.StringAttr(op.attributes["sym_name"]).value
            for op in module.body.operations
            if op.operation.name == "func.func"
        }
        counter = 0
        for series in ops_named(module, "tasd.series"):
            while f"{KERNEL_PREFIX}{counter}" in existing:
                counter += 1
            name = f"{KERNEL_PREFIX}{counter}"
            existing.add(name)
            self._lower(module, series, name)

    def _lower(self, module: ir.Module, series: ir.OpView, name: str) -> None:
        terms = [t.owner for t in series.operands]
        first = terms[0]
        which, _ = sparse_operand_of(first)
        dense = dense_operand_of(first)
        pad = None
        if first.operation.name == "tasd.conv2d" and self.fold_padding:
            folded = zero_pad_of(dense)
            if folded is not None:
                pad = dense.owner
                dense, padding = folded
        result_type = ir.RankedTensorType(series.results[0].type)
        dense_type = ir.RankedTensorType(dense.type)
        info: dict[str, object] = {
            "kind": first.operation.name.split(".", 1)[1],
            "sparse_operand": which,
            "config": ir.StringAttr(series.attributes["config"]).value,
            "dense_shape": list(dense_type.shape),
            "result_shape": list(result_type.shape),
            "terms": [],
        }
        if LAYER_ATTR in series.attributes:
            info["layer"] = ir.StringAttr(series.attributes[LAYER_ATTR]).value
        for key in ("kernel_size", "strides", "dilations"):
            if key in first.attributes:
                info[key] = list(ir.DenseI64ArrayAttr(first.attributes[key]))
        if pad is not None:
            info["padding"] = padding
        weights: list[ir.Attribute] = []
        producers: list[ir.OpView] = []
        for term in terms:
            _, weight = sparse_operand_of(term)
            attrs = {k: int(ir.IntegerAttr(weight.attributes[k]).value) for k in ("n", "m", "axis", "padding")}
            attrs["dense_shape"] = list(ir.RankedTensorType(weight.results[0].type).shape)
            info["terms"].append(attrs)  # type: ignore[union-attr]
            for operand in weight.operands:
                owner = operand.owner
                if not (isinstance(owner, ir.OpView) and owner.operation.name == "arith.constant"):
                    raise TasdcError(
                        f"{info.get('layer', name)}: tasd.sparse_weight operands must be constants to lower to runtime calls"
                    )
                weights.append(owner.attributes["value"])
                producers.append(owner)
            producers.insert(0, weight)
        attributes = {KERNEL_ATTR: to_attr(info), WEIGHTS_ATTR: ir.ArrayAttr.get(weights)}
        if STATS_ATTR in series.attributes:
            attributes[STATS_ATTR] = series.attributes[STATS_ATTR]
        value = emit_kernel_call(module, series, name, dense, result_type, attributes)
        series.results[0].replace_all_uses_with(value)
        series.operation.erase()
        # Terms first, then the weights and their constants, then a folded pad.
        _erase_dead(terms + producers + ([pad] if pad is not None else []))
