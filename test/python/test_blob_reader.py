"""The blob readers (tasdc/blob_reader.py: llvmlite loops over MLIR's
per-element C getter) copy every element type exactly, flat and transposed,
including empty and odd shapes (not multiples of the 64 x 64 blocks)."""

from __future__ import annotations

import numpy as np
import pytest
from torch_mlir import ir

from tasdc.elements import make_elements, read_elements, read_elements_transposed
from tasdc.module import new_context


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(130, 70), (64, 64), (1, 5), (0, 3), (3, 0)])
def test_reads_are_exact_copies(dtype, shape) -> None:
    data = (np.arange(int(np.prod(shape))).reshape(shape) * 7 % 120 - 60).astype(dtype)
    with new_context(), ir.Location.unknown():
        attr = make_elements(data, "w")
        flat = read_elements(attr)
        transposed = read_elements_transposed(attr)
    assert flat.dtype == data.dtype and transposed.dtype == data.dtype
    np.testing.assert_array_equal(flat, data)
    assert transposed.flags.c_contiguous
    np.testing.assert_array_equal(transposed, data.T)


def test_half_precision_bits_are_copied() -> None:
    data = np.linspace(-3, 3, 40, dtype=np.float16).reshape(5, 8)
    with new_context(), ir.Location.unknown():
        attr = ir.DenseResourceElementsAttr.get_from_buffer(memoryview(data), "h", ir.RankedTensorType.get([5, 8], ir.F16Type.get()))
        got = read_elements(attr)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), data.view(np.uint16))
