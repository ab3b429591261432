"""TASD-A end to end: a ReLU MLP run with ``--act-config`` against numpy.

Reference (float64): every Linear's input is replaced by its greedy N:M
decomposition along the features (:func:`tasdc.reference.decompose_activation`,
the weights' rule), then the Linear. The runtime accumulates in float32 in
another order: its outputs differ from the reference by rounding only, a
few ulps of the output scale (hence ``1e-5`` relative to ``max |ref|``; the worst-case float32 summation bound for K <= 64 is ``2·K·2⁻²⁴ ≈ 8e-6`` of ``Σ|x||w|``) —
*provided* no kept/dropped decision of the reference is a near tie that a
last-bit difference could flip; :func:`_reference` asserts a margin of
``1e-4`` of the largest magnitude between the N-th kept and the first dropped magnitude of
every block, so the test holds on any machine.

The lossless case (every block holds <= 2 non-zeros) is compared bit for bit
with ``4:4`` (keep everything), which runs the same kernel; against the dense
build (MLIR's own matmul code, another summation order) it is compared within
the same rounding tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from tasdc.compiler import CompileOptions, compile_model
from tasdc.reference import decompose_activation


class ReluMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 48)
        self.fc3 = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _model(lossless: bool) -> ReluMLP:
    torch.manual_seed(0)
    model = ReluMLP().eval()
    if lossless:  # units 2, 3 of every 4 are always off after ReLU: hidden 4-blocks hold <= 2 non-zeros
        with torch.no_grad():
            for layer in (model.fc1, model.fc2):
                off = (torch.arange(layer.out_features) % 4) >= 2
                layer.weight[off] = 0.0
                layer.bias[off] = -1.0
    return model


def _input(lossless: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32)).astype(np.float32)
    if lossless:
        x[:, (np.arange(32) % 4) >= 2] = 0.0
    return x


def _check_margin(h: np.ndarray, n: int, m: int) -> None:
    blocks = np.sort(np.abs(h).reshape(h.shape[0], -1, m), axis=2)[:, :, ::-1]
    kept, dropped = blocks[:, :, n - 1], blocks[:, :, n]
    close = (dropped > 0) & (kept - dropped <= 1e-4 * np.abs(h).max())
    assert not close.any(), "test data has a near tie at the keep/drop boundary"


def _reference(model: ReluMLP, x: np.ndarray, config: str | None) -> np.ndarray:
    h = x.astype(np.float64)
    layers = [model.fc1, model.fc2, model.fc3]
    for i, layer in enumerate(layers):
        if config is not None:
            _check_margin(h, 2, 4)
            h = decompose_activation(h, config, 1)
        h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def test_cli_run_with_act_config_equals_numpy_reference(tmp_path: Path) -> None:
    model = _model(lossless=False)
    x = _input(lossless=False)
    pt2 = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(pt2))
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", str(pt2), "--input", str(tmp_path / "x.npy"), "--act-config", "2:4", "-o", str(tmp_path / "y.npy"))
    assert proc.returncode == 0, proc.stderr
    assert "activations 2:4" in proc.stdout
    got = np.load(tmp_path / "y.npy")
    ref = _reference(model, x, "2:4")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    dense = _reference(model, x, None)
    assert np.abs(dense - ref).max() > 1e-2 * np.abs(ref).max(), "2:4 should change a dense MLP's outputs"


def test_lossless_activations_equal_dense_run() -> None:
    model = _model(lossless=True)
    x = _input(lossless=True)
    example = (torch.from_numpy(x),)
    runs = {cfg: compile_model(model, example, CompileOptions(act_config=cfg))(x) for cfg in ("2:4", "4:4", "dense")}
    np.testing.assert_array_equal(runs["2:4"], runs["4:4"])  # one kernel computes both
    ref = _reference(model, x, None)
    for cfg in ("2:4", "dense"):
        np.testing.assert_allclose(runs[cfg], ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(runs["2:4"], runs["dense"], rtol=0, atol=2e-5 * np.abs(ref).max())


def test_bad_act_config_is_a_one_line_error(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 4), dtype=np.float32))
    proc = run_cli("run", str(tmp_path / "missing.pt2"), "--input", str(tmp_path / "x.npy"), "--act-config", "3:2")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tasdc: error: --act-config: invalid N:M pattern '3:2': N must be <= M"


def test_weights_and_activations_combined_on_cpu() -> None:
    """``--config 2:4 --act-config 2:4``: approx(x) · approx(W) on every Linear."""
    from tasdc.decompose import decompose

    model = _model(lossless=False)
    x = _input(lossless=False)
    got = compile_model(model, (torch.from_numpy(x),), CompileOptions(config="2:4", act_config="2:4"))(x)
    h = x.astype(np.float64)
    layers = [model.fc1, model.fc2, model.fc3]
    for i, layer in enumerate(layers):
        _check_margin(h, 2, 4)
        w = decompose(layer.weight.detach().numpy().T.copy(), "2:4", 0).approximation.astype(np.float64)
        h = decompose_activation(h, "2:4", 1) @ w + layer.bias.detach().double().numpy()
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    np.testing.assert_allclose(got, h, rtol=0, atol=1e-5 * np.abs(h).max())


def test_cli_simulate_tasd_a_on_ttc_and_refused_on_stc(tmp_path: Path) -> None:
    model = _model(lossless=False)
    pt2 = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(model, (torch.from_numpy(_input(False)),)), str(pt2))
    ok = run_cli("simulate", str(pt2), "--target", "ttc-m8", "--act-config", "2:8", "--json", str(tmp_path / "s.json"))
    assert ok.returncode == 0, ok.stderr
    import json

    report = json.loads((tmp_path / "s.json").read_text())
    assert [layer["tasd_a"] for layer in report["target"]["layers"]] == [True, True, True]
    # The baseline is the dense model as it maps without TASD-A (weight as the A operand), not the
    # TASD-A layers' swapped GEMMs run dense: it must equal a plain dense simulation's totals.
    dense = run_cli("simulate", str(pt2), "--target", "ttc-m8", "--json", str(tmp_path / "d.json"))
    assert dense.returncode == 0, dense.stderr
    assert report["baseline"]["totals"] == json.loads((tmp_path / "d.json").read_text())["baseline"]["totals"]
    refused = run_cli("simulate", str(pt2), "--target", "stc", "--act-config", "2:4")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "tasdc: error: layer 'matmul_0': target 'stc' has no TASD extraction units: cannot decompose activations "
        "at run time (TASD-A 2:4); use a target with [extraction] such as ttc-m8, or compile without --act-config"]


class SharedWeightBmm(nn.Module):
    """``bmm`` with one weight broadcast over the batch (as in LSTM / attention input projections),
    then ReLU and a Linear: a ``linalg.batch_matmul`` that the contraction scan folds into one matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 24))
        self.fc = nn.Linear(24, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.bmm(x, self.w.unsqueeze(0).expand(x.shape[0], -1, -1)))
        return self.fc(h)


def _bmm_reference(model: SharedWeightBmm, x: np.ndarray, weight_config: str | None) -> np.ndarray:
    from tasdc.decompose import decompose

    def weight(w: np.ndarray) -> np.ndarray:  # [K, N], reduction axis 0
        return (decompose(w.copy(), weight_config, 0).approximation if weight_config else w).astype(np.float64)

    _check_margin(x.reshape(-1, x.shape[-1]), 2, 4)
    h = decompose_activation(x.astype(np.float64), "2:4", 2) @ weight(model.w.detach().numpy())
    h = np.maximum(h, 0.0)
    _check_margin(h.reshape(-1, h.shape[-1]), 2, 4)
    fc = model.fc
    return decompose_activation(h, "2:4", 2) @ weight(fc.weight.detach().numpy().T) + fc.bias.detach().double().numpy()


def test_batch_matmul_with_a_broadcast_weight_and_the_expand_path() -> None:
    """Regressions: ``--act-config`` alone on a batch_matmul whose weight is broadcast over the batch
    (the kernel got the 2-D weight as a batch of weights), and ``--act-config`` with ``--config`` on the
    reference path ``cpu(expand=True)`` (the scan met the expanded matmuls without ``indexing_maps``)."""
    torch.manual_seed(0)
    model = SharedWeightBmm().eval()
    x = np.random.default_rng(1).standard_normal((3, 5, 16)).astype(np.float32)
    example = (torch.from_numpy(x),)
    act_only = compile_model(model, example, CompileOptions(act_config="2:4"))
    shapes = sorted(k.info["dense_shape"] for k in act_only.cpu().kernels if k.info["kind"] == "act_matmul")
    assert shapes == [[3, 5, 16], [15, 24]]  # the bmm runs its 15 rows against the one weight
    ref = _bmm_reference(model, x, None)
    np.testing.assert_allclose(act_only(x), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    both = compile_model(model, example, CompileOptions(config="2:4", act_config="2:4"))
    ref = _bmm_reference(model, x, "2:4")
    kernels, expanded = both(x), both.cpu(expand=True)(x)
    np.testing.assert_allclose(kernels, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(expanded, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


class LeftSharedWeightBmm(nn.Module):
    """``bmm`` with the shared weight on the left: ``W[M, K] · X[b][K, N]``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.w.unsqueeze(0).expand(x.shape[0], -1, -1), x)


def test_batch_matmul_with_a_broadcast_weight_on_the_left() -> None:
    """The activation is decomposed along its K axis (axis 1 of ``[B, K, N]``) in every batch entry."""
    torch.manual_seed(0)
    model = LeftSharedWeightBmm().eval()
    x = np.random.default_rng(2).standard_normal((3, 16, 5)).astype(np.float32)
    _check_margin(np.moveaxis(x, 1, -1).reshape(-1, 16), 2, 4)
    result = compile_model(model, (torch.from_numpy(x),), CompileOptions(act_config="2:4"))
    (kernel,) = [k for k in result.cpu().kernels if k.info["kind"] == "act_matmul"]
    assert kernel.info["dense_shape"] == [3, 16, 5] and kernel.info["axis"] == 1
    ref = model.w.detach().double().numpy() @ decompose_activation(x.astype(np.float64), "2:4", 1)
    np.testing.assert_allclose(result(x), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
