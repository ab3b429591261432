"""Read a ``dense_resource`` blob into numpy fast: a checked view of its own bytes, else a compiled copy loop.

:func:`blob_view` finds the blob's data pointer behind the attribute (the
bindings and the C API give none) and returns a zero-copy view once it has
checked it against MLIR's own getter (see the comment above it). When it
cannot, the copy loops below call the C API's per-element getter
``mlirDense<T>ResourceElementsAttrGetValue(attr, i)`` from compiled code:
two small functions per element type (plus a transposing copy from memory),
written in LLVM IR with llvmlite and JIT-compiled once per process on first
use (tens of milliseconds). They used to be Numba functions; loading those
from Numba's disk cache cost ~0.9 s in every new process (Numba's first
dispatch). Calls go through ctypes, which releases the GIL.
"""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache
from typing import Any

import numpy as np
from llvmlite import ir

#: numpy dtype -> LLVM type of the getter's result (signed and unsigned share one).
_LLVM_TYPES = {
    np.dtype(np.float32): ir.FloatType(), np.dtype(np.float64): ir.DoubleType(),
    np.dtype(np.int8): ir.IntType(8), np.dtype(np.uint8): ir.IntType(8),
    np.dtype(np.int16): ir.IntType(16), np.dtype(np.uint16): ir.IntType(16),
    np.dtype(np.int32): ir.IntType(32), np.dtype(np.int64): ir.IntType(64),
}
# Transposed copies go in 8 x 8 blocks, writing along output rows: rows of
# weights are often a multiple of 4 KB apart, so larger blocks evict
# themselves from L1 (measured on 768 x 3072: 64 x 64 4-10 ns an element, 8 x 8 0.7-1.5 ns).
_BLOCK = 8
_LOCK = threading.Lock()
_ENGINES: list[Any] = []  # keep the JITs alive


def _loop(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, name: str, body: Any) -> None:
    """``for (i = start; i < stop; ++i) body(builder, i)`` (nothing when ``start >= stop``)."""
    i64 = ir.IntType(64)
    head = builder.append_basic_block(f"{name}.head")
    loop = builder.append_basic_block(f"{name}.body")
    done = builder.append_basic_block(f"{name}.done")
    entry = builder.block
    builder.branch(head)
    builder.position_at_end(head)
    index = builder.phi(i64, name)
    index.add_incoming(start, entry)
    builder.cbranch(builder.icmp_signed("<", index, stop), loop, done)
    builder.position_at_end(loop)
    body(builder, index)
    index.add_incoming(builder.add(index, ir.Constant(i64, 1)), builder.block)
    builder.branch(head)
    builder.position_at_end(done)


def _smin(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def _transpose_blocks(builder: ir.IRBuilder, rows: ir.Value, cols: ir.Value, out: ir.Value, load: Any) -> None:
    """``out[j, i] = load(i * cols + j)`` over a ``rows x cols`` source, in ``_BLOCK`` x ``_BLOCK`` blocks."""
    i64 = ir.IntType(64)
    block = ir.Constant(i64, _BLOCK)

    def row_block(b: ir.IRBuilder, bi: ir.Value) -> None:
        i0 = b.mul(bi, block)
        i1 = _smin(b, b.add(i0, block), rows)

        def col_block(b: ir.IRBuilder, bj: ir.Value) -> None:
            j0 = b.mul(bj, block)
            j1 = _smin(b, b.add(j0, block), cols)

            def col(b: ir.IRBuilder, j: ir.Value) -> None:
                def row(b: ir.IRBuilder, i: ir.Value) -> None:
                    b.store(load(b, b.add(b.mul(i, cols), j)), b.gep(out, [b.add(b.mul(j, rows), i)]))

                _loop(b, i0, i1, "r", row)

            _loop(b, j0, j1, "j", col)

        _loop(b, ir.Constant(i64, 0), b.sdiv(b.add(cols, ir.Constant(i64, _BLOCK - 1)), block), "bj", col_block)

    _loop(builder, ir.Constant(i64, 0), builder.sdiv(builder.add(rows, ir.Constant(i64, _BLOCK - 1)), block), "bi", row_block)


def _module(element: ir.Type) -> ir.Module:
    """``flat(getter, attr, n, out)`` and ``transposed(getter, attr, rows, cols, out)``."""
    i8p, i64 = ir.IntType(8).as_pointer(), ir.IntType(64)
    module = ir.Module(name="tasdc_blob_reader")
    getter_type = ir.FunctionType(element, [i8p, i64]).as_pointer()

    flat = ir.Function(module, ir.FunctionType(ir.VoidType(), [i8p, i8p, i64, element.as_pointer()]), "flat")
    getter, attr, count, out = flat.args
    builder = ir.IRBuilder(flat.append_basic_block("entry"))
    call = builder.bitcast(getter, getter_type)

    def copy(b: ir.IRBuilder, i: ir.Value) -> None:
        b.store(b.call(call, [attr, i]), b.gep(out, [i]))

    _loop(builder, ir.Constant(i64, 0), count, "i", copy)
    builder.ret_void()

    # out[j, i] = blob[i * cols + j] for a rows x cols blob, in blocks.
    transposed = ir.Function(module, ir.FunctionType(ir.VoidType(), [i8p, i8p, i64, i64, element.as_pointer()]), "transposed")
    getter, attr, rows, cols, out = transposed.args
    builder = ir.IRBuilder(transposed.append_basic_block("entry"))
    call = builder.bitcast(getter, getter_type)
    _transpose_blocks(builder, rows, cols, out, lambda b, index: b.call(call, [attr, index]))
    builder.ret_void()

    # The same from memory: out[j, i] = source[i * cols + j].
    from_memory = ir.Function(module, ir.FunctionType(ir.VoidType(), [element.as_pointer(), i64, i64, element.as_pointer()]),
                              "transposed_memory")
    source, rows, cols, out = from_memory.args
    builder = ir.IRBuilder(from_memory.append_basic_block("entry"))
    _transpose_blocks(builder, rows, cols, out, lambda b, index: b.load(b.gep(source, [index])))
    builder.ret_void()
    return module


@lru_cache(maxsize=None)
def _functions(dtype: np.dtype) -> tuple[Any, Any, Any]:
    """The three compiled loops for ``dtype`` (ctypes functions)."""
    import llvmlite.binding as llvm

    with _LOCK:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        parsed = llvm.parse_assembly(str(_module(_LLVM_TYPES[dtype])))
        parsed.verify()
        machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
        engine = llvm.create_mcjit_compiler(parsed, machine)
        engine.finalize_object()
        _ENGINES.append(engine)
        p = ctypes.c_void_p
        flat = ctypes.CFUNCTYPE(None, p, p, ctypes.c_int64, p)(engine.get_function_address("flat"))
        transposed = ctypes.CFUNCTYPE(None, p, p, ctypes.c_int64, ctypes.c_int64, p)(engine.get_function_address("transposed"))
        from_memory = ctypes.CFUNCTYPE(None, p, ctypes.c_int64, ctypes.c_int64, p)(engine.get_function_address("transposed_memory"))
        return flat, transposed, from_memory


def _check(out: np.ndarray) -> np.dtype:
    if out.dtype not in _LLVM_TYPES or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(f"blob reader: need a writable C-contiguous array of {', '.join(map(str, _LLVM_TYPES))}, got {out.dtype}")
    return out.dtype


def read_flat(getter: int, attr: int, out: np.ndarray) -> None:
    """``out[i] = blob[i]`` for the 1-D ``out`` (``getter`` returns ``out.dtype``)."""
    flat, _, _ = _functions(_check(out))
    flat(getter, attr, out.size, out.ctypes.data)


def read_transposed(getter: int, attr: int, rows: int, cols: int, out: np.ndarray) -> None:
    """``out[j, i] = blob[i * cols + j]`` for a ``rows x cols`` blob (``out`` is ``cols x rows``)."""
    if out.shape != (cols, rows):
        raise ValueError(f"blob reader: out has shape {out.shape}, expected {(cols, rows)}")
    _, transposed, _ = _functions(_check(out))
    transposed(getter, attr, rows, cols, out.ctypes.data)


def transpose_into(source: np.ndarray, out: np.ndarray) -> None:
    """``out = source.T`` for a C-contiguous 2-D ``source`` (blocked, a few times numpy's strided copy)."""
    rows, cols = source.shape
    if out.shape != (cols, rows) or source.dtype != out.dtype or not source.flags.c_contiguous:
        raise ValueError(f"blob reader: cannot transpose {source.shape} {source.dtype} into {out.shape} {out.dtype}")
    _, _, from_memory = _functions(_check(out))
    from_memory(source.ctypes.data, rows, cols, out.ctypes.data)


# --- The blob's own bytes, found and checked --------------------------------
#
# The C API has no accessor for a resource blob's data pointer, but the
# attribute's storage holds it two pointers away: storage -> the blob entry
# of MLIR's DialectResourceBlobManager ({StringRef key; optional<AsmResourceBlob>
# blob}, the blob starting with its ArrayRef<char> data). ``blob_view`` looks
# for that chain in the first words of the storage and the entry instead of
# trusting fixed offsets, reads every word through /proc/self/mem (a wrong
# guess reads an error, never crashes), and accepts the pointer only when
# (1) the entry's key is the attribute's key, (2) the data length is exactly
# elements x element size and (3) the values at ``_SAMPLES`` positions (first,
# last, spread in between) equal what MLIR's own getter returns. Anything
# else (another MLIR layout, an element type without a getter) returns None
# and the caller uses the getter loops above.

_SAMPLES = 16
_WORDS = 8  # words of the storage / the entry searched for the pointers


_MEMORY: dict[int, int | None] = {}  # pid -> descriptor of /proc/self/mem


def _memory() -> int | None:
    """A descriptor of this process's /proc/self/mem (reads of unmapped memory
    fail instead of crashing), or None. Opened per process: a descriptor
    inherited across fork would read the parent's memory."""
    import os

    pid = os.getpid()
    if pid not in _MEMORY:
        try:
            _MEMORY[pid] = os.open("/proc/self/mem", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            _MEMORY[pid] = None
    return _MEMORY[pid]


def _read(address: int, size: int) -> bytes | None:
    import os

    fd = _memory()
    if fd is None or not 0 < address < 1 << 62:
        return None
    try:
        data = os.pread(fd, size, address)
    except (OSError, OverflowError):
        return None
    return data if len(data) == size else None


def _words(address: int, count: int) -> list[int] | None:
    data = _read(address, 8 * count)
    return None if data is None else list(np.frombuffer(data, np.uint64).astype(object))


def _find_data(storage: int, key: bytes, nbytes: int) -> int | None:
    """The address of the blob data (``nbytes`` long) that ``storage``'s entry named ``key`` holds."""
    words = _words(storage, _WORDS)
    for candidate in words or ():
        entry = _words(int(candidate), _WORDS) if candidate > 4096 else None
        if not entry or len(entry) < 4:
            continue
        for i in range(len(entry) - 1):  # StringRef key = {data, size}
            if entry[i + 1] != len(key) or entry[i] <= 4096 or _read(int(entry[i]), len(key)) != key:
                continue
            for j in range(i + 2, len(entry) - 1):  # ArrayRef<char> data = {data, size}
                if entry[j + 1] == nbytes and entry[j] > 4096:
                    return int(entry[j])
    return None


def blob_view(attr: Any, dtype: np.dtype, count: int, key: str, getter: Any) -> np.ndarray | None:
    """A read-only, zero-copy view of the ``count`` elements of ``attr``'s resource blob, or ``None``.

    ``attr`` is a DenseResourceElementsAttr, ``key`` its blob key, ``getter``
    its C element getter (a ctypes function ``(MlirAttribute, intptr) ->
    element``). The view keeps ``attr`` alive. See the comment above for
    how the pointer is found and checked.
    """
    from tasdc.elements import _attr_pointer

    nbytes = count * dtype.itemsize
    if count <= 0 or not key:
        return None
    pointer = _attr_pointer(attr)
    data = _find_data(pointer, key.encode(), nbytes)
    if data is None:
        return None
    size = dtype.itemsize
    for position in sorted({0, count - 1, *range(0, count, max(1, count // _SAMPLES))}):
        raw = _read(data + position * size, size)  # through /proc/self/mem: never faults
        if raw is None:
            return None
        expected, got = getter(pointer, position), np.frombuffer(raw, dtype).item()
        if not (expected == got or (expected != expected and got != got)):  # NaN == NaN here
            return None
    buffer = (ctypes.c_char * nbytes).from_address(data)
    view = np.frombuffer(buffer, dtype=dtype, count=count)
    buffer._tasdc_owner = attr  # type: ignore[attr-defined] # the view's base keeps the blob's context alive
    view.flags.writeable = False
    return view
