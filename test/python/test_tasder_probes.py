"""TASDER's measured probes: approximated weights in the dense model's code, one compiled object, early stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tasdc.contractions import scan
from tasdc.decompose import decompose, parse_config
from tasdc.passes.approximate_weights import ApproximateWeights
from tasdc.passes.select_series import SelectSeries
from tasdc.pipeline import run_pipeline
from tasdc.tasder import TasderSession, _code_only


@pytest.fixture(scope="module")
def session(example_dir):
    return TasderSession(example_dir / "cnn.pt2", calib=example_dir / "cnn-calib.npz",
                         eval=example_dir / "cnn-eval.npz", progress=False, metric="agreement")


def _configs(module) -> dict[str, str]:
    return {c.layer: str(c.op.attributes["tasd.config"]).strip('"') for c in scan(module).candidates}


def test_approximated_weights_are_the_series_sums_in_the_stored_layout(session):
    """Read back through the contraction's own view (transpose for Linear, [F, C*KH*KW] for conv), every
    selected weight is exactly the sum of its series' terms; the dense layers' weights are unchanged.
    Bit-exact: one function (decompose) computes both sides and the pass only moves values."""
    original = {c.layer: c.weight.copy() for c in scan(session.model.module).candidates}
    result = session.compile_with([SelectSeries(target="vegeta", budget=1e30, max_steps=4), ApproximateWeights()], "t")
    configs = _configs(result.module)
    assert 2 <= sum(c != "dense" for c in configs.values()) < len(configs)
    after = {c.layer: c for c in scan(result.module).candidates}
    for layer, config in configs.items():
        cand = after[layer]
        expected = original[layer] if config == "dense" else \
            decompose(original[layer], parse_config(config), cand.axis).approximation
        np.testing.assert_array_equal(cand.weight, expected)
    # Nothing but values changed: no series ops, the same contraction ops in the same order.
    text = str(result.module)
    assert "tasd.series" not in text
    assert [c.op.name for c in after.values()] == [c.op.name for c in scan(session.model.module).candidates]


def test_probes_share_the_dense_models_compiled_object(session, tmp_path, monkeypatch):
    """The compile cache keys on the code only: with the report attributes stripped, a selection that
    approximates weights compiles to the dense model's object (a cache hit), and it computes what the
    series form computes (float summation order aside: rtol 1e-4 on outputs of magnitude ~1)."""
    from tasdc.runtime.cpu.executor import compile_for_cpu

    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    dense = session.compile_with([], "dense")
    first = compile_for_cpu(_code_only(dense.module), opt_level=0)
    assert not first.cache_hit
    passes = [SelectSeries(target="vegeta", budget=1e30, max_steps=6)]
    approx = session.compile_with(passes + [ApproximateWeights()], "approx")
    probe = compile_for_cpu(_code_only(approx.module), opt_level=0)
    assert probe.cache_hit
    from tasdc.passes.decompose_weights import DecomposeWeights

    series = session.compile_with(passes + [DecomposeWeights()], "series")
    x = np.load(session.calib)["x"][:16].astype(np.float32)
    y_probe, y_series, y_dense = probe(x), series(x), first(x)
    np.testing.assert_allclose(y_probe, y_series, rtol=1e-4, atol=1e-4 * float(np.abs(y_series).max()))
    assert np.abs(y_probe - y_dense).max() > 1e-3   # the approximation did change the model


def test_a_probe_that_cannot_meet_the_bound_stops_early_and_is_remeasured_for_a_looser_bound(session):
    result = session.compile_with([SelectSeries(target="vegeta", budget=1e30)], "all")
    from tasdc.passes.approximate_weights import ApproximateWeights as Approx

    run_pipeline(result.module, [Approx()])
    key = ("test-all-moves",)
    full, _ = session.measure(result, None)                       # no bound: every set, every sample
    assert all(q.complete for q in full.values())
    value = full["eval"].value
    assert value < 0.999, "the whole greedy path must change some predictions for this test"
    n_eval = full["eval"].samples
    stopped, cached = session.measure(result, key, bound=0.999)
    assert not cached
    # The evaluation set runs first; the run stops once the bound is out of reach, before the calibration set.
    assert list(stopped) == ["eval"] and not stopped["eval"].complete
    assert stopped["eval"].samples < n_eval
    assert value <= stopped["eval"].value < 0.999            # the best still reachable when it stopped
    # A looser bound that the stopped run cannot decide measures again, in full.
    again, cached = session.measure(result, key, bound=value - 0.01)
    assert not cached and again["eval"].complete and again["eval"].value == pytest.approx(value)


def test_all_dense_selection_is_the_reference_and_is_not_run(session):
    reports, cached = session.measure(session.compile_with([], "dense"), ("dense",) * 3, bound=0.99)
    assert cached and all(q.value == 1.0 and q.complete for q in reports.values())


def test_importer_reads_weight_literals_from_the_tensor_bytes():
    """The literal hook gives the module torch-mlir's default path gives (f32, bf16, int64 weights)."""
    from tasdc import importer

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 16)
            self.b = nn.Linear(16, 4).to(torch.bfloat16)
            self.register_buffer("k", torch.arange(6, dtype=torch.int64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.b(torch.relu(self.a(x)).to(torch.bfloat16)).float()
            return y.sum(-1, keepdim=True) + self.k.float().sum()

    torch.manual_seed(0)
    program = torch.export.export(Model().eval(), (torch.randn(2, 8),))
    hooked = str(importer._import_program(program, "m").module)
    original = importer._literal_hooks
    try:
        importer._literal_hooks = lambda: None       # the importer's default literal path
        default = str(importer._import_program(program, "m").module)
    finally:
        importer._literal_hooks = original
    assert hooked == default and "torch_tensor_16_8_torch.float32" in hooked


def test_search_runs_the_dense_model_on_the_eval_set_only_and_keeps_its_selection(example_dir, monkeypatch):
    """The calibration run gives the calibration set's dense reference and its statistics use a
    sample of rows; the search with these shortcuts makes the same choices, probe for probe, as
    with every row and a dense run of both sets (what the search did before). ttc-m8: weight
    and activation (TASD-A) options; conv2d_0 has 352 x 64 rows on the calibration set, more than
    SAMPLE_ROWS (so the sample is really drawn)."""
    import tasdc.tasder
    from tasdc import calibration

    def search() -> tuple[object, list[str], int, TasderSession, int]:
        calibration._calib_cache.clear()
        runs: list[str] = []
        instrumented = [0]
        run, instrument = TasderSession._run, calibration._instrument
        monkeypatch.setattr(TasderSession, "_run", lambda self, r, x, desc: runs.append(desc) or run(self, r, x, desc))
        monkeypatch.setattr(calibration, "_instrument",
                            lambda *a, **k: instrumented.__setitem__(0, instrumented[0] + 1) or instrument(*a, **k))
        session = TasderSession(example_dir / "cnn.pt2", calib=example_dir / "cnn-calib.npz",
                                eval=example_dir / "cnn-eval.npz", progress=False)
        result = session.compile("ttc-m8", quality=0.99, search="bisect", max_probes=8)
        rows = calibration._calib_cache[next(iter(calibration._calib_cache))].layers["conv2d_0"][0].count
        monkeypatch.undo()
        return result, runs, instrumented[0], session, rows

    fast, fast_runs, fast_instrumented, session, sampled_rows = search()
    monkeypatch.setattr(calibration, "SAMPLE_ROWS", 0)
    monkeypatch.setattr(tasdc.tasder, "calibration_outputs", lambda *a: None)
    slow, slow_runs, _, _, all_rows = search()
    assert all_rows > calibration.SAMPLE_ROWS and sampled_rows < calibration.SAMPLE_ROWS + 64  # rounded up per batch
    assert fast_runs == ["tasder dense eval"] and fast_instrumented == 1    # one calibration run, one dense set
    assert slow_runs == ["tasder dense calibration", "tasder dense eval"]
    assert fast.configs == slow.configs
    assert [(p.steps, p.banned, p.quality, p.passed) for p in fast.probes] == \
        [(p.steps, p.banned, p.quality, p.passed) for p in slow.probes]
    # the calibration run's outputs are the dense model's (another compiled module of the same ops:
    # equal up to float reordering; observed bit-equal)
    dense = session._run(session.compile_with([], "dense"), session.sets["calibration"][0], "check")
    np.testing.assert_allclose(session.reference()["calibration"], dense, rtol=1e-6, atol=1e-6 * np.abs(dense).max())


@pytest.mark.parametrize("quality", [0.9, 0.99, 1.0])
def test_the_reported_initial_choice_is_the_pass_cut_of_the_greedy_path(session, quality):
    """TASDER reports what the predicted budget chose by cutting the path it already has
    (no extra selection); it equals the pass's own cut, activation moves included (ttc-m8)."""
    from tasdc.allocation import budget_for_quality
    from tasdc.passes.select_series import read_selection
    from tasdc.path_search import PathMove
    from tasdc.tasder import _cut

    def select(**options):
        return session.compile_with([SelectSeries(target="ttc-m8", calib=session.calib, **options)], "t")

    none = select(budget=1e30, max_steps=0)
    summary = read_selection(none.module)
    path = [PathMove(str(layer), str(series), float(used))
            for (layer, series), used in zip(summary["path_moves"], summary["path_used"])]
    layers = [row.layer for row in none.report.layers if "select" in row.stats]
    chosen = select(quality=quality)
    expected = tuple(row.stats["select"]["chosen"] for row in chosen.report.layers if "select" in row.stats)
    assert _cut(path, layers, budget_for_quality(quality)) == expected
