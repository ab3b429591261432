"""``nn.Conv1d`` weights are decomposed (``tasd-conv1d-as-conv2d`` at import) and run.

Before, ``linalg.conv_1d_ncw_fcw`` was reported as "no TASD form" and stayed
dense (wav2vec2's and Whisper's front-ends, temporal CNNs). As a 2-D
convolution of unit height, its filter ``[F, C, K]`` is decomposed along
``C·K`` like a 2-D filter along ``C·KH·KW``.

Tolerances: every output is a float32 sum of at most ``C·K = 160`` products,
computed by torch and by the CPU runtime in different orders: the difference
stays within a few ulp of the sum of |products| (< 1e-5 here), hence
``atol = rtol = 1e-5``. The lossy ``2:4`` is compared with torch run on the
same 2:4-approximated filters (``tasdc.decompose``), so the same tolerance holds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.decompose import decompose, parse_config

TOL = 1e-5


class TemporalCNN(torch.nn.Module):
    """Dilated + padded, strided and 1x1 1-D convolutions, with biases and ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv1d(16, 32, 3, padding=2, dilation=2)
        self.b = torch.nn.Conv1d(32, 32, 5, stride=2)
        self.c = torch.nn.Conv1d(32, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _model_and_input() -> tuple[TemporalCNN, torch.Tensor]:
    torch.manual_seed(0)
    return TemporalCNN().eval(), torch.randn(4, 16, 50)


@pytest.mark.parametrize("config", ["dense", "2:4+2:4"])
def test_conv1d_matches_torch(config: str) -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions(config=config))
    assert "linalg.conv_1d" not in compiled.mlir()
    rows = compiled.report.layers
    assert [row.stats["kind"] for row in rows] == ["conv2d"] * 3
    if config != "dense":
        assert all(row.op == "tasd.series" and row.stats["lossless"] for row in rows)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), want, atol=TOL, rtol=TOL)


def test_conv1d_lossy_matches_torch_with_approximated_filters() -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions(config="2:4"))
    assert [row.op for row in compiled.report.layers] == ["tasd.series"] * 3
    series = parse_config("2:4")
    with torch.no_grad():
        for conv in (model.a, model.b, model.c):
            w = conv.weight.numpy()
            approx = decompose(np.ascontiguousarray(w.reshape(w.shape[0], -1)), series, 1).approximation
            conv.weight.copy_(torch.from_numpy(approx.reshape(w.shape)))
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), want, atol=TOL, rtol=TOL)
