"""Read and create the weight constants of a module.

torch-mlir materialises weights as ``dense_resource`` attributes, which the
Python bindings cannot read as buffers. :func:`read_elements` reads them
through MLIR's C API (``mlirDense*ResourceElementsAttrGetValue``) from a
Numba loop, which costs a few nanoseconds an element; plain
``DenseElementsAttr`` constants are read through the buffer protocol.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import Any, Callable

import numpy as np
from torch_mlir import ir
import torch_mlir._mlir_libs as _mlir_libs

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
    raise TypeError(f"unsupported element type {element_type}")


@lru_cache(maxsize=None)
def _reader(dtype: np.dtype) -> Callable[[int, int, np.ndarray], None]:
    import numba

    suffix, ctype = _GETTERS[dtype]
    lib = ctypes.CDLL(os.path.join(os.path.dirname(_mlir_libs.__file__), "libTorchMLIRAggregateCAPI.so"))
    cfn = getattr(lib, f"mlirDense{suffix}ResourceElementsAttrGetValue")
    address = ctypes.cast(cfn, ctypes.c_void_p).value
    getter = ctypes.CFUNCTYPE(ctype, ctypes.c_void_p, ctypes.c_ssize_t)(address)

    @numba.njit(cache=False)
    def read(attr_ptr: int, count: int, out: np.ndarray) -> None:  # pragma: no cover - jitted
        for i in range(count):
            out[i] = getter(attr_ptr, i)

    return read


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


def read_elements(attr: ir.Attribute) -> np.ndarray:
    """The contents of a dense or dense-resource elements attribute as numpy."""
    attr = as_elements_attr(attr) or attr
    shaped = ir.ShapedType(attr.type)
    dtype = element_dtype(shaped.element_type)
    shape = tuple(shaped.shape)
    if isinstance(attr, ir.DenseResourceElementsAttr):
        if dtype.kind == "f" and dtype.itemsize == 2 or dtype.name == "bfloat16":
            # Half-precision blobs: read the 16-bit patterns (the getter only
            # copies bytes) and reinterpret them.
            bits = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=np.uint16)
            _reader(np.dtype(np.uint16))(_attr_pointer(attr), bits.size, bits)
            return bits.view(dtype).reshape(shape)
        if dtype not in _GETTERS:
            raise TypeError(f"cannot read dense_resource of {shaped.element_type}")
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


def constant_elements(value: ir.Value) -> np.ndarray | None:
    """The elements of ``value`` when it is an ``arith.constant`` tensor, else None."""
    owner = value.owner
    if not isinstance(owner, ir.OpView) or owner.name != "arith.constant":
        return None
    attr = as_elements_attr(owner.attributes["value"])
    if attr is None:
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
