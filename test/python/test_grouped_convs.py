"""Grouped convolutions' filters are decomposed (``tasd-split-grouped-convs`` when a series is given).

torch-mlir lowers ``nn.Conv2d(groups=G)`` to ``linalg.conv_2d_ngchw_gfchw``,
which TASD has no form for: ResNeXt, RegNet, SqueezeBERT and ShuffleNet
layers stayed dense. Split into one ``conv_2d_nchw_fchw`` per group, each
group's filter ``[O, C/G, KH, KW]`` is decomposed along ``C/G·KH·KW``; a dense
compile keeps the grouped op (its runtime entry is faster).

Tolerances: float32 sums of at most ``C/G·KH·KW = 36`` products per conv,
through BatchNorm, in different orders (torch vs the CPU runtime):
``atol = rtol = 1e-5`` relative to the output's scale. The lossy ``2:4`` is
compared with torch run on the 2:4-approximated filters: a grouped filter's
rows are its output channels, each reduced over its own group, so
approximating ``W.reshape(F, -1)`` row by row is the per-group approximation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.decompose import decompose, parse_config

TOL = 1e-5


class GroupedBlock(torch.nn.Module):
    """ResNeXt-like: 1x1, grouped 3x3 with stride 2 and BatchNorm, dilated grouped 3x3, grouped 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(16, 32, 1, bias=False)
        self.b = torch.nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=8, bias=False)
        self.bn = torch.nn.BatchNorm2d(32)
        self.c = torch.nn.Conv2d(32, 24, 3, padding=2, dilation=2, groups=4)
        self.d = torch.nn.Conv2d(24, 24, 1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.b(torch.relu(self.a(x)))))
        return self.d(torch.relu(self.c(y)))


def _model_and_input() -> tuple[GroupedBlock, torch.Tensor]:
    torch.manual_seed(0)
    model = GroupedBlock().eval()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(2, 16, 16, 16)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, atol=TOL * float(np.abs(want).max()), rtol=TOL)


def test_dense_keeps_grouped_convs() -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions())
    assert compiled.mlir().count("= linalg.conv_2d_ngchw_gfchw") == 3
    with torch.no_grad():
        _close(compiled(x.numpy()), model(x).numpy())


def test_lossless_series_per_group_matches_torch() -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions(config="2:4+2:4"))
    assert "conv_2d_ngchw_gfchw" not in compiled.mlir()
    rows = compiled.report.layers
    assert len(rows) == 1 + 8 + 4 + 2  # the 1x1, then one layer per group
    assert all(row.op == "tasd.series" and row.stats["lossless"] for row in rows)
    with torch.no_grad():
        _close(compiled(x.numpy()), model(x).numpy())


def test_lossy_matches_torch_with_approximated_filters() -> None:
    model, x = _model_and_input()
    compiled = compile_model(model, (x,), CompileOptions(config="2:4"))
    assert sum(row.op == "tasd.series" for row in compiled.report.layers) == 15
    series = parse_config("2:4")
    with torch.no_grad():
        for conv in (model.a, model.b, model.c, model.d):
            w = conv.weight.numpy()
            approx = decompose(np.ascontiguousarray(w.reshape(w.shape[0], -1)), series, 1).approximation
            conv.weight.copy_(torch.from_numpy(approx.reshape(w.shape)))
        _close(compiled(x.numpy()), model(x).numpy())


@pytest.mark.parametrize("groups", [65])
def test_more_groups_than_the_limit_stay_grouped(groups: int) -> None:
    model = torch.nn.Conv2d(groups, groups * 2, 3, groups=groups).eval()
    compiled = compile_model(model, (torch.randn(1, groups, 5, 5),), CompileOptions(config="2:4"))
    assert "= linalg.conv_2d_ngchw_gfchw" in compiled.mlir()
    assert [row.op for row in compiled.report.layers] == ["linalg.conv_2d_ngchw_gfchw"]
