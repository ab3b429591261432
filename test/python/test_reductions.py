"""Softmax and layer norm through the CPU lowering with vectorized reductions
(``tasd-cpu-reassociate-reductions``, ``tasd-cpu-expand-exp``), against torch in float64.

Tolerances (``u = 2⁻²⁴``):

* softmax row of width ``n``: ``x − max`` is rounded (``u`` relative), which
  ``exp`` turns into ``|x − max|·u`` relative error; ``exp`` itself is within
  1 ulp (``2u``); the row sum of positive terms, in any order, is within
  ``n·u`` of exact relative to itself; the division adds ``u``. So each
  output is within ``(|x − max| + n + 4)·u`` relative to the float64 value,
  and each row sums to 1 within ``(max|x − max| + 2n + 4)·u`` — both hold
  in any summation order (any CPU, vector width, thread count).
* layer norm of width ``n``: the test of ``tasd-cpu-demote-f64``'s bound,
  ``(n + 16)·u`` relative to ``max(1, |y|)`` (sums of n terms in any order).

Odd widths leave a remainder after the vectorized part of each row; a
large-magnitude row underflows most exponentials to 0; ``-inf`` entries
(a masked attention row) give exact zeros.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.runtime.cpu.executor import compile_for_cpu

U = 2.0 ** -24


class Softmax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, -1)


def _softmax_input(rows: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    x = 4 * torch.randn(rows, n, generator=g)
    x[1] *= 1000.0  # most exponentials underflow
    x[2, 1::3] = -torch.inf  # masked positions (the row keeps finite ones)
    x[3] = 7.0  # a constant row: exactly 1/n each
    return x


FAST = "tasd-cpu-to-llvm"
REFERENCE = "tasd-cpu-to-llvm{reassociate=false expand-exp=false}"  # scalar loops, libm expf


@pytest.mark.parametrize(("n", "lowering"), [(1, FAST), (8, FAST), (77, FAST), (128, FAST), (77, REFERENCE)])
def test_softmax_matches_torch_f64(n: int, lowering: str) -> None:
    x = _softmax_input(16, n)
    result = compile_model(Softmax(), (x,), CompileOptions(config="dense"))
    got = compile_for_cpu(result.module, cache=False, lowering=lowering)(x.numpy()).astype(np.float64)
    exact = torch.softmax(x.double(), -1).numpy()
    xs = x.double().numpy()
    spread = np.where(np.isfinite(xs), xs.max(axis=1, keepdims=True) - xs, 0.0)
    assert np.all(got[2, 1::3] == 0.0) and np.all(got >= 0)
    np.testing.assert_allclose(got[3], 1.0 / n, rtol=(n + 4) * U, atol=0)
    err = np.abs(got - exact)
    assert np.all(err <= (spread + n + 4) * U * exact + 1e-38), f"max rel err {np.max(err / np.maximum(exact, 1e-38))}"
    row_tol = (spread.max(axis=1) + 2 * n + 4) * U
    assert np.all(np.abs(got.sum(axis=1) - 1.0) <= row_tol)


@pytest.mark.parametrize("width", [77, 768])
def test_layer_norm_matches_torch_f64(width: int) -> None:
    model = torch.nn.LayerNorm(width).eval()
    with torch.no_grad():
        model.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
        model.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    x = 3 + 2 * torch.randn(4, 8, width, generator=torch.Generator().manual_seed(2))
    result = compile_model(model, (x,), CompileOptions(config="dense"))
    got = compile_for_cpu(result.module, cache=False)(x.numpy())
    with torch.no_grad():
        exact = torch.nn.functional.layer_norm(x.double(), (width,), model.weight.double(), model.bias.double(), model.eps).numpy()
    err = np.abs(got.astype(np.float64) - exact)
    tol = (width + 16) * U
    assert np.all(err <= tol * np.maximum(1.0, np.abs(exact))), f"max err {err.max()}, allowed {tol}"
