"""``torch.compile(model, backend=tasdc.dynamo_backend(...))`` on the zoo.

The zoo models are compiled with the lossless series 2:4+2:4 (any 4-block
holds at most 4 non-zeros), so tasdc's output must equal eager PyTorch up to
float32 summation order: rtol = atol = 1e-4 on logits of magnitude ~1-10, as
in test_cpu_runtime.py (observed ~1e-5).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import tasdc
from conftest import MODELS, ROOT
from tasdc.dynamo import TasdcFallbackWarning
from tasdc.errors import TasdcError
from tasdc.importer import load_exported_program

RTOL = ATOL = 1e-4


def zoo_model(example_dir: Path, name: str) -> torch.nn.Module:
    sys.path.insert(0, str(ROOT / "examples"))
    from build_models import build

    model = build(name)
    model.load_state_dict(load_exported_program(example_dir / f"{name}.pt2").state_dict)
    return model.eval()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", MODELS)
def test_zoo_matches_eager(example_dir: Path, name: str) -> None:
    model = zoo_model(example_dir, name)
    x = torch.from_numpy(np.load(example_dir / f"{name}-eval.npz")["x"][:16])
    backend = tasdc.dynamo_backend(config="2:4+2:4")
    compiled = torch.compile(model, backend=backend, dynamic=False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", TasdcFallbackWarning)
        got, want = compiled(x), model(x)
    assert [g.compiled for g in backend.graphs] == [True], [g.reason for g in backend.graphs]
    layers = backend.graphs[0].result.report.layers
    assert any(r.op == "tasd.series" and r.stats["config"] == "2:4+2:4" for r in layers)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL, atol=ATOL)


class TwoHalves(torch.nn.Module):
    """Two Linear layers with a graph break between them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(16, 32), torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        torch._dynamo.graph_break()
        return self.b(h)


def test_graph_break_compiles_both_graphs() -> None:
    model = TwoHalves().eval()
    x = torch.randn(4, 16)
    backend = tasdc.dynamo_backend(config="2:4+2:4")
    with torch.no_grad():
        got, want = torch.compile(model, backend=backend, dynamic=False)(x), model(x)
    assert [g.compiled for g in backend.graphs] == [True, True]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL, atol=ATOL)


class TwoOutputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.a(x)
        return y, y.sum(dim=1)


def test_untakeable_graph_falls_back_with_reason() -> None:
    model = TwoOutputs().eval()
    x = torch.randn(4, 16)
    backend = tasdc.dynamo_backend(config="2:4")
    with torch.no_grad(), pytest.warns(TasdcFallbackWarning, match="graph 0 runs in eager mode: the graph returns 2 values"):
        got = torch.compile(model, backend=backend, dynamic=False)(x)
    want = model(x)
    assert backend.graphs[0].compiled is False
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # eager ran it: the same code on both sides


def test_gradients_fall_back() -> None:
    model = torch.nn.Linear(16, 8)
    with pytest.warns(TasdcFallbackWarning, match="inference graphs"):
        torch.compile(model, backend=tasdc.dynamo_backend(config="2:4"), dynamic=False)(torch.randn(4, 16))


def test_bad_options_raise_at_once() -> None:
    with pytest.raises(TasdcError, match="3:2"):
        tasdc.dynamo_backend(config="3:2")
    with pytest.raises(TasdcError, match="quality needs target"):
        tasdc.dynamo_backend(quality=0.99)


def test_tasder_backend_meets_bound(example_dir: Path) -> None:
    """TASDER through torch.compile: per-layer series, measured on the calibration inputs."""
    model = zoo_model(example_dir, "mlp")
    calib = np.load(example_dir / "mlp-calib.npz")["x"][:64]
    backend = tasdc.dynamo_backend(target="vegeta", quality=0.99, calib=calib)
    compiled = torch.compile(model, backend=backend, dynamic=False)
    x = torch.from_numpy(calib[:16])
    with torch.no_grad():
        got = compiled(x)
    (record,) = backend.graphs
    assert record.compiled, record.reason
    assert record.result.meets_bound is True and "calibration" in record.result.measured
    assert set(record.result.configs.values()) <= {"dense", "4:4", "2:4", "1:4", "2:4+1:4", "1:4+1:4", "2:4+2:4"}
    np.testing.assert_allclose(got.numpy(), record.result(x.numpy()), rtol=0, atol=0)  # the same compiled code
