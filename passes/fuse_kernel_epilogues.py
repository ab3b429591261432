"""``tasd-cpu-fuse-kernel-epilogues``: per-channel affine maps and clamps after a runtime kernel call, moved into the call."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import bufferization, func, memref

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass
from tasdc.passes.fold_batch_norm import channel_operand, erase_dead, scalar_constant
from tasdc.passes.lower_tasd_to_calls import KERNEL_ATTR, dynamic_memref
from tasdc.report import from_attr

#: The attribute of a kernel declaration holding its fused epilogue: f32 ``[scale[0:O],
#: shift[0:O], lo, hi]`` (what ``runtime/cpu/kernels.py``'s ``Epilogue`` reads).
EPILOGUE_ATTR = "tasd.epilogue"
#: A kernel declaration whose last operand is a residual added before the epilogue's clamp.
RESIDUAL_ATTR = "tasd.residual"

#: ``arith.cmpf`` predicates (MLIR's enum values): greater (ordered or not) / less.
_GREATER = {2, 3, 9, 10}
_LESS = {4, 5, 11, 12}
_MAX = ("arith.maximumf", "arith.maxnumf")
_MIN = ("arith.minimumf", "arith.minnumf")


@dataclasses.dataclass
class AffineClamp:
    """``min(max(scale·y + shift (+ residual), lo), hi)`` per output channel, built op by
    op (also read by ``tasd-cpu-dense-to-library-calls`` for a convolution's clamps)."""

    scale: np.ndarray
    shift: np.ndarray
    lo: float = -np.inf
    hi: float = np.inf
    #: the run-time tensor added after the affine map, before any clamp (a residual)
    residual: ir.Value | None = None

    @property
    def clamped(self) -> bool:
        return self.lo != -np.inf or self.hi != np.inf

    def affine(self, name: str, c: np.ndarray, chain_first: bool) -> bool:
        """Compose ``y ∘ c`` (``c ∘ y`` unless ``chain_first``); ``False`` when it is not affine."""
        if self.clamped or self.residual is not None:
            return False  # an affine map after a clamp (or a residual) is not one map
        if name == "arith.addf":
            self.shift = self.shift + c
        elif name == "arith.subf":
            self.scale, self.shift = (self.scale, self.shift - c) if chain_first else (-self.scale, c - self.shift)
        elif name == "arith.mulf":
            self.scale, self.shift = self.scale * c, self.shift * c
        elif name == "arith.divf" and chain_first and np.all(c != 0):
            self.scale, self.shift = self.scale / c, self.shift / c
        else:
            return False
        return True

    def bound(self, upper: bool, c: float) -> None:
        """Compose ``min(y, c)`` (``upper``) or ``max(y, c)``."""
        if upper:
            self.lo, self.hi = min(self.lo, c), min(self.hi, c)
        else:
            self.lo, self.hi = max(self.lo, c), max(self.hi, c)


@dataclasses.dataclass(frozen=True)
class FuseKernelEpilogues(ModulePass):
    """Move the elementwise epilogue of a runtime kernel's result into the kernel.

    Rule: the result of a call to a ``tasd-lower-to-runtime-calls`` kernel
    (``conv2d``, or ``matmul`` with the weight on the right: the output channel
    is dim 1 of an f32 result), ``%r = bufferization.to_tensor``, whose only
    user starts a chain of all-parallel ``linalg.generic`` ops, each the only
    user of the one before, that read the chain with the identity map and
    otherwise only values known at compile time that are scalars or one per
    output channel (maps naming dim 1 alone), and whose bodies add, subtract,
    multiply or divide (by a non-zero value) those values, then clamp
    (``arith.maximumf`` / ``minimumf`` / ``maxnumf`` / ``minnumf``, or
    ``arith.cmpf`` + ``arith.select`` with a scalar bound: torch-mlir's ReLU,
    ReLU6, hardtanh): the chain is ``min(max(s·y + t, lo), hi)`` per channel
    (``s``, ``t`` composed in f64 then rounded to f32). The declaration gets
    ``tasd.epilogue`` = f32 ``[s, t, lo, hi]``, the chain's uses take ``%r``,
    and the chain and its dead constants are erased. The kernel applies the map
    to each block of finished sums while they are in L1, before it stores them
    (``runtime/cpu/kernels.py``, ``_epilogue``); the separate loop read and
    wrote the whole output once more. This is torch-mlir's BatchNorm after an
    N:M convolution (``tasd-cpu-fold-batch-norm`` folds it into dense filters
    only, and first turns its ``1/sqrt(var + eps)`` into a constant), and a
    Linear's ReLU.

    The affine map is rounded once where the ops rounded each step (f32
    rounding, not bit for bit); a NaN sum comes out as ``lo`` (a ``cmpf`` +
    ``select`` ReLU gives that too; ``maximumf`` would give NaN). The chain
    stops at an op that reads another run-time value (but for the residual
    below), whose result type differs, or that it does not support. ``max-chain`` bounds the ops
    fused per call.

    With ``residual`` (the default), a convolution's chain may also add one
    run-time tensor of the result's type through the identity map, after the
    affine ops and before the clamps, when it is defined before the call (and
    the declaration has that one call): ResNet's ``relu(bn(conv(x)) +
    identity)``, MobileNetV2's projection + shortcut. The tensor becomes the
    call's third operand (``bufferization.to_buffer`` read-only, cast to the
    dynamic memref type), the declaration gets the operand and
    ``tasd.residual``, and the kernel computes ``min(max(s·y + t + r, lo),
    hi)`` on each block (the add and the clamp in f32, as the loops did: same
    bits as the unfused map followed by them). The separate loop read two
    outputs and wrote one, on one thread.
    """

    name: ClassVar[str] = "tasd-cpu-fuse-kernel-epilogues"

    max_chain: int = 8
    residual: bool = True

    def __post_init__(self) -> None:
        if self.max_chain < 1:
            raise ValueError(f"max-chain must be >= 1, got {self.max_chain}")

    def run(self, module: ir.Module) -> None:
        kernels = {}
        for op in module.body.operations:
            if op.operation.name == "func.func" and KERNEL_ATTR in op.attributes and EPILOGUE_ATTR not in op.attributes:
                kernels[ir.StringAttr(op.attributes["sym_name"]).value] = op
        with module.context:
            calls = ops_named(module, "func.call")
            callers: dict[str, int] = {}
            for call in calls:
                callee = ir.FlatSymbolRefAttr(call.attributes["callee"]).value
                callers[callee] = callers.get(callee, 0) + 1
            for call in calls:
                callee = ir.FlatSymbolRefAttr(call.attributes["callee"]).value
                decl = kernels.get(callee)
                if decl is not None:
                    self._fuse(call, decl, residual=self.residual and callers[callee] == 1)

    def _fuse(self, call: ir.OpView, decl: ir.OpView, residual: bool) -> None:
        info = from_attr(decl.attributes[KERNEL_ATTR])
        if info.get("kind") not in ("conv2d", "matmul") or info.get("sparse_operand") != 1:
            return
        out = call.operands[1]
        while isinstance(out.owner, ir.OpView) and out.owner.name == "memref.cast":
            out = out.owner.operands[0]
        results = [u.owner for u in out.uses if isinstance(u.owner, ir.OpView) and u.owner.name == "bufferization.to_tensor"]
        if len(results) != 1:
            return
        value = results[0].results[0]
        out_type = ir.RankedTensorType(value.type)
        if not isinstance(out_type.element_type, ir.F32Type) or out_type.rank not in (2, 4) or not out_type.has_static_shape:
            return
        channels = out_type.shape[1]
        epilogue = AffineClamp(np.ones(channels), np.zeros(channels))
        residual = residual and info.get("kind") == "conv2d"
        chain: list[ir.OpView] = []
        while len(chain) < self.max_chain:
            users = [u.owner for u in value.uses]
            trial = dataclasses.replace(epilogue)
            if len(users) != 1 or not isinstance(users[0], ir.OpView) or not compose_step(users[0], value, channels, trial, residual):
                break
            if trial.residual is not None and not defined_before(trial.residual, call):
                break
            epilogue = trial
            chain.append(users[0])
            value = users[0].results[0]
        if not chain:
            return
        array = np.concatenate([epilogue.scale, epilogue.shift, [epilogue.lo, epilogue.hi]]).astype(np.float32)
        if not np.all(np.isfinite(array[:2 * channels])):
            return
        decl.attributes[EPILOGUE_ATTR] = ir.DenseElementsAttr.get(array)
        if epilogue.residual is not None:
            _pass_residual(call, decl, epilogue.residual)
        value.replace_all_uses_with(results[0].results[0])
        erase_dead(value)  # the chain, last op first, and the constants only it read


def defined_before(value: ir.Value, call: ir.OpView) -> bool:
    """``value`` is an argument of the block holding the op ``call`` or defined before it there
    (so it can be an operand of ``call``; also used by ``tasd-cpu-dense-to-library-calls``)."""
    owner = value.owner
    if isinstance(owner, ir.Block):
        return owner == call.operation.block
    op = owner.operation
    return op.block == call.operation.block and op.is_before_in_block(call.operation)


def _pass_residual(call: ir.OpView, decl: ir.OpView, residual: ir.Value) -> None:
    """Give the kernel ``call`` (and its declaration) ``residual`` as a third memref operand."""
    t = ir.RankedTensorType(residual.type)
    dyn = ir.ShapedType.get_dynamic_stride_or_offset()
    with ir.InsertionPoint(call), call.location:
        static = ir.MemRefType.get(list(t.shape), t.element_type, ir.StridedLayoutAttr.get(dyn, [dyn] * t.rank))
        view = bufferization.ToBufferOp(static, residual, read_only=True).result
        operand = memref.CastOp(dynamic_memref(t.rank, t.element_type), view).result
        new = func.CallOp([r.type for r in call.results], ir.FlatSymbolRefAttr(call.attributes["callee"]),
                          list(call.operands) + [operand])
    for old, replacement in zip(call.results, new.results):
        old.replace_all_uses_with(replacement)
    call.operation.erase()
    ftype = ir.FunctionType(ir.TypeAttr(decl.attributes["function_type"]).value)
    decl.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs) + [operand.type], list(ftype.results)))
    decl.attributes[RESIDUAL_ATTR] = ir.UnitAttr.get()


def compose_step(op: ir.OpView, chain: ir.Value, channels: int, epilogue: AffineClamp, residual: bool = False) -> bool:
    """Compose ``op`` into ``epilogue`` when it is a step of the rule (see the pass), leaving
    ``epilogue`` as it was otherwise. With ``residual`` the step may add one run-time
    operand of the chain's type (identity map) after the affine ops, before the clamps;
    it is recorded as ``epilogue.residual``."""
    if op.name != "linalg.generic" or len(op.results) != 1 or op.results[0].type != chain.type:
        return False
    if any(str(t) != "#linalg.iterator_type<parallel>" for t in ir.ArrayAttr(op.attributes["iterator_types"])):
        return False
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    identity = list(ir.AffineMap.get_identity(maps[-1].n_dims).results)
    inputs = list(op.inputs)
    if inputs.count(chain) != 1 or list(maps[inputs.index(chain)].results) != identity or list(maps[-1].results) != identity:
        return False
    block = op.regions[0].blocks[0]
    if len(list(block.arguments[len(inputs)].uses)):
        return False  # the body reads the init
    values: dict[ir.Value, np.ndarray] = {}
    runtime: dict[ir.Value, ir.Value] = {}  # body argument -> the run-time tensor it reads
    for index, operand in enumerate(inputs):
        if operand == chain:
            continue
        constant = channel_operand(op, index, channels)
        if constant is not None:
            values[block.arguments[index]] = constant
        elif residual and epilogue.residual is None and operand.type == chain.type and list(maps[index].results) == identity:
            runtime[block.arguments[index]] = operand
        else:
            return False
    trial = dataclasses.replace(epilogue)
    current = block.arguments[inputs.index(chain)]  # the chain's value inside the body
    compares: dict[ir.Value, tuple[bool, float]] = {}  # cmpf result -> (chain > bound, bound)

    def constant_of(v: ir.Value) -> np.ndarray | None:
        if v in values:
            return values[v]
        found = scalar_constant(v)
        return None if found is None else np.full(channels, float(found))

    def uniform(c: np.ndarray | None) -> float | None:
        return None if c is None or not np.all(c == c[0]) or np.isnan(c[0]) else float(c[0])

    for inner in block.operations:
        name = inner.operation.name
        operands = list(inner.operands)
        if name == "linalg.yield":
            if operands != [current]:
                return False
            epilogue.__dict__.update(trial.__dict__)
            return True
        if name == "arith.addf" and current in operands and any(v in runtime for v in operands):
            other = operands[1] if operands[0] == current else operands[0]
            if other not in runtime or trial.clamped or trial.residual is not None:
                return False
            trial.residual = runtime[other]
        elif name in ("arith.addf", "arith.subf", "arith.mulf", "arith.divf") and current in operands:
            chain_first = operands[0] == current
            c = constant_of(operands[1] if chain_first else operands[0])
            if c is None or operands[0] == operands[1] or not trial.affine(name, c, chain_first):
                return False
        elif name == "arith.negf" and operands == [current]:
            trial.affine("arith.mulf", np.full(channels, -1.0), True)
        elif (name in _MAX or name in _MIN) and current in operands:
            bound = uniform(constant_of(operands[1] if operands[0] == current else operands[0]))
            if bound is None:
                return False
            trial.bound(name in _MIN, bound)
        elif name == "arith.cmpf" and current in operands:
            predicate = ir.IntegerAttr(inner.attributes["predicate"]).value
            chain_first = operands[0] == current
            bound = uniform(constant_of(operands[1] if chain_first else operands[0]))
            if bound is None or predicate not in _GREATER | _LESS:
                return False
            compares[inner.results[0]] = ((predicate in _GREATER) == chain_first, bound)
            continue  # the chain value is unchanged until the select
        elif name == "arith.select" and operands[0] in compares:
            chain_greater, bound = compares[operands[0]]
            picked = [v == current for v in operands[1:]]
            if sorted(picked) != [False, True] or uniform(constant_of(operands[2 if picked[0] else 1])) != bound:
                return False
            # (chain > bound ? chain : bound) = max; (chain > bound ? bound : chain) = min
            trial.bound(upper=chain_greater != picked[0], c=bound)
        else:
            return False
        current = inner.results[0]
    return False

