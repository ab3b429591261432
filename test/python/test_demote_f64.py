"""``tasd-cpu-demote-f64`` on torch's LayerNorm (torch-mlir computes its variance in f64).

Tolerance: with the variance summed in f32 (two-pass, centered) its relative
error is at most about ``n·u`` (``u = 2⁻²⁴``, ``n`` = the normalized width),
which reaches the output through ``rsqrt`` halved; the other steps add a few
``u``. Against torch in float64 the test allows ``(n + 16)·u`` relative to
``max(1, |y|)`` (4.7e-5 at n = 768): independent of the CPU, the BLAS kernel
(there is no contraction) and the thread count.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.module import clone_module
from tasdc.passes.demote_f64 import DemoteF64
from tasdc.runtime.cpu.executor import compile_for_cpu

U = 2.0 ** -24


@pytest.mark.parametrize("width", [64, 768])
def test_layer_norm_in_f32_matches_torch(width: int) -> None:
    model = torch.nn.LayerNorm(width).eval()
    with torch.no_grad():
        model.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
        model.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    x = 3 + 2 * torch.randn(4, 8, width, generator=torch.Generator().manual_seed(2))
    result = compile_model(model, (x,), CompileOptions(config="dense"))
    assert "xf64>" in str(result.module), "torch-mlir no longer computes the variance in f64: this test needs a new input"
    probe = clone_module(result.module)
    DemoteF64().run(probe)
    assert "xf64>" not in str(probe)
    got = compile_for_cpu(result.module, cache=False)(x.numpy())
    with torch.no_grad():
        exact = torch.nn.functional.layer_norm(x.double(), (width,), model.weight.double(), model.bias.double(), model.eps).numpy()
    tol = (width + 16) * U
    err = np.abs(got.astype(np.float64) - exact)
    assert np.all(err <= tol * np.maximum(1.0, np.abs(exact))), f"max err {err.max()}, allowed {tol}"
