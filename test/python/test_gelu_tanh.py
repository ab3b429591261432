"""GELU with the tanh approximation (``nn.GELU(approximate="tanh")``, transformers'
``gelu_pytorch_tanh``: Gemma, …) against torch.

torch-mlir lowers it as ``0.5 x (1 + tanh(c (x + 0.044715 x^3)))`` with
``c = 0.7977240352174656`` instead of ``sqrt(2/pi) = 0.7978845608…``; the
importer puts the right constant back (``fix_gelu_tanh_constant``). With the
wrong one the outputs were up to 5e-5 off at |x| ~ 1.3.

Tolerance: both sides evaluate the same float32 formula (torch's CPU kernel in
float32, libm ``tanhf`` vs LLVM's); each of its ~8 operations rounds once, the
tanh is within a few ulp, so |Δy| stays below ~8 ulp of |y| ≤ 6:
``atol = 1e-6``, ``rtol = 1e-6``. Before the fix: 5.1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torch_mlir import ir

from tasdc.compiler import CompileOptions, compile_model

GELU_TANH_BETA = math.sqrt(2 / math.pi)
TORCH_MLIR_GELU_TANH_BETA = 0.7977240352174656  # what torch-mlir writes


class Gelu(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


def _float_constants(module: ir.Module) -> list[float]:
    values: list[float] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "arith.constant" and isinstance(op.attributes["value"], ir.FloatAttr):
            values.append(ir.FloatAttr(op.attributes["value"]).value)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_is_sqrt_two_over_pi(dtype: torch.dtype) -> None:
    compiled = compile_model(Gelu(), (torch.zeros(1, 8, dtype=dtype),), CompileOptions())
    np_type = np.float32 if dtype == torch.float32 else np.float64
    values = _float_constants(compiled.module)
    assert float(np_type(GELU_TANH_BETA)) in values
    assert float(np_type(TORCH_MLIR_GELU_TANH_BETA)) not in values


def test_gelu_tanh_matches_torch() -> None:
    x = torch.linspace(-6, 6, 4001).reshape(1, -1)
    got = compile_model(Gelu(), (x,), CompileOptions())(x.numpy())
    np.testing.assert_allclose(got, Gelu()(x).numpy(), atol=1e-6, rtol=1e-6)


def test_other_uses_of_the_value_are_left_alone() -> None:
    """A model's own constant of that value, not scaling a tanh argument, is not touched."""

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * TORCH_MLIR_GELU_TANH_BETA

    x = torch.linspace(-2, 2, 16).reshape(1, -1)
    got = compile_model(Scale(), (x,), CompileOptions())(x.numpy())
    np.testing.assert_array_equal(got, Scale()(x).numpy())


def test_onnx_gelu_tanh_matches_torch(tmp_path) -> None:
    """ONNX's ``Gelu(approximate="tanh")`` goes through the same torch-mlir decomposition
    (``torch-onnx-to-torch`` makes it ``aten.gelu``): fixed on that path too (5.1e-5 before)."""
    import onnx
    from onnx import TensorProto, helper

    x = torch.linspace(-6, 6, 4001).reshape(1, -1)
    graph = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")], "gelu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4001])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4001])])
    path = tmp_path / "gelu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    compiled = compile_model(path, options=CompileOptions())
    assert float(np.float32(TORCH_MLIR_GELU_TANH_BETA)) not in _float_constants(compiled.module)
    np.testing.assert_allclose(compiled(x.numpy()), Gelu()(x).numpy(), atol=1e-6, rtol=1e-6)
