"""``nn.ConvTranspose2d`` filters are decomposed (``tasd-fold-weight-gathers`` at import).

torch-mlir lowers a transposed convolution to a convolution over the
zero-upsampled input whose filter ``F[o, i, h, w] = W[i, o, KH-1-h, KW-1-w]``
is gathered from the parameter by a ``linalg.generic`` on every call; the
contraction scan saw a run-time filter ("the filter is a run-time value") and
left it dense. Folded to a constant at import, it is decomposed along
``C·KH·KW`` of ``F`` like any 2-D filter.

Tolerances: float32 sums of at most ``C·KH·KW = 144`` products in different
orders (torch vs the CPU runtime): ``atol = rtol = 1e-5``. The lossy ``2:4`` is
compared with torch run on filters whose ``F`` is replaced by its 2:4
approximation (``tasdc.decompose``), mapped back to the parameter's layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.decompose import decompose, parse_config

TOL = 1e-5


class Decoder(torch.nn.Module):
    """Two upsampling transposed convolutions (odd and even kernels, output padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        self.b = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _model_and_input() -> tuple[Decoder, torch.Tensor]:
    torch.manual_seed(0)
    return Decoder().eval(), torch.randn(2, 16, 7, 7)


@pytest.mark.parametrize("config", ["dense", "2:4+2:4"])
def test_conv_transpose_matches_torch(config: str) -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions(config=config))
    assert "tensor.extract" not in compiled.mlir()  # no filter gathered at run time
    rows = compiled.report.layers
    assert len(rows) == 2
    if config != "dense":
        assert all(row.op == "tasd.series" and row.stats["lossless"] for row in rows)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), want, atol=TOL, rtol=TOL)


def test_conv_transpose_lossy_matches_torch_with_approximated_filters() -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions(config="2:4"))
    assert [row.op for row in compiled.report.layers] == ["tasd.series"] * 2
    series = parse_config("2:4")
    with torch.no_grad():
        for conv in (model.a, model.b):
            f = conv.weight.transpose(0, 1).flip(2, 3).numpy()  # the convolution's filter [out, in, kh, kw]
            approx = decompose(np.ascontiguousarray(f.reshape(f.shape[0], -1)), series, 1).approximation
            conv.weight.copy_(torch.from_numpy(approx.reshape(f.shape)).flip(2, 3).transpose(0, 1))
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), want, atol=TOL, rtol=TOL)


class Upsampler1d(torch.nn.Module):
    """``nn.ConvTranspose1d`` (HiFi-GAN-style upsampling): torch-mlir makes it a 2-D convolution
    of unit height whose gathered filter reaches it through a reshape, folded the same way."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


@pytest.mark.parametrize("config", ["dense", "2:4+2:4"])
def test_conv_transpose1d_matches_torch(config: str) -> None:
    torch.manual_seed(0)
    model, x = Upsampler1d().eval(), torch.randn(2, 16, 20)
    compiled = compile_model(model, (x,), CompileOptions(config=config))
    assert "tensor.extract" not in compiled.mlir()
    (row,) = compiled.report.layers
    assert row.stats.get("kind") == "conv2d", row.stats  # before: skipped, "the filter is a run-time value"
    if config != "dense":
        assert row.op == "tasd.series" and row.stats["lossless"]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), want, atol=TOL, rtol=TOL)
