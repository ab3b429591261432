"""Numba CPU kernels for TASD series matmuls: ``Y = X @ (A1 + A2 + ... + Ak)ᵀ``.

Every ``Ai`` is an N:M structured-sparse weight in the canonical compressed
format of :mod:`tasdc.decompose` (``values`` + int8 in-block ``indices``
along a reduction ``axis``). This module

* packs one term (:func:`pack_term`) or a whole series (:func:`pack_series`)
  into the layout the kernel runs on (validating the compressed data once, at
  compile time),
* runs ``Y[T, O] = X[T, K] @ W_totalᵀ`` (:func:`series_matmul`) with all terms
  of a series merged into one pass,
* exposes a C-callable entry for JIT'ed MLIR code
  (:func:`make_cfunc_entry`), and
* runs a conv2d on the same micro-kernels (:func:`conv2d_series` and the
  conv C entry), its X tiles packed straight from the NCHW input (no im2col
  matrix; zero padding read as part of the input); :func:`im2col` remains
  for references and calibration.

Packed layout (``PackedSeries``)
--------------------------------
The weight is seen in ``[O, K]`` orientation (a ``[K, O]`` weight compressed
along axis 0 is transposed at pack time). K is cut into tiles of ``kb``
columns (``kb`` a multiple of every M of the series, ≤ 256). For one tile
every output row holds the same number of non-zero slots,
``tile_count[kt] = Σ_terms (kb / M_i) * N_i`` (fewer in the last tile), so the
slots of all terms are merged per (tile, row), sorted by K, and stored
tile-major::

    offset(kt, o, s) = tile_ptr[kt] + o * tile_count[kt] + s
    w_loc[offset]  uint8    column of the slot inside its tile (0 .. kb-1)
    w_val[offset]  float32  the weight value

Zero fillers of the compressed format are kept (every row of a tile has the
same count: structured work, balanced threads). 5 bytes per stored slot.

Kernel
------
One ``prange`` over work items = (T-tile, O-chunk) pairs (O is split only when
there are too few T-tiles for the threads). An item walks the K-tiles; for
each it first packs the X tile (``kb x TT`` floats, T-minor, zero padded past
T and K; ``TT`` = 64 rows of X for the wide micro-kernels, 128 for the
AVX-512 one when T >= 128 and ``kb <= 64`` (a 128 x 128 tile would be 64 KB,
twice L1), 16 for the narrow one used when T <= 32) into a
64-byte aligned buffer that stays in L1, from any input strides (row-major X
is transposed 8x8 blocks at a time with shuffles; a K-major ``cols.T`` from
:func:`im2col` is copied row by row). Then every weight row of the chunk runs
over its slots of that tile: the 8-lane wide micro-kernel runs two weight
rows at a time where it compiles with 32 vector registers (one row on an
AVX2 host's 16), 64 partial sums each in eight AVX registers (16 FMA chains)
and, per slot, one broadcast + eight FMAs with memory operands
(``x_tile[k_loc*64 : +64]``); the 16-lane one does two weight rows x 128
outputs (8 zmm each: every FMA reads its own X vector, so the kernel is
bound by loads, and 8 vectors per slot amortise the broadcast and index
loads), or four rows x 64 outputs on 64-row tiles; the narrow one does 4
weight rows x 16 outputs. Explicit
``<8 x float>`` / ``<16 x float>`` vectors come from small Numba intrinsics
below (``vload8`` / ``vfma16`` ..., one factory for both widths): Numba's
auto-vectoriser otherwise vectorises the slot loop as a gather. Partial sums
live in a per-item ``[O_chunk, TT]`` buffer across K-tiles (one FMA chain per
output over the slots in K order, whatever the lane width or thread count)
and are finally written (or added, ``accumulate=True``) to Y with Y's own
strides (8x8 shuffle transposes for a row-major Y). All terms of a series are
one merged slot stream: one pass, no dense temporaries, Y written once.

A conv2d (:func:`_conv_kernel`) is the same GEMM over all N*OH*OW output
pixels: each item cuts its pixels into runs of one output row once, then
packs every K-tile column (c, i, j) from the input rows those runs meet
(zeros in the padding), prefetching the next tile's input rows; its
``[filter, pixel]`` partial sums are copied into the NCHW output planes.
Per output the FMAs and their order are those of im2col + the GEMM kernel.

Direct conv layout (:func:`_dconv_kernel`, stride 1; ``layout="auto"``
takes it where :func:`_direct_conv_pays`): each image is packed once into
``kw`` zero-padded copies (copy ``j`` shifted by ``j`` columns, rows rounded
up to 8 floats), so the X column of filter tap ``(c, i, j)`` for output
pixels ``t0 .. t0+tt`` is the contiguous, aligned run at ``t0 + tap`` of
copy ``j``; a 1x1 conv without padding reads its input planes in place.
The micro-kernels' clones (``_dwide_item`` ...) read X there instead of a
packed tile, each slot carrying its tap offset; the same FMAs in the same
order per output as the X tiles, so the results are bit-identical.

The C entry (:func:`make_cfunc_entry`) runs the same kernel on memref
descriptors (2-D, the weight on either side, or a rank-3 ``batch_matmul``
with per-batch weights) and reports errors through an int32 status plus a
status record (``CFuncEntry.check_status()`` turns it into a
:class:`KernelError`).
"""

from __future__ import annotations

import ctypes
import math
import types as types_module
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numba
import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, prange, types
from numba.core.datamodel.models import PrimitiveModel
from numba.extending import intrinsic, register_model

__all__ = [
    "KernelError",
    "PackedTerm",
    "PackedSeries",
    "pack_term",
    "pack_series",
    "series_matmul",
    "CFuncEntry",
    "Epilogue",
    "make_cfunc_entry",
    "make_conv_cfunc_entry",
    "im2col",
    "conv2d_series",
    "MEMREF2D_FIELDS",
]

#: Supported block sizes.
SUPPORTED_M = (2, 4, 8, 16)
#: Rows of X per T-tile: wide kernel / narrow kernel.
TT_WIDE = 64
TT_NARROW = 16
#: Largest T handled by the narrow kernel.
NARROW_MAX_T = 32
#: Default K-tile (columns of X per tile); the X tile is kb*TT*4 bytes.
DEFAULT_KB = 64
#: K-tile of the 8-lane (AVX2) kernel for series of density >= 1/2 (:func:`default_kb`)
AVX2_KB_DENSE = 96


class KernelError(ValueError):
    """Invalid packed data or operands for a TASD CPU kernel (one-line message)."""


# --------------------------------------------------------------------------
# explicit f32 vectors for Numba: 8 lanes (AVX2 ymm) and 16 lanes (AVX-512 zmm)
# --------------------------------------------------------------------------


def _vector_ops(lanes: int) -> types_module.SimpleNamespace:
    """Numba intrinsics on ``<lanes x float>`` values: ``load(arr, i)`` /
    ``store(arr, i, v)`` (unaligned ``arr[i : i + lanes]``, no bounds or
    wraparound check), ``bcast(x)`` (a scalar in every lane), ``fma(a, b, c)``
    (``a * b + c`` lane-wise, ``llvm.fma``: one rounding) and ``add(a, b)``.
    Numba's auto-vectoriser would otherwise vectorise the slot loops as
    gathers."""
    vty = ir.VectorType(ir.FloatType(), lanes)
    fe_type = type(f"_Vec{lanes}fType", (types.Type,), {"__init__": lambda self: types.Type.__init__(self, name=f"Vec{lanes}f")})
    vec = fe_type()

    @register_model(fe_type)
    class _Model(PrimitiveModel):
        def __init__(self, dmm, fe):
            super().__init__(dmm, fe, vty)

    def ptr(context, builder, arrty, arr, idx):
        a = context.make_array(arrty)(context, builder, arr)
        return builder.bitcast(builder.gep(a.data, [idx]), vty.as_pointer())

    def f32_array(arr: Any) -> bool:
        return isinstance(arr, types.Array) and arr.dtype == types.float32

    @intrinsic
    def load(typingctx, arr, idx):
        if not (f32_array(arr) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            i = context.cast(builder, args[1], sig.args[1], types.intp)
            return builder.load(ptr(context, builder, sig.args[0], args[0], i), align=4)

        return vec(arr, idx), codegen

    @intrinsic
    def store(typingctx, arr, idx, v):
        if not (f32_array(arr) and isinstance(idx, types.Integer) and v == vec):
            return None

        def codegen(context, builder, sig, args):
            i = context.cast(builder, args[1], sig.args[1], types.intp)
            builder.store(args[2], ptr(context, builder, sig.args[0], args[0], i), align=4)
            return context.get_dummy_value()

        return types.none(arr, idx, v), codegen

    @intrinsic
    def bcast(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            val = context.cast(builder, args[0], sig.args[0], types.float32)
            v = builder.insert_element(ir.Constant(vty, ir.Undefined), val, ir.Constant(ir.IntType(32), 0))
            mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), mask)

        return vec(x), codegen

    @intrinsic
    def fma(typingctx, a, b, c):
        if not (a == vec and b == vec and c == vec):
            return None

        def codegen(context, builder, sig, args):
            mod = builder.module
            name = f"llvm.fma.v{lanes}f32"
            fn = mod.globals.get(name)
            if fn is None:
                fn = ir.Function(mod, ir.FunctionType(vty, [vty, vty, vty]), name)
            return builder.call(fn, list(args))

        return vec(a, b, c), codegen

    @intrinsic
    def add(typingctx, a, b):
        if not (a == vec and b == vec):
            return None

        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], args[1])

        return vec(a, b), codegen

    return types_module.SimpleNamespace(vtype=vty, vec=vec, load=load, store=store, bcast=bcast, fma=fma, add=add)


_ops8 = _vector_ops(8)
_ops16 = _vector_ops(16)
_V8 = _ops8.vtype
vload8, vstore8, vbcast8, vfma8, vadd8 = _ops8.load, _ops8.store, _ops8.bcast, _ops8.fma, _ops8.add
vload16, vstore16, vbcast16, vfma16, vadd16 = _ops16.load, _ops16.store, _ops16.bcast, _ops16.fma, _ops16.add


def _vec_ptr(context, builder, arrty, arr, idx):
    a = context.make_array(arrty)(context, builder, arr)
    return builder.bitcast(builder.gep(a.data, [idx]), _V8.as_pointer())


@intrinsic
def prefetch(typingctx, arr, idx):
    """Prefetch the cache line holding ``arr[idx]`` into L2 (never faults)."""
    if not (isinstance(arr, types.Array) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(a.data, [idx]), ir.IntType(8).as_pointer())
        mod = builder.module
        fn = mod.globals.get("llvm.prefetch.p0")
        if fn is None:
            i32 = ir.IntType(32)
            fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), "llvm.prefetch.p0")
        i32 = ir.IntType(32)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen


def host_has_avx512() -> bool:
    """Whether this CPU has AVX-512 F (16-lane f32 FMA), from LLVM's host feature list."""
    import llvmlite.binding as llvm

    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def wide_kernel_isa() -> str:
    """The wide micro-kernel picked at load time: ``avx512`` where the CPU has
    AVX-512 F, else ``avx2``; ``$TASDC_KERNEL_ISA`` (``avx2`` / ``avx512``)
    forces one (the 16-lane kernel still runs without AVX-512: LLVM splits
    its vectors)."""
    import os

    forced = os.environ.get("TASDC_KERNEL_ISA", "").strip().lower()
    if forced in ("avx2", "avx512"):
        return forced
    return "avx512" if host_has_avx512() else "avx2"


#: The wide micro-kernel of this process, picked once when the module loads.
_WIDE_ISA = wide_kernel_isa()


def _compiles_with_32_vector_registers() -> bool:
    """Whether Numba compiles for a CPU with AVX-512's 32 vector registers
    (its ``NUMBA_CPU_FEATURES`` if set, else the host's features)."""
    features = numba.config.CPU_FEATURES
    if features:
        return "+avx512f" in features
    return host_has_avx512()


#: The 8-lane micro-kernel runs two weight rows per pass (16 accumulators +
#: 2 broadcasts = 18 live vectors) only where there are 32 vector registers;
#: with AVX2's 16 it runs one row per pass (two rows spilled 2 accumulators
#: per slot: 4 stack loads / stores per 16 FMAs, seen with
#: ``NUMBA_CPU_NAME=haswell``). Read as a constant when the kernels compile
#: (Numba's cache is keyed by the CPU, so each kind of host gets its own).
_PAIR_ROWS_8LANE = _compiles_with_32_vector_registers()


def _shuf(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))


@intrinsic
def vtranspose8x8(typingctx, src, soff, sstride, dst, doff, dstride):
    """dst[doff + j*dstride + i] = src[soff + i*sstride + j] for i, j in 0..7
    (8 row loads, 24 shuffles, 8 row stores; no bounds checks)."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == types.float32 and dst.dtype == types.float32):
        return None

    def codegen(context, builder, sig, args):
        sarr, so, ss, darr, do, ds = args
        so, ss = (context.cast(builder, v, t, types.intp) for v, t in ((so, sig.args[1]), (ss, sig.args[2])))
        do, ds = (context.cast(builder, v, t, types.intp) for v, t in ((do, sig.args[4]), (ds, sig.args[5])))
        rows = []
        for i in range(8):
            idx = builder.add(so, builder.mul(ss, ir.Constant(ss.type, i)))
            rows.append(builder.load(_vec_ptr(context, builder, sig.args[0], sarr, idx), align=4))
        lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        t = []
        for i in range(0, 8, 2):
            t += [_shuf(builder, rows[i], rows[i + 1], lo), _shuf(builder, rows[i], rows[i + 1], hi)]
        # t = [lo01, hi01, lo23, hi23, lo45, hi45, lo67, hi67]
        m44, mee = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        u = [
            _shuf(builder, t[0], t[2], m44), _shuf(builder, t[0], t[2], mee),
            _shuf(builder, t[1], t[3], m44), _shuf(builder, t[1], t[3], mee),
            _shuf(builder, t[4], t[6], m44), _shuf(builder, t[4], t[6], mee),
            _shuf(builder, t[5], t[7], m44), _shuf(builder, t[5], t[7], mee),
        ]
        plo, phi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        cols = [None] * 8
        for j in range(4):
            cols[j] = _shuf(builder, u[j], u[j + 4], plo)
            cols[j + 4] = _shuf(builder, u[j], u[j + 4], phi)
        for j in range(8):
            idx = builder.add(do, builder.mul(ds, ir.Constant(ds.type, j)))
            builder.store(cols[j], _vec_ptr(context, builder, sig.args[3], darr, idx), align=4)
        return context.get_dummy_value()

    return types.none(src, soff, sstride, dst, doff, dstride), codegen


def _ptr_intrinsic(elem):
    @intrinsic
    def _to_ptr(typingctx, addr):
        if not isinstance(addr, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(elem)))

        return types.CPointer(elem)(addr), codegen

    return _to_ptr


_ptr_f32 = _ptr_intrinsic(types.float32)
_ptr_u8 = _ptr_intrinsic(types.uint8)
_ptr_i64 = _ptr_intrinsic(types.int64)


# --------------------------------------------------------------------------
# packing
# --------------------------------------------------------------------------


@dataclass(eq=False)
class PackedTerm:
    """One validated N:M term in ``[O, K]`` orientation.

    ``kabs[o, j]`` is the absolute K position (int32, padded K, so it may be
    ≥ K only for zero fillers in the padding) of slot ``j`` of row ``o`` and
    ``vals[o, j]`` its value; ``j`` runs over ``(Kp // m) * n`` slots, block
    ``j // n``.
    """

    n: int
    m: int
    out_features: int  # O
    in_features: int  # K
    padding: int
    kabs: np.ndarray
    vals: np.ndarray
    source_axis: int = 1

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def num_blocks(self) -> int:
        return (self.in_features + self.padding) // self.m

    def to_dense(self) -> np.ndarray:
        """Dense ``[O, K]`` float32 weight (padding dropped)."""
        kp = self.in_features + self.padding
        d = np.zeros((self.out_features, kp), np.float32)
        rows = np.broadcast_to(np.arange(self.out_features)[:, None], self.kabs.shape)
        np.add.at(d, (rows, self.kabs), self.vals)
        return d[:, : self.in_features]


@dataclass(eq=False)
class PackedSeries:
    """A whole series merged into the kernel layout (see module docstring)."""

    out_features: int  # O
    in_features: int  # K
    kb: int
    patterns: tuple[str, ...]
    tile_count: np.ndarray  # int64 [ntiles]
    tile_ptr: np.ndarray  # int64 [ntiles + 1]
    w_loc: np.ndarray  # uint8 [total]
    w_val: np.ndarray  # float32 [total]
    terms: tuple[PackedTerm, ...] = field(default=(), repr=False)

    @property
    def ntiles(self) -> int:
        return int(self.tile_count.size)

    @property
    def slots_per_row(self) -> int:
        return int(self.tile_count.sum())

    @property
    def density(self) -> float:
        """Stored slots per dense weight element (e.g. 0.75 for 2:4+1:4)."""
        return self.slots_per_row / max(1, self.in_features)

    @property
    def nbytes(self) -> int:
        return int(self.w_loc.nbytes + self.w_val.nbytes + self.tile_ptr.nbytes + self.tile_count.nbytes)

    @property
    def series(self) -> str:
        return "+".join(self.patterns)

    def to_dense(self) -> np.ndarray:
        """Dense ``[O, K]`` float32 sum of all terms, rebuilt from the packed layout."""
        o, k = self.out_features, self.in_features
        d = np.zeros((o, self.ntiles * self.kb), np.float32)
        for kt in range(self.ntiles):
            c = int(self.tile_count[kt])
            p = int(self.tile_ptr[kt])
            loc = self.w_loc[p : p + o * c].reshape(o, c).astype(np.int64) + kt * self.kb
            val = self.w_val[p : p + o * c].reshape(o, c)
            rows = np.broadcast_to(np.arange(o)[:, None], loc.shape)
            np.add.at(d, (rows, loc), val)
        return d[:, :k]


def _term_label(term_index: int | None, n: int, m: int) -> str:
    return f"term {term_index} ({n}:{m})" if term_index is not None else f"term ({n}:{m})"


def pack_term(
    values: np.ndarray,
    indices: np.ndarray,
    n: int,
    m: int,
    axis: int,
    dense_shape: Sequence[int],
    padding: int,
    *,
    term_index: int | None = None,
) -> PackedTerm:
    """Validate one canonical compressed N:M term and convert it to
    absolute K positions in ``[O, K]`` orientation.

    ``dense_shape`` is ``(O, K)`` with ``axis=1`` (a ``[O, K]`` weight such as
    ``nn.Linear``) or ``(K, O)`` with ``axis=0`` (the ``linalg.matmul``
    B operand). Raises :class:`KernelError` naming the term and the position
    of the first problem.
    """
    label = _term_label(term_index, n, m)
    n, m = int(n), int(m)
    if m not in SUPPORTED_M:
        raise KernelError(f"{label}: M={m} not supported (M must be one of {SUPPORTED_M})")
    if not 1 <= n <= m:
        raise KernelError(f"{label}: N={n} must satisfy 1 <= N <= M={m}")
    dense_shape = tuple(int(s) for s in dense_shape)
    if len(dense_shape) != 2:
        raise KernelError(f"{label}: only 2-D weights are supported, dense shape is {list(dense_shape)}")
    if axis < 0:
        axis += 2
    if axis not in (0, 1):
        raise KernelError(f"{label}: axis {axis} out of range for a 2-D weight")
    values = np.asarray(values)
    indices = np.asarray(indices)
    k = dense_shape[axis]
    o = dense_shape[1 - axis]
    kp = -(-k // m) * m
    if padding != kp - k:
        raise KernelError(f"{label}: padding {padding} != {kp - k} for K={k}, M={m}")
    expected = [o, kp // m * n] if axis == 1 else [kp // m * n, o]
    if list(values.shape) != expected:
        raise KernelError(f"{label}: values shape {list(values.shape)} != expected {expected} for dense shape {list(dense_shape)}, axis {axis}")
    if indices.shape != values.shape:
        raise KernelError(f"{label}: indices shape {list(indices.shape)} != values shape {list(values.shape)}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise KernelError(f"{label}: indices dtype must be integer (int8), got {indices.dtype}")
    if not np.issubdtype(values.dtype, np.floating):
        raise KernelError(f"{label}: values dtype must be floating, got {values.dtype}")
    if axis == 0:
        values = values.T
        indices = indices.T
    idx = np.ascontiguousarray(indices).astype(np.int32, copy=False)
    nb = kp // m
    if idx.size:
        bad = (idx < 0) | (idx >= m)
        if bad.any():
            r, j = (int(v) for v in np.argwhere(bad)[0])
            pos = (r, j) if axis == 1 else (j, r)
            raise KernelError(
                f"{label}: index {int(idx[r, j])} out of range for M={m} at row {pos[0]}, column {pos[1]} of the indices array (block {j // n}, slot {j % n})"
            )
        if n > 1:
            blk = idx.reshape(o, nb, n)
            bad = np.diff(blk, axis=2) <= 0
            if bad.any():
                r, b, s = (int(v) for v in np.argwhere(bad)[0])
                raise KernelError(
                    f"{label}: indices {blk[r, b].tolist()} not distinct and ascending in block {b} of output row {r}"
                )
    kabs = (idx.reshape(o, nb, n) + (np.arange(nb, dtype=np.int32) * m)[None, :, None]).reshape(o, nb * n)
    vals = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(vals).all():
        r, j = (int(v) for v in np.argwhere(~np.isfinite(vals))[0])
        raise KernelError(f"{label}: non-finite value {vals[r, j]} at output row {r}, slot {j}")
    return PackedTerm(n=n, m=m, out_features=o, in_features=k, padding=padding, kabs=kabs, vals=vals, source_axis=axis)


def _term_from_obj(t: Any, i: int) -> PackedTerm:
    if isinstance(t, PackedTerm):
        return t
    pat = t.pattern
    if isinstance(pat, str):
        n, m = (int(v) for v in pat.split(":"))
    else:
        n, m = int(pat.n), int(pat.m)
    return pack_term(t.values, t.indices, n, m, int(t.axis), tuple(t.dense_shape), int(t.padding), term_index=i)


def default_kb(density: float, isa: str | None = None, conv: bool = False) -> int:
    """The K-tile width (before fitting it to K) for a series of this density
    and the wide micro-kernel ``isa`` (default: this process's, :func:`wide_kernel_isa`).

    Rule: the X tile (``kb x TT`` floats) must stay in L1 (32 KB on the
    machines measured) while each (weight row, K-tile) runs enough slots to
    amortise loading / storing its partial sums and the loop's start and
    exit. The 16-lane kernel's 128-row tiles allow 64 columns (32 KB); series
    of density < 1/4 get 128 columns and run 64-row tiles (``_series_kernel``
    picks 128 rows only for ``kb <= 64``); the 8-lane kernel's 64-row tiles allow
    128 columns (1:4 at 768² vs OpenBLAS Haswell: 2.7x with 64, 3.0x with
    128; 256 columns spill L1 and lose), but series of density >= 1/2 take
    96 (a 24 KB tile): on a 32 KB L1 (Zen 3) a 32 KB tile loses lines to the
    partial sums and weights streaming past it, and with 48+ slots per row
    the shorter tile costs little (2:4 at 768² on Zen 3: 4-9 % faster than
    128, 2:4+1:4 10-20 %; 1:4 and sparser keep 128, where 24 slots per
    (row, tile) are too few). The tile width does not change results: every
    output is one FMA chain over its slots in K order, through the float32
    partial-sum buffer.

    ``conv``: the series of a conv2d, whose X tiles are packed from the input
    image by every item (few filters share each tile): the 16-lane kernel
    takes 64 columns at every density, so that its tiles have 128 rows (1:8,
    3x3 64->64 at 56², batch 8: 64 columns 25 % faster than 128)."""
    if (isa or _WIDE_ISA) == "avx2":
        return AVX2_KB_DENSE if density >= 0.5 and not conv else 2 * DEFAULT_KB
    return DEFAULT_KB if density >= 0.25 or conv else 2 * DEFAULT_KB


def pack_series(terms: Any, *, kb: int | None = None, isa: str | None = None, conv: bool = False) -> PackedSeries:
    """Merge the terms of a series into the kernel layout.

    ``terms`` is a sequence of :class:`PackedTerm` or canonical compressed
    terms (anything with ``pattern, values, indices, axis, dense_shape,
    padding``, e.g. ``tasdc.decompose.CompressedTerm``), or an object with a
    ``.terms`` list (``tasdc.decompose.Decomposition``). All terms must have
    the same dense ``[O, K]`` shape (each may come in either orientation).
    ``kb`` (K-tile width) defaults to :func:`default_kb` for ``isa`` (the
    micro-kernel the series will mostly run on; any ISA gives the same
    results on any packing) and ``conv`` (a conv2d filter).
    """
    if hasattr(terms, "terms"):
        terms = terms.terms
    if isinstance(terms, PackedTerm) or hasattr(terms, "indices"):
        terms = [terms]
    pterms = [_term_from_obj(t, i) for i, t in enumerate(terms)]
    if not pterms:
        raise KernelError("cannot pack an empty series (a dense layer has no TASD terms)")
    o, k = pterms[0].out_features, pterms[0].in_features
    for i, t in enumerate(pterms):
        if (t.out_features, t.in_features) != (o, k):
            raise KernelError(
                f"term {i} ({t.pattern}): dense [O, K] shape {[t.out_features, t.in_features]} != term 0's {[o, k]}"
            )
    lcm = 1
    for t in pterms:
        lcm = lcm * t.m // math.gcd(lcm, t.m)
    if kb is None:
        if isa is not None and isa not in ("avx2", "avx512"):
            raise KernelError(f"isa must be 'avx2' or 'avx512', got {isa!r}")
        kb = default_kb(sum(t.n / t.m for t in pterms), isa, conv)
        # no wider than K (rounded up to the blocks): a wider tile would only
        # pack and zero columns past K (a first conv layer has K = 9 or 27)
        kp = max(t.in_features + t.padding for t in pterms)
        kb = min(kb, -(-kp // lcm) * lcm)
        kb = max(kb, lcm)
        # tiles of equal width (K = 144 as 72 + 72, not 128 + 16 mostly zeros)
        nt = -(-kp // kb)
        kb = max(lcm, -(-(-(-kp // nt)) // lcm) * lcm)
    kb = int(kb)
    if kb <= 0 or kb % lcm or kb > 256:
        raise KernelError(f"kb={kb} must be a positive multiple of every M ({lcm}) and at most 256")
    kp_max = max(t.in_features + t.padding for t in pterms)
    ntiles = -(-kp_max // kb) if k > 0 else 0
    counts = np.zeros(ntiles, np.int64)
    locs: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for kt in range(ntiles):
        ks, vs = [], []
        for t in pterms:
            b0 = kt * kb // t.m
            b1 = min(t.num_blocks, (kt + 1) * kb // t.m)
            if b1 > b0:
                ks.append(t.kabs[:, b0 * t.n : b1 * t.n])
                vs.append(t.vals[:, b0 * t.n : b1 * t.n])
        if not ks:
            continue
        kk = np.concatenate(ks, axis=1)
        vv = np.concatenate(vs, axis=1)
        order = np.argsort(kk, axis=1, kind="stable")
        kk = np.take_along_axis(kk, order, axis=1) - kt * kb
        vv = np.take_along_axis(vv, order, axis=1)
        counts[kt] = kk.shape[1]
        locs.append(kk.astype(np.uint8).ravel())
        vals.append(vv.ravel())
    tile_ptr = np.zeros(ntiles + 1, np.int64)
    tile_ptr[1:] = np.cumsum(counts * o)
    w_loc = np.concatenate(locs) if locs else np.zeros(0, np.uint8)
    w_val = np.concatenate(vals).astype(np.float32, copy=False) if vals else np.zeros(0, np.float32)
    # keep at least one element so that pointers into them are always valid
    if w_loc.size == 0:
        w_loc = np.zeros(1, np.uint8)
        w_val = np.zeros(1, np.float32)
    return PackedSeries(
        out_features=o,
        in_features=k,
        kb=kb,
        patterns=tuple(t.pattern for t in pterms),
        tile_count=counts,
        tile_ptr=tile_ptr,
        w_loc=np.ascontiguousarray(w_loc),
        w_val=np.ascontiguousarray(w_val),
        terms=tuple(pterms),
    )


# --------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _aligned_empty(n):
    """float32 buffer of n elements starting on a 64-byte boundary (8-lane
    loads never split a cache line)."""
    buf = np.empty(n + 16, np.float32)
    off = ((-buf.ctypes.data) % 64) // 4
    return buf[off : off + n]


@njit(fastmath=True, cache=True, nogil=True)
def _pack_tile(xbuf, xoff, xs0, xs1, T, K, t0, k0, kb, tt, dst):
    """dst[kk*tt + t] = x[t0+t, k0+kk], zero outside [0,T) x [0,K)."""
    tv = min(tt, T - t0)
    kv = min(kb, K - k0)
    if kv < 0:
        kv = 0
    if xs1 == 1 and xs0 != 1:
        # row-major X: transpose 8x8 blocks with shuffles, scalar edges
        tv8 = tv - tv % 8
        kv8 = kv - kv % 8
        for tb in range(0, tv8, 8):
            base = xoff + (t0 + tb) * xs0 + k0
            for kk in range(0, kv8, 8):
                vtranspose8x8(xbuf, base + kk, xs0, dst, kk * tt + tb, tt)
            for kk in range(kv8, kv):
                for t in range(tb, tb + 8):
                    dst[kk * tt + t] = xbuf[base + (t - tb) * xs0 + kk]
        for t in range(tv8, tv):
            base = xoff + (t0 + t) * xs0 + k0
            for kk in range(kv):
                dst[kk * tt + t] = xbuf[base + kk]
    else:
        for kk in range(kv):
            base = xoff + (k0 + kk) * xs1 + t0 * xs0
            row = dst[kk * tt : kk * tt + tt]
            if xs0 == 1:
                src = xbuf[base : base + tv]
                for t in range(tv):
                    row[t] = src[t]
            else:
                for t in range(tv):
                    row[t] = xbuf[base + t * xs0]
    if tv < tt:
        for kk in range(kv):
            for t in range(tv, tt):
                dst[kk * tt + t] = 0.0
    for i in range(kv * tt, kb * tt):
        dst[i] = 0.0


#: no tap offsets: the packed-tile micro-kernels address X columns as ``loc * tt``
_NO_TAPS = np.zeros(1, np.int64)


@njit(inline="always", nogil=True)
def _xcol(toff, loc, tt):
    """Start of X column ``loc`` (a slot's column inside its K-tile) in the
    packed X tile: ``loc * tt``. The direct conv layout's clones of the
    micro-kernels (``_dwide_item`` ...) use :func:`_xcol_tap` instead."""
    return np.intp(loc) * tt


@njit(inline="always", nogil=True)
def _xcol_tap(toff, loc, tt):
    """:func:`_xcol` of the direct conv layout, whose slots carry their
    column's tap offset (``loc``, int32) instead of its place in the K-tile:
    ``toff[0] + loc``, ``toff[0]`` being the tile's first pixel in the image
    (one add per slot, no table load: a table lookup per slot cost ~15 % at 2:4)."""
    return toff[0] + np.intp(loc)


@njit(fastmath=True, cache=True, nogil=True)
def _wide_item(xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines):
    """acc[o-o0, 0:64] += Σ_s w_val * xp[w_loc*64 : +64] for o in [o0, o0+no).

    Two weight rows at a time, 8 ymm partial sums each: 16 FMA chains (8
    leave no slack at a 4-5 cycle FMA latency and two FMA pipes), where
    there are 32 vector registers (``_PAIR_ROWS_8LANE``), else one. While row
    oi is computed, row oi of the *next* X tile's source
    (``xbuf[pf_base + oi*pf_rs : + pf_lines*16]``) is prefetched, so that
    X streaming from L3/DRAM overlaps the FMAs.
    """
    o2 = no - no % 2 if _PAIR_ROWS_8LANE else 0
    for oi in range(0, o2, 2):
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi, pf_rows, no)
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi + 1, pf_rows, no)
        ab = oi * 64
        p0 = wb + (o0 + oi) * cnt
        # slices: the slot loop then indexes with s >= 0 (no wraparound code)
        la = w_loc[p0 : p0 + cnt]
        lb = w_loc[p0 + cnt : p0 + 2 * cnt]
        wa = w_val[p0 : p0 + cnt]
        wb_ = w_val[p0 + cnt : p0 + 2 * cnt]
        a0 = vload8(acc, ab)
        a1 = vload8(acc, ab + 8)
        a2 = vload8(acc, ab + 16)
        a3 = vload8(acc, ab + 24)
        a4 = vload8(acc, ab + 32)
        a5 = vload8(acc, ab + 40)
        a6 = vload8(acc, ab + 48)
        a7 = vload8(acc, ab + 56)
        b0 = vload8(acc, ab + 64)
        b1 = vload8(acc, ab + 64 + 8)
        b2 = vload8(acc, ab + 64 + 16)
        b3 = vload8(acc, ab + 64 + 24)
        b4 = vload8(acc, ab + 64 + 32)
        b5 = vload8(acc, ab + 64 + 40)
        b6 = vload8(acc, ab + 64 + 48)
        b7 = vload8(acc, ab + 64 + 56)
        for s in range(cnt):
            ka = _xcol(toff, la[s], 64)
            kb_ = _xcol(toff, lb[s], 64)
            va = vbcast8(wa[s])
            vb = vbcast8(wb_[s])
            a0 = vfma8(va, vload8(xp, ka), a0)
            a1 = vfma8(va, vload8(xp, ka + 8), a1)
            a2 = vfma8(va, vload8(xp, ka + 16), a2)
            a3 = vfma8(va, vload8(xp, ka + 24), a3)
            a4 = vfma8(va, vload8(xp, ka + 32), a4)
            a5 = vfma8(va, vload8(xp, ka + 40), a5)
            a6 = vfma8(va, vload8(xp, ka + 48), a6)
            a7 = vfma8(va, vload8(xp, ka + 56), a7)
            b0 = vfma8(vb, vload8(xp, kb_), b0)
            b1 = vfma8(vb, vload8(xp, kb_ + 8), b1)
            b2 = vfma8(vb, vload8(xp, kb_ + 16), b2)
            b3 = vfma8(vb, vload8(xp, kb_ + 24), b3)
            b4 = vfma8(vb, vload8(xp, kb_ + 32), b4)
            b5 = vfma8(vb, vload8(xp, kb_ + 40), b5)
            b6 = vfma8(vb, vload8(xp, kb_ + 48), b6)
            b7 = vfma8(vb, vload8(xp, kb_ + 56), b7)
        vstore8(acc, ab, a0)
        vstore8(acc, ab + 8, a1)
        vstore8(acc, ab + 16, a2)
        vstore8(acc, ab + 24, a3)
        vstore8(acc, ab + 32, a4)
        vstore8(acc, ab + 40, a5)
        vstore8(acc, ab + 48, a6)
        vstore8(acc, ab + 56, a7)
        vstore8(acc, ab + 64 + 0, b0)
        vstore8(acc, ab + 64 + 8, b1)
        vstore8(acc, ab + 64 + 16, b2)
        vstore8(acc, ab + 64 + 24, b3)
        vstore8(acc, ab + 64 + 32, b4)
        vstore8(acc, ab + 64 + 40, b5)
        vstore8(acc, ab + 64 + 48, b6)
        vstore8(acc, ab + 64 + 56, b7)
    for oi in range(o2, no):
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi, pf_rows, no)
        ab = oi * 64
        p = wb + (o0 + oi) * cnt
        wl = w_loc[p : p + cnt]
        wv = w_val[p : p + cnt]
        a0 = vload8(acc, ab)
        a1 = vload8(acc, ab + 8)
        a2 = vload8(acc, ab + 16)
        a3 = vload8(acc, ab + 24)
        a4 = vload8(acc, ab + 32)
        a5 = vload8(acc, ab + 40)
        a6 = vload8(acc, ab + 48)
        a7 = vload8(acc, ab + 56)
        for s in range(cnt):
            k = _xcol(toff, wl[s], 64)
            v = vbcast8(wv[s])
            a0 = vfma8(v, vload8(xp, k), a0)
            a1 = vfma8(v, vload8(xp, k + 8), a1)
            a2 = vfma8(v, vload8(xp, k + 16), a2)
            a3 = vfma8(v, vload8(xp, k + 24), a3)
            a4 = vfma8(v, vload8(xp, k + 32), a4)
            a5 = vfma8(v, vload8(xp, k + 40), a5)
            a6 = vfma8(v, vload8(xp, k + 48), a6)
            a7 = vfma8(v, vload8(xp, k + 56), a7)
        vstore8(acc, ab, a0)
        vstore8(acc, ab + 8, a1)
        vstore8(acc, ab + 16, a2)
        vstore8(acc, ab + 24, a3)
        vstore8(acc, ab + 32, a4)
        vstore8(acc, ab + 40, a5)
        vstore8(acc, ab + 48, a6)
        vstore8(acc, ab + 56, a7)


@njit(inline="always", nogil=True)
def _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi, pf_rows, no):
    """Prefetch rows ``oi, oi + no, oi + 2*no, ...`` (< ``pf_rows``) of the next
    X tile's source: called once per weight row ``oi < no``, so every source
    row is fetched once even when the tile has more of them than the chunk
    has weight rows (a 1x1 conv's 128 input channels for 64 filters).
    Inlined, a while loop: most weight rows have nothing to fetch (``oi >=
    pf_rows``), and a call plus a ``range`` with a runtime step (a division)
    per weight row cost 2-16 % of a 1:4 / 1:8 call at BERT shapes on Zen 3."""
    r = oi
    while r < pf_rows:
        pb = pf_base + r * pf_rs
        for ln in range(pf_lines):
            prefetch(xbuf, pb + ln * 16)
        r += no


@njit(fastmath=True, cache=True, nogil=True)
def _wide_item16(xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines):
    """:func:`_wide_item` for 128-row X tiles with 16-lane vectors (AVX-512):
    two weight rows at a time, 8 zmm partial sums each (16 FMA chains, 18 of
    the 32 zmm registers).

    The 16-lane kernel is bound by loads, not FMAs: every FMA reads its own
    X vector (the slot's column of the tile), and each slot adds a broadcast
    and an index load. Eight X vectors per slot (instead of four) bring that
    to 1.25 loads per FMA. Per output the FMAs and their order are those of
    the 8-lane kernel (one chain over the slots, through ``acc``)."""
    o2 = no - no % 2
    for oi in range(0, o2, 2):
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi, pf_rows, no)
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi + 1, pf_rows, no)
        ab = oi * 128
        p0 = wb + (o0 + oi) * cnt
        la = w_loc[p0 : p0 + cnt]
        lb = w_loc[p0 + cnt : p0 + 2 * cnt]
        wa = w_val[p0 : p0 + cnt]
        wb_ = w_val[p0 + cnt : p0 + 2 * cnt]
        a0 = vload16(acc, ab)
        a1 = vload16(acc, ab + 16)
        a2 = vload16(acc, ab + 32)
        a3 = vload16(acc, ab + 48)
        a4 = vload16(acc, ab + 64)
        a5 = vload16(acc, ab + 80)
        a6 = vload16(acc, ab + 96)
        a7 = vload16(acc, ab + 112)
        b0 = vload16(acc, ab + 128)
        b1 = vload16(acc, ab + 144)
        b2 = vload16(acc, ab + 160)
        b3 = vload16(acc, ab + 176)
        b4 = vload16(acc, ab + 192)
        b5 = vload16(acc, ab + 208)
        b6 = vload16(acc, ab + 224)
        b7 = vload16(acc, ab + 240)
        for s in range(cnt):
            ka = _xcol(toff, la[s], 128)
            kb_ = _xcol(toff, lb[s], 128)
            va = vbcast16(wa[s])
            vb = vbcast16(wb_[s])
            a0 = vfma16(va, vload16(xp, ka), a0)
            a1 = vfma16(va, vload16(xp, ka + 16), a1)
            a2 = vfma16(va, vload16(xp, ka + 32), a2)
            a3 = vfma16(va, vload16(xp, ka + 48), a3)
            a4 = vfma16(va, vload16(xp, ka + 64), a4)
            a5 = vfma16(va, vload16(xp, ka + 80), a5)
            a6 = vfma16(va, vload16(xp, ka + 96), a6)
            a7 = vfma16(va, vload16(xp, ka + 112), a7)
            b0 = vfma16(vb, vload16(xp, kb_), b0)
            b1 = vfma16(vb, vload16(xp, kb_ + 16), b1)
            b2 = vfma16(vb, vload16(xp, kb_ + 32), b2)
            b3 = vfma16(vb, vload16(xp, kb_ + 48), b3)
            b4 = vfma16(vb, vload16(xp, kb_ + 64), b4)
            b5 = vfma16(vb, vload16(xp, kb_ + 80), b5)
            b6 = vfma16(vb, vload16(xp, kb_ + 96), b6)
            b7 = vfma16(vb, vload16(xp, kb_ + 112), b7)
        vstore16(acc, ab, a0)
        vstore16(acc, ab + 16, a1)
        vstore16(acc, ab + 32, a2)
        vstore16(acc, ab + 48, a3)
        vstore16(acc, ab + 64, a4)
        vstore16(acc, ab + 80, a5)
        vstore16(acc, ab + 96, a6)
        vstore16(acc, ab + 112, a7)
        vstore16(acc, ab + 128, b0)
        vstore16(acc, ab + 144, b1)
        vstore16(acc, ab + 160, b2)
        vstore16(acc, ab + 176, b3)
        vstore16(acc, ab + 192, b4)
        vstore16(acc, ab + 208, b5)
        vstore16(acc, ab + 224, b6)
        vstore16(acc, ab + 240, b7)
    for oi in range(o2, no):
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi, pf_rows, no)
        ab = oi * 128
        p = wb + (o0 + oi) * cnt
        wl = w_loc[p : p + cnt]
        wv = w_val[p : p + cnt]
        a0 = vload16(acc, ab)
        a1 = vload16(acc, ab + 16)
        a2 = vload16(acc, ab + 32)
        a3 = vload16(acc, ab + 48)
        a4 = vload16(acc, ab + 64)
        a5 = vload16(acc, ab + 80)
        a6 = vload16(acc, ab + 96)
        a7 = vload16(acc, ab + 112)
        for s in range(cnt):
            k = _xcol(toff, wl[s], 128)
            v = vbcast16(wv[s])
            a0 = vfma16(v, vload16(xp, k), a0)
            a1 = vfma16(v, vload16(xp, k + 16), a1)
            a2 = vfma16(v, vload16(xp, k + 32), a2)
            a3 = vfma16(v, vload16(xp, k + 48), a3)
            a4 = vfma16(v, vload16(xp, k + 64), a4)
            a5 = vfma16(v, vload16(xp, k + 80), a5)
            a6 = vfma16(v, vload16(xp, k + 96), a6)
            a7 = vfma16(v, vload16(xp, k + 112), a7)
        vstore16(acc, ab, a0)
        vstore16(acc, ab + 16, a1)
        vstore16(acc, ab + 32, a2)
        vstore16(acc, ab + 48, a3)
        vstore16(acc, ab + 64, a4)
        vstore16(acc, ab + 80, a5)
        vstore16(acc, ab + 96, a6)
        vstore16(acc, ab + 112, a7)


@njit(fastmath=True, cache=True, nogil=True)
def _wide_item16_t64(xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines):
    """:func:`_wide_item` with 16-lane vectors (AVX-512), for 64-row X tiles
    (33 <= T < 128, or K-tiles wider than 64 columns): four weight rows at a
    time, 4 zmm accumulators each (16 FMA chains: with a 4-cycle FMA latency
    and two FMA pipes, 8 chains leave no slack, 16 do)."""
    o4 = no - no % 4
    for oi in range(0, o4, 4):
        for r in range(4):
            _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi + r, pf_rows, no)
        ab = oi * 64
        p0 = wb + (o0 + oi) * cnt
        la = w_loc[p0 : p0 + cnt]
        lb = w_loc[p0 + cnt : p0 + 2 * cnt]
        lc = w_loc[p0 + 2 * cnt : p0 + 3 * cnt]
        ld = w_loc[p0 + 3 * cnt : p0 + 4 * cnt]
        wa = w_val[p0 : p0 + cnt]
        wb_ = w_val[p0 + cnt : p0 + 2 * cnt]
        wc = w_val[p0 + 2 * cnt : p0 + 3 * cnt]
        wd = w_val[p0 + 3 * cnt : p0 + 4 * cnt]
        a0 = vload16(acc, ab)
        a1 = vload16(acc, ab + 16)
        a2 = vload16(acc, ab + 32)
        a3 = vload16(acc, ab + 48)
        b0 = vload16(acc, ab + 64)
        b1 = vload16(acc, ab + 80)
        b2 = vload16(acc, ab + 96)
        b3 = vload16(acc, ab + 112)
        c0 = vload16(acc, ab + 128)
        c1 = vload16(acc, ab + 144)
        c2 = vload16(acc, ab + 160)
        c3 = vload16(acc, ab + 176)
        d0 = vload16(acc, ab + 192)
        d1 = vload16(acc, ab + 208)
        d2 = vload16(acc, ab + 224)
        d3 = vload16(acc, ab + 240)
        for s in range(cnt):
            ka = _xcol(toff, la[s], 64)
            kb_ = _xcol(toff, lb[s], 64)
            kc = _xcol(toff, lc[s], 64)
            kd = _xcol(toff, ld[s], 64)
            va = vbcast16(wa[s])
            vb = vbcast16(wb_[s])
            vc = vbcast16(wc[s])
            vd = vbcast16(wd[s])
            a0 = vfma16(va, vload16(xp, ka), a0)
            a1 = vfma16(va, vload16(xp, ka + 16), a1)
            a2 = vfma16(va, vload16(xp, ka + 32), a2)
            a3 = vfma16(va, vload16(xp, ka + 48), a3)
            b0 = vfma16(vb, vload16(xp, kb_), b0)
            b1 = vfma16(vb, vload16(xp, kb_ + 16), b1)
            b2 = vfma16(vb, vload16(xp, kb_ + 32), b2)
            b3 = vfma16(vb, vload16(xp, kb_ + 48), b3)
            c0 = vfma16(vc, vload16(xp, kc), c0)
            c1 = vfma16(vc, vload16(xp, kc + 16), c1)
            c2 = vfma16(vc, vload16(xp, kc + 32), c2)
            c3 = vfma16(vc, vload16(xp, kc + 48), c3)
            d0 = vfma16(vd, vload16(xp, kd), d0)
            d1 = vfma16(vd, vload16(xp, kd + 16), d1)
            d2 = vfma16(vd, vload16(xp, kd + 32), d2)
            d3 = vfma16(vd, vload16(xp, kd + 48), d3)
        vstore16(acc, ab, a0)
        vstore16(acc, ab + 16, a1)
        vstore16(acc, ab + 32, a2)
        vstore16(acc, ab + 48, a3)
        vstore16(acc, ab + 64, b0)
        vstore16(acc, ab + 80, b1)
        vstore16(acc, ab + 96, b2)
        vstore16(acc, ab + 112, b3)
        vstore16(acc, ab + 128, c0)
        vstore16(acc, ab + 144, c1)
        vstore16(acc, ab + 160, c2)
        vstore16(acc, ab + 176, c3)
        vstore16(acc, ab + 192, d0)
        vstore16(acc, ab + 208, d1)
        vstore16(acc, ab + 224, d2)
        vstore16(acc, ab + 240, d3)
    for oi in range(o4, no):
        _prefetch_row(xbuf, pf_base, pf_rs, pf_lines, oi, pf_rows, no)
        ab = oi * 64
        p = wb + (o0 + oi) * cnt
        wl = w_loc[p : p + cnt]
        wv = w_val[p : p + cnt]
        a0 = vload16(acc, ab)
        a1 = vload16(acc, ab + 16)
        a2 = vload16(acc, ab + 32)
        a3 = vload16(acc, ab + 48)
        for s in range(cnt):
            k = _xcol(toff, wl[s], 64)
            v = vbcast16(wv[s])
            a0 = vfma16(v, vload16(xp, k), a0)
            a1 = vfma16(v, vload16(xp, k + 16), a1)
            a2 = vfma16(v, vload16(xp, k + 32), a2)
            a3 = vfma16(v, vload16(xp, k + 48), a3)
        vstore16(acc, ab, a0)
        vstore16(acc, ab + 16, a1)
        vstore16(acc, ab + 32, a2)
        vstore16(acc, ab + 48, a3)


@njit(fastmath=True, cache=True, nogil=True)
def _narrow_item(xp, acc, no, o0, cnt, wb, w_loc, w_val):
    """Like _wide_item with 16 X rows per tile, four weight rows at a time."""
    o4 = no - no % 4
    for oi in range(0, o4, 4):
        ab = oi * 16
        p0 = wb + (o0 + oi) * cnt
        la = w_loc[p0 : p0 + cnt]
        lb = w_loc[p0 + cnt : p0 + 2 * cnt]
        lc = w_loc[p0 + 2 * cnt : p0 + 3 * cnt]
        ld = w_loc[p0 + 3 * cnt : p0 + 4 * cnt]
        wa = w_val[p0 : p0 + cnt]
        wb_ = w_val[p0 + cnt : p0 + 2 * cnt]
        wc = w_val[p0 + 2 * cnt : p0 + 3 * cnt]
        wd = w_val[p0 + 3 * cnt : p0 + 4 * cnt]
        a0 = vload8(acc, ab)
        a1 = vload8(acc, ab + 8)
        b0 = vload8(acc, ab + 16)
        b1 = vload8(acc, ab + 24)
        c0 = vload8(acc, ab + 32)
        c1 = vload8(acc, ab + 40)
        d0 = vload8(acc, ab + 48)
        d1 = vload8(acc, ab + 56)
        for s in range(cnt):
            ka = np.intp(la[s]) * 16
            kb_ = np.intp(lb[s]) * 16
            kc = np.intp(lc[s]) * 16
            kd = np.intp(ld[s]) * 16
            va = vbcast8(wa[s])
            vb = vbcast8(wb_[s])
            vc = vbcast8(wc[s])
            vd = vbcast8(wd[s])
            a0 = vfma8(va, vload8(xp, ka), a0)
            a1 = vfma8(va, vload8(xp, ka + 8), a1)
            b0 = vfma8(vb, vload8(xp, kb_), b0)
            b1 = vfma8(vb, vload8(xp, kb_ + 8), b1)
            c0 = vfma8(vc, vload8(xp, kc), c0)
            c1 = vfma8(vc, vload8(xp, kc + 8), c1)
            d0 = vfma8(vd, vload8(xp, kd), d0)
            d1 = vfma8(vd, vload8(xp, kd + 8), d1)
        vstore8(acc, ab, a0)
        vstore8(acc, ab + 8, a1)
        vstore8(acc, ab + 16, b0)
        vstore8(acc, ab + 24, b1)
        vstore8(acc, ab + 32, c0)
        vstore8(acc, ab + 40, c1)
        vstore8(acc, ab + 48, d0)
        vstore8(acc, ab + 56, d1)
    for oi in range(o4, no):
        ab = oi * 16
        p = wb + (o0 + oi) * cnt
        wl = w_loc[p : p + cnt]
        wv = w_val[p : p + cnt]
        a0 = vload8(acc, ab)
        a1 = vload8(acc, ab + 8)
        for s in range(cnt):
            k = np.intp(wl[s]) * 16
            v = vbcast8(wv[s])
            a0 = vfma8(v, vload8(xp, k), a0)
            a1 = vfma8(v, vload8(xp, k + 8), a1)
        vstore8(acc, ab, a0)
        vstore8(acc, ab + 8, a1)


@njit(fastmath=True, cache=True, nogil=True)
def _write_rows(acc, tt, tv, no, ybuf, yb, ys0, accumulate):
    """ybuf[yb + t*ys0 + oi] (+)= acc[oi*tt + t] for t < tv, oi < no: the
    ``[no, tt]`` partial sums transposed into row-major Y, 8x8 blocks at a
    time (a scalar transpose reads ``acc`` with a stride of ``tt`` floats)."""
    tv8 = tv - tv % 8
    no8 = no - no % 8
    blk = _aligned_empty(64)
    for t in range(0, tv8, 8):
        for oi in range(0, no8, 8):
            if accumulate:
                vtranspose8x8(acc, oi * tt + t, tt, blk, 0, 8)
                for r in range(8):
                    d = yb + (t + r) * ys0 + oi
                    vstore8(ybuf, d, vadd8(vload8(ybuf, d), vload8(blk, 8 * r)))
            else:
                vtranspose8x8(acc, oi * tt + t, tt, ybuf, yb + t * ys0 + oi, ys0)
        for r in range(t, t + 8):
            d = yb + r * ys0
            for oi in range(no8, no):
                if accumulate:
                    ybuf[d + oi] += acc[oi * tt + r]
                else:
                    ybuf[d + oi] = acc[oi * tt + r]
    for r in range(tv8, tv):
        d = yb + r * ys0
        for oi in range(no):
            if accumulate:
                ybuf[d + oi] += acc[oi * tt + r]
            else:
                ybuf[d + oi] = acc[oi * tt + r]


#: no fused epilogue (``epi`` of the kernels below)
_NO_EPILOGUE = np.zeros(0, np.float32)


# not fastmath=True: its "no infinities" would let LLVM drop the compares with ±inf bounds
@njit(fastmath={"contract"}, cache=True, nogil=True)
def _epilogue(acc, tt, tv, no, o0, O, epi, clamp=True):
    """A fused epilogue on an item's finished partial sums ``acc[oi*tt + t]``
    (output ``o0 + oi``, ``t < tv``), in place before they are written:
    ``min(max(scale[o]·v + shift[o], lo), hi)`` with ``epi = [scale[0:O],
    shift[0:O], lo, hi]`` (float32; ``±inf`` bounds clamp nothing). What
    ``tasd-fuse-kernel-epilogues`` moved here from the elementwise op after the
    call (a BatchNorm or bias, ReLU / ReLU6): the item's sums are hot in L1,
    where the separate op read and wrote the whole output once more. Without
    ``clamp`` (a residual follows: :func:`_residual_run` clamps) the map alone."""
    # float32 bounds: compares of float32 sums in float32 (the same result as in float64, which
    # a float64 bound would make LLVM convert every lane to and back)
    lo = epi[2 * O] if clamp else np.float32(-np.inf)
    hi = epi[2 * O + 1] if clamp else np.float32(np.inf)
    for oi in range(no):
        a = epi[o0 + oi]
        b = epi[O + o0 + oi]
        base = np.uint64(oi * tt)
        for t in range(np.uint64(tv)):
            v = acc[base + t] * a + b
            v = v if v > lo else lo
            acc[base + t] = hi if hi < v else v


# not fastmath=True either (the ±inf bounds, as in _epilogue)
@njit(cache=True, nogil=True)
def _residual_run(acc, s, ybuf, d, ds, rbuf, r, rs, n, lo, hi):
    """``Y[d + u*ds] = min(max(acc[s + u] + R[r + u*rs], lo), hi)`` for ``u < n``:
    a fused epilogue's residual add (ResNet's ``relu(bn(conv(x)) + identity)``,
    ``tasd-cpu-fuse-kernel-epilogues``), the same f32 add and clamp as the loop it
    replaces, on a run of an item's finished sums while they are in L1."""
    s = np.uint64(s)
    d = np.uint64(d)
    r = np.uint64(r)
    if ds == 1 and rs == 1:
        for u in range(np.uint64(n)):
            v = acc[s + u] + rbuf[r + u]
            v = v if v > lo else lo
            ybuf[d + u] = hi if hi < v else v
    else:
        dsu = np.uint64(ds)
        rsu = np.uint64(rs)
        for u in range(np.uint64(n)):
            v = acc[s + u] + rbuf[r + u * rsu]
            v = v if v > lo else lo
            ybuf[d + u * dsu] = hi if hi < v else v


@njit(fastmath=True, cache=True, nogil=True)
def _plan(T, O, tile_count, kb, nth, wide16):
    """(tt, ntt, noc, ochunk): rows per X tile, T-tiles, O-chunks, rows per O-chunk.

    Items are (T-tile, O-chunk) pairs and every item packs its own X tiles.
    Splitting O over the threads balances them when T-tiles do not divide
    evenly, at the price of packing X once per chunk: split only when the
    imbalance costs more than that (packing ~5/(slots per X column) of the
    compute: one tile column feeds O*density broadcast-FMA slots).

    (Cutting O into L2-sized chunks of weights, taken chunk by chunk, was
    tried: ResNet's 3x3 512->512 at 7², 2:4, one thread, went from 16 to
    50 ms: every chunk packs its X tiles again, and the conv tiles' packing
    from 7-pixel rows is what costs there.)"""
    ntiles = tile_count.size
    tt = 64
    if T <= 32:
        tt = 16
    elif wide16 and T >= 128 and kb <= 64:
        # 128-row tiles only while the X tile (kb * tt floats) fits L1's 32 KB:
        # 1:8 (kb = 128) at 768²: 4.5x numpy with 64-row tiles, 4.2x with 128
        tt = 128
    ntt = (T + tt - 1) // tt
    # nth: the caller's numba.get_num_threads() (calling it here would make
    # the function uncacheable: it embeds the threading layer's address)
    nth = max(1, nth)
    noc = 1
    imbalance = ((ntt + nth - 1) // nth) * nth / ntt - 1.0
    slots = 0
    for kt in range(ntiles):
        slots += tile_count[kt]
    work_per_x = O * slots / max(1, ntiles * kb)
    if imbalance * work_per_x > 5.0:
        noc = nth
    ochunk = (O + noc - 1) // noc
    ochunk = ((ochunk + 3) // 4) * 4
    noc = (O + ochunk - 1) // ochunk
    return tt, ntt, noc, ochunk


@njit(fastmath=True, cache=True, nogil=True)
def _micro(tt, wide16, xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines):
    """Run the micro-kernel for ``tt``-row X tiles on one packed tile."""
    if tt == 128:
        _wide_item16(xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines)
    elif tt == 64:
        if wide16:
            _wide_item16_t64(xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines)
        else:
            _wide_item(xp, toff, acc, no, o0, cnt, wb, w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines)
    else:
        _narrow_item(xp, acc, no, o0, cnt, wb, w_loc, w_val)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _series_kernel(xbuf, xoff, xs0, xs1, T, K, ybuf, yoff, ys0, ys1, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi):
    """Y[t, o] (+)= Σ_k X[t, k] W[o, k] on flat buffers with element strides
    (then the fused epilogue ``epi``, if not empty: :func:`_epilogue`)."""
    if T <= 0 or O <= 0:
        return
    ntiles = tile_count.size
    tt, ntt, noc, ochunk = _plan(T, O, tile_count, kb, nth, wide16)
    tsz = kb * tt
    for item in prange(ntt * noc):
        it = item // noc
        ic = item % noc
        t0 = it * tt
        tv = min(tt, T - t0)
        o0 = ic * ochunk
        o1 = min(O, o0 + ochunk)
        no = o1 - o0
        acc = _aligned_empty(no * tt)
        acc[:] = 0.0
        xp = _aligned_empty(tsz)
        for kt in range(ntiles):
            # pack the X tile right before use so that it is hot in L1
            _pack_tile(xbuf, xoff, xs0, xs1, T, K, t0, kt * kb, kb, tt, xp)
            # prefetch plan for the next X tile (unit-stride layouts only)
            pf_rows = 0
            pf_rs = 0
            pf_lines = 0
            pf_base = 0
            if kt + 1 < ntiles and tt >= 64:
                if xs1 == 1:  # rows of X: tv rows, kb contiguous columns each
                    pf_rows, pf_rs, pf_lines = tv, xs0, (kb + 15) // 16
                    pf_base = xoff + t0 * xs0 + (kt + 1) * kb
                elif xs0 == 1:  # K-major: kb rows of tv contiguous elements
                    pf_rows, pf_rs, pf_lines = min(kb, K - (kt + 1) * kb), xs1, (tv + 15) // 16
                    pf_base = xoff + (kt + 1) * kb * xs1 + t0
            _micro(tt, wide16, xp, _NO_TAPS, acc, no, o0, tile_count[kt], tile_ptr[kt], w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines)
        if epi.size:
            _epilogue(acc, tt, tv, no, o0, O, epi)
        if ys1 == 1:
            _write_rows(acc, tt, tv, no, ybuf, yoff + t0 * ys0 + o0, ys0, accumulate)
        else:
            for oi in range(no):
                yb = yoff + (o0 + oi) * ys1 + t0 * ys0
                if accumulate:
                    for t in range(tv):
                        ybuf[yb + t * ys0] += acc[oi * tt + t]
                else:
                    for t in range(tv):
                        ybuf[yb + t * ys0] = acc[oi * tt + t]


# conv geometry block (int64) of _conv_kernel: input offset and strides (elements),
# input / filter / stride / padding / dilation sizes, output size
_G_XOFF, _G_XSN, _G_XSC, _G_XSH, _G_XSW, _G_N, _G_C, _G_H, _G_W = range(9)
_G_KH, _G_KW, _G_SH, _G_SW, _G_PH, _G_PW, _G_DH, _G_DW, _G_OH, _G_OW = range(9, 19)
_G_LEN = 19


#: ints per run of :func:`_conv_runs`: tile row, input image offset, input row
#: of filter row 0, first output column, length
_RUN = 5


@njit(fastmath=True, cache=True, nogil=True)
def _conv_runs(geo, t0, tv, runs):
    """Cut output pixels ``t0 .. t0+tv-1`` (ordered (n, oy, ox)) into runs of
    one output row: ``runs[_RUN*r : _RUN*r + 5]`` = (tile row, input offset
    of image n, input row ``oy*sh - ph`` of filter row 0, first ox, length).
    Returns the number of runs (at most ``tv // ow + 2``)."""
    oh, ow = geo[_G_OH], geo[_G_OW]
    p_img = oh * ow
    n = t0 // p_img
    q = t0 % p_img
    oy = q // ow
    ox = q % ow
    t = 0
    nr = 0
    while t < tv:
        ln = min(ow - ox, tv - t)
        b = _RUN * nr
        runs[b] = t
        runs[b + 1] = geo[_G_XOFF] + n * geo[_G_XSN]
        runs[b + 2] = oy * geo[_G_SH] - geo[_G_PH]
        runs[b + 3] = ox
        runs[b + 4] = ln
        nr += 1
        t += ln
        ox += ln
        if ox == ow:
            ox = 0
            oy += 1
            if oy == oh:
                oy = 0
                n += 1
    return nr


@njit(fastmath=True, cache=True, nogil=True)
def _pack_conv_tile(xbuf, geo, runs, nr, tv, k0, kb, tt, dst):
    """The X tile of a conv2d read straight from its NCHW input (no im2col
    matrix): ``dst[kk*tt + t]`` = the input element that output pixel ``t``
    of the tile (runs from :func:`_conv_runs`) meets at filter column
    ``k0 + kk`` (ordered (c, i, j)); zero in the padding (low pads ``ph,
    pw``; the high ones follow from the output size) and past the last pixel
    or column. Per column and run: zero edges around a strided (at stride 1,
    contiguous 8-lane) copy of one input row."""
    xsc, xsh, xsw = geo[_G_XSC], geo[_G_XSH], geo[_G_XSW]
    c_in, h, w = geo[_G_C], geo[_G_H], geo[_G_W]
    kh, kw, sw = geo[_G_KH], geo[_G_KW], geo[_G_SW]
    pw, dh, dw = geo[_G_PW], geo[_G_DH], geo[_G_DW]
    ow = geo[_G_OW]
    khw = kh * kw
    kv = min(kb, c_in * khw - k0)
    if kv < 0:
        kv = 0
    step = sw * xsw
    c = k0 // khw
    i = (k0 // kw) % kh
    j = k0 % kw
    for kk in range(kv):
        offw = j * dw - pw  # input column of output column 0
        # output columns whose input column lies inside [0, w)
        ox_lo = 0
        if offw < 0:
            ox_lo = (-offw + sw - 1) // sw
        ox_hi = 0
        if w - 1 - offw >= 0:
            ox_hi = min(ow, (w - 1 - offw) // sw + 1)
        ox_lo = min(ox_lo, ox_hi)
        row = kk * tt
        cbase = c * xsc + offw * xsw
        idh = i * dh
        for r in range(nr):
            rb = _RUN * r
            ox = runs[rb + 3]
            ln = runs[rb + 4]
            # indices as unsigned: no negative-index wraparound code in the copies
            d = np.uint64(row + runs[rb] - ox)  # dst index of output column 0 of this run's row
            iy = runs[rb + 2] + idh
            if iy < 0 or iy >= h:
                for q in range(ox, ox + ln):
                    dst[d + np.uint64(q)] = 0.0
                continue
            a = max(ox, ox_lo)
            b = min(ox + ln, ox_hi)
            if b < a:
                a = ox + ln
                b = ox + ln
            for q in range(ox, a):
                dst[d + np.uint64(q)] = 0.0
            src = runs[rb + 1] + cbase + iy * xsh
            if step == 1 and b - a >= 8:
                # 8-lane copies; the last one overlaps the previous (same values)
                for q in range(a, b - 8, 8):
                    vstore8(dst, d + np.uint64(q), vload8(xbuf, src + q))
                vstore8(dst, d + np.uint64(b - 8), vload8(xbuf, src + b - 8))
            elif step == 1:
                for q in range(a, b):
                    dst[d + np.uint64(q)] = xbuf[np.uint64(src + q)]
            else:
                for q in range(a, b):
                    dst[d + np.uint64(q)] = xbuf[np.uint64(src + q * step)]
            for q in range(b, ox + ln):
                dst[d + np.uint64(q)] = 0.0
        for q in range(row + tv, row + tt):
            dst[q] = 0.0
        # next column: (c, i, j) in filter order
        j += 1
        if j == kw:
            j = 0
            i += 1
            if i == kh:
                i = 0
                c += 1
    for q in range(kv * tt, kb * tt):
        dst[q] = 0.0


@njit(fastmath=True, cache=True, nogil=True)
def _conv_prefetch_plan(geo, t0, tv, k0, kb):
    """(pf_base, pf_rows, pf_rs, pf_lines): the input a conv X tile reads, as
    the micro-kernels' prefetch rows — one row per input channel of the
    tile's columns, covering the input rows its output pixels meet in the
    first image (unit-stride input rows only; else nothing)."""
    xsn, xsc, xsh, xsw = geo[_G_XSN], geo[_G_XSC], geo[_G_XSH], geo[_G_XSW]
    c_in, h = geo[_G_C], geo[_G_H]
    kh, kw, sh, ph, dh = geo[_G_KH], geo[_G_KW], geo[_G_SH], geo[_G_PH], geo[_G_DH]
    oh, ow = geo[_G_OH], geo[_G_OW]
    kk = c_in * kh * kw
    if xsw != 1 or k0 >= kk or tv <= 0:
        return 0, 0, 0, 0
    p_img = oh * ow
    n = t0 // p_img
    q = t0 % p_img
    oy0 = q // ow
    oy1 = min(oh - 1, (q + tv - 1) // ow)
    iy0 = max(0, oy0 * sh - ph)
    iy1 = min(h - 1, oy1 * sh - ph + (kh - 1) * dh)
    if iy1 < iy0:
        return 0, 0, 0, 0
    c0 = k0 // (kh * kw)
    c1 = (min(k0 + kb, kk) - 1) // (kh * kw)
    span = (iy1 - iy0) * xsh + geo[_G_W]
    return geo[_G_XOFF] + n * xsn + c0 * xsc + iy0 * xsh, c1 - c0 + 1, xsc, (span + 15) // 16 + 1


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _conv_kernel(xbuf, geo, ybuf, yoff, ysn, ysf, ysh, ysw, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi,
                 rbuf, res):
    """Y[n, f, oy, ox] (+)= Σ_k W[f, k] X[n, c, oy*sh - ph + i*dh, ox*sw - pw + j*dw]
    (k = (c, i, j)): the series GEMM over all N*OH*OW output pixels, X tiles
    packed from the input by :func:`_pack_conv_tile`. The partial sums are
    ``[f, pixel]``, the orientation of NCHW output planes: a contiguous
    plane gets each filter's run of pixels as one copy (no transpose).
    With a residual (``res`` = ``[offset, strides n, f, h, w]`` of ``rbuf``,
    empty if none; needs ``epi``): ``Y = clamp(epilogue's map + R)``."""
    n_img, oh, ow = geo[_G_N], geo[_G_OH], geo[_G_OW]
    p_img = oh * ow
    T = n_img * p_img
    if T <= 0 or O <= 0:
        return
    ntiles = tile_count.size
    tt, ntt, noc, ochunk = _plan(T, O, tile_count, kb, nth, wide16)
    tsz = kb * tt
    residual = res.size > 0
    planes = ysw == 1 and ysh == ow
    lo = epi[2 * O] if residual else np.float32(0.0)  # float32, as in _epilogue
    hi = epi[2 * O + 1] if residual else np.float32(0.0)
    for item in prange(ntt * noc):
        it = item // noc
        ic = item % noc
        t0 = it * tt
        tv = min(tt, T - t0)
        o0 = ic * ochunk
        o1 = min(O, o0 + ochunk)
        no = o1 - o0
        acc = _aligned_empty(no * tt)
        acc[:] = 0.0
        xp = _aligned_empty(tsz)
        runs = np.empty(_RUN * (tt // ow + 3), np.int64)
        nr = _conv_runs(geo, t0, tv, runs)
        for kt in range(ntiles):
            _pack_conv_tile(xbuf, geo, runs, nr, tv, kt * kb, kb, tt, xp)
            # prefetch what the next tile reads: the next K-tile, else the next T-tile's first
            if kt + 1 < ntiles:
                pf_base, pf_rows, pf_rs, pf_lines = _conv_prefetch_plan(geo, t0, tv, (kt + 1) * kb, kb)
            else:
                pf_base, pf_rows, pf_rs, pf_lines = _conv_prefetch_plan(geo, t0 + tt, min(tt, T - t0 - tt), 0, kb)
            _micro(tt, wide16, xp, _NO_TAPS, acc, no, o0, tile_count[kt], tile_ptr[kt], w_loc, w_val, xbuf, pf_base, pf_rows, pf_rs, pf_lines)
        if epi.size:
            _epilogue(acc, tt, tv, no, o0, O, epi, not residual)
        for oi in range(no):
            yf = yoff + (o0 + oi) * ysf
            ab = oi * tt
            t = 0
            while t < tv:
                n = (t0 + t) // p_img
                q = (t0 + t) % p_img
                run = min(p_img - q, tv - t)
                if residual:
                    rf = res[0] + (o0 + oi) * res[2] + n * res[1]
                    if planes and res[4] == 1 and res[3] == ow:
                        _residual_run(acc, ab + t, ybuf, yf + n * ysn + q, 1, rbuf, rf + q, 1, run, lo, hi)
                    else:  # row by row
                        u = 0
                        while u < run:
                            oy = (q + u) // ow
                            ox = (q + u) % ow
                            ln = min(run - u, ow - ox)
                            _residual_run(acc, ab + t + u, ybuf, yf + n * ysn + oy * ysh + ox * ysw, ysw,
                                          rbuf, rf + oy * res[3] + ox * res[4], res[4], ln, lo, hi)
                            u += ln
                elif planes:
                    # 8-lane copies, unsigned indices (no wraparound code)
                    yb = np.uint64(yf + n * ysn + q)
                    sb = np.uint64(ab + t)
                    r8 = np.uint64(run - run % 8)
                    if accumulate:
                        for u in range(np.uint64(0), r8, np.uint64(8)):
                            vstore8(ybuf, yb + u, vadd8(vload8(ybuf, yb + u), vload8(acc, sb + u)))
                        for u in range(r8, np.uint64(run)):
                            ybuf[yb + u] += acc[sb + u]
                    else:
                        for u in range(np.uint64(0), r8, np.uint64(8)):
                            vstore8(ybuf, yb + u, vload8(acc, sb + u))
                        for u in range(r8, np.uint64(run)):
                            ybuf[yb + u] = acc[sb + u]
                else:
                    for u in range(run):
                        oy = (q + u) // ow
                        ox = (q + u) % ow
                        yi = yf + n * ysn + oy * ysh + ox * ysw
                        if accumulate:
                            ybuf[yi] += acc[ab + t + u]
                        else:
                            ybuf[yi] = acc[ab + t + u]
                t += run


# --------------------------------------------------------------------------
# Python entry
# --------------------------------------------------------------------------


#: Below this many slot-FMAs a call runs on one thread: waking the second
#: thread (tens of µs with a passive OpenMP wait policy) costs more than it
#: saves. 2M is ~50 µs of single-thread work.
SERIAL_WORK = 2_000_000

def _renamed(fn: Any, name: str, **replace: Any) -> Any:
    """``fn`` under another name, so that Numba caches it separately; with
    ``replace``, the globals it sees are the module's with those names
    replaced (a clone of a kernel calling other functions)."""
    glb = fn.__globals__
    if replace:
        glb = dict(glb)
        glb.update(replace)
    clone = types_module.FunctionType(fn.__code__, glb, name, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = name
    clone.__doc__ = fn.__doc__
    return clone


# ``prange`` compiles to a plain loop without ``parallel=True``.
_series_kernel_serial = njit(fastmath=True, cache=True, nogil=True)(_renamed(_series_kernel.py_func, "_series_kernel_serial"))


@njit(fastmath=True, cache=True, nogil=True)
def _run_series(xbuf, xoff, xs0, xs1, T, K, ybuf, yoff, ys0, ys1, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi):
    """Dispatch to the serial or the parallel kernel by the amount of work."""
    work = T * w_loc.size  # slot-FMAs: every row of X meets every stored slot
    if nth <= 1 or work < SERIAL_WORK:
        _series_kernel_serial(xbuf, xoff, xs0, xs1, T, K, ybuf, yoff, ys0, ys1, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi)
    else:
        _series_kernel(xbuf, xoff, xs0, xs1, T, K, ybuf, yoff, ys0, ys1, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi)


_conv_kernel_serial = njit(fastmath=True, cache=True, nogil=True)(_renamed(_conv_kernel.py_func, "_conv_kernel_serial"))

# the micro-kernels of the direct conv layout: X column ``loc`` at ``toff[loc]``
_dwide_item = njit(fastmath=True, cache=True, nogil=True)(_renamed(_wide_item.py_func, "_dwide_item", _xcol=_xcol_tap))
_dwide_item16 = njit(fastmath=True, cache=True, nogil=True)(_renamed(_wide_item16.py_func, "_dwide_item16", _xcol=_xcol_tap))
_dwide_item16_t64 = njit(fastmath=True, cache=True, nogil=True)(
    _renamed(_wide_item16_t64.py_func, "_dwide_item16_t64", _xcol=_xcol_tap))
_dmicro = njit(fastmath=True, cache=True, nogil=True)(_renamed(
    _micro.py_func, "_dmicro", _wide_item=_dwide_item, _wide_item16=_dwide_item16, _wide_item16_t64=_dwide_item16_t64))


# --------------------------------------------------------------------------
# direct conv layout: the padded image read through tap offsets (no X tiles)
# --------------------------------------------------------------------------

#: ``layout`` of :func:`conv2d_series` / :func:`make_conv_cfunc_entry`, as the
#: code stored in the entry's parameters
CONV_LAYOUTS = {"auto": 0, "tiles": 1, "direct": 2}
#: what :func:`_dconv_mode` picks: X tiles packed per item, the direct layout
#: on a zero-padded copy of each image, the direct layout on the input itself
_MODE_TILES, _MODE_PADDED, _MODE_INPLACE = 0, 1, 2
#: ``layout="auto"`` runs a k x k (k > 1) stride-1 conv directly when the
#: output pixels it computes per image — rows padded to ``_DCONV_ALIGN``,
#: rounded up to whole 64-pixel tiles — exceed the real ones by at most this
#: fraction (ResNet at 224²: 56² 0 %, 28² 14 %: direct; 14² 31 %, 7² 31 %:
#: tiles; ``benchmarks/bench_kernels.py --conv-model``)
DIRECT_MAX_WASTE = 0.2
#: ... and a 1x1 conv read in place only while each input channel feeds at
#: most this many weight slots (``O * density``): the X tiles are packed
#: once per item anyway, and the in-place columns are 1-4 KB apart (one per
#: channel), so reading in place wins only where packing weighs most
DIRECT_MAX_SLOTS_1X1 = 8
#: ... and a k x k conv on two or more threads only while each input column
#: feeds at most this many slots: there the X tiles won or tied at 2:4
#: (ResNet-18, batch 8, two threads, freed memory retained: 3x3 64->64 @56²
#: 7.8 vs 7.7 ms, 128->128 @28² 7.1 vs 8.7 ms per call) and at 1:8 from 128
#: filters on (3.3 vs 4.0 ms), the direct layout at 1:8 with 64 filters (3.3
#: vs 4.0 ms); on one thread it wins at both
#: (``bench_kernels.py --conv-model resnet18 --threads 1|2 --clock wall``)
DIRECT_MAX_SLOTS_PARALLEL = 8


@njit(cache=True, nogil=True)
def _direct_conv_pays(kh, kw, oh, ow, wp, inplace, slots_per_column, parallel):
    """``layout="auto"``: whether the direct layout is expected to beat the X
    tiles for a stride-1 conv that admits it. A k x k conv packs each image
    ``kw`` times instead of every input element k² times per O-chunk, but
    computes the padded rows' extra pixels (``wp - ow`` per row and the last
    tile's rest): worth it while they are at most ``DIRECT_MAX_WASTE`` of
    the output, and, on several threads (``parallel``), while each input
    column feeds at most ``DIRECT_MAX_SLOTS_PARALLEL`` slots. A 1x1 conv read
    in place: see ``DIRECT_MAX_SLOTS_1X1``."""
    if kh == 1 and kw == 1:
        return inplace and slots_per_column <= DIRECT_MAX_SLOTS_1X1
    if parallel and slots_per_column > DIRECT_MAX_SLOTS_PARALLEL:
        return False
    computed = -(-(oh * wp) // 64) * 64
    return computed <= (1.0 + DIRECT_MAX_WASTE) * oh * ow


#: the direct layout's padded rows are a multiple of this many floats long, so
#: that every tap's run starts 32-byte aligned (8-lane loads never split a line)
_DCONV_ALIGN = 8


@njit(cache=True, nogil=True)
def _dconv_geometry(geo):
    """(hp, wp, rows, cs, rs, js): the padded images of the direct layout.
    One zero-padded copy per filter column ``j`` (``kw`` copies of ``[C,
    hp, wp]``; copy ``j`` shifted left by ``j*dw``), so that every tap reads
    a run that starts where its output pixel does, plus whole rows: ``hp =
    oh + (kh-1)*dh`` rows of ``wp`` = ``ow`` rounded up to ``_DCONV_ALIGN``
    floats (aligned loads; each row's last ``wp - ow`` pixels are computed
    and dropped). ``rows``: the output pixels per image it computes (``oh *
    wp``); ``cs``, ``rs``, ``js``: channel, row and copy strides."""
    kh, kw, dh = geo[_G_KH], geo[_G_KW], geo[_G_DH]
    oh, ow = geo[_G_OH], geo[_G_OW]
    hp = oh + (kh - 1) * dh
    wp = -(-ow // _DCONV_ALIGN) * _DCONV_ALIGN
    return hp, wp, oh * wp, hp * wp, wp, geo[_G_C] * hp * wp


@njit(cache=True, nogil=True)
def _dconv_mode(geo, layout, kpad, nslots, parallel):
    """:data:`_MODE_TILES`, ``_MODE_PADDED`` or ``_MODE_INPLACE`` for a conv of
    geometry ``geo`` whose packed series reaches column ``kpad`` (its K plus
    the compressed format's padding), under ``layout`` (a
    :data:`CONV_LAYOUTS` code). The direct layout needs stride 1, no slots
    past K (their columns have no tap) and more output pixels per image than
    the narrow micro-kernel's rows (it has no tap-offset clone); ``direct``
    forces it where it applies, ``auto`` asks :func:`_direct_conv_pays`
    (``nslots``: the series' stored slots, ``O * density * K``; ``parallel``:
    the call runs on several threads).
    Returns -1 for ``direct`` where it does not apply."""
    if layout == 1:
        return _MODE_TILES
    kh, kw = geo[_G_KH], geo[_G_KW]
    kk = geo[_G_C] * kh * kw
    hp, wp, rows, cs, rs, js = _dconv_geometry(geo)
    if kh == 1 and kw == 1:
        rows = geo[_G_OH] * geo[_G_OW]  # read in place: rows of ow pixels
    ok = (geo[_G_SH] == 1 and geo[_G_SW] == 1 and kpad == kk and rows > NARROW_MAX_T and kk > 0
          and kw * js < 2**31 - 2**20 and geo[_G_C] * geo[_G_XSC] < 2**31 - 2**20)  # int32 tap offsets
    if not ok:
        return -1 if layout == 2 else _MODE_TILES
    inplace = (kh == 1 and kw == 1 and geo[_G_PH] == 0 and geo[_G_PW] == 0 and geo[_G_OH] == geo[_G_H]
               and geo[_G_OW] == geo[_G_W] and geo[_G_XSW] == 1 and geo[_G_XSH] == geo[_G_W])
    if layout == 0 and not _direct_conv_pays(kh, kw, geo[_G_OH], geo[_G_OW], wp, inplace, nslots / max(1, kpad), parallel):
        return _MODE_TILES
    return _MODE_INPLACE if inplace else _MODE_PADDED


@njit(fastmath=True, cache=True, nogil=True)
def _dconv_fill(xbuf, geo, n, c, j, dst, hp, wp):
    """Channel ``c`` of image ``n`` into copy ``j`` of the direct layout,
    ``dst[(j*C + c)*hp*wp : +hp*wp]``: element ``(y, x)`` is the input at
    row ``y - ph``, column ``x + j*dw - pw``, zero outside the input (the
    high padding follows from the output size; input past it is not read)."""
    h, w, ph, pw = geo[_G_H], geo[_G_W], geo[_G_PH], geo[_G_PW]
    xsh, xsw = geo[_G_XSH], geo[_G_XSW]
    src0 = geo[_G_XOFF] + n * geo[_G_XSN] + c * geo[_G_XSC]
    shift = j * geo[_G_DW] - pw  # input column of x = 0
    a = min(max(0, -shift), wp)
    b = max(a, min(wp, w - shift))
    dbase = (j * geo[_G_C] + c) * hp * wp
    for y in range(hp):
        d = np.uint64(dbase + y * wp)
        iy = y - ph
        if iy < 0 or iy >= h:
            for q in range(np.uint64(wp)):
                dst[d + q] = 0.0
            continue
        for q in range(np.uint64(a)):
            dst[d + q] = 0.0
        s = np.uint64(src0 + iy * xsh + (a + shift) * xsw)
        da = d + np.uint64(a)
        if xsw == 1:
            for q in range(np.uint64(b - a)):
                dst[da + q] = xbuf[s + q]
        else:
            for q in range(np.uint64(b - a)):
                dst[da + q] = xbuf[s + q * np.uint64(xsw)]
        for q in range(np.uint64(b), np.uint64(wp)):
            dst[d + q] = 0.0


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _dconv_pack(xbuf, geo, n, dst, hp, wp):
    """Image ``n`` as the direct layout's ``kw`` padded ``[C, hp, wp]`` copies
    in ``dst`` (copies x channels over the threads)."""
    c_in = geo[_G_C]
    for q in prange(geo[_G_KW] * c_in):
        _dconv_fill(xbuf, geo, n, q % c_in, q // c_in, dst, hp, wp)


@njit(cache=True, nogil=True)
def _dconv_taps(geo, cs, rs, js, ntiles, kb):
    """Tap offsets ``[ntiles*kb]``: filter column ``k = (c, i, j)`` reads the
    image at ``j*js + c*cs + i*dh*rs`` past the output pixel's own offset
    (copy ``j`` of :func:`_dconv_geometry`; 0 past K). Returns (taps,
    largest offset)."""
    kh, kw, dh, dw = geo[_G_KH], geo[_G_KW], geo[_G_DH], geo[_G_DW]
    kk = geo[_G_C] * kh * kw
    taps = np.zeros(ntiles * kb, np.int64)
    tmax = 0
    for k in range(min(kk, ntiles * kb)):
        c = k // (kh * kw)
        i = (k // kw) % kh
        j = k % kw
        taps[k] = j * js + c * cs + i * dh * rs
        tmax = max(tmax, taps[k])
    return taps, tmax


@njit(fastmath=True, cache=True, nogil=True)
def _dconv_write(acc, tt, t0, tv, no, o0, ybuf, yimg, ysf, ysh, ysw, ow, wp, accumulate, rbuf, rimg, res, lo, hi):
    """Partial sums ``acc[oi*tt + p - t0]`` of padded-width pixels ``p = oy*wp
    + ox`` in ``[t0, t0+tv)`` into ``Y[n, o0+oi, oy, ox]`` for ``ox < ow``
    (``yimg``: offset of image n in ``ybuf``); the wasted columns are dropped.
    With a residual (``res`` not empty, ``rimg``: image n's offset in ``rbuf``)
    ``Y = clamp(acc + R, lo, hi)`` (:func:`_residual_run`)."""
    residual = res.size > 0
    for oi in range(no):
        yf = yimg + (o0 + oi) * ysf
        ab = oi * tt - t0
        p = t0
        while p < t0 + tv:
            oy = p // wp
            ox = p - oy * wp
            e = min(t0 + tv, oy * wp + wp)
            if ox < ow and residual:
                _residual_run(acc, ab + p, ybuf, yf + oy * ysh + ox * ysw, ysw,
                              rbuf, rimg + (o0 + oi) * res[2] + oy * res[3] + ox * res[4], res[4],
                              min(e, oy * wp + ow) - p, lo, hi)
            elif ox < ow:
                ln = np.uint64(min(e, oy * wp + ow) - p)
                d = np.uint64(yf + oy * ysh + ox * ysw)
                s = np.uint64(ab + p)
                if ysw == 1:
                    if accumulate:
                        for u in range(ln):
                            ybuf[d + u] += acc[s + u]
                    else:
                        for u in range(ln):
                            ybuf[d + u] = acc[s + u]
                else:
                    st = np.uint64(ysw)
                    for u in range(ln):
                        if accumulate:
                            ybuf[d + u * st] += acc[s + u]
                        else:
                            ybuf[d + u * st] = acc[s + u]
            p = e


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _dconv_image(src, base, limit, taps, tmax, geo, ybuf, yimg, ysf, ysh, ysw, O, accumulate, w_loc, w_tap, w_val,
                 tile_count, tile_ptr, kb, plan, wide16, rows, cs, rs, pf, epi, rbuf, rimg, res):
    """One image of the direct layout: items = (T-tile, O-chunk) of its ``rows``
    padded-width pixels (``plan`` from :func:`_plan`). Per K-tile an item
    points the micro-kernel's X columns at ``src[base + t0 + tap]`` (no
    packing); an item whose reads would pass ``limit`` (the last tile of an
    input read in place) copies its columns into a zero-padded X tile first.
    ``pf``: prefetch the next K-tile's input channels while computing.
    A residual as in :func:`_dconv_write`."""
    tt, ntt, noc, ochunk = plan[0], plan[1], plan[2], plan[3]
    residual = res.size > 0
    lo = epi[2 * O] if residual else np.float32(0.0)  # float32, as in _epilogue
    hi = epi[2 * O + 1] if residual else np.float32(0.0)
    ntiles = tile_count.size
    kh, kw, dh, dw = geo[_G_KH], geo[_G_KW], geo[_G_DH], geo[_G_DW]
    khw = kh * kw
    kk = geo[_G_C] * khw
    ow = geo[_G_OW]
    wp = rs  # padded-width pixels: p = oy*wp + ox (wp = ow when read in place)
    span = tt + (kh - 1) * dh * rs  # one copy's rows of the tile's pixels
    for item in prange(ntt * noc):
        it = item // noc
        ic = item % noc
        t0 = it * tt
        tv = min(tt, rows - t0)
        o0 = ic * ochunk
        o1 = min(O, o0 + ochunk)
        no = o1 - o0
        acc = _aligned_empty(no * tt)
        acc[:] = 0.0
        toff = np.empty(kb, np.int64)
        toff[0] = base + t0
        spill = base + t0 + tt + tmax > limit
        xp = _aligned_empty(kb * tt if spill else 16)
        for kt in range(ntiles):
            pf_base, pf_rows, pf_lines = 0, 0, 0
            if pf and kt + 1 < ntiles:
                c0 = (kt + 1) * kb // khw
                c1 = (min(kk, (kt + 2) * kb) - 1) // khw
                pf_base, pf_rows, pf_lines = base + t0 + c0 * cs, c1 - c0 + 1, (span + 15) // 16 + 1
            if spill:  # the tiles' micro-kernel on the columns copied into an X tile
                for l in range(kb):
                    o = base + t0 + taps[kt * kb + l]
                    for t in range(tv):
                        xp[l * tt + t] = src[o + t]
                    for t in range(tv, tt):
                        xp[l * tt + t] = 0.0
                _micro(tt, wide16, xp, _NO_TAPS, acc, no, o0, tile_count[kt], tile_ptr[kt], w_loc, w_val, src, pf_base, pf_rows, cs, pf_lines)
            else:
                _dmicro(tt, wide16, src, toff, acc, no, o0, tile_count[kt], tile_ptr[kt], w_tap, w_val, src, pf_base, pf_rows, cs, pf_lines)
        if epi.size:
            _epilogue(acc, tt, tv, no, o0, O, epi, not residual)
        _dconv_write(acc, tt, t0, tv, no, o0, ybuf, yimg, ysf, ysh, ysw, ow, wp, accumulate, rbuf, rimg, res, lo, hi)


@njit(fastmath=True, cache=True, nogil=True)
def _dconv_kernel(xbuf, geo, ybuf, yoff, ysn, ysf, ysh, ysw, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, mode, pf, parallel, epi,
                  rbuf, res):
    """The conv of :func:`_conv_kernel` in the direct layout (``mode``
    ``_MODE_PADDED`` or ``_MODE_INPLACE``), image by image: the image
    (padded once, or the input itself) is what the micro-kernels read,
    column ``k = (c, i, j)`` of the pixels ``t0 .. t0+tt`` being the
    contiguous run at ``t0 + tap(k)``. Per output the FMAs and their order
    are those of the X-tile path (same slots, same values, zeros in the
    padding): the results are bit-identical."""
    n_img, c_in = geo[_G_N], geo[_G_C]
    hp, wp, rows, cs, rs, js = _dconv_geometry(geo)
    if mode == _MODE_INPLACE:
        cs, rs, rows = geo[_G_XSC], geo[_G_XSH], geo[_G_OH] * geo[_G_OW]
    if rows <= 0 or O <= 0:
        return
    ntiles = tile_count.size
    plan = np.empty(4, np.int64)
    plan[0], plan[1], plan[2], plan[3] = _plan(rows, O, tile_count, kb, nth, wide16)
    taps, tmax = _dconv_taps(geo, cs, rs, js, ntiles, kb)
    # every slot's tap offset (int32: _dconv_mode keeps the image under 2**31 floats)
    w_tap = np.empty(w_loc.size, np.int32)
    for kt in range(ntiles):
        for q in range(tile_ptr[kt], tile_ptr[kt + 1]):
            w_tap[q] = taps[kt * kb + np.intp(w_loc[q])]
    if mode == _MODE_PADDED:
        body = geo[_G_KW] * c_in * hp * wp
        pad = _aligned_empty(tmax + plan[0] * plan[1] + 16)
        pad[body:] = 0.0
        for n in range(n_img):
            if parallel:
                _dconv_pack(xbuf, geo, n, pad, hp, wp)
                _dconv_image(pad, 0, pad.size, taps, tmax, geo, ybuf, yoff + n * ysn, ysf, ysh, ysw, O, accumulate,
                             w_loc, w_tap, w_val, tile_count, tile_ptr, kb, plan, wide16, rows, cs, rs, pf, epi,
                             rbuf, (res[0] + n * res[1]) if res.size else 0, res)
            else:
                _dconv_pack_serial(xbuf, geo, n, pad, hp, wp)
                _dconv_image_serial(pad, 0, pad.size, taps, tmax, geo, ybuf, yoff + n * ysn, ysf, ysh, ysw, O, accumulate,
                                    w_loc, w_tap, w_val, tile_count, tile_ptr, kb, plan, wide16, rows, cs, rs, pf, epi,
                                    rbuf, (res[0] + n * res[1]) if res.size else 0, res)
    else:
        for n in range(n_img):
            base = geo[_G_XOFF] + n * geo[_G_XSN]
            if parallel:
                _dconv_image(xbuf, base, xbuf.size, taps, tmax, geo, ybuf, yoff + n * ysn, ysf, ysh, ysw, O, accumulate,
                             w_loc, w_tap, w_val, tile_count, tile_ptr, kb, plan, wide16, rows, cs, rs, pf, epi,
                             rbuf, (res[0] + n * res[1]) if res.size else 0, res)
            else:
                _dconv_image_serial(xbuf, base, xbuf.size, taps, tmax, geo, ybuf, yoff + n * ysn, ysf, ysh, ysw, O, accumulate,
                                    w_loc, w_tap, w_val, tile_count, tile_ptr, kb, plan, wide16, rows, cs, rs, pf, epi,
                                    rbuf, (res[0] + n * res[1]) if res.size else 0, res)


_dconv_pack_serial = njit(fastmath=True, cache=True, nogil=True)(_renamed(_dconv_pack.py_func, "_dconv_pack_serial"))
_dconv_image_serial = njit(fastmath=True, cache=True, nogil=True)(_renamed(_dconv_image.py_func, "_dconv_image_serial"))

#: the direct layout prefetches the next K-tile's input channels (A/B:
#: ``conv2d_series(..., prefetch=)``, ``bench_kernels.py --conv-model``'s
#: "nopf" column). Off: it did not pay over whole models (conv layers of
#: resnet18 / resnet50, one run each: 2:4 -3 % / +1.5 %, 1:8 +2 % / -0.5 %
#: time with it; only 1x1 layers read in place gained, ~1.2x at 1:8)
DIRECT_PREFETCH = False


@njit(fastmath=True, cache=True, nogil=True)
def _run_conv(xbuf, geo, ybuf, yoff, ysn, ysf, ysh, ysw, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16,
              layout, kpad, pf, epi, rbuf, res):
    """Dispatch to the direct layout (:func:`_dconv_mode`; a ``direct``
    request that does not apply runs the tiles) or to the serial or the
    parallel X-tile conv kernel, by the amount of work.

    (A 1x1 stride-1 conv as one GEMM kernel call per image on the input
    planes was tried and measured 2.3x slower at 1x1 64->256 on 56² planes,
    batch 8, in one process at load 7.)"""
    n_img, oh, ow = geo[_G_N], geo[_G_OH], geo[_G_OW]
    work = n_img * oh * ow * w_loc.size
    parallel = not (nth <= 1 or work < SERIAL_WORK)
    mode = _dconv_mode(geo, layout, kpad, w_loc.size, parallel)
    if mode == _MODE_PADDED or mode == _MODE_INPLACE:
        _dconv_kernel(xbuf, geo, ybuf, yoff, ysn, ysf, ysh, ysw, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16,
                      mode, pf, parallel, epi, rbuf, res)
    elif not parallel:
        _conv_kernel_serial(xbuf, geo, ybuf, yoff, ysn, ysf, ysh, ysw, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi,
                            rbuf, res)
    else:
        _conv_kernel(xbuf, geo, ybuf, yoff, ysn, ysf, ysh, ysw, O, accumulate, w_loc, w_val, tile_count, tile_ptr, kb, nth, wide16, epi,
                     rbuf, res)


def _flat(a: np.ndarray, what: str, writable: bool) -> tuple[np.ndarray, int, int, int]:
    """(flat 1-D float32 view starting at a's first element, 0, s0, s1) in elements."""
    s0, s1 = a.strides
    if s0 % 4 or s1 % 4:
        raise KernelError(f"{what}: strides {a.strides} are not multiples of the float32 size")
    if a.size == 0:
        return np.zeros(1, np.float32), 0, 0, 0
    if s0 < 0 or s1 < 0:
        raise KernelError(f"{what}: negative strides {a.strides} are not supported")
    if a.flags.c_contiguous or a.flags.f_contiguous:
        # a view of the memory in memory order, from a[0, 0]: ~0.3 µs, where
        # as_strided takes ~8 µs (a call of series_matmul made two)
        return a.ravel(order="K"), 0, s0 // 4, s1 // 4
    span = 1 + (a.shape[0] - 1) * (s0 // 4) + (a.shape[1] - 1) * (s1 // 4)
    flat = np.lib.stride_tricks.as_strided(a, shape=(span,), strides=(4,), writeable=writable)
    return flat, 0, s0 // 4, s1 // 4


def series_matmul(
    x: np.ndarray,
    packed: PackedSeries,
    out: np.ndarray | None = None,
    accumulate: bool = False,
    isa: str | None = None,
) -> np.ndarray:
    """``out[..., O] (+)= x[..., K] @ W_totalᵀ`` with W_total the sum of the
    packed series.

    ``isa`` picks the wide micro-kernel (``avx2``: 8-lane, ``avx512``:
    16-lane); by default :func:`wide_kernel_isa` (the host's best, picked at
    load time).

    ``x`` is float32 with any leading dims and any (non-negative) strides; a
    strided 2-D view is read in place (no copy), e.g. ``cols.T`` of a K-major
    im2col matrix. More than 2 dims are flattened with ``reshape`` (a copy only
    if numpy cannot make it a view). ``out`` (float32, shape ``x.shape[:-1] +
    (O,)``, any non-negative strides, no overlap between its elements) is
    written, or added to when ``accumulate`` is true; it is allocated when
    None (then ``accumulate`` adds to zeros). ``out`` must not overlap ``x``.
    A read-only or negatively strided ``x`` is copied first.

    Raises :class:`KernelError` for a dtype, rank or shape mismatch before any
    work is done.
    """
    if not isinstance(packed, PackedSeries):
        raise KernelError(f"packed must be a PackedSeries (from pack_series), got {type(packed).__name__}")
    if isa is None:
        isa = _WIDE_ISA
    elif isa not in ("avx2", "avx512"):
        raise KernelError(f"isa must be 'avx2' or 'avx512', got {isa!r}")
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise KernelError(f"x must be float32, got {x.dtype}")
    if x.ndim < 1:
        raise KernelError("x must have at least one dimension (the K axis)")
    k, o = packed.in_features, packed.out_features
    if x.shape[-1] != k:
        raise KernelError(f"x has {x.shape[-1]} columns (last dim of shape {list(x.shape)}), the weight expects K={k}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k) if x.ndim != 2 else x
    t = x2.shape[0]
    if out is None:
        out = np.empty(lead + (o,), np.float32) if not accumulate else np.zeros(lead + (o,), np.float32)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise KernelError(f"out must be a float32 ndarray, got {getattr(out, 'dtype', type(out).__name__)}")
        if out.shape != lead + (o,):
            raise KernelError(f"out has shape {list(out.shape)}, expected {list(lead + (o,))}")
        if not out.flags.writeable:
            raise KernelError("out is read-only")
    y2 = out
    if out.ndim != 2:
        y2 = out.view()
        try:
            y2.shape = (-1, o)  # in place: fails instead of silently copying
        except AttributeError:
            raise KernelError(f"out with shape {list(out.shape)} and strides {out.strides} cannot be viewed as [T, O] without a copy") from None
    if t and o and (y2.strides[0] == 0 and t > 1 or y2.strides[1] == 0 and o > 1):
        raise KernelError("out has a zero stride (broadcast view); its elements would overlap")
    if t and o and np.may_share_memory(x2, y2):
        raise KernelError("out must not overlap x")
    if not x2.flags.writeable:
        x2 = x2.copy()
    if x2.strides[0] < 0 or x2.strides[1] < 0 or x2.strides[0] % 4 or x2.strides[1] % 4:
        x2 = np.ascontiguousarray(x2)
    xb, xo, xs0, xs1 = _flat(x2, "x", True)
    yb, yo, ys0, ys1 = _flat(y2, "out", True)
    if k == 0:
        if not accumulate:
            y2[...] = 0
        return out
    _run_series(xb, xo, xs0, xs1, t, k, yb, yo, ys0, ys1, o, bool(accumulate), packed.w_loc, packed.w_val, packed.tile_count, packed.tile_ptr, packed.kb, numba.get_num_threads(), isa == "avx512", _NO_EPILOGUE)
    return out


# --------------------------------------------------------------------------
# C-callable entry for JIT'ed MLIR code
# --------------------------------------------------------------------------

#: Fields of a rank-2 memref descriptor, as MLIR passes it (``llvm.emit_c_interface``).
MEMREF2D_FIELDS = ("allocated", "aligned", "offset", "size0", "size1", "stride0", "stride1")


def _memref_class(rank: int) -> type[ctypes.Structure]:
    fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64),
              ("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
    return type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})


class MemRef2D(ctypes.Structure):
    """``struct {float *allocated, *aligned; int64 offset, sizes[2], strides[2];}``"""

    _fields_ = [
        ("allocated", ctypes.c_void_p),
        ("aligned", ctypes.c_void_p),
        ("offset", ctypes.c_int64),
        ("sizes", ctypes.c_int64 * 2),
        ("strides", ctypes.c_int64 * 2),
    ]


def memref_descriptor(a: np.ndarray) -> ctypes.Structure:
    """A descriptor viewing the float32 array ``a`` (rank 1 or more; strides
    in elements). The caller keeps ``a`` alive while the descriptor is used."""
    if a.ndim < 1 or a.dtype != np.float32:
        raise KernelError(f"memref_descriptor needs a float32 array of rank >= 1, got {a.ndim}-D {a.dtype}")
    d = MemRef2D() if a.ndim == 2 else _memref_class(a.ndim)()
    d.allocated = a.ctypes.data
    d.aligned = a.ctypes.data
    d.offset = 0
    d.sizes[:] = a.shape
    d.strides[:] = [s // a.itemsize for s in a.strides]
    return d


# params record shared between Python and the C entry (int64 slots)
_P_MAGIC, _P_O, _P_K, _P_NTILES, _P_KB, _P_WLOC, _P_WVAL, _P_TCNT, _P_TPTR = range(9)
_P_NSLOTS, _P_NTH, _P_ACC, _P_STATUS, _P_A, _P_B, _P_CALLS, _P_WIDE16 = range(9, 17)
# conv2d entries only: filter size, strides, dilations
_P_KH, _P_KW, _P_SH, _P_SW, _P_DH, _P_DW = range(17, 23)
# matmul entries: operand rank (2, or 3 for batch_matmul), operands
# transposed (the weight on the left: Y = W X), batch size and the distance
# between two batch elements' weights in w_loc / w_val (slots)
_P_RANK, _P_TRANS, _P_BATCH, _P_WSTRIDE = range(23, 27)
# conv2d entries: zero padding before / after the rows and columns
_P_PH0, _P_PW0, _P_PH1, _P_PW1 = range(27, 31)
# conv2d entries: layout code (``CONV_LAYOUTS``), the series' last column (K +
# the compressed format's padding), prefetch in the direct layout
_P_LAYOUT, _P_KPAD, _P_PF = range(31, 34)
# the fused epilogue (:func:`_epilogue`): address of its float32 array, its length (0: none)
_P_EPI, _P_EPILEN = range(34, 36)
# conv2d entries taking a residual: the residual's memref descriptor, stored by
# the entry's trampoline on every call (0: none)
_P_RES = 36
# 1 for an entry made with a residual operand (a null one is then an error, not "none")
_P_HASRES = 37
_P_LEN = 38
_MAGIC = 0x54415344  # "TASD"

#: status codes returned by the C entry (and stored in its status record)
STATUS_OK = 0
STATUS_NULL_DESCRIPTOR = 1
STATUS_BAD_PARAMS = 2
STATUS_X_COLS = 3
STATUS_Y_ROWS = 4
STATUS_Y_COLS = 5
STATUS_BAD_STRIDES = 6
STATUS_INCOMPLETE = 7
STATUS_CONV_SHAPE = 8
STATUS_BATCH = 9
STATUS_RESIDUAL = 10

_STATUS_TEXT = {
    STATUS_NULL_DESCRIPTOR: "null memref descriptor or data pointer (X or Y)",
    STATUS_BAD_PARAMS: "corrupted entry parameters (bad magic number)",
    STATUS_X_COLS: "X has {a} columns, the weight expects K={b}",
    STATUS_Y_ROWS: "Y has {a} rows, X has {b} rows",
    STATUS_Y_COLS: "Y has {a} columns, the weight has O={b} outputs",
    STATUS_BAD_STRIDES: "negative strides, or a zero stride in Y (X strides {a}, Y strides {b})",
    STATUS_INCOMPLETE: "the kernel did not complete (internal error)",
    STATUS_CONV_SHAPE: "conv2d operands do not match the filter and geometry (input dims {a}, output dims {b})",
    STATUS_BATCH: "batch of X is {a}, of Y or the weights {b}",
    STATUS_RESIDUAL: "the residual operand has dims {a}, the output {b} (or negative strides, or a null pointer)",
}


_CFUNC_SIG = types.int32(types.intp, types.intp, types.intp)


def _cfunc_generic_py(xd_a, yd_a, prm_a):
    """int32 status = entry(X memref*, Y memref*, params*); never raises.
    (Pointers arrive as integers so that they can be tested against NULL.)

    Rank 2: ``Y[T, O] (+)= X[T, K] Wᵀ``; rank 3 (``batch_matmul``): the same
    per batch element ``b`` with that element's weights (at ``b *
    wstride`` slots in ``w_loc`` / ``w_val``). Transposed (the weight on the
    left, ``Y[O, T] = W X[K, T]``): the kernel runs ``Yᵀ = Xᵀ Wᵀ`` on the
    operands' swapped strides, in place."""
    prm = carray(_ptr_i64(prm_a), _P_LEN)
    if prm[_P_MAGIC] != _MAGIC:
        return STATUS_BAD_PARAMS
    prm[_P_CALLS] += 1
    if xd_a == 0 or yd_a == 0:
        prm[_P_STATUS] = STATUS_NULL_DESCRIPTOR
        return STATUS_NULL_DESCRIPTOR
    rank = prm[_P_RANK]
    xd = carray(_ptr_i64(xd_a), 3 + 2 * rank)
    yd = carray(_ptr_i64(yd_a), 3 + 2 * rank)
    nb = 1
    xbs = 0
    ybs = 0
    d = 3  # first size field of the matrix dims
    if rank == 3:
        nb = xd[3]
        xbs = xd[6]
        ybs = yd[6]
        d = 4
        if yd[3] != nb or nb != prm[_P_BATCH]:
            prm[_P_STATUS] = STATUS_BATCH
            prm[_P_A] = nb
            prm[_P_B] = yd[3] if yd[3] != nb else prm[_P_BATCH]
            return STATUS_BATCH
    s = d + rank  # first stride field of the matrix dims
    tr = prm[_P_TRANS] != 0
    # the kernel's view: X [T, Kx] with strides (xs0, xs1), Y [Ty, Oy] with (ys0, ys1)
    T, Kx, xs0, xs1 = xd[d], xd[d + 1], xd[s], xd[s + 1]
    Ty, Oy, ys0, ys1 = yd[d], yd[d + 1], yd[s], yd[s + 1]
    if tr:
        T, Kx, xs0, xs1 = xd[d + 1], xd[d], xd[s + 1], xd[s]
        Ty, Oy, ys0, ys1 = yd[d + 1], yd[d], yd[s + 1], yd[s]
    O = prm[_P_O]
    K = prm[_P_K]
    if Kx != K:
        prm[_P_STATUS] = STATUS_X_COLS
        prm[_P_A] = Kx
        prm[_P_B] = K
        return STATUS_X_COLS
    if Ty != T:
        prm[_P_STATUS] = STATUS_Y_ROWS
        prm[_P_A] = Ty
        prm[_P_B] = T
        return STATUS_Y_ROWS
    if Oy != O:
        prm[_P_STATUS] = STATUS_Y_COLS
        prm[_P_A] = Oy
        prm[_P_B] = O
        return STATUS_Y_COLS
    if nb > 0 and T > 0 and O > 0 and (xd[1] == 0 or yd[1] == 0):
        prm[_P_STATUS] = STATUS_NULL_DESCRIPTOR
        return STATUS_NULL_DESCRIPTOR
    if (xs0 < 0 or xs1 < 0 or ys0 < 0 or ys1 < 0 or xbs < 0 or ybs < 0 or (T > 1 and ys0 == 0) or (O > 1 and ys1 == 0)
            or (nb > 1 and ybs == 0)):
        prm[_P_STATUS] = STATUS_BAD_STRIDES
        prm[_P_A] = xs0 * 1000003 + xs1
        prm[_P_B] = ys0 * 1000003 + ys1
        return STATUS_BAD_STRIDES
    if nb == 0 or T == 0 or O == 0:
        prm[_P_STATUS] = STATUS_OK
        return STATUS_OK
    prm[_P_STATUS] = STATUS_INCOMPLETE
    xspan = 1 + (nb - 1) * xbs + (T - 1) * xs0 + (K - 1) * xs1 if K > 0 else 1
    yspan = 1 + (nb - 1) * ybs + (T - 1) * ys0 + (O - 1) * ys1
    xbuf = carray(_ptr_f32(xd[1] + 4 * xd[2]), xspan)
    ybuf = carray(_ptr_f32(yd[1] + 4 * yd[2]), yspan)
    acc = prm[_P_ACC] != 0
    if K == 0:
        if not acc:
            for b in range(nb):
                for t in range(T):
                    for o in range(O):
                        ybuf[b * ybs + t * ys0 + o * ys1] = 0.0
        prm[_P_STATUS] = STATUS_OK
        return STATUS_OK
    ntiles = prm[_P_NTILES]
    nslots = prm[_P_NSLOTS]
    ws = prm[_P_WSTRIDE]
    w_loc_all = carray(_ptr_u8(prm[_P_WLOC]), (nb - 1) * ws + nslots)
    w_val_all = carray(_ptr_f32(prm[_P_WVAL]), (nb - 1) * ws + nslots)
    tcnt = carray(_ptr_i64(prm[_P_TCNT]), ntiles)
    tptr = carray(_ptr_i64(prm[_P_TPTR]), ntiles + 1)
    epi = carray(_ptr_f32(prm[_P_EPI] if prm[_P_EPILEN] else prm[_P_WVAL]), prm[_P_EPILEN])
    for b in range(nb):
        _run_series(xbuf, b * xbs, xs0, xs1, T, K, ybuf, b * ybs, ys0, ys1, O, acc,
                    w_loc_all[b * ws : b * ws + nslots], w_val_all[b * ws : b * ws + nslots],
                    tcnt, tptr, prm[_P_KB], prm[_P_NTH], prm[_P_WIDE16] != 0, epi)
    prm[_P_STATUS] = STATUS_OK
    return STATUS_OK


_cfunc_lock = threading.Lock()
_cfunc_obj: Any = None


def _conv_cfunc_py(xd_a, yd_a, prm_a):
    """int32 status = entry(X memref4d*, Y memref4d*, params*) for a conv2d
    (NCHW input, NFHW output, zero padding ``[ph0, pw0, ph1, pw1]`` read as
    part of the input: torch-mlir's ``tensor.pad`` is folded into the call):
    :func:`_conv_kernel` packs its X tiles straight from the input, with any
    strides. Never raises."""
    prm = carray(_ptr_i64(prm_a), _P_LEN)
    if prm[_P_MAGIC] != _MAGIC:
        return STATUS_BAD_PARAMS
    prm[_P_CALLS] += 1
    if xd_a == 0 or yd_a == 0:
        prm[_P_STATUS] = STATUS_NULL_DESCRIPTOR
        return STATUS_NULL_DESCRIPTOR
    xd = carray(_ptr_i64(xd_a), 11)
    yd = carray(_ptr_i64(yd_a), 11)
    n, c, h, w = xd[3], xd[4], xd[5], xd[6]
    f, oh, ow = yd[4], yd[5], yd[6]
    kh, kw, sh, sw, dh, dw = prm[_P_KH], prm[_P_KW], prm[_P_SH], prm[_P_SW], prm[_P_DH], prm[_P_DW]
    ph0, pw0, ph1, pw1 = prm[_P_PH0], prm[_P_PW0], prm[_P_PH1], prm[_P_PW1]
    K = prm[_P_K]
    ok = (yd[3] == n and f == prm[_P_O] and c * kh * kw == K
          and oh == (h + ph0 + ph1 - dh * (kh - 1) - 1) // sh + 1
          and ow == (w + pw0 + pw1 - dw * (kw - 1) - 1) // sw + 1
          and oh > 0 and ow > 0)
    if not ok:
        prm[_P_STATUS] = STATUS_CONV_SHAPE
        prm[_P_A] = ((n * 100003 + c) * 100003 + h) * 100003 + w
        prm[_P_B] = ((yd[3] * 100003 + f) * 100003 + oh) * 100003 + ow
        return STATUS_CONV_SHAPE
    if n == 0 or f == 0:
        prm[_P_STATUS] = STATUS_OK
        return STATUS_OK
    if xd[1] == 0 or yd[1] == 0:
        prm[_P_STATUS] = STATUS_NULL_DESCRIPTOR
        return STATUS_NULL_DESCRIPTOR
    for i in range(7, 11):
        if xd[i] < 0 or yd[i] < 0:
            prm[_P_STATUS] = STATUS_BAD_STRIDES
            return STATUS_BAD_STRIDES
    res = np.empty(0, np.int64)
    rbuf = carray(_ptr_f32(prm[_P_WVAL]), 0)
    if prm[_P_HASRES] != 0 and prm[_P_RES] == 0:
        prm[_P_STATUS] = STATUS_RESIDUAL
        return STATUS_RESIDUAL
    if prm[_P_RES] != 0:  # Y = clamp(epilogue + R): R has Y's dims, any strides
        rd = carray(_ptr_i64(prm[_P_RES]), 11)
        if (rd[3] != n or rd[4] != f or rd[5] != oh or rd[6] != ow or rd[1] == 0 or prm[_P_EPILEN] == 0
                or rd[7] < 0 or rd[8] < 0 or rd[9] < 0 or rd[10] < 0):
            prm[_P_STATUS] = STATUS_RESIDUAL
            prm[_P_A] = ((rd[3] * 100003 + rd[4]) * 100003 + rd[5]) * 100003 + rd[6]
            prm[_P_B] = ((n * 100003 + f) * 100003 + oh) * 100003 + ow
            return STATUS_RESIDUAL
        rbuf = carray(_ptr_f32(rd[1] + 4 * rd[2]), 1 + (n - 1) * rd[7] + (f - 1) * rd[8] + (oh - 1) * rd[9] + (ow - 1) * rd[10])
        res = np.empty(5, np.int64)
        res[0], res[1], res[2], res[3], res[4] = 0, rd[7], rd[8], rd[9], rd[10]
    prm[_P_STATUS] = STATUS_INCOMPLETE
    xspan = 1 + (n - 1) * xd[7] + (c - 1) * xd[8] + (h - 1) * xd[9] + (w - 1) * xd[10]
    yspan = 1 + (n - 1) * yd[7] + (f - 1) * yd[8] + (oh - 1) * yd[9] + (ow - 1) * yd[10]
    xbuf = carray(_ptr_f32(xd[1] + 4 * xd[2]), xspan)
    ybuf = carray(_ptr_f32(yd[1] + 4 * yd[2]), yspan)
    geo = np.empty(_G_LEN, np.int64)
    geo[_G_XOFF], geo[_G_XSN], geo[_G_XSC], geo[_G_XSH], geo[_G_XSW] = 0, xd[7], xd[8], xd[9], xd[10]
    geo[_G_N], geo[_G_C], geo[_G_H], geo[_G_W] = n, c, h, w
    geo[_G_KH], geo[_G_KW], geo[_G_SH], geo[_G_SW] = kh, kw, sh, sw
    geo[_G_PH], geo[_G_PW], geo[_G_DH], geo[_G_DW] = ph0, pw0, dh, dw
    geo[_G_OH], geo[_G_OW] = oh, ow
    w_loc = carray(_ptr_u8(prm[_P_WLOC]), prm[_P_NSLOTS])
    w_val = carray(_ptr_f32(prm[_P_WVAL]), prm[_P_NSLOTS])
    tcnt = carray(_ptr_i64(prm[_P_TCNT]), prm[_P_NTILES])
    tptr = carray(_ptr_i64(prm[_P_TPTR]), prm[_P_NTILES] + 1)
    epi = carray(_ptr_f32(prm[_P_EPI] if prm[_P_EPILEN] else prm[_P_WVAL]), prm[_P_EPILEN])
    _run_conv(xbuf, geo, ybuf, 0, yd[7], yd[8], yd[9], yd[10], f, False,
              w_loc, w_val, tcnt, tptr, prm[_P_KB], prm[_P_NTH], prm[_P_WIDE16] != 0,
              prm[_P_LAYOUT], prm[_P_KPAD], prm[_P_PF] != 0, epi, rbuf, res)
    prm[_P_STATUS] = STATUS_OK
    return STATUS_OK


_conv_cfunc_obj: Any = None


def _conv_cfunc() -> Any:
    """The shared Numba @cfunc of conv2d entries (compiled or loaded from Numba's cache on first use)."""
    global _conv_cfunc_obj
    with _cfunc_lock:
        if _conv_cfunc_obj is None:
            _conv_cfunc_obj = cfunc(_CFUNC_SIG, cache=True, nogil=True)(_conv_cfunc_py)
        return _conv_cfunc_obj


def _generic_cfunc() -> Any:
    """The shared Numba @cfunc, compiled (or loaded from Numba's cache) on first use."""
    global _cfunc_obj
    with _cfunc_lock:
        if _cfunc_obj is None:
            from numba.np.ufunc import parallel as _parallel

            # Before the cfunc loads: its parallel regions link against the threading
            # layer's symbols (``allocate_sched``); loaded first, a later cfunc that
            # starts the threads (runtime/cpu/dense.py) aborted in LLVM's linker.
            _parallel._launch_threads()
            _cfunc_obj = cfunc(_CFUNC_SIG, cache=True, nogil=True)(_cfunc_generic_py)
        return _cfunc_obj


_tramp_lock = threading.Lock()
_tramp_engine: Any = None
_tramp_count = 0


def _trampoline(target: int, params_addr: int, name: str, residual: bool = False) -> int:
    """Address of ``i32 name(ptr x, ptr y) { return target(x, y, params); }``,
    JIT-compiled with llvmlite (about a millisecond; no Numba compile per entry).
    With ``residual``: ``i32 name(ptr x, ptr y, ptr r) { params[_P_RES] = r; return
    target(x, y, params); }``."""
    global _tramp_engine, _tramp_count
    import llvmlite.binding as llvm

    with _tramp_lock:
        _tramp_count += 1
        sym = f"{name}__tasd_tramp{_tramp_count}"
        mod = ir.Module(name=sym)
        i8p = ir.IntType(8).as_pointer()
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fnty = ir.FunctionType(i32, [i8p, i8p, i8p] if residual else [i8p, i8p])
        fn = ir.Function(mod, fnty, sym)
        b = ir.IRBuilder(fn.append_basic_block())
        tty = ir.FunctionType(i32, [i8p, i8p, i8p])
        callee = b.inttoptr(ir.Constant(i64, target), tty.as_pointer())
        prm = b.inttoptr(ir.Constant(i64, params_addr), i8p)
        if residual:
            slot = b.inttoptr(ir.Constant(i64, params_addr + 8 * _P_RES), i64.as_pointer())
            b.store(b.ptrtoint(fn.args[2], i64), slot)
        b.ret(b.call(callee, [fn.args[0], fn.args[1], prm]))
        llmod = llvm.parse_assembly(str(mod))
        llmod.verify()
        if _tramp_engine is None:
            target_machine = llvm.Target.from_default_triple().create_target_machine()
            _tramp_engine = llvm.create_mcjit_compiler(llmod, target_machine)
        else:
            _tramp_engine.add_module(llmod)
        _tramp_engine.finalize_object()
        return int(_tramp_engine.get_function_address(sym))


_CFUNC_PROTO = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
#: a conv2d entry with a residual operand (``make_conv_cfunc_entry(residual=True)``)
_CFUNC_PROTO_RESIDUAL = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_entry_ids = iter(range(1 << 62))


@dataclass(frozen=True)
class Epilogue:
    """A per-output affine map and clamp fused into a kernel entry's stores:
    output ``o`` becomes ``min(max(scale[o]·y + shift[o], lo), hi)`` (float32
    arithmetic; the multiply-add may be fused). ``scale`` / ``shift`` have one value
    per output feature (the weight's rows: a conv's filters, a Linear's
    outputs) or one for all."""

    scale: np.ndarray
    shift: np.ndarray
    lo: float = -np.inf
    hi: float = np.inf

    def array(self, out_features: int) -> np.ndarray:
        """``[scale[0:O], shift[0:O], lo, hi]`` as the kernels read it (float32)."""
        out = np.empty(2 * out_features + 2, np.float32)
        for i, v in enumerate((self.scale, self.shift)):
            v = np.asarray(v, np.float32).reshape(-1)
            if v.size not in (1, out_features):
                raise KernelError(f"epilogue {('scale', 'shift')[i]} has {v.size} values for {out_features} outputs")
            out[i * out_features:(i + 1) * out_features] = v
        out[2 * out_features:] = (self.lo, self.hi)
        if np.isnan(out).any() or not self.lo <= self.hi:
            raise KernelError(f"epilogue values must not be NaN and lo <= hi (lo={self.lo}, hi={self.hi})")
        return out


@dataclass(eq=False)
class CFuncEntry:
    """A C-callable ``int32 name(memref2d *x, memref2d *y)`` running
    ``Y (+)= X @ W_totalᵀ`` for one packed series.

    ``address`` is the native entry; ``ctypes`` wraps it as a CFUNCTYPE (what
    ``ExecutionEngine.register_runtime(name, entry.ctypes)`` wants). It never
    raises: it returns a status (0 = ok) and records it; call
    :meth:`check_status` after the JIT'ed code ran. Keep this object alive as
    long as any code may call the entry (it owns the weights and parameters).
    Concurrent calls of one entry share its status record.
    """

    name: str
    packed: PackedSeries
    accumulate: bool
    address: int
    ctypes: Any
    params: np.ndarray = field(repr=False)
    #: a batch entry's weights, every element's packed slots one after the other
    batch_weights: tuple[np.ndarray, ...] = field(default=(), repr=False)
    #: the fused epilogue's ``[scale, shift, lo, hi]`` (see :func:`epilogue_array`), empty if none
    epilogue: np.ndarray = field(default_factory=lambda: _NO_EPILOGUE, repr=False)
    #: the entry takes a third memref, the residual added before the epilogue's clamp
    residual: bool = False

    @property
    def status(self) -> int:
        return int(self.params[_P_STATUS])

    @property
    def calls(self) -> int:
        """How many times the entry has been called."""
        return int(self.params[_P_CALLS])

    def status_message(self) -> str | None:
        code = self.status
        if code == STATUS_OK:
            return None
        a, b = int(self.params[_P_A]), int(self.params[_P_B])
        if code == STATUS_BAD_STRIDES:
            a, b = divmod(a, 1000003), divmod(b, 1000003)
        elif code in (STATUS_CONV_SHAPE, STATUS_RESIDUAL):
            def dims(v: int) -> list[int]:
                out = []
                for _ in range(4):
                    v, r = divmod(v, 100003)
                    out.append(r)
                return out[::-1]

            a, b = dims(a), dims(b)  # type: ignore[assignment]
        text = _STATUS_TEXT.get(code, "unknown status {code}").format(a=a, b=b, code=code)
        if self.params[_P_TRANS] and code in (STATUS_X_COLS, STATUS_Y_ROWS, STATUS_Y_COLS):
            text += " (weight on the left, Y = W X: the kernel's X and Y are the operands transposed)"
        return f"{self.name} ({self.packed.series}, O={self.packed.out_features}, K={self.packed.in_features}): {text}"

    def check_status(self, reset: bool = True) -> None:
        """Raise :class:`KernelError` if the last call failed (then reset the record)."""
        msg = self.status_message()
        if reset:
            self.reset_status()
        if msg is not None:
            raise KernelError(msg)

    def reset_status(self) -> None:
        self.params[_P_STATUS] = STATUS_OK
        self.params[_P_A] = 0
        self.params[_P_B] = 0

    def __call__(self, x: np.ndarray, y: np.ndarray, residual: np.ndarray | None = None) -> int:
        """Call the native entry through ctypes on float32 arrays of the
        entry's rank (testing aid; ``residual`` for an entry that takes one)."""
        xd, yd = memref_descriptor(x), memref_descriptor(y)
        if self.residual:
            if residual is None:
                raise KernelError(f"{self.name} takes a residual operand")
            rd = memref_descriptor(residual)
            return int(self.ctypes(ctypes.addressof(xd), ctypes.addressof(yd), ctypes.addressof(rd)))
        return int(self.ctypes(ctypes.addressof(xd), ctypes.addressof(yd)))


def make_cfunc_entry(
    packed: PackedSeries | Sequence[PackedSeries], *, name: str | None = None, accumulate: bool = False,
    isa: str | None = None, transpose: bool = False, epilogue: Epilogue | None = None,
) -> CFuncEntry:
    """Build the C entry ``int32 <name>(memref2d *x, memref2d *y)`` for
    ``packed``: X is ``[T, K]``, Y is ``[T, O]``, both f32 with any
    non-negative strides and offsets (``memref<?x?xf32, strided<[?, ?],
    offset: ?>>``). With ``accumulate`` Y is added to, else overwritten.

    ``transpose``: the weight is the left operand, ``Y[O, T] = W X[K, T]``
    (the kernel runs on the transposed views, no copy). A sequence of packed
    series (one per batch element, all of one shape and series) makes a
    ``batch_matmul`` entry on rank-3 memrefs, ``[B, T, K] -> [B, T, O]``
    (``[B, K, T] -> [B, O, T]`` transposed); their slots are copied into one
    combined pair of arrays and each element's ``w_loc`` / ``w_val`` becomes
    a view of it (the weights are stored once).

    The weights are reached through a parameter block (addresses of the packed
    arrays) baked into a tiny llvmlite trampoline that calls one shared, cached
    Numba ``@cfunc``: no Numba compile per entry. MLIR side: declare
    ``func.func private @<name>(memref<?x?xf32>, memref<?x?xf32>) [-> i32]
    attributes {llvm.emit_c_interface}`` and register ``entry.ctypes`` under
    ``<name>`` (``register_runtime`` adds the ``_mlir_ciface_`` prefix). A void
    declaration is fine too (the status is still recorded). ``isa`` picks the
    wide micro-kernel (``avx2`` or ``avx512``; default :func:`wide_kernel_isa`).
    ``epilogue``: applied to each output ``o`` before it is stored,
    ``min(max(scale[o]·y + shift[o], lo), hi)`` (:class:`Epilogue`; not with
    ``accumulate``).
    """
    batch: tuple[np.ndarray, ...] = ()
    nbatch = 1
    rank = 2
    if not isinstance(packed, PackedSeries):
        elements = list(packed) if isinstance(packed, (list, tuple)) else None
        if not elements or not all(isinstance(p, PackedSeries) for p in elements):
            raise KernelError(f"packed must be a PackedSeries or a non-empty list of them, got {type(packed).__name__}")
        first = elements[0]
        for i, p in enumerate(elements):
            if (p.out_features, p.in_features, p.kb, p.patterns, p.w_loc.size) != (
                    first.out_features, first.in_features, first.kb, first.patterns, first.w_loc.size) or not (
                    np.array_equal(p.tile_count, first.tile_count) and np.array_equal(p.tile_ptr, first.tile_ptr)):
                raise KernelError(f"batch element {i} ({p.series}, O={p.out_features}, K={p.in_features}) "
                                  f"is not packed like element 0 ({first.series}, O={first.out_features}, K={first.in_features})")
        batch = (np.concatenate([p.w_loc for p in elements]), np.concatenate([p.w_val for p in elements]))
        # store the slots once: each element's arrays become views of the combined ones
        n = first.w_loc.size
        for i, p in enumerate(elements):
            p.w_loc, p.w_val = batch[0][i * n : (i + 1) * n], batch[1][i * n : (i + 1) * n]
        nbatch, rank, packed = len(elements), 3, first
    if name is None:
        name = f"tasd_series_matmul_{next(_entry_ids)}"
    from numba.np.ufunc import parallel as _parallel

    _parallel._launch_threads()  # the JIT'ed caller may be the first to run a parallel region
    prm = np.zeros(_P_LEN, np.int64)
    prm[_P_MAGIC] = _MAGIC
    prm[_P_O] = packed.out_features
    prm[_P_K] = packed.in_features
    prm[_P_NTILES] = packed.ntiles
    prm[_P_KB] = packed.kb
    w_loc, w_val = batch if batch else (packed.w_loc, packed.w_val)
    prm[_P_WLOC] = w_loc.ctypes.data
    prm[_P_WVAL] = w_val.ctypes.data
    prm[_P_TCNT] = packed.tile_count.ctypes.data if packed.tile_count.size else packed.tile_ptr.ctypes.data
    prm[_P_TPTR] = packed.tile_ptr.ctypes.data
    prm[_P_NSLOTS] = packed.w_loc.size
    prm[_P_NTH] = numba.get_num_threads()
    prm[_P_ACC] = int(bool(accumulate))
    prm[_P_RANK] = rank
    prm[_P_TRANS] = int(bool(transpose))
    prm[_P_BATCH] = nbatch
    prm[_P_WSTRIDE] = packed.w_loc.size
    if isa is not None and isa not in ("avx2", "avx512"):
        raise KernelError(f"isa must be 'avx2' or 'avx512', got {isa!r}")
    prm[_P_WIDE16] = int((isa or _WIDE_ISA) == "avx512")
    epi = _NO_EPILOGUE
    if epilogue is not None:
        if accumulate:
            raise KernelError("an epilogue needs accumulate=False (it maps the finished sums)")
        epi = epilogue.array(packed.out_features)
        prm[_P_EPI], prm[_P_EPILEN] = epi.ctypes.data, epi.size
    addr = _trampoline(_generic_cfunc().address, prm.ctypes.data, name)
    return CFuncEntry(name=name, packed=packed, accumulate=bool(accumulate), address=addr, ctypes=_CFUNC_PROTO(addr),
                      params=prm, batch_weights=batch, epilogue=epi)


def _layout_code(layout: str) -> int:
    """The :data:`CONV_LAYOUTS` code of ``layout`` (KernelError otherwise)."""
    if layout not in CONV_LAYOUTS:
        raise KernelError(f"layout must be one of {sorted(CONV_LAYOUTS)}, got {layout!r}")
    return CONV_LAYOUTS[layout]


def _kpad(packed: PackedSeries) -> int:
    """One past the last column any stored slot of ``packed`` names, at least
    K: more than K where the compressed format padded K up to the block size
    and a zero filler landed past it. From the slots themselves, so that a
    series read back from the kernel cache (no ``terms``) gives the same."""
    cols = packed.in_features
    for kt in range(packed.ntiles):
        seg = packed.w_loc[packed.tile_ptr[kt]:packed.tile_ptr[kt + 1]]
        if seg.size:
            cols = max(cols, kt * packed.kb + int(seg.max()) + 1)
    return cols


def make_conv_cfunc_entry(
    packed: PackedSeries, kh: int, kw: int, stride: Any = 1, dilation: Any = 1, *,
    padding: Any = 0, name: str | None = None, isa: str | None = None, layout: str | None = None,
    epilogue: Epilogue | None = None, residual: bool = False,
) -> CFuncEntry:
    """The C entry ``int32 <name>(memref4d *x, memref4d *y)`` of a conv2d
    (NCHW input ``x``, NFHW output ``y``, groups 1) with the filter series
    ``packed`` (``[F, C*kh*kw]`` along axis 1, as for :func:`conv2d_series`):
    one shared Numba ``@cfunc`` behind a trampoline, like
    :func:`make_cfunc_entry`, so JIT'ed code calls it without Python.
    ``padding`` is zero padding read as part of the input: an int, a pair
    ``(ph, pw)`` or ``(ph_before, pw_before, ph_after, pw_after)``.
    ``layout`` as for :func:`conv2d_series` (default ``$TASDC_CONV_LAYOUT``,
    else ``auto``: what the CPU executor's entries run); ``direct`` is checked here for
    the stride only: on a call whose shapes do not admit it the entry runs
    the X tiles (same results). Shapes are checked on every call (status,
    never an exception). With ``residual`` (needs ``epilogue``) the entry is
    ``int32 <name>(memref4d *x, memref4d *y, memref4d *r)``:
    ``y = min(max(scale·conv + shift + r, lo), hi)``, ``r`` of ``y``'s shape
    with any strides (the epilogue's clamp comes after the add)."""
    if layout is None:
        import os

        layout = os.environ.get("TASDC_CONV_LAYOUT", "").strip().lower() or "auto"
    lcode = _layout_code(layout)
    if residual and epilogue is None:
        raise KernelError("a residual operand needs an epilogue (its clamp comes after the add)")
    entry = make_cfunc_entry(packed, name=name, isa=isa, epilogue=epilogue)
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    pads = _pads(padding)
    if min(sh, sw, dh, dw, kh, kw) < 1 or min(pads) < 0:
        raise KernelError(f"invalid conv geometry: kernel {kh}x{kw}, stride {(sh, sw)}, dilation {(dh, dw)}, padding {pads}")
    prm = entry.params
    prm[_P_KH], prm[_P_KW], prm[_P_SH], prm[_P_SW], prm[_P_DH], prm[_P_DW] = kh, kw, sh, sw, dh, dw
    prm[_P_PH0], prm[_P_PW0], prm[_P_PH1], prm[_P_PW1] = pads
    if lcode == CONV_LAYOUTS["direct"] and (sh, sw) != (1, 1):
        raise KernelError(f"layout='direct' needs stride 1, got {(sh, sw)}")
    prm[_P_LAYOUT], prm[_P_KPAD], prm[_P_PF] = lcode, _kpad(packed), int(DIRECT_PREFETCH)
    prm[_P_HASRES] = int(residual)
    entry.address = _trampoline(_conv_cfunc().address, prm.ctypes.data, entry.name, residual)
    entry.ctypes = (_CFUNC_PROTO_RESIDUAL if residual else _CFUNC_PROTO)(entry.address)
    entry.residual = residual
    return entry


# --------------------------------------------------------------------------
# convolution via im2col
# --------------------------------------------------------------------------


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise KernelError(f"{what} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


@njit(parallel=True, cache=True, nogil=True)
def _im2col_kernel(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, buf):
    n_, c_, h_, w_ = x.shape
    p = oh * ow
    for r in prange(c_ * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        for n in range(n_):
            base = n * p
            for a in range(oh):
                hh = a * sh - ph + i * dh
                row = buf[r, base + a * ow : base + a * ow + ow]
                if hh < 0 or hh >= h_:
                    row[:] = 0.0
                    continue
                for b in range(ow):
                    ww = b * sw - pw + j * dw
                    if ww >= 0 and ww < w_:
                        row[b] = x[n, c, hh, ww]
                    else:
                        row[b] = 0.0


def _pads(v: Any) -> tuple[int, int, int, int]:
    """Zero padding as ``(ph_before, pw_before, ph_after, pw_after)`` from an
    int, a pair ``(ph, pw)`` or the four values."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v), int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) == 2:
        return t[0], t[1], t[0], t[1]
    if len(t) != 4:
        raise KernelError(f"padding must be an int, a pair or four values, got {v!r}")
    return t  # type: ignore[return-value]


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def im2col(
    x_nchw: np.ndarray,
    kh: int,
    kw: int,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> tuple[np.ndarray, int, int]:
    """Unfold an NCHW float32 input for a conv2d.

    Returns ``(cols, out_h, out_w)`` with ``cols`` of shape
    ``[N*out_h*out_w, C*kh*kw]`` (rows ordered (n, oh, ow), columns (c, kh, kw),
    matching a ``[F, C, KH, KW]`` filter reshaped to ``[F, C*KH*KW]``). It is
    the transposed view of a C-contiguous K-major ``[C*kh*kw, N*out_h*out_w]``
    buffer (``cols.T`` is contiguous), the layout the series kernel reads
    fastest; ``series_matmul(cols, packed)`` takes it as is, without a copy.
    """
    x = np.asarray(x_nchw)
    if x.ndim != 4:
        raise KernelError(f"im2col expects an NCHW 4-D input, got shape {list(x.shape)}")
    if x.dtype != np.float32:
        raise KernelError(f"im2col expects float32, got {x.dtype}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw, dh, dw, kh, kw) < 1 or min(ph, pw) < 0:
        raise KernelError(f"invalid conv geometry: kernel {kh}x{kw}, stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}")
    n, c, h, w = x.shape
    oh, ow = _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise KernelError(f"conv output would be empty: input {h}x{w}, kernel {kh}x{kw}, stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}")
    buf = np.empty((c * kh * kw, n * oh * ow), np.float32)
    _im2col_kernel(np.ascontiguousarray(x), kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, buf)
    return buf.T, oh, ow


def conv2d_series(
    x: np.ndarray,
    packed: PackedSeries,
    kh: int,
    kw: int,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    bias: np.ndarray | None = None,
    *,
    out: np.ndarray | None = None,
    isa: str | None = None,
    layout: str = "auto",
    prefetch: bool | None = None,
    epilogue: Epilogue | None = None,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """conv2d (NCHW, groups=1) with a TASD filter: ``packed`` is the series of
    the ``[F, C*kh*kw]`` filter compressed along axis 1 in (c, kh, kw) order.

    No im2col matrix: the series kernel packs its X tiles straight from ``x``
    (any strides; ``padding`` — an int, ``(ph, pw)`` or ``(ph_before,
    pw_before, ph_after, pw_after)`` — read as zeros) and writes each
    filter's output pixels into ``out`` ``[N, F, OH, OW]`` (any strides).
    Bias, if any, is broadcast into ``out`` first and the kernel accumulates
    on top. ``isa`` as for :func:`series_matmul`.

    ``layout``: ``tiles`` packs an X tile per (pixel tile, K-tile, O-chunk)
    from the input; ``direct`` (stride 1 only; KernelError otherwise, or when
    the series has slots past K, or an image has at most ``NARROW_MAX_T``
    padded-width output pixels) packs each image once into a zero-padded
    copy — or, for a 1x1 conv without padding on contiguous rows, reads the
    input in place — and the micro-kernels read each filter column as a
    shifted run of it; ``auto`` takes ``direct`` where
    :func:`_direct_conv_pays`. All give bit-identical results. ``prefetch``
    (default ``DIRECT_PREFETCH``): the direct layout prefetches the next
    K-tile's input channels.

    ``epilogue`` (not with ``bias``): ``min(max(scale·conv + shift, lo), hi)``
    per filter; ``residual`` (an ``[N, F, OH, OW]`` float32 array, any
    strides): ``min(max(scale·conv + shift + residual, lo), hi)`` (the
    identity map without ``epilogue``), what a compiled entry with a fused
    residual runs.
    """
    lcode = _layout_code(layout)
    x = np.asarray(x)
    if x.ndim != 4:
        raise KernelError(f"conv2d_series expects an NCHW 4-D input, got shape {list(x.shape)}")
    if x.dtype != np.float32:
        raise KernelError(f"conv2d_series expects float32, got {x.dtype}")
    n, c, h, w = x.shape
    if c * kh * kw != packed.in_features:
        raise KernelError(f"input has C={c} channels: C*kh*kw = {c * kh * kw} != filter K={packed.in_features}")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    ph0, pw0, ph1, pw1 = _pads(padding)
    if min(sh, sw, dh, dw, kh, kw) < 1 or min(ph0, pw0, ph1, pw1) < 0:
        raise KernelError(f"invalid conv geometry: kernel {kh}x{kw}, stride {(sh, sw)}, padding {(ph0, pw0, ph1, pw1)}, dilation {(dh, dw)}")
    oh = (h + ph0 + ph1 - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pw0 + pw1 - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise KernelError(f"conv output would be empty: input {h}x{w}, kernel {kh}x{kw}, stride {(sh, sw)}, padding {(ph0, pw0, ph1, pw1)}, dilation {(dh, dw)}")
    if isa is None:
        isa = _WIDE_ISA
    elif isa not in ("avx2", "avx512"):
        raise KernelError(f"isa must be 'avx2' or 'avx512', got {isa!r}")
    f = packed.out_features
    if out is None:
        out = np.empty((n, f, oh, ow), np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (n, f, oh, ow) or not out.flags.writeable:
        raise KernelError(f"out must be a writable float32 array of shape {[n, f, oh, ow]}")
    if bias is not None:
        bias = np.asarray(bias, np.float32)
        if bias.shape != (f,):
            raise KernelError(f"bias has shape {list(bias.shape)}, expected [{f}]")
        out[...] = bias[None, :, None, None]
    if bias is not None and epilogue is not None:
        raise KernelError("conv2d_series takes bias or epilogue, not both")
    epi = _NO_EPILOGUE if epilogue is None else epilogue.array(f)
    rbuf, res = _NO_EPILOGUE, np.empty(0, np.int64)
    if residual is not None:
        if epilogue is None:
            epi = Epilogue(np.ones(1), np.zeros(1)).array(f)
        if (not isinstance(residual, np.ndarray) or residual.dtype != np.float32 or residual.shape != (n, f, oh, ow)
                or min(residual.strides, default=0) < 0 or any(st % 4 for st in residual.strides)):
            raise KernelError(f"residual must be a float32 array of shape {[n, f, oh, ow]} with non-negative strides")
        if np.may_share_memory(residual, out):
            raise KernelError("out must not overlap the residual")
        rs = [st // 4 for st in residual.strides]
        rbuf = np.lib.stride_tricks.as_strided(residual, shape=(1 + sum((d - 1) * st for d, st in zip(residual.shape, rs)),), strides=(4,))
        res = np.array([0, *rs], np.int64)
    if n == 0 or f == 0:
        return out
    if c == 0:  # an empty reduction
        if bias is None:
            out[...] = 0.0
        if epi.size:
            v = out * epi[:f, None, None] + epi[f:2 * f, None, None] if epi.size > 2 else out
            v = v + residual if residual is not None else v
            out[...] = np.minimum(np.maximum(v, epi[-2]), epi[-1])
        return out
    if not x.flags.writeable or min(x.strides) < 0 or any(s % 4 for s in x.strides):
        x = np.array(x, np.float32, order="C")
    if min(out.strides) < 0 or any(s % 4 for s in out.strides) or (out.size > 1 and min(out.strides) == 0):
        raise KernelError(f"out has strides {out.strides}: negative, zero or not multiples of the float32 size")
    if np.may_share_memory(x, out):
        raise KernelError("out must not overlap x")
    xs = [s // 4 for s in x.strides]
    ys = [s // 4 for s in out.strides]
    geo = np.array([0, *xs, n, c, h, w, kh, kw, sh, sw, ph0, pw0, dh, dw, oh, ow], np.int64)
    xflat = np.lib.stride_tricks.as_strided(x, shape=(1 + sum((d - 1) * s for d, s in zip(x.shape, xs)),), strides=(4,))
    yflat = np.lib.stride_tricks.as_strided(out, shape=(1 + sum((d - 1) * s for d, s in zip(out.shape, ys)),), strides=(4,))
    kpad = _kpad(packed)
    if lcode == CONV_LAYOUTS["direct"] and _dconv_mode(geo, lcode, kpad, packed.w_loc.size, False) < 0:
        raise KernelError(f"layout='direct' does not apply: stride {(sh, sw)} (needs 1), series columns {kpad} vs K={c * kh * kw} "
                          f"(needs no padding), {oh} output rows of {-(-ow // _DCONV_ALIGN) * _DCONV_ALIGN} padded-width pixels (needs > {NARROW_MAX_T})")
    pf = DIRECT_PREFETCH if prefetch is None else bool(prefetch)
    _run_conv(xflat, geo, yflat, 0, ys[0], ys[1], ys[2], ys[3], f, bias is not None,
              packed.w_loc, packed.w_val, packed.tile_count, packed.tile_ptr, packed.kb, numba.get_num_threads(), isa == "avx512",
              lcode, kpad, pf, epi, rbuf, res)
    return out
