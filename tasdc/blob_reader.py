"""Copy a ``dense_resource`` blob into numpy through MLIR's C API, fast, from Numba's disk cache.

The bindings give no pointer to a blob's bytes, only the C API's per-element
getter ``mlirDense<T>ResourceElementsAttrGetValue(attr, i)``. These loops call
it from compiled code. The getter's address is an argument (called through
:func:`_call_getter`, an ``inttoptr`` + call), not a captured constant, so
the functions are cached by Numba on disk: a new process loads them instead
of compiling (what a compile-cache hit of a large model needs).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _call_getter(typingctx, getter, attr, index, like):  # type: ignore[no-untyped-def]
    """``getter(attr, index)`` for a getter returning ``like.dtype`` (``like`` is the output array)."""
    if not isinstance(like, types.Array) or like.dtype == types.boolean:
        return None
    signature = like.dtype(getter, attr, index, like)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(context.get_value_type(sig.return_type), [i8p, ir.IntType(64)])
        function = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(function, [builder.inttoptr(args[1], i8p), args[2]])

    return signature, codegen


@njit(cache=True, nogil=True)
def read_flat(getter: int, attr: int, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """``out[i] = blob[i]`` for the 1-D ``out``."""
    for i in range(out.size):
        out[i] = _call_getter(getter, attr, i, out)


@njit(cache=True, nogil=True)
def read_transposed(getter: int, attr: int, rows: int, cols: int, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """``out[j, i] = blob[i * cols + j]`` for a ``rows x cols`` blob, in 64 x 64 blocks (cache friendly)."""
    for i0 in range(0, rows, 64):
        for j0 in range(0, cols, 64):
            for i in range(i0, min(i0 + 64, rows)):
                for j in range(j0, min(j0 + 64, cols)):
                    out[j, i] = _call_getter(getter, attr, i * cols + j, out)
