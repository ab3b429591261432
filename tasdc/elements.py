"""Read and create the weight constants of a module.

torch-mlir materialises weights as ``dense_resource`` attributes, which the
Python bindings cannot read as buffers. :func:`read_elements` views the
blob's own bytes when :func:`tasdc.blob_reader.blob_view` can find and check
them (memory speed, no per-element call), else copies them through MLIR's C
API (``mlirDense*ResourceElementsAttrGetValue``) in a compiled loop, ~25 ns
an element; plain ``DenseElementsAttr`` constants are read through the
buffer protocol.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import re
from functools import lru_cache
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from torch_mlir import ir
import torch_mlir._mlir_libs as _mlir_libs

from tasdc.errors import InputError

_CAPSULE_NAME = b"torch_mlir.ir.Attribute._CAPIPtr"

# numpy dtype -> (C API getter suffix, ctypes result type)
_GETTERS: dict[np.dtype, tuple[str, Any]] = {
    np.dtype(np.float32): ("Float", ctypes.c_float),
    np.dtype(np.float64): ("Double", ctypes.c_double),
    np.dtype(np.int8): ("Int8", ctypes.c_int8),
    np.dtype(np.int16): ("Int16", ctypes.c_int16),
    np.dtype(np.int32): ("Int32", ctypes.c_int32),
    np.dtype(np.int64): ("Int64", ctypes.c_int64),
    np.dtype(np.uint8): ("UInt8", ctypes.c_uint8),
    np.dtype(np.uint16): ("UInt16", ctypes.c_uint16),
    np.dtype(np.bool_): ("Bool", ctypes.c_bool),
}


class UnsupportedElementType(InputError, TypeError):
    """A weight whose element type tasdc cannot read or run (e.g. f16 today)."""


def element_dtype(element_type: ir.Type) -> np.dtype:
    """The numpy dtype of an MLIR element type (f32, f64, iN, ui8, i1)."""
    if isinstance(element_type, ir.F32Type):
        return np.dtype(np.float32)
    if isinstance(element_type, ir.F64Type):
        return np.dtype(np.float64)
    if isinstance(element_type, ir.F16Type):
        return np.dtype(np.float16)
    if isinstance(element_type, ir.BF16Type):
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if isinstance(element_type, ir.IntegerType):
        width = element_type.width
        if width == 1:
            return np.dtype(np.bool_)
        if element_type.is_unsigned:
            return np.dtype(f"uint{width}")
        return np.dtype(f"int{width}")
    raise UnsupportedElementType(f"unsupported element type {element_type} (tasdc reads f32, f64 and integer weights)")


@lru_cache(maxsize=None)
def _capi() -> ctypes.CDLL:
    return ctypes.CDLL(os.path.join(os.path.dirname(_mlir_libs.__file__), "libTorchMLIRAggregateCAPI.so"))


def _getter_address(dtype: np.dtype) -> int:
    suffix, _ = _GETTERS[dtype]
    cfn = getattr(_capi(), f"mlirDense{suffix}ResourceElementsAttrGetValue")
    return int(ctypes.cast(cfn, ctypes.c_void_p).value)


@lru_cache(maxsize=None)
def _reader(dtype: np.dtype) -> Callable[[int, int, np.ndarray], None]:
    """``read(attr_ptr, count, out)``: copy a blob's elements into the 1-D ``out``."""
    if dtype != np.bool_:
        from tasdc.blob_reader import read_flat

        getter_address = _getter_address(dtype)
        return lambda attr_ptr, count, out: read_flat(getter_address, attr_ptr, out[:count])
    import numba

    suffix, ctype = _GETTERS[dtype]
    getter = ctypes.CFUNCTYPE(ctype, ctypes.c_void_p, ctypes.c_ssize_t)(_getter_address(dtype))

    @numba.njit(cache=False)
    def read(attr_ptr: int, count: int, out: np.ndarray) -> None:  # pragma: no cover - jitted
        for i in range(count):
            out[i] = getter(attr_ptr, i)

    return read


def read_elements_transposed(attr: ir.Attribute) -> np.ndarray:
    """The transpose of a 2-D elements attribute, C-contiguous, read in one pass."""
    attr = as_elements_attr(attr) or attr
    shaped = ir.ShapedType(attr.type)
    dtype = element_dtype(shaped.element_type)
    if isinstance(attr, ir.DenseResourceElementsAttr) and shaped.rank == 2 and dtype in _GETTERS and dtype != np.bool_:
        from tasdc.blob_reader import read_transposed, transpose_into

        rows, cols = shaped.shape
        out = np.empty((cols, rows), dtype=dtype)
        view = resource_view(attr)
        if view is not None:
            transpose_into(view, out)
        else:
            read_transposed(_getter_address(dtype), _attr_pointer(attr), rows, cols, out)
        return out
    return np.ascontiguousarray(read_elements(attr).T)


@lru_cache(maxsize=None)
def _getter(dtype: np.dtype) -> Any:
    """MLIR's C getter of one element of a resource blob of ``dtype``, as a ctypes function."""
    _, ctype = _GETTERS[dtype]
    return ctypes.CFUNCTYPE(ctype, ctypes.c_void_p, ctypes.c_ssize_t)(_getter_address(dtype))


def resource_view(attr: ir.Attribute) -> np.ndarray | None:
    """A read-only, zero-copy view of a ``dense_resource`` attribute's elements
    (shaped, f16/bf16 included), or ``None`` when the blob's bytes cannot be
    found and checked (:func:`tasdc.blob_reader.blob_view`); the view keeps
    the attribute's context alive."""
    from tasdc.blob_reader import blob_view

    attr = as_elements_attr(attr) or attr
    if not isinstance(attr, ir.DenseResourceElementsAttr):
        return None
    shaped = ir.ShapedType(attr.type)
    dtype = element_dtype(shaped.element_type)
    half = dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16")
    raw = np.dtype(np.uint16) if half else dtype
    if raw not in _GETTERS or raw == np.bool_ or not shaped.has_static_shape:
        return None
    count = int(np.prod(shaped.shape, dtype=np.int64))
    view = blob_view(attr, raw, count, resource_key(attr), _getter(raw))
    if view is None:
        return None
    return view.view(dtype).reshape(shaped.shape) if half else view.reshape(shaped.shape)


def _attr_pointer(attr: ir.Attribute) -> int:
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return int(get_pointer(attr._CAPIPtr, _CAPSULE_NAME))


def as_elements_attr(attr: ir.Attribute) -> ir.Attribute | None:
    """``attr`` as a DenseResourceElementsAttr or DenseElementsAttr, else None.

    The bindings do not downcast resource attributes by themselves.
    """
    for cls in (ir.DenseResourceElementsAttr, ir.DenseElementsAttr):
        if isinstance(attr, cls):
            return attr
        try:
            return cls(attr)
        except (ValueError, TypeError):
            continue
    return None


_RESOURCE_KEY = re.compile(r'^dense_resource<(?P<key>"[^"]*"|[^>]*)>')


def resource_key(attr: ir.Attribute) -> str:
    """The blob key of a ``dense_resource`` attribute, as MLIR prints it.

    The C API has no accessor for it (``mlirDenseResourceElementsAttrGetName``
    is the attribute kind's name), so it is read from the attribute's own
    printed form, ``dense_resource<KEY> : type``.
    """
    match = _RESOURCE_KEY.match(str(attr))
    return match["key"].strip('"') if match else ""


def element_byte_size(element_type: ir.Type) -> int | None:
    """Bytes per element of a ``dense_resource`` blob of this type (None: not sizeable)."""
    if isinstance(element_type, ir.IntegerType):
        return 1 if element_type.width == 1 else (element_type.width + 7) // 8
    if isinstance(element_type, ir.IndexType):
        return 8
    width = getattr(element_type, "width", None)
    if isinstance(width, int) and width > 0:  # every ir.FloatType
        return (width + 7) // 8
    return None


# The largest alignment a blob header may ask for. MLIR allocates each blob
# with its header's alignment, and an absurd one fails (0 aborts the process).
MAX_BLOB_ALIGNMENT = 4096


@dataclass(frozen=True)
class BlobInfo:
    """What the file says about one resource blob: its header and data size."""

    alignment: int
    nbytes: int
    line: int


def check_resource_blobs(module: ir.Module, blobs: dict[str, BlobInfo], filename: str, reparsed: bool = False) -> None:
    """Every ``dense_resource`` in ``module`` has a blob of exactly its size.

    MLIR does not check this, and its element getters index the blob without
    bounds checks: a missing or short blob would make every later read (passes,
    verifiers, kernels) read memory outside it. ``blobs`` comes from
    :func:`tasdc.module.scan_resource_blobs` on the parsed text. ``reparsed``
    says the context held parsed blobs before this parse, so MLIR may have
    renamed this file's keys (``key_1``, …); only then is a key looked up
    under its un-suffixed name (a missing ``w_2`` next to a present ``w`` in
    a fresh context is missing, not renamed).
    """
    from tasdc.diagnostics import resolve_location

    problem: list[str] = []

    def fail(op: ir.Operation, attr: ir.Attribute, what: str) -> None:
        file, line, col = resolve_location(op.location)
        file = file if file and file != "-" else filename
        where = f"{file}:{line}:{col}" if line else filename
        problem.append(f"{where}: '{op.name}' value {attr}: {what}")

    def visit(op: ir.Operation) -> ir.WalkResult:
        for named in op.attributes:
            attr = op.attributes[getattr(named, "name", named)]
            if not isinstance(attr, ir.DenseResourceElementsAttr):
                try:
                    attr = ir.DenseResourceElementsAttr(attr)
                except (ValueError, TypeError):
                    continue
            key = resource_key(attr)
            shaped = ir.ShapedType(attr.type)
            info = blobs.get(key)
            # Parsing into a context that already holds a blob of the same key
            # renames the new one key_1, key_2, …; look up the file's key.
            base = key
            while info is None and reparsed and re.fullmatch(r".+_\d+", base):
                base = base.rsplit("_", 1)[0]
                info = blobs.get(base)
            if info is None:
                fail(op, attr, f"its blob '{key}' is missing from the file's dialect_resources")
                return ir.WalkResult.INTERRUPT
            size = element_byte_size(shaped.element_type)
            if size is None:
                fail(op, attr, f"unsupported element type {shaped.element_type} for a resource blob")
                return ir.WalkResult.INTERRUPT
            if not shaped.has_static_shape:
                fail(op, attr, "a resource blob needs a static shape")
                return ir.WalkResult.INTERRUPT
            need = int(np.prod(shaped.shape, dtype=np.int64)) * size
            if info.nbytes != need:
                fail(op, attr, f"its blob '{key}' (line {info.line}) holds {info.nbytes} bytes, the type needs {need}")
                return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if problem:
        raise InputError(problem[0])


def read_elements(attr: ir.Attribute, copy: bool = True) -> np.ndarray:
    """The contents of a dense or dense-resource elements attribute as numpy.

    Without ``copy`` a resource may come back as a read-only view of its
    blob (:func:`resource_view`): for readers that never write to it.
    """
    attr = as_elements_attr(attr) or attr
    shaped = ir.ShapedType(attr.type)
    dtype = element_dtype(shaped.element_type)
    shape = tuple(shaped.shape)
    if isinstance(attr, ir.DenseResourceElementsAttr):
        view = resource_view(attr)
        if view is not None:
            return view.copy() if copy else view
        if dtype.kind == "f" and dtype.itemsize == 2 or dtype.name == "bfloat16":
            # Half-precision blobs: read the 16-bit patterns (the getter only
            # copies bytes) and reinterpret them.
            bits = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=np.uint16)
            _reader(np.dtype(np.uint16))(_attr_pointer(attr), bits.size, bits)
            return bits.view(dtype).reshape(shape)
        if dtype not in _GETTERS:
            raise UnsupportedElementType(f"cannot read dense_resource of {shaped.element_type}")
        out = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=dtype)
        _reader(dtype)(_attr_pointer(attr), out.size, out)
        return out.reshape(shape)
    if isinstance(attr, ir.DenseElementsAttr):
        if attr.is_splat:
            splat = attr.get_splat_value()
            scalar = splat.value if hasattr(splat, "value") else splat
            return np.full(shape, scalar, dtype=dtype)
        return np.array(attr, copy=True).astype(dtype, copy=False).reshape(shape)
    raise TypeError(f"not an elements attribute: {attr}")


# True while MLIR parses (and verifies) text whose blobs are not checked yet.
_BLOBS_UNCHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("blobs_unchecked", default=False)


@contextlib.contextmanager
def blobs_unchecked() -> Iterator[None]:
    """While active, :func:`constant_elements` does not read ``dense_resource``
    blobs (verifiers that run inside ``Module.parse`` skip content checks; the
    caller checks the blobs and verifies again)."""
    token = _BLOBS_UNCHECKED.set(True)
    try:
        yield
    finally:
        _BLOBS_UNCHECKED.reset(token)


def constant_elements(value: ir.Value) -> np.ndarray | None:
    """The elements of ``value`` when it is an ``arith.constant`` tensor, else None."""
    owner = value.owner
    if not isinstance(owner, ir.OpView) or owner.name != "arith.constant":
        return None
    attr = as_elements_attr(owner.attributes["value"])
    if attr is None:
        return None
    if _BLOBS_UNCHECKED.get() and isinstance(attr, ir.DenseResourceElementsAttr):
        return None
    return read_elements(attr)


def make_elements(array: np.ndarray, name: str, tensor_type: ir.RankedTensorType | None = None) -> ir.Attribute:
    """A ``dense_resource`` attribute over ``array``, without a copy.

    ``get_from_buffer`` keeps a reference to the buffer for as long as MLIR
    holds the blob (checked: the refcount rises and the data survives the
    caller's last reference), so the array must only never be mutated.
    """
    array = np.ascontiguousarray(array)
    if tensor_type is None:
        tensor_type = ir.RankedTensorType.get(list(array.shape), mlir_element_type(array.dtype))
    return ir.DenseResourceElementsAttr.get_from_buffer(memoryview(array), name, tensor_type)


def mlir_element_type(dtype: np.dtype) -> ir.Type:
    """The MLIR element type of a numpy dtype (signless integers)."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return ir.F32Type.get()
    if dtype == np.float64:
        return ir.F64Type.get()
    if dtype.kind in "iu":
        return ir.IntegerType.get_signless(dtype.itemsize * 8)
    if dtype == np.bool_:
        return ir.IntegerType.get_signless(1)
    raise TypeError(f"unsupported dtype {dtype}")
