"""Dense contractions at library speed: C entries that JIT'ed code calls.

``tasd-cpu-dense-to-library-calls`` (``passes/dense_to_calls.py``) rewrites
dense ``linalg.matmul`` / ``linalg.batch_matmul`` / convolutions into calls
of the functions below; the executor binds them by name (``LIBRARY_ENTRIES``)
the way it binds the N:M series kernels. Each is a Numba ``@cfunc`` taking
pointers to MLIR memref descriptors (``llvm.emit_c_interface``:
``allocated, aligned, offset, sizes[r], strides[r]``, 8 bytes each) — the
two operands, then the output ``Y``, which is overwritten — and the
convolution's geometry as i64 values.

The products are OpenBLAS's ``sgemm``: for matmuls scipy's, reached through
Numba's ``np.dot`` (``scipy.linalg.cython_blas``); for convolutions called
directly with leading dimensions (``_sgemm_rm``), from a private AVX-512
instance of the same library where OpenBLAS picked AVX2 kernels on an
AVX-512 CPU (``_private_skylakex_sgemm``). Convolutions take zero padding as
arguments (top, left). A KxK one with at least ``IMPLICIT_MIN_CHANNELS``
channels and stride ≤ 2 is an implicit GEMM (:func:`conv_method`,
:func:`_implicit_images`): the padded input is copied once per image with its
KW column taps stacked (``[C·KW, rows]``, three copies for 3×3 instead of
im2col's nine; a stride-2 convolution reads every other row and column), then
per block of output rows one ``sgemm`` per filter row accumulates with
``beta = 1`` straight into the NCHW output; the filter is bound in that GEMM's
layout (``tasd-cpu-tap-major-filters``) or rearranged per call. Others are
an im2col in blocks of about ``BLOCK_FLOATS`` (skipped for 1×1 stride-1
kernels: the input is the GEMM operand), one ``sgemm`` per block writing into
the NCHW output. Both run all images in one GEMM per group when they are
small (fewer than ``SMALL_PLANE`` output pixels); depthwise convolutions copy each channel
plane into a zero-bordered scratch plane split into its stride phases and multiply-add
each tap over the whole output plane (3×3: all nine in one pass).
Loops index with unsigned integers where LLVM must vectorize them. An operand
whose rows are not contiguous is first copied into a contiguous buffer.

Threads: every ``sgemm`` runs single-threaded inside OpenBLAS
(``openblas_set_num_threads_local(1)`` around the call); a product of at
least ``PARALLEL_FLOPS`` with enough rows is split into row blocks over
Numba's threads (a convolution of that size: its images) (``numba.set_num_threads``, as for the N:M kernels). Letting
OpenBLAS's own pool take them cost milliseconds of wake-up per GEMM on a
loaded 2-core machine (example CNN at 2 threads: 34 ms instead of 0.7 ms).
A depthwise convolution of at least ``DEPTHWISE_PARALLEL_FLOPS`` splits its channel planes
over the threads.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np
import scipy.linalg.cython_blas  # load the BLAS np.dot calls now, so thread limits set after importing this see it
import llvmlite.binding as llvm
from llvmlite import ir as llvmir
from numba import carray, cfunc, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LIBRARY_ENTRIES", "library_entry", "library_symbols"]


def _ptr_intrinsic(elem: types.Type) -> Any:
    @intrinsic
    def _to_ptr(typingctx, addr):  # type: ignore[no-untyped-def]
        if not isinstance(addr, types.Integer):
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(elem)))

        return types.CPointer(elem)(addr), codegen

    return _to_ptr


_f32p = _ptr_intrinsic(types.float32)
_i64p = _ptr_intrinsic(types.int64)

#: Products with fewer flops run single-threaded (see the module docstring).
PARALLEL_FLOPS = 1 << 26
#: The name under which OpenBLAS's per-thread thread count is linked into the
#: Numba code (resolved through llvmlite's symbol table, so the code caches).
_SET_LOCAL = "tasdc_openblas_set_num_threads_local"
#: The same for the library ``_SGEMM`` comes from (the private copy below has its
#: own thread count, which ``threadpoolctl`` users change along with scipy's).
_SGEMM_SET_LOCAL = "tasdc_sgemm_set_num_threads_local"
_keep_alive: list[Any] = []


def _bind_openblas_local() -> None:
    """Point ``_SET_LOCAL`` at scipy's ``openblas_set_num_threads_local`` (OpenBLAS >= 0.3.27),
    or at a no-op when that library lacks it."""
    address = 0
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("internal_api") == "openblas" and "scipy.libs" in info.get("filepath", ""):
                library = ctypes.CDLL(info["filepath"])
                address = ctypes.cast(library.openblas_set_num_threads_local, ctypes.c_void_p).value or 0
                break
    except (ImportError, OSError, AttributeError):
        address = 0
    if not address:
        noop = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda n: 0)
        _keep_alive.append(noop)
        address = ctypes.cast(noop, ctypes.c_void_p).value
    llvm.add_symbol(_SET_LOCAL, address)


_bind_openblas_local()

#: The name under which scipy's Fortran-ABI ``sgemm`` (``scipy.linalg.cython_blas``) is linked
#: into the Numba code: leading dimensions and ``beta`` that ``np.dot`` cannot express.
_SGEMM = "tasdc_scipy_sgemm"


#: OpenBLAS kernels that use AVX-512 (``openblas_get_corename``).
_AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def _private_skylakex_sgemm(library: str) -> int:
    """The address of ``sgemm_`` in a private instance of scipy's OpenBLAS loaded with its
    AVX-512 (SkylakeX) kernels, or 0.

    OpenBLAS picks its kernels once, when the library loads: from
    ``OPENBLAS_CORETYPE`` when it is set, else from the CPU it sees. A process
    whose environment pins ``OPENBLAS_CORETYPE=Haswell`` (as these machines do,
    for numpy's sake) runs conv-shaped GEMMs on the AVX2 kernels at half the
    speed of the SkylakeX ones (measured, same process: 80–98 vs 150–170
    GFLOP/s). Changing the variable would change numpy's and scipy's kernels
    (and results) for the whole process, so this loads a copy of the
    library file (``dlopen`` shares one instance per file) with the variable set
    only while it loads, one thread, and keeps it for the dense entries alone.
    Only on a CPU with AVX-512 F/BW/DQ/VL whose OpenBLAS did not pick an AVX-512
    kernel itself; ``TASDC_DENSE_BLAS=shared`` turns it off."""
    import os
    import shutil

    if os.environ.get("TASDC_DENSE_BLAS", "") == "shared":
        return 0
    features = set(f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+"))
    if not {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= features:
        return 0
    shared = ctypes.CDLL(library)
    corename = getattr(shared, "scipy_openblas_get_corename", None) or getattr(shared, "openblas_get_corename", None)
    if corename is None:
        return 0
    corename.restype = ctypes.c_char_p
    if (corename() or b"").decode().lower() in _AVX512_CORES:
        return 0  # the shared instance already runs AVX-512 kernels
    from tasdc.runtime.cpu.object_cache import cache_dir

    stat = os.stat(library)
    # Named so that threadpoolctl does not take it for an OpenBLAS (it matches "libopenblas",
    # "libscipy_openblas", …): a user's or a benchmark's threadpool_limits(2) would otherwise
    # give it a thread pool, which then runs inside Numba's threads ("Detect OpenMP Loop").
    copy = cache_dir() / "blas" / f"tasdc-dense-sgemm-{stat.st_size}-{int(stat.st_mtime)}.so"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(library, partial)
        os.replace(partial, copy)
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")}
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        private = ctypes.CDLL(str(copy), mode=ctypes.RTLD_LOCAL)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    name = getattr(private, "scipy_openblas_get_corename", None) or getattr(private, "openblas_get_corename")
    name.restype = ctypes.c_char_p
    if (name() or b"").decode().lower() not in _AVX512_CORES:
        return 0
    _keep_alive.append(private)
    function = getattr(private, "scipy_sgemm_", None) or getattr(private, "sgemm_")
    local = getattr(private, "openblas_set_num_threads_local", None)
    if local is None:
        return 0  # without a per-call thread count its pool could run inside Numba's threads
    llvm.add_symbol(_SGEMM_SET_LOCAL, int(ctypes.cast(local, ctypes.c_void_p).value or 0))
    return int(ctypes.cast(function, ctypes.c_void_p).value or 0)


def _bind_sgemm() -> None:
    """Link ``_SGEMM`` (and ``_SGEMM_SET_LOCAL``, the same library's per-thread thread
    count): the private AVX-512 instance when there is one, else scipy's ``sgemm``."""
    address = 0
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("internal_api") == "openblas" and "scipy.libs" in info.get("filepath", ""):
                address = _private_skylakex_sgemm(info["filepath"])
                break
    except (ImportError, OSError, AttributeError):
        address = 0
    if not address:
        capsule = scipy.linalg.cython_blas.__pyx_capi__["sgemm"]
        name = ctypes.pythonapi.PyCapsule_GetName
        name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
        pointer = ctypes.pythonapi.PyCapsule_GetPointer
        pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        address = pointer(capsule, name(capsule))
        llvm.add_symbol(_SGEMM_SET_LOCAL, llvm.address_of_symbol(_SET_LOCAL))
    llvm.add_symbol(_SGEMM, address)


_bind_sgemm()


@intrinsic
def _sgemm_call(typingctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):  # type: ignore[no-untyped-def]
    """Fortran ``sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)``, every
    argument an address (i64)."""
    args = (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    if not all(isinstance(t, types.Integer) for t in args):
        return None

    def codegen(context, builder, signature, llargs):  # type: ignore[no-untyped-def]
        i8p = llvmir.IntType(8).as_pointer()
        fnty = llvmir.FunctionType(llvmir.VoidType(), [i8p] * 13)
        fn = cgutils.get_or_insert_function(builder.module, fnty, _SGEMM)
        builder.call(fn, [builder.inttoptr(v, i8p) for v in llargs])
        return context.get_dummy_value()

    return types.none(*args), codegen


@njit(cache=True, nogil=True)
def _sgemm_rm(m: int, n: int, k: int, a: int, lda: int, b: int, ldb: int, c: int, ldc: int, beta: float) -> None:
    """Row-major ``C[m, n] = A[m, k] · B[k, n] + beta · C`` on f32 addresses with row strides
    ``lda``, ``ldb``, ``ldc`` (elements), by one single-threaded ``sgemm`` (column-major
    ``Cᵀ = Bᵀ · Aᵀ``)."""
    if m == 0 or n == 0:
        return
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = n, m, k, ldb, lda, ldc
    floats = np.empty(2, np.float32)
    floats[0], floats[1] = 1.0, beta
    chars = np.empty(1, np.uint8)
    chars[0] = 78  # 'N'
    ip, fp, cp = np.int64(ints.ctypes.data), np.int64(floats.ctypes.data), np.int64(chars.ctypes.data)
    _sgemm_call(cp, cp, ip, ip + 4, ip + 8, fp, b, ip + 12, a, ip + 16, fp + 4, c, ip + 20)
    ints[0] = chars[0] + floats[0]  # keeps the three arrays alive until after the call


def _threads_local_intrinsic(symbol: str) -> Any:
    """An intrinsic ``f(n)`` calling the ``openblas_set_num_threads_local`` linked as ``symbol``."""

    @intrinsic
    def threads_local(typingctx, n):  # type: ignore[no-untyped-def]
        if not isinstance(n, types.Integer):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            fnty = llvmir.FunctionType(llvmir.IntType(32), [llvmir.IntType(32)])
            fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
            return builder.call(fn, [builder.trunc(args[0], llvmir.IntType(32)) if args[0].type.width > 32 else args[0]])

        return types.int32(n), codegen

    return threads_local


#: Thread count of scipy's OpenBLAS (``np.dot`` in Numba code) and of ``_SGEMM``'s library.
#: ``openblas_set_num_threads_local`` sets one process-wide count in OpenBLAS 0.3.30
#: (measured: a value set on one thread is the previous value another thread reads),
#: so it is set to 1 and restored by the thread that enters an entry, around the
#: whole call, never by Numba's worker threads: a worker resetting it after its GEMM
#: let another worker's GEMM start OpenBLAS's pool inside the parallel region
#: ("OpenBLAS Warning : Detect OpenMP Loop", resnet50 dense at 2 threads).
_blas_threads_local = _threads_local_intrinsic(_SET_LOCAL)
_sgemm_threads_local = _threads_local_intrinsic(_SGEMM_SET_LOCAL)


_V16F = llvmir.VectorType(llvmir.FloatType(), 16)
_I32 = llvmir.IntType(32)
_V16I = llvmir.VectorType(_I32, 16)
_LANES = llvmir.Constant(_V16I, list(range(16)))
_ALIGN = llvmir.Constant(_I32, 4)
_UNDEF16F = llvmir.Constant(_V16F, llvmir.Undefined)


def _masked_ops(module: llvmir.Module) -> tuple[llvmir.Function, llvmir.Function]:
    """``llvm.masked.load`` / ``llvm.masked.store`` of 16 floats, declared once per module."""
    mask = llvmir.VectorType(llvmir.IntType(1), 16)
    ptr = _V16F.as_pointer()
    load = cgutils.get_or_insert_function(module, llvmir.FunctionType(_V16F, [ptr, _I32, mask, _V16F]),
                                          "llvm.masked.load.v16f32.p0")
    store = cgutils.get_or_insert_function(module, llvmir.FunctionType(llvmir.VoidType(), [_V16F, ptr, _I32, mask]),
                                           "llvm.masked.store.v16f32.p0")
    return load, store


def _vector_at(context, builder, sig, args, array: int, index: int):  # type: ignore[no-untyped-def]
    """A ``<16 x float>*`` to element ``args[index]`` of the float array ``args[array]``."""
    data = context.make_array(sig.args[array])(context, builder, args[array]).data
    return builder.bitcast(builder.gep(data, [context.cast(builder, args[index], sig.args[index], types.intp)]),
                           _V16F.as_pointer())


def _splat_i32(context, builder, sig, args, j: int):  # type: ignore[no-untyped-def]
    """``args[j]`` as an i32 in all 16 lanes."""
    v = builder.insert_element(llvmir.Constant(_V16I, llvmir.Undefined),
                               context.cast(builder, args[j], sig.args[j], types.int32), llvmir.Constant(_I32, 0))
    return builder.shuffle_vector(v, llvmir.Constant(_V16I, llvmir.Undefined), llvmir.Constant(_V16I, [0] * 16))


def _float32_arrays(*arrays) -> bool:  # type: ignore[no-untyped-def]
    return all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays)


@intrinsic
def _copy_short(typingctx, dst, d, src, s, n):  # type: ignore[no-untyped-def]
    """``dst[d : d + n] = src[s : s + n]`` for ``0 ≤ n ≤ 16``: one masked 16-float load and
    store (``llvm.masked.load`` / ``llvm.masked.store``; masked-off lanes are never read or
    written). The depthwise entry's rows of small planes (7–16 floats) are shorter than the
    loop LLVM vectorizes, so a plain loop copies them one float at a time."""
    if not _float32_arrays(dst, src):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        load, store = _masked_ops(builder.module)
        mask = builder.icmp_signed("<", _LANES, _splat_i32(context, builder, sig, args, 4))
        v = builder.call(load, [_vector_at(context, builder, sig, args, 2, 3), _ALIGN, mask, _UNDEF16F])
        builder.call(store, [v, _vector_at(context, builder, sig, args, 0, 1), _ALIGN, mask])
        return context.get_dummy_value()

    return types.none(dst, d, src, s, n), codegen


@intrinsic
def _copy_pairs(typingctx, dst, de, do, src, s, ne, no):  # type: ignore[no-untyped-def]
    """``dst[de + q] = src[s + 2q]`` for ``q < ne`` and ``dst[do + q] = src[s + 2q + 1]`` for
    ``q < no`` (``ne, no ≤ 16``, ``no ≤ ne ≤ no + 1``): a stride-2 row split into its even and
    odd columns with two masked 16-float loads, two shuffles and two masked stores."""
    if not _float32_arrays(dst, src):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        load, store = _masked_ops(builder.module)
        ne = _splat_i32(context, builder, sig, args, 5)
        no = _splat_i32(context, builder, sig, args, 6)
        total = builder.add(ne, no)  # ne + no source floats
        src = _vector_at(context, builder, sig, args, 3, 4)
        low = builder.call(load, [src, _ALIGN, builder.icmp_signed("<", _LANES, total), _UNDEF16F])
        high_mask = builder.icmp_signed("<", builder.add(_LANES, llvmir.Constant(_V16I, [16] * 16)), total)
        high_src = builder.gep(builder.bitcast(src, llvmir.FloatType().as_pointer()), [llvmir.Constant(_I32, 16)])
        high_src = builder.bitcast(high_src, _V16F.as_pointer())
        high = builder.call(load, [high_src, _ALIGN, high_mask, _UNDEF16F])
        even = builder.shuffle_vector(low, high, llvmir.Constant(_V16I, [2 * q for q in range(16)]))
        odd = builder.shuffle_vector(low, high, llvmir.Constant(_V16I, [2 * q + 1 for q in range(16)]))
        builder.call(store, [even, _vector_at(context, builder, sig, args, 0, 1), _ALIGN, builder.icmp_signed("<", _LANES, ne)])
        builder.call(store, [odd, _vector_at(context, builder, sig, args, 0, 2), _ALIGN, builder.icmp_signed("<", _LANES, no)])
        return context.get_dummy_value()

    return types.none(dst, de, do, src, s, ne, no), codegen


@intrinsic
def _num_threads(typingctx):  # type: ignore[no-untyped-def]
    """``numba.get_num_threads()`` through the threading layer's symbol (linked by name:
    ``numba.get_num_threads`` itself makes the caller uncacheable)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = llvmir.FunctionType(llvmir.IntType(64), [])
        return builder.call(cgutils.get_or_insert_function(builder.module, fnty, "get_num_threads"), [])

    return types.int64(), codegen


@njit(parallel=True, cache=True, nogil=True)
def _dot_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, parts: int) -> None:
    """``out = a @ b`` as ``parts`` row blocks on Numba's threads, one single-threaded ``sgemm`` each."""
    m = a.shape[0]
    for t in prange(parts):
        lo = m * t // parts
        hi = m * (t + 1) // parts
        np.dot(a[lo:hi], b, out[lo:hi])


@njit(cache=True, nogil=True)
def _dot(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` by ``sgemm``: on the calling thread below ``PARALLEL_FLOPS`` or with
    one thread, else split by rows over Numba's threads (``numba.set_num_threads``)."""
    threads = _num_threads()
    rows = a.shape[0]
    previous = _blas_threads_local(1)  # set by the calling thread, for the Numba threads too (see _blas_threads_local)
    if threads > 1 and rows >= 32 * threads and 2.0 * rows * a.shape[1] * b.shape[1] >= PARALLEL_FLOPS:
        _dot_rows(a, b, out, threads)
    else:
        np.dot(a, b, out)
    _blas_threads_local(previous)


# --------------------------------------------------------------------------
# views of memref descriptors
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _desc(address: int, rank: int) -> np.ndarray:
    return carray(_i64p(address), 3 + 2 * rank)


@njit(cache=True, nogil=True)
def _matrix(base: int, rows: int, cols: int, s0: int, s1: int) -> np.ndarray:
    """The ``rows × cols`` f32 matrix at address ``base`` with element strides
    ``(s0, s1)`` as a C-contiguous array: a view when its rows are packed
    (``s1 == 1``, ``s0 == cols``), else a copy."""
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), np.float32)
    if (cols == 1 or s1 == 1) and (rows == 1 or s0 == cols):
        return carray(_f32p(base), (rows, cols))
    span = 1 + (rows - 1) * s0 + (cols - 1) * s1
    flat = carray(_f32p(base), span)
    out = np.empty((rows, cols), np.float32)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = flat[i * s0 + j * s1]
    return out


@njit(cache=True, nogil=True)
def _store(result: np.ndarray, base: int, s0: int, s1: int) -> None:
    """Write ``result`` (``rows × cols``) to the strided matrix at ``base`` (nothing to
    do when ``result`` already is that memory)."""
    rows, cols = result.shape
    if rows == 0 or cols == 0:
        return
    if result.ctypes.data == base and (cols == 1 or s1 == 1) and (rows == 1 or s0 == cols):
        return
    out = carray(_f32p(base), 1 + (rows - 1) * s0 + (cols - 1) * s1)
    for i in range(rows):
        for j in range(cols):
            out[i * s0 + j * s1] = result[i, j]


@njit(cache=True, nogil=True)
def _gemm(abase: int, a0: int, a1: int, bbase: int, b0: int, b1: int, ybase: int, y0: int, y1: int,
          m: int, n: int, k: int) -> None:
    """``Y[m, n] = A[m, k] · B[k, n]`` on strided f32 matrices, by ``sgemm``."""
    if m == 0 or n == 0:
        return
    if k == 0:
        zero = np.zeros((m, n), np.float32)
        _store(zero, ybase, y0, y1)
        return
    a = _matrix(abase, m, k, a0, a1)
    b = _matrix(bbase, k, n, b0, b1)
    if (n == 1 or y1 == 1) and (m == 1 or y0 == n):
        y = carray(_f32p(ybase), (m, n))
    else:
        y = np.empty((m, n), np.float32)
    _dot(a, b, y)
    _store(y, ybase, y0, y1)


# --------------------------------------------------------------------------
# the C entries
# --------------------------------------------------------------------------


def _matmul_py(a_d: int, b_d: int, y_d: int) -> None:
    """``Y = A · B``: rank-2 descriptors ``A[M, K]``, ``B[K, N]``, ``Y[M, N]``."""
    a, b, y = _desc(a_d, 2), _desc(b_d, 2), _desc(y_d, 2)
    m, k, n = a[3], a[4], b[4]
    _gemm(a[1] + 4 * a[2], a[5], a[6], b[1] + 4 * b[2], b[5], b[6], y[1] + 4 * y[2], y[5], y[6], m, n, k)


def _batch_matmul_py(a_d: int, b_d: int, y_d: int) -> None:
    """``Y[i] = A[i] · B[i]``: rank-3 descriptors ``[batch, rows, cols]``."""
    a, b, y = _desc(a_d, 3), _desc(b_d, 3), _desc(y_d, 3)
    batch, m, k, n = a[3], a[4], a[5], b[5]
    for i in range(batch):
        _gemm(a[1] + 4 * (a[2] + i * a[6]), a[7], a[8], b[1] + 4 * (b[2] + i * b[6]), b[7], b[8],
              y[1] + 4 * (y[2] + i * y[6]), y[7], y[8], m, n, k)


@njit(cache=True, nogil=True)
def _im2col(x: np.ndarray, start: int, xs: np.ndarray, cols: np.ndarray, col0: int, c0: int, channels: int,
            kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ow: int, pt: int, pl: int, h: int, wid: int,
            p0: int, count: int) -> None:
    """Output pixels ``p0 … p0+count-1`` (row-major over ``[OH, OW]``) of the im2col matrix:
    ``cols[(c*kh + i)*kw + j, col0 + t] = image[c0 + c, p*sh + i*dh - pt, q*sw + j*dw - pl]``
    for pixel ``p0 + t = p*ow + q``, zero where that falls in the padding. The image starts
    at ``x[start]`` (``x`` flat; ``xs`` its channel, row, column strides; ``h × wid`` unpadded)."""
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                # the output columns q whose input column q*sw + j*dw - pl lies in [0, wid)
                lo_num = pl - j * dw
                q_lo = 0 if lo_num <= 0 else (lo_num + sw - 1) // sw
                hi_num = wid - 1 + pl - j * dw
                q_hi = -1 if hi_num < 0 else min(ow - 1, hi_num // sw)
                pix = p0
                end = p0 + count
                # unsigned indices below: Numba's wraparound test on signed ones keeps
                # LLVM from vectorizing the copies (see _depthwise_py)
                crow = cols[row]
                while pix < end:
                    p = pix // ow
                    qa = pix - p * ow
                    qb = min(ow, qa + end - pix)
                    dst = col0 + pix - p0
                    r = p * sh + i * dh - pt
                    a = max(qa, q_lo)
                    b = min(qb, q_hi + 1)
                    if r < 0 or r >= h or a >= b:
                        a = b = qb
                    ud = np.uint64(dst)
                    for q in range(np.uint64(a - qa)):
                        crow[ud + q] = 0.0
                    if b > a:
                        us = np.uint64(start + (c0 + c) * xs[0] + r * xs[1] + (a * sw + j * dw - pl) * xs[2])
                        ust = np.uint64(sw * xs[2])
                        d = np.uint64(dst + a - qa)
                        if ust == 1:
                            for q in range(np.uint64(b - a)):
                                crow[d + q] = x[us + q]
                        elif ust == 2:  # a constant stride vectorizes (see _depthwise_planes)
                            for q in range(np.uint64(b - a)):
                                crow[d + q] = x[us + np.uint64(2) * q]
                        else:
                            for q in range(np.uint64(b - a)):
                                crow[d + q] = x[us + q * ust]
                    d = np.uint64(dst + b - qa)
                    for q in range(np.uint64(qb - b)):
                        crow[d + q] = 0.0
                    pix += qb - qa


@njit(cache=True, nogil=True)
def _alive(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """A use of the arrays: Numba keeps an array alive until its last use in the code, and a
    raw address taken from it (``.ctypes.data``) is not one."""


#: Below this many output pixels per image, all images of a convolution share one GEMM.
SMALL_PLANE = 256
#: The im2col block of a large image holds about this many floats (L2-resident), at least
#: ``MIN_BLOCK`` output pixels.
BLOCK_FLOATS = 1 << 17
MIN_BLOCK = 128


@njit(cache=True, nogil=True)
def _bias_clamp(addr: int, ld: int, rows: int, cols: int, bias: np.ndarray, b0: int, lo: float, hi: float) -> None:
    """The epilogue of a convolution entry on a block of its GEMM's output, in place while it
    is in cache: ``rows`` channel rows of ``cols`` floats, ``ld`` apart, from ``addr``; row
    ``r`` becomes ``min(max(y + bias[b0 + r], lo), hi)`` (``v > lo ? v : lo``, then
    ``hi < v ? hi : v``: the f32 ops of the bias add and torch-mlir's ReLU / ReLU6 that
    ``tasd-cpu-dense-to-library-calls`` folded into the call, so the same bits). No
    ``bias`` (empty): nothing to do."""
    if bias.size == 0 or rows <= 0 or cols <= 0:
        return
    y = carray(_f32p(addr), (rows - 1) * ld + cols)
    for r in range(rows):
        bc = bias[b0 + r]
        base = np.uint64(r * ld)
        for t in range(np.uint64(cols)):
            v = y[base + t] + bc
            v = v if v > lo else lo
            y[base + t] = hi if hi < v else v


@njit(cache=True, nogil=True)
def _conv_images(xflat: np.ndarray, xs: np.ndarray, wp: int, xbase: int, yaddr: int, geometry: np.ndarray,
                 first: int, last: int, block: int, direct: bool, packed_y: bool, bias: np.ndarray, lo: float,
                 hi: float) -> None:
    """Images ``first … last-1`` of :func:`_conv_py`'s per-image path (``geometry``: groups, F per
    group, C per group, KH, KW, strides, dilations, OH, OW, padding top/left, H, W, X's image
    stride, Y's strides): per group, im2col blocks of ``block`` output pixels and one ``sgemm``
    each, written into Y's plane (through a temporary when Y's planes are not packed), each
    block's epilogue (:func:`_bias_clamp`) right after its ``sgemm``."""
    groups, f, ch, kh, kw = geometry[0], geometry[1], geometry[2], geometry[3], geometry[4]
    sh, sw, dh, dw, oh, ow = geometry[5], geometry[6], geometry[7], geometry[8], geometry[9], geometry[10]
    pt, pl, h, wid, xn = geometry[11], geometry[12], geometry[13], geometry[14], geometry[15]
    yn, yc, yr, yq = geometry[16], geometry[17], geometry[18], geometry[19]
    red = ch * kh * kw
    plane = oh * ow
    cols = np.empty((0, 0), np.float32) if direct else np.empty((red, block), np.float32)
    tmp = np.empty((0, 0), np.float32) if packed_y else np.empty((f, plane), np.float32)
    for img in range(first, last):
        for g in range(groups):
            wg = wp + 4 * g * f * red
            ybase = yaddr + 4 * (img * yn + g * f * yc)
            # the product goes straight into Y (row stride yc) when its planes are packed
            out, ldo = (ybase, yc) if packed_y else (np.int64(tmp.ctypes.data), plane)
            if direct:
                _sgemm_rm(f, plane, ch, wg, red, xbase + 4 * (img * xn + g * ch * xs[0]), xs[0], out, ldo, 0.0)
                _bias_clamp(out, ldo, f, plane, bias, g * f, lo, hi)
            else:
                for p0 in range(0, plane, block):
                    count = min(block, plane - p0)
                    _im2col(xflat, img * xn, xs, cols, 0, g * ch, ch, kh, kw, sh, sw, dh, dw, ow, pt, pl, h, wid, p0, count)
                    _sgemm_rm(f, count, red, wg, red, np.int64(cols.ctypes.data), block, out + 4 * p0, ldo, 0.0)
                    _bias_clamp(out + 4 * p0, ldo, f, count, bias, g * f, lo, hi)
            if not packed_y:
                yflat = carray(_f32p(ybase), 1 + (f - 1) * yc + (oh - 1) * yr + (ow - 1) * yq)
                for o in range(f):
                    for p in range(oh):
                        for q in range(ow):
                            yflat[o * yc + p * yr + q * yq] = tmp[o, p * ow + q]
    _alive(cols, tmp, geometry)  # the GEMMs above read them through raw addresses


@njit(parallel=True, cache=True, nogil=True)
def _conv_images_parallel(xflat: np.ndarray, xs: np.ndarray, wp: int, xbase: int, yaddr: int, geometry: np.ndarray,
                          n_img: int, block: int, direct: bool, packed_y: bool, parts: int, bias: np.ndarray, lo: float,
                          hi: float) -> None:
    """:func:`_conv_images` with the images split into ``parts`` chunks over Numba's threads."""
    for t in prange(parts):
        _conv_images(xflat, xs, wp, xbase, yaddr, geometry, n_img * t // parts, n_img * (t + 1) // parts, block, direct,
                     packed_y, bias, lo, hi)


@njit(cache=True, nogil=True)
def _small_images(xflat: np.ndarray, xs: np.ndarray, wp: int, yaddr: int, geometry: np.ndarray, first: int, last: int,
                  packed_y: bool, bias: np.ndarray, lo: float, hi: float) -> None:
    """Images ``first … last-1`` of a convolution with small planes (fewer than ``SMALL_PLANE``
    output pixels; ``geometry`` as for :func:`_conv_images`): per group their im2col columns
    side by side, one ``sgemm`` over all of them, the epilogue, then scattered to NCHW ``Y``.
    Each output is the same dot product whichever images share its GEMM (OpenBLAS sums every
    output over K alone), so splitting the images over threads keeps the bits."""
    groups, f, ch, kh, kw = geometry[0], geometry[1], geometry[2], geometry[3], geometry[4]
    sh, sw, dh, dw, oh, ow = geometry[5], geometry[6], geometry[7], geometry[8], geometry[9], geometry[10]
    pt, pl, h, wid, xn = geometry[11], geometry[12], geometry[13], geometry[14], geometry[15]
    yn, yc, yr, yq = geometry[16], geometry[17], geometry[18], geometry[19]
    red = ch * kh * kw
    plane = oh * ow
    count = last - first
    if count <= 0:
        return
    cols = np.empty((red, count * plane), np.float32)
    out = np.empty((f, count * plane), np.float32)
    yflat = carray(_f32p(yaddr), 1 + (last - 1) * yn + (groups * f - 1) * yc + (oh - 1) * yr + (ow - 1) * yq)
    for g in range(groups):
        for i in range(count):
            _im2col(xflat, (first + i) * xn, xs, cols, i * plane, g * ch, ch, kh, kw, sh, sw, dh, dw, ow, pt, pl, h, wid, 0, plane)
        _sgemm_rm(f, count * plane, red, wp + 4 * g * f * red, red, np.int64(cols.ctypes.data), count * plane,
                  np.int64(out.ctypes.data), count * plane, 0.0)
        _bias_clamp(np.int64(out.ctypes.data), count * plane, f, count * plane, bias, g * f, lo, hi)
        for i in range(count):
            for o in range(f):
                base = (first + i) * yn + (g * f + o) * yc
                if packed_y:
                    yflat[base:base + plane] = out[o, i * plane:(i + 1) * plane]
                else:
                    for p in range(oh):
                        for q in range(ow):
                            yflat[base + p * yr + q * yq] = out[o, i * plane + p * ow + q]
    _alive(cols, out, geometry)  # the GEMMs above read them through raw addresses


@njit(parallel=True, cache=True, nogil=True)
def _small_images_parallel(xflat: np.ndarray, xs: np.ndarray, wp: int, yaddr: int, geometry: np.ndarray, n_img: int,
                           packed_y: bool, parts: int, bias: np.ndarray, lo: float, hi: float) -> None:
    """:func:`_small_images` with the images split into ``parts`` ranges over Numba's threads."""
    for t in prange(parts):
        _small_images(xflat, xs, wp, yaddr, geometry, n_img * t // parts, n_img * (t + 1) // parts, packed_y, bias, lo, hi)


#: ``_conv_core``'s ``method``: per shape (:func:`conv_method`), im2col, implicit GEMM per tap, with the column taps
#: stacked, Winograd F(2×2, 3×3) (``runtime/cpu/winograd.py``; 3×3 stride 1 only, others fall back to ``AUTO``'s choice).
AUTO, IM2COL, IMPLICIT, STACKED, WINOGRAD = 0, 1, 2, 3, 4
#: The implicit GEMM needs at least this many input channels per group (each tap is a GEMM with
#: K = C); a stem with fewer stacks its taps through im2col instead.
IMPLICIT_MIN_CHANNELS = 16
#: ... unless the kernel has at least this many taps: ResNet's 7×7 stride-2 stem on 3 channels
#: (batch 8, 224²) takes 29.5 ms stacked vs 32.3 with im2col on one thread, 15.3 vs 18.3 on two;
#: a 3×3 stem on 3 channels is faster through im2col (14.9 vs 18.7 ms at stride 1).
STACKED_MIN_TAPS = 25


@njit(cache=True, nogil=True)
def conv_method(ch: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, tiles: int = 1 << 30) -> int:
    """The method ``AUTO`` picks for a convolution with ``ch`` input channels per group (per-layer
    times in ``benchmarks/bench_dense_conv.py``): Winograd F(2×2, 3×3) for a 3×3 stride-1
    undilated kernel with at least ``WINOGRAD_MIN_CHANNELS`` channels and ``WINOGRAD_MIN_TILES``
    2×2 output tiles over all images (``tiles``; 1.3–1.5× faster than the implicit GEMM on
    ResNet's 3×3 layers); the implicit GEMM with stacked column taps for another KxK (K > 1)
    kernel with at least ``IMPLICIT_MIN_CHANNELS`` channels, or at least ``STACKED_MIN_TAPS``
    taps (ResNet's 7×7 stem), stride at most 2 (it beat one GEMM per tap and im2col on every
    such layer of ResNet-18); im2col otherwise (a 1×1 stride-1 convolution reads its input
    in place)."""
    if (kh == 3 and kw == 3 and sh == 1 and sw == 1 and dh == 1 and dw == 1 and ch >= WINOGRAD_MIN_CHANNELS
            and tiles >= WINOGRAD_MIN_TILES):
        return WINOGRAD
    if kh * kw > 1 and (ch >= IMPLICIT_MIN_CHANNELS or kh * kw >= STACKED_MIN_TAPS) and sh <= 2 and sw <= 2:
        return STACKED
    return IM2COL


#: Winograd needs at least this many input channels per group and 2×2 output tiles in all
#: (fewer spend more on the transforms than the GEMMs save, or make the GEMMs too narrow).
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_TILES = 64


@njit(cache=True, nogil=True)
def _tap_filter(wbase: int, ws: np.ndarray, f_all: int, ch: int, kh: int, kw: int, stacked: bool) -> np.ndarray:
    """The filter ``W[F, C, KH, KW]`` (element strides ``ws``) as ``[KH*KW, F, C]`` (tap ``t``'s
    ``[F, C]`` matrix one plain GEMM operand, leading dimension C) or, ``stacked``, as
    ``[KH, F, C*KW]`` (filter row ``i``'s ``[F, C·KW]`` matrix)."""
    wflat = carray(_f32p(wbase), 1 + (f_all - 1) * ws[0] + (ch - 1) * ws[1] + (kh - 1) * ws[2] + (kw - 1) * ws[3])
    out = np.empty(kh * kw * f_all * ch, np.float32)
    step = np.uint64(ws[1])
    for i in range(kh):
        for j in range(kw):
            for o in range(f_all):
                src = np.uint64(o * ws[0] + i * ws[2] + j * ws[3])
                if stacked:
                    d = np.uint64(((i * f_all + o) * ch) * kw + j)
                    ukw = np.uint64(kw)
                    for c in range(np.uint64(ch)):
                        out[d + c * ukw] = wflat[src + c * step]
                else:
                    d = np.uint64(((i * kw + j) * f_all + o) * ch)
                    for c in range(np.uint64(ch)):
                        out[d + c] = wflat[src + c * step]
    return out


@njit(cache=True, nogil=True)
def _phase_fill(xflat: np.ndarray, xs: np.ndarray, n0: int, nb: int, c0: int, ch: int, h: int, wid: int,
                sh: int, sw: int, pt: int, pl: int, hph: int, wph: int, nvar: int, voff: int, buf: np.ndarray) -> None:
    """The zero-padded input of images ``n0 … n0+nb-1``, channels ``c0 … c0+ch-1``, as
    ``buf[a, c, b, u, n, v]`` (``[sh, ch, nvar, hph, nb, wph]``): padded row ``u*sh + a`` and
    padded column ``v*sw + b*voff``. With ``nvar = sw``, ``voff = 1`` these are the stride
    phases (every tap then reads one plane at a fixed offset, unit stride); with
    ``nvar = KW``, ``voff`` = the column dilation, the KW column taps stacked (rows ``(c, b)``
    one plane apart: a GEMM operand with K = C·KW). Each output row of the ``nb`` images is
    ``nb*wph`` consecutive floats of a plane."""
    row = np.uint64(nb * wph)
    cplane = np.uint64(hph) * row
    for a in range(sh):
        for b in range(nvar):
            cb = b * voff
            lo_num = pl - cb
            v_lo = 0 if lo_num <= 0 else min(wph, (lo_num + sw - 1) // sw)
            hi_num = wid - 1 + pl - cb
            v_hi = 0 if hi_num < 0 else min(wph, hi_num // sw + 1)
            if v_hi < v_lo:
                v_hi = v_lo
            for c in range(ch):
                cbase = np.uint64((a * ch + c) * nvar + b) * cplane
                for u in range(hph):
                    r = u * sh + a - pt
                    for n in range(nb):
                        d = cbase + np.uint64(u) * row + np.uint64(n * wph)
                        if r < 0 or r >= h or v_lo == v_hi:
                            for v in range(np.uint64(wph)):
                                buf[d + v] = 0.0
                            continue
                        for v in range(np.uint64(v_lo)):
                            buf[d + v] = 0.0
                        src = np.uint64((n0 + n) * xs[0] + (c0 + c) * xs[1] + r * xs[2] + (v_lo * sw + cb - pl) * xs[3])
                        dv = d + np.uint64(v_lo)
                        if sw == 1 and xs[3] == 1:
                            for v in range(np.uint64(v_hi - v_lo)):
                                buf[dv + v] = xflat[src + v]
                        else:
                            step = np.uint64(sw * xs[3])
                            if step == 2:  # a constant stride vectorizes (see _depthwise_planes)
                                for v in range(np.uint64(v_hi - v_lo)):
                                    buf[dv + v] = xflat[src + np.uint64(2) * v]
                            else:
                                for v in range(np.uint64(v_hi - v_lo)):
                                    buf[dv + v] = xflat[src + v * step]
                        for v in range(np.uint64(v_hi), np.uint64(wph)):
                            buf[d + v] = 0.0


@njit(cache=True, nogil=True)
def _implicit_images(xflat: np.ndarray, xs: np.ndarray, taps: int, yaddr: int, geometry: np.ndarray,
                     n0: int, n1: int, nb: int, f_lo: int, f_hi: int, stacked: bool, blk_lo: int, blk_hi: int,
                     bias: np.ndarray, lo: float, hi: float) -> None:
    """Implicit GEMM of images ``n0 … n1-1`` (``nb`` at a time, their rows interleaved), output
    channels ``f_lo … f_hi-1`` of every group, blocks ``blk_lo … blk_hi-1`` of output rows
    (:func:`_rows_per_block` each; ``geometry`` as for :func:`_conv_images`).
    Per group the padded input is copied once (:func:`_phase_fill`), then per block of output
    rows the GEMMs accumulate (``beta = 1``) into ``Y'[F, rows·nb·width]``:

    * per tap (``stacked`` false; ``taps`` the ``[KH*KW, G*F, C]`` filter): one ``sgemm``
      ``W_tap[F, C] · X_tap[C, ·]`` per tap, ``X_tap`` the tap's stride-phase plane at the
      tap's offset; the planes are ``wph = OW + (KW-1)·dw/sw`` wide, so ``Y'`` holds
      ``wph - OW`` extra columns per row (read across the row end) that are dropped;
    * stacked (``taps`` the ``[KH, G*F, C*KW]`` filter): one ``sgemm`` per filter row,
      ``W_i[F, C·KW] · X_i[C·KW, ·]`` over the KW column-shifted copies: no extra columns,
      and with one image at a time and packed NCHW planes ``Y'`` is ``Y`` itself.

    ``Y'`` goes to NCHW ``Y`` by a copy otherwise, after the block's epilogue
    (:func:`_bias_clamp`). One output's sum runs over the GEMMs in
    order and over their K inside each, whatever the split of images or channels: the
    same bits on any thread count."""
    groups, f, ch, kh, kw = geometry[0], geometry[1], geometry[2], geometry[3], geometry[4]
    sh, sw, dh, dw, oh, ow = geometry[5], geometry[6], geometry[7], geometry[8], geometry[9], geometry[10]
    pt, pl, h, wid = geometry[11], geometry[12], geometry[13], geometry[14]
    yn, yc, yr, yq = geometry[16], geometry[17], geometry[18], geometry[19]
    f_all = groups * f
    fc = f_hi - f_lo
    if fc <= 0 or n1 <= n0:
        return
    hph = oh + ((kh - 1) * dh) // sh
    wph = ow if stacked else ow + ((kw - 1) * dw) // sw
    nvar = kw if stacked else sw
    buf = np.empty(sh * ch * nvar * hph * nb * wph + wph, np.float32)
    buf[sh * ch * nvar * hph * nb * wph:] = 0.0  # the tail the last plane's dropped columns read
    bp = np.int64(buf.ctypes.data)
    direct = stacked and nb == 1 and yq == 1 and yr == ow
    rows_per_block = _rows_per_block(f, nb, wph, oh)
    tmp = np.empty(0 if direct else fc * rows_per_block * nb * wph, np.float32)
    tp = np.int64(tmp.ctypes.data)
    yflat = carray(_f32p(yaddr), 1 + (n1 - 1) * yn + (f_all - 1) * yc + (oh - 1) * yr + (ow - 1) * yq)
    for start in range(n0, n1, nb):
        nbc = min(nb, n1 - start)
        row = nbc * wph
        cplane = hph * row
        for g in range(groups):
            _phase_fill(xflat, xs, start, nbc, g * ch, ch, h, wid, sh, sw, pt, pl, hph, wph, nvar, dw if stacked else 1, buf)
            for blk in range(blk_lo, min(blk_hi, (oh + rows_per_block - 1) // rows_per_block)):
                p0 = blk * rows_per_block
                rows = min(rows_per_block, oh - p0)
                ncols = rows * row
                out, ldo = tp, ncols
                if direct:
                    out, ldo = yaddr + 4 * (start * yn + (g * f + f_lo) * yc + p0 * ow), yc
                if stacked:
                    for i in range(kh):
                        off = ((i * dh) % sh) * ch * nvar * cplane + ((i * dh) // sh + p0) * row
                        a = taps + 4 * (i * f_all + g * f + f_lo) * ch * kw
                        _sgemm_rm(fc, ncols, ch * kw, a, ch * kw, bp + 4 * off, cplane, out, ldo, 0.0 if i == 0 else 1.0)
                else:
                    for t in range(kh * kw):
                        i = t // kw
                        j = t - i * kw
                        off = (((i * dh) % sh) * ch * nvar + (j * dw) % sw) * cplane + ((i * dh) // sh + p0) * row + (j * dw) // sw
                        a = taps + 4 * (t * f_all + g * f + f_lo) * ch
                        _sgemm_rm(fc, ncols, ch, a, ch, bp + 4 * off, nvar * cplane, out, ldo, 0.0 if t == 0 else 1.0)
                _bias_clamp(out, ldo, fc, ncols, bias, g * f + f_lo, lo, hi)
                if direct:
                    continue
                for o in range(fc):
                    for pp in range(rows):
                        for n in range(nbc):
                            src = np.uint64(o * ncols + pp * row + n * wph)
                            dst = (start + n) * yn + (g * f + f_lo + o) * yc + (p0 + pp) * yr
                            if yq == 1:
                                ud = np.uint64(dst)
                                for q in range(np.uint64(ow)):
                                    yflat[ud + q] = tmp[src + q]
                            else:
                                for q in range(ow):
                                    yflat[dst + q * yq] = tmp[src + np.uint64(q)]
    _alive(buf, tmp, geometry)  # the GEMMs above read them through raw addresses


@njit(cache=True, nogil=True)
def _rows_per_block(f: int, nb: int, wph: int, oh: int) -> int:
    """Output rows per GEMM block of the implicit GEMM: about ``BLOCK_FLOATS`` outputs of all
    ``f`` channels (from F and the image count alone, never from a thread's share: the GEMMs,
    and so the bits, do not depend on the thread count)."""
    return max(1, min(oh, BLOCK_FLOATS // max(1, f * nb * wph)))


@njit(parallel=True, cache=True, nogil=True)
def _implicit_parallel(xflat: np.ndarray, xs: np.ndarray, taps: int, yaddr: int, geometry: np.ndarray,
                       n_img: int, parts: int, small: bool, stacked: bool, bias: np.ndarray, lo: float, hi: float) -> None:
    """:func:`_implicit_images` over Numba's threads: ``parts`` chunks of the images (one image at
    a time), or, ``small``, of the blocks of output rows of all images interleaved (each chunk
    copies the input it reads)."""
    f, sh, oh, ow = geometry[1], geometry[5], geometry[9], geometry[10]
    wph = ow if stacked else ow + ((geometry[4] - 1) * geometry[8]) // geometry[6]
    blocks = (oh + _rows_per_block(f, n_img, wph, oh) - 1) // _rows_per_block(f, n_img, wph, oh)
    for t in prange(parts):
        if small:
            _implicit_images(xflat, xs, taps, yaddr, geometry, 0, n_img, n_img, 0, f, stacked,
                             blocks * t // parts, blocks * (t + 1) // parts, bias, lo, hi)
        else:
            _implicit_images(xflat, xs, taps, yaddr, geometry, n_img * t // parts, n_img * (t + 1) // parts, 1, 0, f,
                             stacked, 0, oh, bias, lo, hi)


@njit(cache=True, nogil=True)
def _conv_core(x_d: int, w_d: int, y_d: int, groups: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
               method: int, bias: np.ndarray, lo: float, hi: float) -> None:
    """:func:`_conv_method` with ``sgemm``'s library at one thread for the whole call
    (set and restored by the calling thread, see ``_blas_threads_local``)."""
    previous = _sgemm_threads_local(1)
    _conv_method(x_d, w_d, y_d, groups, sh, sw, dh, dw, pt, pl, method, bias, lo, hi)
    _sgemm_threads_local(previous)


@njit(cache=True, nogil=True)
def _conv_method(x_d: int, w_d: int, y_d: int, groups: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
                 method: int, bias: np.ndarray, lo: float, hi: float) -> None:
    """Grouped NCHW convolution with zero padding ``pt`` rows above and ``pl`` columns
    left of the input (and whatever the output size implies below and right):
    ``X[N, G*C, H, W]``, ``W[G*F, C, KH, KW]``, ``Y[N, G*F, OH, OW]`` (rank-4
    descriptors; ``groups`` = G), by ``method`` (``AUTO``, ``IM2COL``, ``IMPLICIT`` or ``STACKED``).
    With a ``bias`` (``[G*F]``, else empty) every output is stored as ``min(max(y + bias[f],
    lo), hi)``, applied to each GEMM's block as it is written (:func:`_bias_clamp`)."""
    x, w, y = _desc(x_d, 4), _desc(w_d, 4), _desc(y_d, 4)
    n_img, h, wid = x[3], x[5], x[6]
    f_all, ch, kh, kw = w[3], w[4], w[5], w[6]
    oh, ow = y[5], y[6]
    f = f_all // groups
    red = ch * kh * kw
    plane = oh * ow
    if n_img == 0 or f_all == 0 or plane == 0:
        return
    xbase = x[1] + 4 * x[2]
    xspan = 1 + (n_img - 1) * x[7] + (x[4] - 1) * x[8] + (h - 1) * x[9] + (wid - 1) * x[10]
    xflat = carray(_f32p(xbase), xspan)
    wbase = w[1] + 4 * w[2]
    yaddr = y[1] + 4 * y[2]
    geometry = np.empty(20, np.int64)
    geometry[0], geometry[1], geometry[2], geometry[3], geometry[4] = groups, f, ch, kh, kw
    geometry[5], geometry[6], geometry[7], geometry[8], geometry[9], geometry[10] = sh, sw, dh, dw, oh, ow
    geometry[11], geometry[12], geometry[13], geometry[14], geometry[15] = pt, pl, h, wid, x[7]
    geometry[16], geometry[17], geometry[18], geometry[19] = y[7], y[8], y[9], y[10]
    threads = _num_threads()
    flops = 2.0 * n_img * f_all * plane * red
    winograd_ok = kh == 3 and kw == 3 and sh == 1 and sw == 1 and dh == 1 and dw == 1
    if method == AUTO or (method == WINOGRAD and not winograd_ok):  # (AUTO never picks it where it is not ok)
        method = conv_method(ch, kh, kw, sh, sw, dh, dw, n_img * ((oh + 1) // 2) * ((ow + 1) // 2))
    if method == WINOGRAD:
        wflat = carray(_f32p(wbase), 1 + (f_all - 1) * w[7] + (ch - 1) * w[8] + (kh - 1) * w[9] + (kw - 1) * w[10])
        yflat = carray(_f32p(yaddr), 1 + (n_img - 1) * y[7] + (f_all - 1) * y[8] + (oh - 1) * y[9] + (ow - 1) * y[10])
        xs4 = np.empty(4, np.int64)
        xs4[0], xs4[1], xs4[2], xs4[3] = x[7], x[8], x[9], x[10]
        ws4 = np.empty(4, np.int64)
        ws4[0], ws4[1], ws4[2], ws4[3] = w[7], w[8], w[9], w[10]
        ys4 = np.empty(4, np.int64)
        ys4[0], ys4[1], ys4[2], ys4[3] = y[7], y[8], y[9], y[10]
        for g in range(groups):  # each group a convolution of its own channels
            gb = bias[g * f:(g + 1) * f] if bias.size else bias
            winograd.winograd_conv(xflat[g * ch * x[8]:], xs4, wflat[g * f * w[7]:], ws4, yflat[g * f * y[8]:], ys4, n_img,
                                   ch, h, wid, f, oh, ow, pt, pl, threads, PARALLEL_FLOPS, gb, lo, hi)
        return
    if method == IMPLICIT or method == STACKED:
        stacked = method == STACKED
        ws = np.empty(4, np.int64)
        ws[0], ws[1], ws[2], ws[3] = w[7], w[8], w[9], w[10]
        # A filter bound in the method's layout (``tasd-cpu-tap-major-filters``: [KH, KW, F, C] or
        # [KH, F, C, KW] in memory, seen through a transposed view) is the GEMM operand as it is;
        # any other is rearranged here.
        if stacked:
            ready = w[10] == 1 and w[8] == kw and w[7] == ch * kw and w[9] == f_all * ch * kw
        else:
            ready = w[8] == 1 and w[7] == ch and w[10] == f_all * ch and w[9] == kw * f_all * ch
        taps = np.empty(0, np.float32) if ready else _tap_filter(wbase, ws, f_all, ch, kh, kw, stacked)
        tp = wbase if ready else np.int64(taps.ctypes.data)
        xs4 = np.empty(4, np.int64)
        xs4[0], xs4[1], xs4[2], xs4[3] = x[7], x[8], x[9], x[10]
        small = plane < SMALL_PLANE and n_img > 1  # all images in one GEMM per block of rows
        if threads > 1 and flops >= PARALLEL_FLOPS and n_img > 1:
            _implicit_parallel(xflat, xs4, tp, yaddr, geometry, n_img, threads if small else min(threads, n_img), small, stacked,
                               bias, lo, hi)
        else:
            _implicit_images(xflat, xs4, tp, yaddr, geometry, 0, n_img, n_img if small else 1, 0, f, stacked, 0, oh,
                             bias, lo, hi)
        _alive(taps, xs4, ws)
        return
    xs = np.empty(3, np.int64)
    xs[0], xs[1], xs[2] = x[8], x[9], x[10]
    # The filter as [G*F, C*KH*KW] rows (a view when it is packed, as bound weights are).
    packed_w = w[10] == 1 and w[9] == kw and w[8] == kh * kw and w[7] == red
    wmat = carray(_f32p(wbase), (f_all, red)) if packed_w else np.empty((f_all, red), np.float32)
    if not packed_w:
        wflat = carray(_f32p(wbase), 1 + (f_all - 1) * w[7] + (ch - 1) * w[8] + (kh - 1) * w[9] + (kw - 1) * w[10])
        for o in range(f_all):
            for cc in range(ch):
                for i in range(kh):
                    for j in range(kw):
                        wmat[o, (cc * kh + i) * kw + j] = wflat[o * w[7] + cc * w[8] + i * w[9] + j * w[10]]
    wp = np.int64(wmat.ctypes.data)
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and x[10] == 1 and x[9] == wid and oh == h and ow == wid
    packed_y = y[10] == 1 and y[9] == ow
    if plane < SMALL_PLANE and n_img > 1:
        # Small images: one GEMM per group over the images' columns, then scattered to NCHW;
        # a large product splits the images into one range per thread.
        parts = min(threads, n_img) if threads > 1 and flops >= PARALLEL_FLOPS else 1
        if parts > 1:
            _small_images_parallel(xflat, xs, wp, yaddr, geometry, n_img, packed_y, parts, bias, lo, hi)
        else:
            _small_images(xflat, xs, wp, yaddr, geometry, 0, n_img, packed_y, bias, lo, hi)
        _alive(wmat, xs, geometry)  # the GEMMs read the filter through its raw address
        return
    block = min(plane, max(MIN_BLOCK, BLOCK_FLOATS // red // 16 * 16))
    if threads > 1 and n_img > 1 and flops >= PARALLEL_FLOPS:
        _conv_images_parallel(xflat, xs, wp, xbase, yaddr, geometry, n_img, block, direct, packed_y, min(threads, n_img),
                              bias, lo, hi)
    else:
        _conv_images(xflat, xs, wp, xbase, yaddr, geometry, 0, n_img, block, direct, packed_y, bias, lo, hi)
    _alive(wmat, xs, geometry)  # the GEMMs read the filter through its raw address


def _conv_py(x_d: int, w_d: int, y_d: int, groups: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int) -> None:
    """The ``tasd_dense_conv2d`` entry: :func:`_conv_core`, choosing the method per shape."""
    _conv_core(x_d, w_d, y_d, groups, sh, sw, dh, dw, pt, pl, AUTO, np.empty(0, np.float32), np.float32(-np.inf), np.float32(np.inf))


def _conv_epilogue_py(x_d: int, w_d: int, y_d: int, b_d: int, groups: int, sh: int, sw: int, dh: int, dw: int, pt: int,
                      pl: int, lo: float, hi: float) -> None:
    """The ``tasd_dense_conv2d_epilogue`` entry: :func:`_conv_core` with the bias ``B[G*F]``
    added and the result clamped to ``[lo, hi]`` as each GEMM block is written
    (``tasd-cpu-dense-to-library-calls`` folds a broadcast bias init and a ReLU / ReLU6
    after the convolution into the call)."""
    _conv_core(x_d, w_d, y_d, groups, sh, sw, dh, dw, pt, pl, AUTO, _bias_vector(b_d), lo, hi)


def _conv_residual_py(x_d: int, w_d: int, y_d: int, b_d: int, r_d: int, groups: int, sh: int, sw: int, dh: int, dw: int,
                      pt: int, pl: int, lo: float, hi: float) -> None:
    """The ``tasd_dense_conv2d_residual`` entry: the convolution with the bias ``B[G*F]`` added
    as each GEMM block is written, then ``Y = min(max(Y + R, lo), hi)`` for the residual ``R``
    of Y's shape (any strides) over the output planes on all threads
    (:func:`_add_residual`): ResNet's ``relu(bn(conv(x)) + shortcut)``, which
    ``tasd-cpu-dense-to-library-calls`` folds into the call."""
    _conv_core(x_d, w_d, y_d, groups, sh, sw, dh, dw, pt, pl, AUTO, _bias_vector(b_d), np.float32(-np.inf), np.float32(np.inf))
    y = _desc(y_d, 4)
    r = _desc(r_d, 4)
    if _num_threads() > 1 and y[3] * y[4] * y[5] * y[6] >= RESIDUAL_PARALLEL_ELEMENTS:
        _add_residual_parallel(y, r, lo, hi)
    else:
        _add_residual(y, r, lo, hi)


#: Below this many outputs the residual pass of ``tasd_dense_conv2d_residual`` runs on one thread.
RESIDUAL_PARALLEL_ELEMENTS = 1 << 16


@njit(cache=True, nogil=True)
def _add_residual(y: np.ndarray, r: np.ndarray, lo: float, hi: float) -> None:
    """``Y = min(max(Y + R, lo), hi)`` (``v > lo ? v : lo``, then ``hi < v ? hi : v``: the ops
    of the loop it replaces) for the rank-4 f32 memrefs with descriptors ``y`` and ``r``
    (``R`` the shape of ``Y``), plane ``[n, c]`` by plane, a plane at a time through
    :func:`_add_residual_plane`."""
    for plane in range(y[3] * y[4]):
        _add_residual_plane(y, r, lo, hi, plane)


@njit(parallel=True, cache=True, nogil=True)
def _add_residual_parallel(y: np.ndarray, r: np.ndarray, lo: float, hi: float) -> None:
    """:func:`_add_residual` with the planes split over the threads (each output the same ops)."""
    for plane in prange(y[3] * y[4]):
        _add_residual_plane(y, r, lo, hi, plane)


@njit(cache=True, nogil=True)
def _add_residual_plane(y: np.ndarray, r: np.ndarray, lo: float, hi: float, plane: int) -> None:
    n = plane // y[4]
    c = plane - n * y[4]
    oh, ow = y[5], y[6]
    yf = carray(_f32p(y[1] + 4 * (y[2] + n * y[7] + c * y[8])), 1 + (oh - 1) * y[9] + (ow - 1) * y[10])
    rf = carray(_f32p(r[1] + 4 * (r[2] + n * r[7] + c * r[8])), 1 + (oh - 1) * r[9] + (ow - 1) * r[10])
    if y[10] == 1 and r[10] == 1 and y[9] == ow and r[9] == ow:
        for t in range(np.uint64(oh * ow)):
            v = yf[t] + rf[t]
            v = v if v > lo else lo
            yf[t] = hi if hi < v else v
        return
    for p in range(oh):
        for q in range(ow):
            yi = p * y[9] + q * y[10]
            v = yf[yi] + rf[p * r[9] + q * r[10]]
            v = v if v > lo else lo
            yf[yi] = hi if hi < v else v


@njit(cache=True, nogil=True)
def _bias_vector(b_d: int) -> np.ndarray:
    """The 1-D f32 memref behind descriptor ``b_d`` as a contiguous array (a view when it is one)."""
    b = _desc(b_d, 1)
    bias = carray(_f32p(b[1] + 4 * b[2]), 1 + (b[3] - 1) * b[4]) if b[3] > 0 else np.empty(0, np.float32)
    if b[4] != 1 and b[3] > 1:
        bias = bias[::b[4]].copy()
    return bias


def _conv_output(what: str, x: np.ndarray, w: np.ndarray, channels: int, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], out: np.ndarray | None) -> np.ndarray:
    """The NCHW output of a convolution of ``x`` with the filter ``w`` (its last two dims
    are KH, KW): ``out`` checked, or allocated (ValueError naming ``what`` otherwise)."""
    n, _, h, wid = x.shape
    kh, kw = w.shape[-2], w.shape[-1]
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wid + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh <= 0 or ow <= 0 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"{what}: no output for x{x.shape}, w{w.shape}, stride {stride}, padding {padding}, dilation {dilation}")
    shape = (n, channels, oh, ow)
    if out is None:
        out = np.empty(shape, np.float32)
    if out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"{what}: out must be float32{shape}, got {out.dtype}{out.shape}")
    return out


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int] = (1, 1),
                     padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
                     out: np.ndarray | None = None, bias: np.ndarray | None = None,
                     clamp: tuple[float, float] = (-np.inf, np.inf)) -> np.ndarray:
    """``tasd_dense_depthwise_conv2d`` on numpy arrays (tests and benchmarks): NCHW f32 ``x``,
    ``w[C, KH, KW]``, symmetric zero ``padding``; with a ``bias[C]`` (f32),
    ``tasd_dense_depthwise_conv2d_epilogue``: the bias added and the result clamped to
    ``clamp``. Returns ``out`` (allocated when not given)."""
    if x.dtype != np.float32 or w.dtype != np.float32 or x.ndim != 4 or w.ndim != 3 or w.shape[0] != x.shape[1]:
        raise ValueError(f"depthwise_conv2d takes float32 x[N, C, H, W] and w[C, KH, KW], got {x.dtype}{x.shape} and {w.dtype}{w.shape}")
    c = x.shape[1]
    out = _conv_output("depthwise_conv2d", x, w, c, stride, padding, dilation, out)
    descs = [_descriptor(a) for a in (x, w, out)]
    geometry = (stride[0], stride[1], dilation[0], dilation[1], padding[0], padding[1])
    if bias is None:
        library_entry("tasd_dense_depthwise_conv2d").ctypes(*(int(d.ctypes.data) for d in descs), *geometry)
        return out
    if bias.dtype != np.float32 or bias.shape != (c,):
        raise ValueError(f"depthwise_conv2d: bias must be float32[{c}], got {bias.dtype}{bias.shape}")
    descs.append(_descriptor(bias))
    library_entry("tasd_dense_depthwise_conv2d_epilogue").ctypes(*(int(d.ctypes.data) for d in descs), *geometry,
                                                                 float(clamp[0]), float(clamp[1]))
    return out


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
           dilation: tuple[int, int] = (1, 1), groups: int = 1, method: int = AUTO,
           out: np.ndarray | None = None, bias: np.ndarray | None = None,
           clamp: tuple[float, float] = (-np.inf, np.inf), residual: np.ndarray | None = None) -> np.ndarray:
    """``tasd_dense_conv2d`` on numpy arrays (tests and ``benchmarks/bench_dense_conv.py``):
    NCHW f32 ``x``, ``w[F, C/groups, KH, KW]``, symmetric zero ``padding``; ``method`` forces
    im2col, the implicit GEMM or Winograd (a shape Winograd does not take gets ``AUTO``'s
    method); with a ``bias[F]`` (f32), the epilogue of
    ``tasd_dense_conv2d_epilogue``: the bias added and the result clamped to ``clamp``;
    with a ``residual`` too (f32, ``out``'s shape, any strides; ``method`` AUTO),
    ``tasd_dense_conv2d_residual``: ``min(max(conv + bias + residual, lo), hi)``.
    Returns ``out`` (allocated when not given)."""
    if x.dtype != np.float32 or w.dtype != np.float32 or x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d takes rank-4 float32 x and w, got {x.dtype}{x.shape} and {w.dtype}{w.shape}")
    if groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"conv2d: x{x.shape} and w{w.shape} do not fit groups={groups}")
    if method not in (AUTO, IM2COL, IMPLICIT, STACKED, WINOGRAD):
        raise ValueError(f"conv2d: method must be AUTO, IM2COL, IMPLICIT, STACKED or WINOGRAD, got {method}")
    out = _conv_output("conv2d", x, w, w.shape[0], stride, padding, dilation, out)
    if bias is None:
        vector, lo, hi = np.empty(0, np.float32), np.float32(-np.inf), np.float32(np.inf)
    elif bias.dtype != np.float32 or bias.shape != (w.shape[0],):
        raise ValueError(f"conv2d: bias must be float32[{w.shape[0]}], got {bias.dtype}{bias.shape}")
    else:
        vector, lo, hi = np.ascontiguousarray(bias), np.float32(clamp[0]), np.float32(clamp[1])
    descs = [_descriptor(a) for a in (x, w, out)]
    if residual is not None:
        if bias is None or method != AUTO or residual.dtype != np.float32 or residual.shape != out.shape:
            raise ValueError(f"conv2d: a residual needs a bias, method AUTO and float32{out.shape}, "
                             f"got {residual.dtype}{residual.shape}")
        descs += [_descriptor(vector), _descriptor(residual)]
        library_entry("tasd_dense_conv2d_residual").ctypes(*(int(d.ctypes.data) for d in descs), groups, stride[0], stride[1],
                                                           dilation[0], dilation[1], padding[0], padding[1], lo, hi)
        return out
    _conv_core(*(int(d.ctypes.data) for d in descs), groups, stride[0], stride[1], dilation[0], dilation[1],
               padding[0], padding[1], method, vector, lo, hi)
    return out


def _descriptor(a: np.ndarray) -> np.ndarray:
    """A memref descriptor (``allocated, aligned, offset, sizes, strides`` in elements) of ``a``."""
    if a.itemsize != 4 or any(s % 4 for s in a.strides):
        raise ValueError("conv2d takes arrays with float32-aligned strides")
    return np.array([a.ctypes.data, a.ctypes.data, 0, *a.shape, *(s // 4 for s in a.strides)], np.int64)


#: Depthwise convolutions of at least this many flops split their channel planes over Numba's threads.
DEPTHWISE_PARALLEL_FLOPS = 1 << 21
#: Fields of the depthwise geometry block (int64): input / filter / output sizes, strides,
#: dilations, padding, then the phase layout of the scratch plane (see ``_depthwise_planes``).
(_D_CH, _D_H, _D_W, _D_KH, _D_KW, _D_OH, _D_OW, _D_SH, _D_SW, _D_DH, _D_DW, _D_PT, _D_PL,
 _D_HQ, _D_WQ, _D_LEN) = range(16)


@njit(cache=True, nogil=True)
def _depthwise_planes(xf: np.ndarray, xs: np.ndarray, wf: np.ndarray, ws: np.ndarray, yf: np.ndarray,
                      ys: np.ndarray, g: np.ndarray, bias: np.ndarray, lo: float, hi: float, first: int, last: int) -> None:
    """Channel planes ``first ≤ img·C + c < last`` of a depthwise convolution (``g``: the
    geometry block; ``xs``/``ws``/``ys``: element strides of X, W[C, KH, KW] and Y).

    Each input plane is copied into a zero-bordered scratch plane split into its
    ``sh × sw`` stride phases (phase ``(a, b)`` holds padded rows ``a, a + sh, …`` and
    columns ``b, b + sw, …``), so that every tap of every stride reads one phase at a fixed
    offset: output pixel ``(p, q)`` of tap ``(i, j)`` is element ``p·WQ + q`` past that
    offset. A tap is then one long multiply-add over the whole output plane on the phase
    width ``WQ`` (the columns past ``OW`` are computed and dropped), rounded up to whole
    8-float vectors (the scratch plane has the slack). 3×3 filters add their nine taps in
    one pass (each output loaded and stored once); others one pass per tap. Every output
    is ``((0 + w₀₀·x) + w₀₁·x) + …`` in row-major tap order, unfused, whatever the
    stride, thread count or pass shape. With a ``bias`` (one per channel, else empty)
    each output is stored as ``min(max(y + bias[c], lo), hi)`` (``v > lo ? v : lo``,
    then ``hi < v ? hi : v``: the ops of torch-mlir's ReLU / ReLU6, so the same bits
    as the separate loop it replaces). Indices are unsigned: Numba's negative-index
    wraparound on signed indices keeps LLVM from vectorizing these loops (2–7× slower)."""
    ch, h, wid, kh, kw = g[_D_CH], g[_D_H], g[_D_W], g[_D_KH], g[_D_KW]
    oh, ow, sh, sw, dh, dw = g[_D_OH], g[_D_OW], g[_D_SH], g[_D_SW], g[_D_DH], g[_D_DW]
    pt, pl, hq, wq, length = g[_D_PT], g[_D_PL], g[_D_HQ], g[_D_WQ], g[_D_LEN]
    phase = hq * wq
    buf = np.zeros(sh * sw * phase + 8, np.float32)  # the border stays zero: every plane writes the same places
    full = np.empty(length, np.float32)
    taps = kh * kw
    offset = np.empty(taps, np.uint64)
    used = np.zeros(sh * sw, np.bool_)
    for i in range(kh):
        for j in range(kw):
            ph = ((i * dh) % sh) * sw + (j * dw) % sw
            used[ph] = True
            offset[i * kw + j] = np.uint64(ph * phase + ((i * dh) // sh) * wq + (j * dw) // sw)
    wv = np.empty(taps, np.float32)
    # The copy plan, the same for every plane: runs of input row r that land in one phase
    # row (destination, source offset in the plane, length, r).
    runs = np.empty((max(h, 1) * sw, 4), np.int64)
    nruns = 0
    c0 = max(0, -pl)
    for r in range(max(0, -pt), h):
        rq = (r + pt) // sh
        if rq >= hq:
            break
        a = (r + pt) % sh
        for b in range(sw):
            cf = c0 + (b - (c0 + pl)) % sw  # the first input column in phase column b
            n = min((wid - cf + sw - 1) // sw, wq - (cf + pl) // sw)
            if used[a * sw + b] and n > 0:
                runs[nruns, 0] = (a * sw + b) * phase + rq * wq + (cf + pl) // sw
                runs[nruns, 1] = r * xs[2] + cf * xs[3]
                runs[nruns, 2] = n
                runs[nruns, 3] = r
                nruns += 1
    step = np.uint64(sw * xs[3])
    # Stride 2 along a unit-stride row: the two runs of one input row (its even and odd
    # columns, one per column phase) are copied in one pass that reads the row once; the
    # pair is stored with the run that starts at the lower input column first.
    paired = np.zeros(nruns, np.bool_)
    if sw == 2 and xs[3] == 1:
        e = 0
        while e < nruns - 1:
            if runs[e, 3] == runs[e + 1, 3]:  # the same input row
                paired[e] = True
                if runs[e + 1, 1] < runs[e, 1]:
                    for col in range(4):
                        runs[e, col], runs[e + 1, col] = runs[e + 1, col], runs[e, col]
                e += 2
            else:
                e += 1
    for plane in range(first, last):
        img = plane // ch
        cc = plane - img * ch
        xb = img * xs[0] + cc * xs[1]
        e = 0
        while e < nruns:
            if paired[e]:  # run e reads the row's columns src, src + 2, …; run e + 1 src + 1, src + 3, …
                de, do = np.uint64(runs[e, 0]), np.uint64(runs[e + 1, 0])
                ne, no = np.uint64(runs[e, 2]), np.uint64(runs[e + 1, 2])
                src = np.uint64(xb + runs[e, 1])
                both = min(ne, no)
                if ne <= 16 and no <= ne <= no + 1:  # a short row (input width ≤ 32)
                    _copy_pairs(buf, de, do, xf, src, ne, no)
                    e += 2
                    continue
                for q in range(both):
                    buf[de + q] = xf[src + np.uint64(2) * q]
                    buf[do + q] = xf[src + np.uint64(2) * q + np.uint64(1)]
                for q in range(both, ne):
                    buf[de + q] = xf[src + np.uint64(2) * q]
                for q in range(both, no):
                    buf[do + q] = xf[src + np.uint64(2) * q + np.uint64(1)]
                e += 2
                continue
            d = np.uint64(runs[e, 0])
            src = np.uint64(xb + runs[e, 1])
            n = np.uint64(runs[e, 2])
            e += 1
            if step == 1 and n <= 16:
                _copy_short(buf, d, xf, src, n)
            elif step == 1:
                for q in range(n):
                    buf[d + q] = xf[src + q]
            elif step == 2:  # a constant stride: LLVM vectorizes the load (two vectors, then a shuffle)
                for q in range(n):
                    buf[d + q] = xf[src + np.uint64(2) * q]
            else:
                for q in range(n):
                    buf[d + q] = xf[src + q * step]
        for k in range(taps):
            wv[k] = wf[cc * ws[0] + (k // kw) * ws[1] + (k % kw) * ws[2]]
        if taps == 9:
            o0, o1, o2, o3, o4 = offset[0], offset[1], offset[2], offset[3], offset[4]
            o5, o6, o7, o8 = offset[5], offset[6], offset[7], offset[8]
            w0, w1, w2, w3, w4 = wv[0], wv[1], wv[2], wv[3], wv[4]
            w5, w6, w7, w8 = wv[5], wv[6], wv[7], wv[8]
            for t in range(np.uint64(length)):
                acc = np.float32(0.0)
                acc += w0 * buf[o0 + t]
                acc += w1 * buf[o1 + t]
                acc += w2 * buf[o2 + t]
                acc += w3 * buf[o3 + t]
                acc += w4 * buf[o4 + t]
                acc += w5 * buf[o5 + t]
                acc += w6 * buf[o6 + t]
                acc += w7 * buf[o7 + t]
                acc += w8 * buf[o8 + t]
                full[t] = acc
        else:
            for t in range(np.uint64(length)):
                full[t] = 0.0
            for k in range(taps):
                base = offset[k]
                wk = wv[k]
                for t in range(np.uint64(length)):
                    full[t] += wk * buf[base + t]
        if bias.size:
            bc = bias[cc]
            for t in range(np.uint64(length)):
                v = full[t] + bc
                v = v if v > lo else lo
                full[t] = hi if hi < v else v
        yb = img * ys[0] + cc * ys[1]
        for p in range(oh):
            srow = np.uint64(p * wq)
            if ys[3] == 1 and ow <= 16:
                _copy_short(yf, yb + p * ys[2], full, srow, ow)
            elif ys[3] == 1:
                d = np.uint64(yb + p * ys[2])
                for q in range(np.uint64(ow)):
                    yf[d + q] = full[srow + q]
            else:
                for q in range(ow):
                    yf[yb + p * ys[2] + q * ys[3]] = full[srow + np.uint64(q)]


@njit(parallel=True, cache=True, nogil=True)
def _depthwise_parallel(xf: np.ndarray, xs: np.ndarray, wf: np.ndarray, ws: np.ndarray, yf: np.ndarray,
                        ys: np.ndarray, g: np.ndarray, bias: np.ndarray, lo: float, hi: float, planes: int,
                        parts: int) -> None:
    """:func:`_depthwise_planes` as ``parts`` contiguous ranges of the planes on Numba's threads."""
    for t in prange(parts):
        _depthwise_planes(xf, xs, wf, ws, yf, ys, g, bias, lo, hi, planes * t // parts, planes * (t + 1) // parts)


def _depthwise_py(x_d: int, w_d: int, y_d: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int) -> None:
    """The ``tasd_dense_depthwise_conv2d`` entry: :func:`_depthwise`, no epilogue."""
    _depthwise(x_d, w_d, y_d, np.empty(0, np.float32), np.float32(-np.inf), np.float32(np.inf), sh, sw, dh, dw, pt, pl)


def _depthwise_epilogue_py(x_d: int, w_d: int, y_d: int, b_d: int, sh: int, sw: int, dh: int, dw: int, pt: int,
                           pl: int, lo: float, hi: float) -> None:
    """The ``tasd_dense_depthwise_conv2d_epilogue`` entry: :func:`_depthwise` with the bias
    ``B[C]`` added and the result clamped to ``[lo, hi]`` as each plane is stored
    (``tasd-cpu-dense-to-library-calls`` folds a broadcast bias init and a ReLU/ReLU6 after
    the convolution into the call)."""
    _depthwise(x_d, w_d, y_d, _bias_vector(b_d), lo, hi, sh, sw, dh, dw, pt, pl)


@njit(cache=True, nogil=True)
def _depthwise(x_d: int, w_d: int, y_d: int, bias: np.ndarray, lo: float, hi: float, sh: int, sw: int, dh: int,
               dw: int, pt: int, pl: int) -> None:
    """Depthwise NCHW convolution with zero padding ``pt`` rows above and ``pl`` columns
    left: ``X[N, C, H, W]``, ``W[C, KH, KW]``, ``Y[N, C, OH, OW]``
    (``linalg.depthwise_conv_2d_nchw_chw``), one channel plane at a time
    (:func:`_depthwise_planes`); at least ``DEPTHWISE_PARALLEL_FLOPS`` split the planes
    over Numba's threads (the same sums in the same order on any thread)."""
    x, w, y = _desc(x_d, 4), _desc(w_d, 3), _desc(y_d, 4)
    n_img, ch, h, wid = x[3], x[4], x[5], x[6]
    kh, kw = w[4], w[5]
    oh, ow = y[5], y[6]
    if n_img == 0 or ch == 0 or oh == 0 or ow == 0:
        return
    xf = carray(_f32p(x[1] + 4 * x[2]), 1 + (n_img - 1) * x[7] + (ch - 1) * x[8] + (h - 1) * x[9] + (wid - 1) * x[10])
    wf = carray(_f32p(w[1] + 4 * w[2]), 1 + (ch - 1) * w[6] + (kh - 1) * w[7] + (kw - 1) * w[8])
    yf = carray(_f32p(y[1] + 4 * y[2]), 1 + (n_img - 1) * y[7] + (ch - 1) * y[8] + (oh - 1) * y[9] + (ow - 1) * y[10])
    hq = oh + ((kh - 1) * dh) // sh
    wq = ow + ((kw - 1) * dw) // sw
    g = np.empty(16, np.int64)
    g[_D_CH], g[_D_H], g[_D_W], g[_D_KH], g[_D_KW], g[_D_OH], g[_D_OW] = ch, h, wid, kh, kw, oh, ow
    g[_D_SH], g[_D_SW], g[_D_DH], g[_D_DW], g[_D_PT], g[_D_PL] = sh, sw, dh, dw, pt, pl
    g[_D_HQ], g[_D_WQ], g[_D_LEN] = hq, wq, (oh * wq + 7) // 8 * 8
    xs = np.empty(4, np.int64)
    xs[0], xs[1], xs[2], xs[3] = x[7], x[8], x[9], x[10]
    ws = np.empty(3, np.int64)
    ws[0], ws[1], ws[2] = w[6], w[7], w[8]
    ys = np.empty(4, np.int64)
    ys[0], ys[1], ys[2], ys[3] = y[7], y[8], y[9], y[10]
    planes = n_img * ch
    threads = _num_threads()
    if threads > 1 and planes > 1 and 2.0 * planes * oh * ow * kh * kw >= DEPTHWISE_PARALLEL_FLOPS:
        _depthwise_parallel(xf, xs, wf, ws, yf, ys, g, bias, lo, hi, planes, min(threads, planes))
    else:
        _depthwise_planes(xf, xs, wf, ws, yf, ys, g, bias, lo, hi, 0, planes)


_P = types.intp
_I = types.int64
#: name -> (Python function, Numba signature); the MLIR declaration of each is
#: written by ``tasd-cpu-dense-to-library-calls`` (three memrefs, then i64s).
_SPECS: dict[str, tuple[Any, Any]] = {
    "tasd_dense_matmul": (_matmul_py, types.void(_P, _P, _P)),
    "tasd_dense_batch_matmul": (_batch_matmul_py, types.void(_P, _P, _P)),
    "tasd_dense_conv2d": (_conv_py, types.void(_P, _P, _P, _I, _I, _I, _I, _I, _I, _I)),
    "tasd_dense_conv2d_epilogue": (_conv_epilogue_py, types.void(_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I,
                                                                 types.float32, types.float32)),
    "tasd_dense_conv2d_residual": (_conv_residual_py, types.void(_P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I,
                                                                 types.float32, types.float32)),
    "tasd_dense_depthwise_conv2d": (_depthwise_py, types.void(_P, _P, _P, _I, _I, _I, _I, _I, _I)),
    "tasd_dense_depthwise_conv2d_epilogue": (_depthwise_epilogue_py, types.void(_P, _P, _P, _P, _I, _I, _I, _I, _I, _I,
                                                                                types.float32, types.float32)),
}
LIBRARY_ENTRIES = tuple(_SPECS)

_lock = threading.Lock()
_compiled: dict[str, Any] = {}


def library_entry(name: str) -> Any:
    """The Numba ``@cfunc`` of entry ``name`` (compiled, or loaded from Numba's cache, once)."""
    with _lock:
        if not _compiled:
            from numba.np.ufunc import parallel

            parallel._launch_threads()  # the JIT'ed caller may be the first to run a parallel region
        if name not in _compiled:
            function, signature = _SPECS[name]
            _compiled[name] = cfunc(signature, cache=True, nogil=True)(function)
        return _compiled[name]


def library_symbols(externals: list[str]) -> dict[str, Any]:
    """For the external symbols of a lowered module (``_mlir_ciface_<name>``), the
    ctypes function of every library entry among them, by the plain ``<name>``."""
    found = {}
    for symbol in externals:
        name = symbol.removeprefix("_mlir_ciface_")
        if name in _SPECS:
            found[name] = library_entry(name).ctypes
    return found


def library_address(function: Any) -> int:
    """The address of a ctypes function from :func:`library_symbols`."""
    return int(ctypes.cast(function, ctypes.c_void_p).value or 0)


from tasdc.runtime.cpu import winograd  # noqa: E402  (it uses _sgemm_rm above; _conv_method calls it)
