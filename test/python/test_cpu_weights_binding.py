"""Weights bound at load time and folded broadcasts on the CPU runtime, against torch.

``compile_for_cpu`` folds a weight broadcast over a ``batch_matmul``'s batch
into one matmul (``tasd-cpu-fold-batch-broadcasts``) and passes large
constants as arguments (``tasd-cpu-bind-constants``, transposes of weights
done once at load time). Both only move data: the results must match torch
eager to f32 rounding, and the path with weights embedded in the code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.module import clone_module
from tasdc.passes.fold_batch_broadcasts import FoldBatchBroadcasts
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.runtime.cpu.executor import compile_for_cpu


def _count(module, name: str) -> int:
    found = []

    def visit(op):
        if op.name == name:
            found.append(op)
        from torch_mlir import ir

        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return len(found)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(4, 8, 32, generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.mark.parametrize("config", ["dense", "2:4"])
def test_encoder_matches_torch(encoder, config: str) -> None:
    model, x = encoder
    result = compile_model(model, (x,), CompileOptions(config=config))
    bound = compile_for_cpu(result.module, cache=False)
    if config == "dense":  # (at 2:4 the weights live in the kernels; biases here are < 1 KB)
        assert len(bound.bound) == 2 * 4, "each layer's four weight matrices must be bound arguments"
    embedded = compile_for_cpu(result.module, cache=False, bind_constants=False)
    assert not embedded.bound
    got = bound(x.numpy())
    # Same arithmetic on moved data; summation order may differ in vectorized tiles.
    np.testing.assert_allclose(got, embedded(x.numpy()), rtol=1e-5, atol=1e-5)
    if config == "dense":
        with torch.no_grad():
            expected = model(x).numpy()
        # f32 sums of <= 64 products and a softmax/layernorm per layer, in
        # another order than torch's: a few ulps of O(1) values.
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_attention_projection_broadcast_is_folded(encoder) -> None:
    model, x = encoder
    result = compile_model(model, (x,), CompileOptions(config="dense"))
    work = clone_module(result.module)
    before = _count(work, "linalg.batch_matmul")
    FoldBatchBroadcasts().run(work)
    run_pipeline(work, parse_pipeline("canonicalize", work.context))
    # One in-projection per layer was a batch_matmul on the broadcast weight;
    # the two attention products (activation x activation) stay.
    assert before == 6 and _count(work, "linalg.batch_matmul") == 4


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_transposed_read_is_the_transpose(dtype) -> None:
    from torch_mlir import ir

    from tasdc.elements import make_elements, read_elements_transposed
    from tasdc.module import new_context

    data = (np.arange(70 * 130) * 3 % 97).astype(dtype).reshape(70, 130)  # not multiples of the 64 x 64 blocks
    with new_context(), ir.Location.unknown():
        got = read_elements_transposed(make_elements(data, "w"))
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, data.T)  # a copy: exact
