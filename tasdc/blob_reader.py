"""Copy a ``dense_resource`` blob into numpy through MLIR's C API, fast, without Numba.

The bindings give no pointer to a blob's bytes, only the C API's per-element
getter ``mlirDense<T>ResourceElementsAttrGetValue(attr, i)``. These loops call
it from compiled code: two small functions per element type, written in LLVM
IR with llvmlite and JIT-compiled once per process on first use (tens of
milliseconds). They used to be Numba functions; loading those from Numba's
disk cache cost ~0.9 s in every new process (Numba's first dispatch), most
of a dense model's start from the compile cache. Calls go through ctypes,
which releases the GIL.
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
_BLOCK = 64  # transposed copies go in 64 x 64 blocks (cache friendly)
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
    block = ir.Constant(i64, _BLOCK)

    def row_block(b: ir.IRBuilder, bi: ir.Value) -> None:
        i0 = b.mul(bi, block)
        i1 = _smin(b, b.add(i0, block), rows)

        def col_block(b: ir.IRBuilder, bj: ir.Value) -> None:
            j0 = b.mul(bj, block)
            j1 = _smin(b, b.add(j0, block), cols)

            def row(b: ir.IRBuilder, i: ir.Value) -> None:
                def col(b: ir.IRBuilder, j: ir.Value) -> None:
                    value = b.call(call, [attr, b.add(b.mul(i, cols), j)])
                    b.store(value, b.gep(out, [b.add(b.mul(j, rows), i)]))

                _loop(b, j0, j1, "j", col)

            _loop(b, i0, i1, "r", row)

        _loop(b, ir.Constant(i64, 0), b.sdiv(b.add(cols, ir.Constant(i64, _BLOCK - 1)), block), "bj", col_block)

    _loop(builder, ir.Constant(i64, 0), builder.sdiv(builder.add(rows, ir.Constant(i64, _BLOCK - 1)), block), "bi", row_block)
    builder.ret_void()
    return module


@lru_cache(maxsize=None)
def _functions(dtype: np.dtype) -> tuple[Any, Any]:
    """The two compiled loops for ``dtype`` (ctypes functions)."""
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
        return flat, transposed


def _check(out: np.ndarray) -> np.dtype:
    if out.dtype not in _LLVM_TYPES or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(f"blob reader: need a writable C-contiguous array of {', '.join(map(str, _LLVM_TYPES))}, got {out.dtype}")
    return out.dtype


def read_flat(getter: int, attr: int, out: np.ndarray) -> None:
    """``out[i] = blob[i]`` for the 1-D ``out`` (``getter`` returns ``out.dtype``)."""
    flat, _ = _functions(_check(out))
    flat(getter, attr, out.size, out.ctypes.data)


def read_transposed(getter: int, attr: int, rows: int, cols: int, out: np.ndarray) -> None:
    """``out[j, i] = blob[i * cols + j]`` for a ``rows x cols`` blob (``out`` is ``cols x rows``)."""
    if out.shape != (cols, rows):
        raise ValueError(f"blob reader: out has shape {out.shape}, expected {(cols, rows)}")
    _, transposed = _functions(_check(out))
    transposed(getter, attr, rows, cols, out.ctypes.data)
