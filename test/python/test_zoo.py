"""The model zoo (tasdc/zoo.py): real architectures in, every weight decomposed, numbers like torch.

Per model: ``torch.export`` as documented, import once, then

* lossless (``2:4+2:4`` reproduces any weight) — the CPU runtime matches torch;
* lossy (``2:4``) — the CPU runtime matches torch run with every decomposed
  weight replaced by its 2:4 approximation (an independent reference: torch
  computes the model, only the weights come from the decomposition library);
* every contraction with a parameter weight, counted from the torch side
  (forward hooks, module structure: ``ZooModel.expected``), is a TASD series,
  except the ones no TASD form exists for (depthwise convolutions), which the
  report names with their reason;
* the compiled module plans and simulates on every shipped target.

Tolerance: the models are f32 with O(1) activations and reductions of at most
a few hundred terms; tasdc's kernels and torch sum in different orders, so
each contraction differs by about K·eps·|y| ≈ 256 · 6e-8 ≈ 2e-5 relative,
amplified through LayerNorm / softmax / recurrences by at most ~10x:
``atol = rtol = 2e-4`` (observed: ≤ 1e-6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from tasdc import zoo  # noqa: E402
from tasdc.compiler import CompileOptions, compile_model  # noqa: E402
from tasdc.decompose import decompose, parse_config  # noqa: E402
from tasdc.importer import ImportedModel, import_model  # noqa: E402
from tasdc.module import clone_module  # noqa: E402
from tasdc.runtime.cpu.executor import compile_for_cpu  # noqa: E402

TARGETS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "runtime" / "accel" / "hardware").glob("*.toml"))
TOL = 2e-4
DEPTHWISE = "a depthwise convolution reduces over one channel's KH*KW window only"


def _approximated(model: zoo.ZooModel, config: str) -> dict[str, np.ndarray]:
    """Every decomposed weight replaced by its TASD approximation along its reduction axis."""
    series = parse_config(config)
    out = {}
    for name, (param, axis) in model.weights.items():
        w = param.detach().float().numpy()
        flat = w.reshape(w.shape[0], -1) if axis == 1 else w
        approx = decompose(np.ascontiguousarray(flat), series, axis).approximation
        out[name] = approx.reshape(w.shape)
    return out


def _run(result, model: zoo.ZooModel) -> list[np.ndarray]:
    executable = compile_for_cpu(result.module, opt_level=0)  # -O0: JIT time, not speed, matters here
    out = executable(*[t.numpy() for t in model.inputs.values()])
    return list(out) if isinstance(out, tuple) else [out]


def _close(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    assert len(got) == len(want)
    worst = 0.0
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=TOL, rtol=TOL)
        worst = max(worst, float(np.abs(g - w).max()))
    return worst


@pytest.mark.parametrize("name", zoo.SMALL)
def test_zoo_model(name: str) -> None:
    model = zoo.build(name)
    base = import_model(model.export())
    assert base.input_names == tuple(model.inputs)

    def fresh() -> ImportedModel:
        return ImportedModel(module=clone_module(base.module), source=name, program=base.program,
                             input_names=base.input_names)

    # Lossless: every decomposable weight becomes a series; the rest is named with its reason.
    lossless = compile_model(fresh(), options=CompileOptions(config="2:4+2:4"))
    rows = lossless.report.layers
    series = [r for r in rows if r.op == "tasd.series"]
    assert len(series) == model.expected - model.undecomposable
    assert all(r.stats["lossless"] for r in series)
    reasons = [r.stats.get("skipped", "") for r in rows if r.op != "tasd.series"]
    assert sum(DEPTHWISE in why for why in reasons) == model.undecomposable
    assert all("activation x activation" in why or DEPTHWISE in why for why in reasons), reasons
    _close(_run(lossless, model), model.reference())

    # Lossy: against torch with the approximated weights.
    lossy = compile_model(fresh(), options=CompileOptions(config="2:4"))
    assert not any(r.stats["lossless"] for r in lossy.report.layers if r.op == "tasd.series" and
                   r.stats["density"] > 0.5)
    _close(_run(lossy, model), model.reference(_approximated(model, "2:4")))

    # Every shipped target plans and simulates the compiled model.
    from tasdc.runtime.accel.simulator import simulate_module

    for target in TARGETS:
        report = simulate_module(clone_module(lossy.module), target)
        assert report.run.totals["latency_s"] > 0
        assert sum(1 for layer in report.layers if layer.series not in ("", "dense")) == len(series)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_model_runs(dtype: str, tmp_path: Path) -> None:
    """f16 / bf16 weights arrive through arith.extf: decomposed from the stored values, computed in f32 as
    torch-mlir's lowering of the model does, and the result cast back. Lossless, so the only difference to
    torch is rounding: torch's CPU half matmul also accumulates in f32, both round the result once to the
    half type, so they differ by at most one unit in the last place of the output (2^-10 relative for f16,
    2^-7 for bf16)."""
    import torch
    from torch import nn

    import ml_dtypes  # noqa: F401  (bf16 arrays in numpy)
    from conftest import run_cli

    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).to(tdtype).eval()
    x = torch.randn(4, 16).to(tdtype)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "half.pt2")
    got = None
    if dtype == "float16":  # (.npy cannot hold bf16; the API path below covers it)
        np.save(tmp_path / "x.npy", x.numpy())
        proc = run_cli("run", str(tmp_path / "half.pt2"), "--input", str(tmp_path / "x.npy"), "--config", "2:4+2:4",
                       "-o", str(tmp_path / "y.npy"))
        assert proc.returncode == 0, proc.stderr
        got = np.load(tmp_path / "y.npy", allow_pickle=False)
    compiled = compile_model(tmp_path / "half.pt2", options=CompileOptions(config="2:4+2:4"))
    assert sum(r.op == "tasd.series" for r in compiled.report.layers) == 2
    assert all(r.stats["weight_dtype"] == ("f16" if dtype == "float16" else "bf16")
               for r in compiled.report.layers if r.op == "tasd.series")
    out = compiled(x.float().numpy().astype(np.float16 if dtype == "float16" else "bfloat16"))
    with torch.no_grad():
        ref = model(x).float().numpy()
    ulp = 2.0 ** -10 if dtype == "float16" else 2.0 ** -7
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2 * ulp, atol=2 * ulp)
    if got is not None:
        np.testing.assert_array_equal(got, out)
