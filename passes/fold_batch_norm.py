"""``tasd-cpu-fold-batch-norm``: inference BatchNorm (any per-channel affine epilogue) folded into the convolution."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, linalg, tensor

from tasdc.elements import constant_elements, make_elements
from tasdc.module import fill_value, ops_named
from tasdc.passes.base import ModulePass

#: Convolutions whose output channel is dim 1 of the result and dim 0 of the filter.
_CONVS = ("linalg.conv_2d_nchw_fchw", "linalg.depthwise_conv_2d_nchw_chw")

#: ``arith.cmpf`` predicates (MLIR's enum values) -> numpy comparison.
_CMPF = {1: np.equal, 2: np.greater, 3: np.greater_equal, 4: np.less, 5: np.less_equal, 6: np.not_equal,
         8: np.equal, 9: np.greater, 10: np.greater_equal, 11: np.less, 12: np.less_equal, 13: np.not_equal}
_BINARY = {"arith.addf": np.add, "arith.subf": np.subtract, "arith.mulf": np.multiply, "arith.divf": np.divide}


def scalar_constant(value: ir.Value) -> np.ndarray | None:
    """The value of a scalar float ``arith.constant`` (0-d array), else ``None``."""
    owner = value.owner
    if not isinstance(owner, ir.OpView) or owner.name != "arith.constant":
        return None
    attr = owner.attributes["value"]
    if isinstance(attr, ir.FloatAttr):
        return np.array(ir.FloatAttr(attr).value, dtype=np.float64 if isinstance(attr.type, ir.F64Type) else np.float32)
    return None


def evaluate_constant(value: ir.Value) -> np.ndarray | None:
    """:func:`_evaluate_unchecked` when every element comes out finite (a NaN or an infinity
    is left for the model to compute at run time, as written)."""
    with np.errstate(all="ignore"):
        found = _evaluate_unchecked(value)
    return found if found is not None and np.all(np.isfinite(found)) else None


def _evaluate_unchecked(value: ir.Value, depth: int = 0) -> np.ndarray | None:
    """The value of a small tensor computed from constants alone (``None`` when it is
    not): constants, reshapes of them, and all-parallel ``linalg.generic`` ops with
    identity maps over such values whose bodies use the arithmetic below. This is
    how torch-mlir writes BatchNorm's ``1 / sqrt(var + eps)``; upstream constant
    folding does not read ``dense_resource`` weights."""
    if depth > 16:
        return None
    found = constant_elements(value)
    if found is not None:
        return found if found.dtype.kind == "f" else None
    owner = value.owner
    if not isinstance(owner, ir.OpView):
        return None
    if owner.name in ("tensor.expand_shape", "tensor.collapse_shape"):
        inner = _evaluate_unchecked(owner.operands[0], depth + 1)
        return None if inner is None else inner.reshape(ir.RankedTensorType(value.type).shape)
    if owner.name != "linalg.generic" or len(owner.results) != 1:
        return None
    op = owner
    n_in = len(op.inputs)
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if any(not m.is_permutation or list(m.results) != list(ir.AffineMap.get_identity(m.n_dims).results) for m in maps):
        return None
    if any(str(t) != "#linalg.iterator_type<parallel>" for t in ir.ArrayAttr(op.attributes["iterator_types"])):
        return None
    args = [_evaluate_unchecked(v, depth + 1) for v in op.inputs]
    if any(a is None for a in args):
        return None
    block = op.regions[0].blocks[0]
    env: dict[ir.Value, np.ndarray] = {block.arguments[i]: args[i] for i in range(n_in)}

    def get(v: ir.Value) -> np.ndarray | None:
        if v in env:
            return env[v]
        return scalar_constant(v)

    for inner in block.operations:
        name = inner.operation.name
        operands = [get(v) for v in inner.operands]
        if any(o is None for o in operands):
            return None
        if name in _BINARY:
            result = _BINARY[name](operands[0], operands[1])
        elif name == "arith.negf":
            result = np.negative(operands[0])
        elif name == "math.sqrt":
            result = np.sqrt(operands[0])
        elif name == "math.rsqrt":
            result = (np.ones((), operands[0].dtype) / np.sqrt(operands[0])).astype(operands[0].dtype)
        elif name in ("arith.truncf", "arith.extf"):
            result = np.asarray(operands[0]).astype(np.float64 if isinstance(inner.results[0].type, ir.F64Type) else np.float32)
        elif name == "arith.cmpf":
            compare = _CMPF.get(ir.IntegerAttr(inner.attributes["predicate"]).value)
            if compare is None or np.isnan(operands[0]).any() or np.isnan(operands[1]).any():
                return None
            result = compare(operands[0], operands[1])
        elif name == "arith.select":
            result = np.where(operands[0], operands[1], operands[2])
        elif name == "cf.assert":
            if not np.all(operands[0]):
                return None  # the model would fail here at run time: leave it to do so
            continue
        elif name == "linalg.yield":
            shape = ir.RankedTensorType(value.type).shape
            return np.broadcast_to(np.asarray(operands[0]), shape).astype(np.float32 if isinstance(ir.RankedTensorType(value.type).element_type, ir.F32Type) else np.float64)
        else:
            return None
        env[inner.results[0]] = np.asarray(result)
    return None


def channel_operand(op: ir.OpView, index: int, channels: int) -> np.ndarray | None:
    """Operand ``index`` of ``op`` as one value per output channel (dim 1), if it is one."""
    amap = ir.AffineMapAttr(ir.ArrayAttr(op.attributes["indexing_maps"])[index]).value
    dims = [str(r) for r in amap.results]
    if any(d not in ("d1", "0") for d in dims) or dims.count("d1") > 1:
        return None
    value = evaluate_constant(op.operands[index])
    if value is None:
        return None
    if "d1" not in dims:
        return np.full(channels, float(value.reshape(-1)[0])) if value.size == 1 else None
    return value.reshape(-1).astype(np.float64) if value.size == channels else None


def _affine_step(op: ir.OpView, chain: ir.Value, channels: int) -> tuple[str, np.ndarray, bool] | None:
    """``(kind, c, chain_first)`` when ``op`` computes ``chain ∘ c`` elementwise for a
    per-channel constant ``c`` (``∘`` one of + - * /), else ``None``."""
    if op.name != "linalg.generic" or len(op.results) != 1 or len(op.inputs) not in (1, 2):
        return None
    out_type = ir.RankedTensorType(op.results[0].type)
    if out_type.rank != 4 or out_type.shape != ir.RankedTensorType(chain.type).shape:
        return None
    if any(str(t) != "#linalg.iterator_type<parallel>" for t in ir.ArrayAttr(op.attributes["iterator_types"])):
        return None
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    identity = list(ir.AffineMap.get_identity(4).results)
    inputs = list(op.inputs)
    if inputs[0] != chain and (len(inputs) < 2 or inputs[1] != chain):
        return None
    at = inputs.index(chain)
    if list(maps[at].results) != identity or list(maps[-1].results) != identity:
        return None
    body = list(op.regions[0].blocks[0].operations)
    if len(body) != 2 or body[0].operation.name not in _BINARY or body[1].operation.name != "linalg.yield":
        return None
    arith_op, yield_op = body
    if yield_op.operands[0] != arith_op.results[0]:
        return None
    args = op.regions[0].blocks[0].arguments
    lhs, rhs = arith_op.operands
    if len(inputs) == 2:
        other = 1 - at
        constant = channel_operand(op, other, channels)
        pair = {args[at], args[other]}
        if constant is None or {lhs, rhs} != pair or lhs == rhs:
            return None
        chain_first = lhs == args[at]
    else:
        scalar = scalar_constant(rhs if lhs == args[0] else lhs)
        if scalar is None or args[0] not in (lhs, rhs) or lhs == rhs:
            return None
        constant = np.full(channels, float(scalar))
        chain_first = lhs == args[0]
    return arith_op.operation.name, constant, chain_first


@dataclasses.dataclass(frozen=True)
class FoldBatchNorm(ModulePass):
    """Fold per-output-channel affine epilogues (inference BatchNorm) into the convolution.

    Rule: a ``linalg.conv_2d_nchw_fchw`` or ``linalg.depthwise_conv_2d_nchw_chw``
    on f32 whose filter is a constant (through reshapes) and whose init is a
    fill of 0.0 or a broadcast of a per-channel constant (a bias), followed by
    a chain of elementwise ``linalg.generic`` ops, each used once, that add,
    subtract, multiply or divide by a value per output channel known at
    compile time (torch-mlir's BatchNorm: ``(y - mean) * (1/sqrt(var + eps))
    * gamma + beta``, where ``1/sqrt(var + eps)`` is itself a ``linalg.generic``
    over constants, evaluated here), becomes one convolution: the chain is
    ``y * s + t`` per channel, so the filter's output channel ``f`` is scaled
    by ``s[f]`` (``s`` composed in f64, rounded to f32, then multiplied in f32) and the init becomes
    ``linalg.broadcast`` of the shift ``t`` (the conv's bias). The folded
    filter is a new constant; the chain and its dead producers are erased.
    Whatever follows the chain (ReLU, a residual add) is left as it is.

    Second rule, for chains that cannot be folded into a filter (a TASD
    series' output, a conv with a run-time filter): a per-channel operand of
    a 4-D elementwise ``linalg.generic`` that is computed from constants
    alone (BatchNorm's ``1/sqrt(var + eps)``) becomes a constant, so the
    fused epilogue does not compute a square root and a division per element.

    Folding reorders roundings (``(x·W)·s`` becomes ``x·(W·s)``): results
    match to f32 rounding, not bit for bit. A per-output-channel scale keeps
    every N:M pattern of the filter (blocks run along the reduction axis),
    but this pass runs in the CPU lowering (``compile_for_cpu``, before
    weights are bound), after decomposition, so reports and the simulator see
    the model's weights as imported. ``max-chain`` bounds the ops folded per
    convolution.
    """

    name: ClassVar[str] = "tasd-cpu-fold-batch-norm"

    max_chain: int = 8

    def __post_init__(self) -> None:
        if self.max_chain < 1:
            raise ValueError(f"max-chain must be >= 1, got {self.max_chain}")

    def run(self, module: ir.Module) -> None:
        with module.context:
            for op in ops_named(module, *_CONVS):
                self._fold(op)
            for op in ops_named(module, "linalg.generic"):
                self._constant_operands(op)

    @staticmethod
    def _constant_operands(op: ir.OpView) -> None:
        """Replace a per-channel operand of a 4-D elementwise op that is computed from
        constants (``1/sqrt(var + eps)``) by its value."""
        if len(op.results) != 1 or not isinstance(op.results[0].type, ir.RankedTensorType):
            return
        out_type = ir.RankedTensorType(op.results[0].type)
        if out_type.rank != 4 or not out_type.has_static_shape:
            return
        for index, operand in enumerate(op.inputs):
            owner = operand.owner
            while isinstance(owner, ir.OpView) and owner.name in ("tensor.expand_shape", "tensor.collapse_shape"):
                owner = owner.operands[0].owner
            if not isinstance(owner, ir.OpView) or owner.name != "linalg.generic":
                continue  # a constant already, or a run-time value
            if channel_operand(op, index, out_type.shape[1]) is None:
                continue
            value = evaluate_constant(operand)
            if value is None:
                continue
            operand_type = ir.RankedTensorType(operand.type)
            with ir.InsertionPoint(op), op.location:
                constant = arith.ConstantOp(operand_type, ir.DenseElementsAttr.get(np.ascontiguousarray(value.reshape(operand_type.shape)), type=operand_type)).result
            op.operation.operands[index] = constant
            erase_dead(operand)

    def _fold(self, conv: ir.OpView) -> None:
        out_type = ir.RankedTensorType(conv.results[0].type)
        if not isinstance(out_type.element_type, ir.F32Type) or not out_type.has_static_shape:
            return
        channels = out_type.shape[1]
        weight = evaluate_constant(conv.operands[1])
        if weight is None or weight.shape[0] != channels:
            return
        init = conv.operands[2]
        if fill_value(init) == 0.0:
            shift = np.zeros(channels)
        else:
            shift = self._bias(init, channels)
            if shift is None:
                return
        scale = np.ones(channels)
        value = conv.results[0]
        chain: list[ir.OpView] = []
        while len(chain) < self.max_chain:
            users = [u.owner for u in value.uses]
            if len(users) != 1 or not isinstance(users[0], ir.OpView):
                break
            step = _affine_step(users[0], value, channels)
            if step is None:
                break
            kind, c, chain_first = step
            if kind == "arith.addf":
                shift = shift + c
            elif kind == "arith.subf":
                shift, scale = (shift - c, scale) if chain_first else (c - shift, -scale)
            elif kind == "arith.mulf":
                shift, scale = shift * c, scale * c
            elif chain_first and np.all(c != 0):  # divf by the constant
                shift, scale = shift / c, scale / c
            else:
                break
            chain.append(users[0])
            value = users[0].results[0]
        if not chain:
            return
        # in f32 (the scale rounded once, then each product): f64 doubled the cached start
        folded = np.multiply(weight, scale.astype(np.float32).reshape((-1,) + (1,) * (weight.ndim - 1)), dtype=np.float32)
        bias = shift.astype(np.float32)
        filter_type = ir.RankedTensorType(conv.operands[1].type)
        with ir.InsertionPoint(conv), conv.location:
            new_filter = arith.ConstantOp(filter_type, _elements(folded.reshape(filter_type.shape), "tasd_bn_filter", filter_type)).result
            bias_type = ir.RankedTensorType.get([channels], out_type.element_type)
            bias_value = arith.ConstantOp(bias_type, _elements(bias, "tasd_bn_bias", bias_type)).result
            empty = tensor.EmptyOp(list(out_type.shape), out_type.element_type).result
            new_init = linalg.broadcast(bias_value, outs=[empty], dimensions=[0, 2, 3]).results[0]
        old_filter, old_init = conv.operands[1], conv.operands[2]
        conv.operation.operands[1] = new_filter
        conv.operation.operands[2] = new_init
        value.replace_all_uses_with(conv.results[0])
        erase_dead(value)  # the chain, last op first, and the per-channel values only it used
        erase_dead(old_filter)
        erase_dead(old_init)

    @staticmethod
    def _bias(init: ir.Value, channels: int) -> np.ndarray | None:
        owner = init.owner
        if isinstance(owner, ir.OpView) and owner.name == "linalg.broadcast":
            dims = [int(d) for d in ir.DenseI64ArrayAttr(owner.attributes["dimensions"])]
            if dims == [0, 2, 3]:
                bias = evaluate_constant(owner.operands[0])
                if bias is not None and bias.size == channels:
                    return bias.reshape(-1).astype(np.float64)
            return None
        if isinstance(owner, ir.OpView) and owner.name == "linalg.generic" and len(owner.inputs) == 1:
            body = list(owner.regions[0].blocks[0].operations)
            if len(body) == 1 and body[0].operands[0] == owner.regions[0].blocks[0].arguments[0]:
                return channel_operand(owner, 0, channels)
        return None


#: Folded constants of at least this many bytes become ``dense_resource`` blobs (no copy;
#: ``tasd-cpu-bind-constants`` binds them as arguments, so their names, which MLIR makes
#: unique per context, never reach the compile-cache key); smaller ones stay in the code
#: as ``DenseElementsAttr`` (content-addressed). A large ``DenseElementsAttr`` would be
#: slow to read back: casting it to a resource attribute prints it into the error.
RESOURCE_BYTES = 1024


def _elements(array: np.ndarray, name: str, tensor_type: ir.RankedTensorType) -> ir.Attribute:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.nbytes >= RESOURCE_BYTES:
        return make_elements(array, name, tensor_type)
    return ir.DenseElementsAttr.get(array, type=tensor_type)


_ERASABLE = ("arith.constant", "linalg.generic", "linalg.fill", "linalg.broadcast", "tensor.empty",
             "tensor.expand_shape", "tensor.collapse_shape")


def erase_dead(value: ir.Value) -> None:
    """Erase ``value``'s producer when nothing else uses it, then, the same way, the
    producers of its operands (side-effect-free ops only; each op erased after all
    its users, and never touched again once erased)."""
    dead: list[ir.Operation] = []
    seen: set[ir.Operation] = set()
    work = [value]
    while work:
        owner = work.pop().owner
        if not isinstance(owner, ir.OpView) or owner.name not in _ERASABLE:
            continue
        operation = owner.operation
        if operation in seen:
            continue
        if any(use.owner.operation not in seen for r in owner.results for use in r.uses):
            continue
        seen.add(operation)
        dead.append(operation)
        work.extend(owner.operands)
    for operation in dead:
        operation.erase()
