"""``nn.Bilinear``'s weight is a contraction weight: decomposed, reported and run.

torch decomposes ``aten.bilinear`` into ``aten._trilinear``, which torch-mlir lowers
to broadcast products and sums: the weight was in no contraction, so it was absent
from the report and never decomposed. tasdc's decomposition
(``tasdc/torch_decompositions.py``) makes it the right operand of one matmul,
``x1 · W'[in1, out·in2]`` (``W'[i, o·in2 + j] = W[o, i, j]``), whose result is
multiplied by ``x2`` and summed over ``j``. Its N:M groups run along ``in1``.

Tolerance: float32 sums of 8×12 products in another order than torch's; the
lossless series holds the same weights, and the lossy ``2:4`` is compared with
torch running the weight approximated by ``tasdc.decompose`` along ``in1``.
Observed ≤ 3e-7 relative to the largest output; ``atol = rtol = 1e-5``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tasdc.compiler import CompileOptions, compile_model
from tasdc.decompose import decompose

TOL = 1e-5


class Pair(nn.Module):
    """``nn.Bilinear(8, 12, 4)`` on inputs with two leading dimensions."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.pair = nn.Bilinear(8, 12, 4, bias=bias)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.pair(a, b)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 12, generator=g)


@pytest.mark.parametrize("config,bias", [("dense", True), ("2:4+2:4", False), ("2:4+2:4", True)])
def test_bilinear_weight_in_a_contraction(config: str, bias: bool) -> None:
    torch.manual_seed(0)
    model = Pair(bias).eval()
    inputs = _inputs()
    with torch.no_grad():
        want = model(*inputs).numpy()
    compiled = compile_model(model, inputs, CompileOptions(config=config))
    (row,) = compiled.report.layers
    assert row.stats["kind"] == "matmul" and row.stats["gemm"][1:3] == [4 * 12, 8]  # N = out·in2, K = in1
    if config != "dense":
        assert row.op == "tasd.series" and row.stats["lossless"]
    np.testing.assert_allclose(compiled(*(t.numpy() for t in inputs)), want, atol=TOL, rtol=TOL)


def test_bilinear_lossy_matches_torch_with_approximated_weight() -> None:
    torch.manual_seed(0)
    model = Pair().eval()
    inputs = _inputs()
    compiled = compile_model(model, inputs, CompileOptions(config="2:4"))
    assert not compiled.report.layers[0].stats["lossless"]
    with torch.no_grad():
        w = model.pair.weight.numpy()  # [out, in1, in2], N:M groups along in1
        approx = decompose(np.ascontiguousarray(w), "2:4", 1).approximation
        model.pair.weight.copy_(torch.from_numpy(approx))
        want = model(*inputs).numpy()
    np.testing.assert_allclose(compiled(*(t.numpy() for t in inputs)), want, atol=TOL, rtol=TOL)
