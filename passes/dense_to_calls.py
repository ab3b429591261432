"""``tasd-cpu-dense-to-library-calls``: dense contractions become calls of the library entries."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, bufferization, func, memref, tensor

from tasdc.module import fill_value, ops_named, window_pair
from tasdc.passes.base import ModulePass
from tasdc.passes.fold_batch_norm import erase_dead
from tasdc.passes.fuse_kernel_epilogues import AffineClamp, compose_step, defined_before
from tasdc.passes.lower_tasd_to_calls import dynamic_memref, zero_pad_of
from tasdc.passes.tap_major_filters import VIEW_ATTR
from tasdc.passes.tile_batch import BATCH_OPERANDS_ATTR
from tasdc.contractions import has_default_maps

#: op name -> (library entry, operand ranks: input, filter/right, output)
_OPS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "linalg.matmul": ("tasd_dense_matmul", (2, 2, 2)),
    "linalg.batch_matmul": ("tasd_dense_batch_matmul", (3, 3, 3)),
    "linalg.conv_2d_nchw_fchw": ("tasd_dense_conv2d", (4, 4, 4)),
    "linalg.conv_2d_ngchw_gfchw": ("tasd_dense_conv2d", (5, 5, 5)),
    "linalg.depthwise_conv_2d_nchw_chw": ("tasd_dense_depthwise_conv2d", (4, 3, 4)),
}

#: A convolution with its bias and clamp (see ``_bias_clamp_epilogue``): X, W, Y and the bias
#: ``B[F]``, the i64 of the plain entry, then the clamp's bounds as f32.
EPILOGUE_ENTRIES = {
    "linalg.conv_2d_nchw_fchw": "tasd_dense_conv2d_epilogue",
    "linalg.depthwise_conv_2d_nchw_chw": "tasd_dense_depthwise_conv2d_epilogue",
}
#: ... and with a residual added before the clamp: X, W, Y, the bias, the residual ``R`` (Y's
#: shape), the i64 of the plain entry, the bounds.
RESIDUAL_ENTRY = "tasd_dense_conv2d_residual"

#: Number of i64 arguments after the three memrefs, per entry (see runtime/cpu/dense.py).
_SCALARS = {
    "tasd_dense_matmul": 0,
    "tasd_dense_batch_matmul": 0,
    "tasd_dense_conv2d": 7,  # groups, stride h/w, dilation h/w, zero padding top/left
    "tasd_dense_depthwise_conv2d": 6,  # stride h/w, dilation h/w, zero padding top/left
}


def _static_f32(value: ir.Value, rank: int) -> bool:
    if not isinstance(value.type, ir.RankedTensorType):
        return False
    t = ir.RankedTensorType(value.type)
    return t.rank == rank and t.has_static_shape and isinstance(t.element_type, ir.F32Type)


def _is_zero_fill(value: ir.Value) -> bool:
    """``value`` is a ``linalg.fill`` of the constant +0.0, possibly reshaped
    (``tasd-cpu-fold-batch-broadcasts`` collapses a batch_matmul's init)."""
    constant = fill_value(value, through_reshapes=True)
    return constant == 0.0 and math.copysign(1.0, constant) > 0


def contraction_flops(op: ir.OpView) -> int:
    """Multiply-adds × 2 of a supported contraction (its output size × reduction size × 2)."""
    out = ir.RankedTensorType(op.results[0].type).shape
    rhs = ir.RankedTensorType(op.operands[1].type).shape
    size = 1
    for d in out:
        size *= d
    if op.name == "linalg.matmul":
        reduction = rhs[0]
    elif op.name == "linalg.batch_matmul":
        reduction = rhs[1]
    elif op.name == "linalg.depthwise_conv_2d_nchw_chw":
        reduction = rhs[1] * rhs[2]
    else:  # filter [F, C, KH, KW] or [G, F, C, KH, KW]
        reduction = rhs[-3] * rhs[-2] * rhs[-1]
    return 2 * size * reduction


@dataclasses.dataclass(frozen=True)
class DenseToLibraryCalls(ModulePass):
    """Replace dense f32 contractions with calls of the CPU runtime's library entries.

    Rule: a ``linalg.matmul`` / ``linalg.batch_matmul`` (default indexing
    maps), ``linalg.conv_2d_nchw_fchw``, ``linalg.conv_2d_ngchw_gfchw`` or
    ``linalg.depthwise_conv_2d_nchw_chw`` whose operands and result are
    statically shaped f32 tensors, and which does at least ``min-flops``
    floating-point operations, becomes (destination-passing form, like the
    series calls)::

        %a = bufferization.to_buffer %lhs read_only    (and %rhs)
        %y = memref.alloc()
        func.call @tasd_dense_<kind>(%a, %b, %y, <i64 geometry…>)
        %r = bufferization.to_tensor %y restrict writable
        %s = arith.addf %r, %init      (unless %init is a fill of +0.0)

    A convolution whose input is a ``tensor.pad`` with zero on H and W only
    (how torch-mlir writes ``padding=``; ``zero_pad_of``, shared with the
    series calls) reads the unpadded tensor instead and
    passes the top and left padding to the entry, whose im2col (or depthwise
    loop) writes the zeros: no padded copy of the activation is made.

    ``@tasd_dense_<kind>`` is declared ``private`` with ``llvm.emit_c_interface``
    and fully dynamic strided memrefs; the executor binds it to the entry of
    the same name in ``runtime/cpu/dense.py`` (OpenBLAS ``sgemm``; im2col for
    convolutions; a direct loop for depthwise ones). An init that is a
    (reshaped) ``linalg.fill`` of +0.0 is dropped; any other init (a
    broadcast bias, a running sum) is added on tensors, where
    ``linalg-fuse-elementwise-ops`` fuses the addition with the elementwise
    ops that follow (bias + ReLU in one loop). A grouped convolution's
    ``[N, G, C, H, W]`` operands are collapsed to NCHW first. Everything
    else is left to the code generator.

    With ``epilogues`` (the default), a ``linalg.conv_2d_nchw_fchw`` or
    depthwise convolution whose init is a per-channel bias (``linalg.broadcast``
    of a 1-D tensor over N, H, W: a folded BatchNorm) or a +0.0 fill followed
    by a chain of clamps (ReLU, ReLU6, hardtanh as
    ``tasd-cpu-fuse-kernel-epilogues`` reads them) calls
    ``@tasd_dense_conv2d_epilogue`` / ``@tasd_dense_depthwise_conv2d_epilogue``
    with the bias (zeros for a fill) and the bounds instead: the entry adds
    and clamps each block of its output while it is in cache, with the same f32
    operations as the loop it replaces (same bits), and the chain and the
    broadcast are erased. A ``linalg.conv_2d_nchw_fchw``'s chain may also add
    one run-time tensor of its result's type (identity map) defined before the
    convolution, between the bias and the clamps (ResNet's shortcut): the call
    is ``@tasd_dense_conv2d_residual`` with that tensor after the bias, and the
    entry adds it and clamps over the output planes on all threads, the same
    f32 operations as the loop (same bits).
    """

    name: ClassVar[str] = "tasd-cpu-dense-to-library-calls"

    min_flops: int = 0
    epilogues: bool = True

    def __post_init__(self) -> None:
        if self.min_flops < 0:
            raise ValueError(f"min-flops must be >= 0, got {self.min_flops}")

    def run(self, module: ir.Module) -> None:
        declared: dict[str, func.FuncOp] = {}
        with module.context:
            for op in ops_named(module, *_OPS):
                if self._accepts(op):
                    self._rewrite(module, op, declared)

    def _accepts(self, op: ir.OpView) -> bool:
        entry, ranks = _OPS[op.name]
        if len(op.operands) != 3 or len(op.results) != 1:
            return False
        if op.name in ("linalg.matmul", "linalg.batch_matmul") and not has_default_maps(op, op.name):
            return False
        values = list(op.operands) + [op.results[0]]
        if not all(_static_f32(v, r) for v, r in zip(values, ranks + (ranks[2],))):
            return False
        return contraction_flops(op) >= self.min_flops

    @staticmethod
    def _declare(module: ir.Module, entry: str, ranks: tuple[int, int, int], declared: dict[str, func.FuncOp]) -> func.FuncOp:
        if entry in declared:
            return declared[entry]
        for op in module.body.operations:  # declared by an earlier run
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
                declared[entry] = op
                return op
        f32 = ir.F32Type.get()
        i64 = ir.IntegerType.get_signless(64)
        inputs = [dynamic_memref(ranks[0], f32), dynamic_memref(ranks[1], f32), dynamic_memref(ranks[2], f32)]
        if entry.endswith("_epilogue"):
            inputs += [dynamic_memref(1, f32)] + [i64] * _SCALARS[entry.removesuffix("_epilogue")] + [f32, f32]
        elif entry == RESIDUAL_ENTRY:
            inputs += [dynamic_memref(1, f32), dynamic_memref(4, f32)] + [i64] * _SCALARS["tasd_dense_conv2d"] + [f32, f32]
        else:
            inputs += [i64] * _SCALARS[entry]
        with ir.InsertionPoint.at_block_begin(module.body), ir.Location.unknown():
            decl = func.FuncOp(entry, ir.FunctionType.get(inputs, []), visibility="private")
        decl.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        if "depthwise" in entry:
            # X and Y hold the batch in dim 0: tasd-cpu-tile-batch may call it per image. Not the
            # sgemm convolutions: per image, two threads split each smaller GEMM instead of taking
            # an image each (dense MobileNetV2-1.25 at batch 8, two threads: 79.3 -> 92.8 ms).
            decl.attributes[BATCH_OPERANDS_ATTR] = ir.DenseI64ArrayAttr.get([0, 2])
        declared[entry] = decl
        return decl

    def _rewrite(self, module: ir.Module, op: ir.OpView, declared: dict[str, func.FuncOp]) -> None:
        entry, _ = _OPS[op.name]
        lhs, rhs, init = op.operands
        result_type = ir.RankedTensorType(op.results[0].type)
        accumulate = not _is_zero_fill(init)
        epilogue = _bias_clamp_epilogue(op) if self.epilogues and op.name in EPILOGUE_ENTRIES else None
        if epilogue is not None:
            entry, accumulate = EPILOGUE_ENTRIES[op.name], False
            if epilogue.residual is not None:
                entry = RESIDUAL_ENTRY
        grouped = op.name == "linalg.conv_2d_ngchw_gfchw"
        dyn = ir.ShapedType.get_dynamic_stride_or_offset()
        i64 = ir.IntegerType.get_signless(64)
        with ir.InsertionPoint(op), op.location:
            if grouped:  # [N, G, C, H, W] -> [N, G*C, H, W]; filter [G, F, C, KH, KW] -> [G*F, C, KH, KW]
                owner = lhs.owner
                if (isinstance(owner, ir.OpView) and owner.name == "tensor.expand_shape"
                        and [[int(ir.IntegerAttr(d).value) for d in ir.ArrayAttr(g)] for g in ir.ArrayAttr(owner.attributes["reassociation"])] == [[0], [1, 2], [3], [4]]):
                    lhs = owner.operands[0]  # the NCHW tensor torch-mlir split into groups
                else:
                    lhs = self._collapse(lhs, [[0], [1, 2], [3], [4]])
                rhs = self._collapse(rhs, [[0, 1], [2], [3], [4]])
                n, g, f, oh, ow = result_type.shape
                out_type = ir.RankedTensorType.get([n, g * f, oh, ow], result_type.element_type)
            else:
                out_type = result_type
            padding = [0, 0]
            padded = zero_pad_of(lhs) if op.name not in ("linalg.matmul", "linalg.batch_matmul") else None
            if padded is not None and _static_f32(padded[0], 4):  # the entry reads the unpadded input; its im2col writes the zeros
                lhs, padding = padded[0], padded[1][:2]
            ranks = (ir.RankedTensorType(lhs.type).rank, ir.RankedTensorType(rhs.type).rank, out_type.rank)
            decl = self._declare(module, entry, ranks, declared)

            def buffer(value: ir.Value) -> ir.Value:
                t = ir.RankedTensorType(value.type)
                static = ir.MemRefType.get(list(t.shape), t.element_type, ir.StridedLayoutAttr.get(dyn, [dyn] * t.rank))
                view = bufferization.ToBufferOp(static, value, read_only=True).result
                return memref.CastOp(dynamic_memref(t.rank, t.element_type), view).result

            out = memref.AllocOp(ir.MemRefType.get(list(out_type.shape), out_type.element_type), [], [], alignment=64).result
            out_arg = memref.CastOp(dynamic_memref(out_type.rank, out_type.element_type), out).result
            view = _tap_major_source(rhs)
            args = [buffer(lhs), buffer(rhs) if view is None else self._transposed_view(view, list(ir.DenseI64ArrayAttr(rhs.owner.attributes["permutation"]))), out_arg]
            scalars: list[int] = []
            if op.name.startswith("linalg.conv") or op.name.startswith("linalg.depthwise"):
                if entry.startswith("tasd_dense_conv2d"):  # groups
                    scalars.append(ir.RankedTensorType(op.operands[1].type).shape[0] if grouped else 1)
                scalars += window_pair(op, "strides") + window_pair(op, "dilations") + padding
            if epilogue is not None:
                f32 = ir.F32Type.get()
                bias, residual = epilogue.bias, epilogue.residual
                if bias is None:
                    zeros = ir.RankedTensorType.get([result_type.shape[1]], f32)
                    bias = arith.ConstantOp(zeros, ir.DenseElementsAttr.get_splat(zeros, ir.FloatAttr.get(f32, 0.0))).result
                args.append(buffer(bias))
                if residual is not None:
                    args.append(buffer(residual))
            args += [arith.ConstantOp(i64, v).result for v in scalars]
            if epilogue is not None:
                args += [arith.ConstantOp(f32, ir.FloatAttr.get(f32, bound)).result for bound in (epilogue.lo, epilogue.hi)]
            func.CallOp(decl, args)
            value = bufferization.ToTensorOp(out_type, out, restrict=True, writable=True).result
            if grouped:
                value = tensor.ExpandShapeOp(result_type, value, self._reassociation([[0], [1, 2], [3], [4]]), [], list(result_type.shape)).result
            if accumulate:
                value = arith.AddFOp(value, init).result
        original_init, original_lhs, original_rhs = op.operands[2], op.operands[0], op.operands[1]
        if epilogue is not None and epilogue.ops:
            end = epilogue.ops[-1].results[0]
            end.replace_all_uses_with(value)
            erase_dead(end)  # the clamps, last first
        op.results[0].replace_all_uses_with(value)
        op.operation.erase()
        _erase_if_dead(original_init.owner)
        _erase_if_dead(original_lhs.owner)
        if view is not None:
            _erase_if_dead(original_rhs.owner)

    @staticmethod
    def _transposed_view(source: ir.Value, permutation: list[int]) -> ir.Value:
        """The rearranged filter ``source`` (``[KH, KW, F, C]`` or ``[KH, F, C, KW]``) as a
        ``[F, C, KH, KW]`` memref view through the marked transpose's permutation
        (``memref.transpose``; no copy)."""
        t = ir.RankedTensorType(source.type)
        dyn = ir.ShapedType.get_dynamic_stride_or_offset()
        layout = ir.StridedLayoutAttr.get(dyn, [dyn] * 4)
        static = ir.MemRefType.get(list(t.shape), t.element_type, layout)
        buf = bufferization.ToBufferOp(static, source, read_only=True).result
        viewed = ir.MemRefType.get([t.shape[d] for d in permutation], t.element_type, layout)
        perm = ir.AffineMapAttr.get(ir.AffineMap.get_permutation(permutation))
        transposed = memref.TransposeOp(viewed, buf, perm).result
        return memref.CastOp(dynamic_memref(4, t.element_type), transposed).result

    @staticmethod
    def _reassociation(groups: list[list[int]]) -> ir.ArrayAttr:
        i64 = ir.IntegerType.get_signless(64)
        return ir.ArrayAttr.get([ir.ArrayAttr.get([ir.IntegerAttr.get(i64, d) for d in g]) for g in groups])

    def _collapse(self, value: ir.Value, groups: list[list[int]]) -> ir.Value:
        t = ir.RankedTensorType(value.type)
        shape = []
        for g in groups:
            size = 1
            for d in g:
                size *= t.shape[d]
            shape.append(size)
        return tensor.CollapseShapeOp(ir.RankedTensorType.get(shape, t.element_type), value, self._reassociation(groups)).result


def _tap_major_source(filter_value: ir.Value) -> ir.Value | None:
    """The ``[KH, KW, F, C]`` tensor behind a filter that ``tasd-cpu-tap-major-filters`` marked
    (a ``linalg.transpose`` with ``tasd.tap_major_view``), else None."""
    owner = filter_value.owner
    if not isinstance(owner, ir.OpView) or owner.name != "linalg.transpose" or VIEW_ATTR not in owner.attributes:
        return None
    return owner.operands[0]


def _erase_if_dead(owner: object) -> None:
    """Erase a now unused init producer (a fill, then its ``tensor.empty``) or input padding."""
    while isinstance(owner, ir.OpView) and owner.name in ("linalg.fill", "linalg.broadcast", "tensor.empty", "tensor.collapse_shape", "tensor.expand_shape", "tensor.pad", "linalg.transpose"):
        if any(True for r in owner.results for _ in r.uses):
            return
        nxt = owner.operands[len(owner.operands) - 1].owner if len(owner.operands) else None
        owner.operation.erase()
        owner = nxt


class _ConvEpilogue(NamedTuple):
    """What a convolution's library call takes over (see :func:`_bias_clamp_epilogue`)."""

    bias: ir.Value | None
    ops: list[ir.OpView]
    lo: float
    hi: float
    residual: ir.Value | None


def _bias_clamp_epilogue(op: ir.OpView) -> _ConvEpilogue | None:
    """``(bias, ops, lo, hi, residual)`` when the convolution ``op`` takes an epilogue entry (see
    :class:`DenseToLibraryCalls`): its per-channel bias (``None`` for a +0.0 fill), the ops
    after it (a residual add of a ``linalg.conv_2d_nchw_fchw`` defined before ``op``, clamps)
    and the bounds, the residual (or ``None``); ``None`` when it has none of them."""
    channels = ir.RankedTensorType(op.results[0].type).shape[1]
    init = op.operands[2]
    bias: ir.Value | None = None
    if not _is_zero_fill(init):
        owner = init.owner
        if not (isinstance(owner, ir.OpView) and owner.name == "linalg.broadcast"
                and [int(d) for d in ir.DenseI64ArrayAttr(owner.attributes["dimensions"])] == [0, 2, 3]
                and _static_f32(owner.operands[0], 1) and ir.RankedTensorType(owner.operands[0].type).shape == [channels]):
            return None
        bias = owner.operands[0]
    clamp = AffineClamp(np.ones(channels), np.zeros(channels))
    chain: list[ir.OpView] = []
    value = op.results[0]
    residual = op.name == "linalg.conv_2d_nchw_fchw"
    while len(chain) < 4:
        users = [u.owner for u in value.uses]
        trial = dataclasses.replace(clamp)
        if len(users) != 1 or not isinstance(users[0], ir.OpView) or not compose_step(users[0], value, channels, trial, residual):
            break
        if np.any(trial.scale != 1.0) or np.any(trial.shift != 0.0):
            break  # an affine op: not a clamp
        if trial.residual is not None and not defined_before(trial.residual, op):
            break
        clamp = trial
        chain.append(users[0])
        value = users[0].results[0]
    if bias is None and not chain:
        return None
    return _ConvEpilogue(bias, chain, clamp.lo, clamp.hi, clamp.residual)
