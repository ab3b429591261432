"""TASDER: the tasd-select pass and the measured search driver (tasdc.tasder)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from tasdc.compiler import CompileOptions, compile_model
from tasdc.decompose import decompose, l1_dropped, parse_config, relative_error
from tasdc.errors import PipelineError, TasdcError
from tasdc.module import new_context
from tasdc import allocation, calibration, layer_errors
from tasdc.passes import select_series as sel
from tasdc.pipeline import parse_pipeline
from tasdc.runtime.accel.hardware import load_hardware
from tasdc.tasder import TasderSession, tasder_compile


def _run(result, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([result(x[i:i + batch]) for i in range(0, len(x) - len(x) % batch, batch)])


@pytest.fixture(scope="module")
def mlp_session(example_dir):
    # The calibration file has labels: agreement is asked for explicitly (the default would be accuracy).
    return TasderSession(example_dir / "mlp.pt2", calib=example_dir / "mlp-calib.npz", progress=False, metric="agreement")


def test_chosen_configuration_meets_the_bound_on_its_calibration_data(mlp_session, example_dir):
    result = mlp_session.compile("vegeta", "edp", 0.99)
    assert result.meets_bound
    assert set(result.measured) == {"calibration"}
    # Re-run independently: the compiled model against the dense one on the calibration inputs.
    x = np.load(example_dir / "mlp-calib.npz")["x"]
    dense = mlp_session.compile_with([], "dense")
    agreement = float((_run(result, x, 16).argmax(1) == _run(dense, x, 16).argmax(1)).mean())
    assert agreement >= 0.99
    assert agreement == pytest.approx(result.measured["calibration"].value)
    # Every layer got a choice from the target's native series, with a reason and its candidates.
    natives = {str(c) for c in sel.native_series(load_hardware("vegeta"), 2)}
    assert len(result.layers) == 3
    for layer in result.layers:
        assert layer.chosen in natives and layer.why
        assert [c["series"] for c in layer.candidates] == [str(c) for c in sel.native_series(load_hardware("vegeta"), 2)]
    assert result.reduction["edp"] >= 0.0
    assert "layer-output relative error" in result.error_source
    text = result.table()
    assert "top-1 agreement" in text and "bound met" in text
    json.dumps(result.to_json())


@pytest.mark.parametrize("target,objective", [("vegeta", "edp"), ("ttc-m8", "latency")])
def test_a_looser_bound_never_gives_a_costlier_model(mlp_session, target, objective):
    """Every bound cuts one greedy path; on ttc-m8 (TASD units, calibration data) that path holds
    activation series too, and quality 1.0 stops before the first of them instead of dropping them."""
    key = {"edp": "edp", "latency": "latency_cycles"}[objective]
    costs, chosen = [], []
    for quality in (1.0, 0.999, 0.99, 0.95, 0.8, 0.5):
        result = mlp_session.compile(target, objective, quality)
        assert result.meets_bound
        costs.append(result.totals["selected"][key])
        chosen.append([layer.chosen for layer in result.layers])
        offered = {c["series"] for layer in result.layers for c in layer.candidates}
        assert any(s.startswith("A ") for s in offered) == (target == "ttc-m8"), offered
    assert all(b <= a * (1 + 1e-12) for a, b in zip(costs, costs[1:])), (costs, chosen)
    assert not any(s.startswith("A ") for s in chosen[0]), chosen[0]  # 1.0: exact on every input
    if target == "ttc-m8":  # the post-ReLU layers' inputs are sparse enough for some bound to take TASD-A
        assert any(s.startswith("A ") for row in chosen[1:] for s in row), chosen


def _masked_mlp() -> tuple[nn.Module, np.ndarray]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        for layer, keep in ((model[0], 1), (model[2], 2)):
            w = layer.weight  # [out, in]: blocks along in (the reduction axis)
            blocks = w.abs().reshape(w.shape[0], -1, 4)
            order = blocks.argsort(dim=2, descending=True)
            mask = torch.zeros_like(blocks).scatter_(2, order[..., :keep], 1.0)
            w.mul_(mask.reshape(w.shape))
    x = np.random.default_rng(0).standard_normal((40, 32)).astype(np.float32)
    return model, x


def test_quality_one_chooses_only_lossless_series_or_dense(tmp_path):
    model, x = _masked_mlp()
    np.savez(tmp_path / "calib.npz", x=x)
    for target, expected in (("vegeta", ["1:4", "2:4", "dense"]), ("ttc-m8", ["2:8", "4:8", "dense"])):
        result = tasder_compile(model, example_inputs=(torch.from_numpy(x[:8]),), target=target, quality=1.0,
                                calib=tmp_path / "calib.npz", progress=False)
        assert [layer.chosen for layer in result.layers] == expected
        for layer in result.layers:
            assert layer.lossless and layer.error == 0.0
        assert result.meets_bound and result.measured["calibration"].value == 1.0
        assert result.reduction["macs"] > 0.0


def test_without_calibration_weight_proxies_are_used_and_said(example_dir):
    result = tasder_compile(example_dir / "mlp.pt2", target="stc", quality=0.99, eval=example_dir / "mlp-eval.npz",
                            progress=False)
    assert "weight-space proxies" in result.error_source
    assert set(result.measured) == {"eval"} and result.meets_bound
    assert result.measured["eval"].accuracy is not None
    assert all("relative Frobenius" in layer.metric for layer in result.layers)
    nothing = tasder_compile(example_dir / "mlp.pt2", target="stc", quality=0.99, progress=False)
    assert nothing.measured == {} and nothing.meets_bound is None
    assert "quality not measured" in nothing.table()


@pytest.mark.parametrize("kwargs,message", [
    ({"target": "tpu"}, "tpu"),
    ({"target": "vegeta", "objective": "speed"}, "objective must be one of edp, latency, energy, got 'speed'"),
    ({"target": "vegeta", "quality": 0.0}, "quality must be a number in (0, 1]"),
    ({"target": "vegeta", "quality": 1.01}, "quality must be a number in (0, 1]"),
    ({"target": "vegeta", "quality": float("nan")}, "quality must be a number in (0, 1]"),
    ({"target": "vegeta", "quality": True}, "quality must be a number in (0, 1]"),
    ({"target": "vegeta", "max_terms": 0}, "max-terms must be an integer in [1, 4]"),
])
def test_invalid_options_raise_one_line_errors(kwargs, message):
    with pytest.raises(TasdcError) as info:
        tasder_compile("never-read.pt2", **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("options,message", [
    ("target=tpu", "tpu"),
    ("objective=speed", "objective must be one of"),
    ("quality=2", "quality must be a number in (0, 1]"),
    ("max-terms=9", "max-terms must be an integer in [1, 4]"),
    ("calib=/no/such/file.npz", "no such file"),
])
def test_invalid_pass_options(options, message):
    with pytest.raises(PipelineError) as info:
        parse_pipeline(f"tasd-select{{{options}}}", new_context())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_selection_is_deterministic(example_dir):
    pipeline = (f"tasd-sparsity-analysis,tasd-select{{target=ttc-m8 quality=0.95 "
                f"calib={example_dir / 'cnn-calib.npz'}}}")
    runs = []
    for _ in range(2):
        calibration._calib_cache.clear()
        layer_errors._output_cache.clear()
        layer_errors._weight_cache.clear()
        result = compile_model(example_dir / "cnn.pt2", options=CompileOptions(pipeline=pipeline))
        runs.append([(row.layer, json.dumps(row.stats.get("select"), sort_keys=True)) for row in result.report.layers])
    assert runs[0] == runs[1]
    assert any('"metric": "layer-output relative error (calibration)"' in text for _, text in runs[0])


def test_native_series_per_target():
    names = lambda t: [str(c) for c in sel.native_series(load_hardware(t), 2)]  # noqa: E731
    assert names("dense") == ["dense"]
    assert names("stc") == ["dense", "2:4", "2:4+2:4"]
    assert names("vegeta") == ["dense", "1:4", "2:4", "2:4+1:4", "2:4+2:4"]
    assert names("ttc-m8") == ["dense", "1:8", "2:8", "2:8+1:8", "4:8", "4:8+1:8", "4:8+2:8", "4:8+4:8"]
    assert [str(c) for c in sel.native_series(load_hardware("vegeta"), 1)] == ["dense", "1:4", "2:4"]


def test_weight_errors_match_the_decomposition():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((30, 22)).astype(np.float32) * (rng.random((30, 22)) < 0.4)
    configs = [parse_config(c) for c in ("dense", "1:4", "2:4", "2:4+1:4", "4:8+2:8", "2:8+1:8", "2:4+1:8", "4:4")]
    for axis in (0, 1):
        for config, (rel, l1, exact) in zip(configs, layer_errors.weight_errors(w, axis, configs)):
            d = decompose(w, config, axis)
            assert exact == d.is_exact
            assert rel == pytest.approx(relative_error(w, d.approximation), abs=1e-12)
            assert l1 == pytest.approx(l1_dropped(w, d.approximation), abs=1e-12)


@pytest.mark.blas
@pytest.mark.parametrize("rows", [5, 200])  # fewer rows than K (rows kept) / more (Gram matrix)
def test_output_error_is_the_relative_error_of_the_layer_output(rows):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((24, 7)).astype(np.float32)  # [K, N], reduction axis 0
    x = rng.standard_normal((rows, 24)).astype(np.float32)
    gram = calibration.Gram(24)
    gram.add(x[: rows // 2])
    gram.add(x[rows // 2:])
    configs = [parse_config(c) for c in ("dense", "2:4", "1:4")]
    errors = layer_errors.output_errors([gram], w, 0, "matmul", configs, [True, False, False])
    assert errors[0] == 0.0
    for config, err in zip(configs[1:], errors[1:]):
        approx = decompose(w, config, 0).approximation
        expected = np.linalg.norm(x.astype(np.float64) @ (w - approx)) / np.linalg.norm(x.astype(np.float64) @ w)
        assert err == pytest.approx(expected, rel=1e-6)


def _problem(rng: np.random.Generator, layers: int = 6, configs: int = 5, objective: str = "edp") -> allocation.Problem:
    energy = rng.random((layers, configs)) + 0.5
    latency = rng.random((layers, configs)) + 0.5
    err2 = np.concatenate([np.zeros((layers, 1)), rng.random((layers, configs - 1))], axis=1)
    err2[0, 2] = 0.0  # a lossless candidate
    return allocation.Problem(objective, energy, latency * 1e-6, latency * 1e3, err2, np.ones((layers, configs), bool),
                       1.0, 1e-6, 1e3)


@pytest.mark.parametrize("objective", ["edp", "latency", "energy"])
def test_greedy_path_prefixes_are_monotone_in_the_budget(objective):
    rng = np.random.default_rng(3)
    for _ in range(20):
        problem = _problem(rng, objective=objective)
        path = allocation.greedy_path(problem)
        objs = [m.objective for m in path]
        assert all(b < a for a, b in zip(objs, objs[1:]))  # every step strictly lowers the objective
        previous = np.inf
        for budget in (0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 1e9):
            choice, taken = allocation.cut_path(path, problem.err2.shape[0], budget)
            e, ts, tc = problem.totals_of(choice)
            value = float(problem.total(e, ts, tc))
            assert value <= previous * (1 + 1e-12)
            assert float(problem.err2[np.arange(len(choice)), choice].sum()) <= budget + 1e-9
            previous = value
        assert allocation.greedy_path(problem) == path  # deterministic


def test_greedy_path_takes_free_moves_first_and_breaks_ties_by_layer_order():
    # Two identical layers: the tie goes to layer 0; the lossless move comes first.
    energy = np.array([[2.0, 1.0, 1.5], [2.0, 1.0, 1.5]])
    err2 = np.array([[0.0, 0.1, 0.0], [0.0, 0.1, 0.0]])
    problem = allocation.Problem("energy", energy, energy * 0, energy * 0, err2, np.ones((2, 3), bool))
    path = allocation.greedy_path(problem)
    assert [(m.layer, m.dst) for m in path[:2]] == [(0, 2), (1, 2)]
    assert [(m.layer, m.dst) for m in path[2:]] == [(0, 1), (1, 1)]
    choice, taken = allocation.cut_path(path, 2, 0.0)
    assert list(choice) == [2, 2] and taken == 2
    choice, _ = allocation.cut_path(path, 2, 0.1)
    assert list(choice) == [1, 2]


def test_options_measured_on_calibration_only_are_on_the_same_path_but_not_exact():
    # Layer 0: a lossless weight series (column 1) and a cheaper activation series that showed no error on the
    # calibration inputs (column 2, calib_only). Layer 1: the same activation option only.
    energy = np.array([[4.0, 3.0, 2.0], [4.0, 4.0, 1.0]])
    err2 = np.zeros((2, 3))
    calib_only = np.array([[False, False, True], [False, False, True]])
    problem = allocation.Problem("energy", energy, energy * 0, energy * 0, err2, np.ones((2, 3), bool),
                                 calib_only=calib_only)
    path = allocation.greedy_path(problem)
    # The exact move first (although the activation move saves more), then the measured-exact ones by saving.
    assert [(m.layer, m.dst, m.calib_only) for m in path] == [(0, 1, False), (1, 2, True), (0, 2, True)]
    assert all(m.used == 0.0 for m in path)
    choice, taken = allocation.cut_path(path, 2, 0.0)   # quality 1.0: exact on every input
    assert list(choice) == [1, 0] and taken == 1
    choice, taken = allocation.cut_path(path, 2, 1e-9)  # any positive budget: the same path, further along
    assert list(choice) == [2, 2] and taken == 3
    # Without the mark the cheaper activation move would come first: the flag changes order and cut only.
    unmarked = allocation.greedy_path(dataclasses.replace(problem, calib_only=None))
    assert [(m.layer, m.dst) for m in unmarked] == [(1, 2), (0, 2)]


def test_bisect_search_meets_the_bound_and_reports_predicted_vs_measured(mlp_session):
    result = mlp_session.compile("ttc-m8", "edp", 0.99, search="bisect", max_probes=6)
    assert result.meets_bound
    measured = [p for p in result.probes if p.measured]
    assert 1 <= len(measured) <= 6
    for p in result.probes:
        assert p.predicted is not None and 0.0 < p.predicted <= 1.0
        assert p.predicted == pytest.approx(1.0 / np.sqrt(1.0 + p.budget))
    # the final selection is one the search measured as passing
    final = [p for p in result.probes if p.steps == max((q.steps for q in result.probes if q.passed), default=0)]
    assert any(p.passed for p in final)
    assert any(n.startswith("bisection on the greedy path") for n in result.notes)


def test_select_ban_takes_a_move_off_the_path(example_dir):
    from tasdc.importer import import_model
    from tasdc.pipeline import run_pipeline

    model = import_model(example_dir / "mlp.pt2")
    with model.context:
        run_pipeline(model.module, [sel.SelectSeries(target="ttc-m8", max_steps=0)])
    moves = sel.read_selection(model.module)["path_moves"]
    layer, series = moves[0]
    model = import_model(example_dir / "mlp.pt2")
    with model.context:
        run_pipeline(model.module, [sel.SelectSeries(target="ttc-m8", max_steps=0, ban=f"{layer}@{series}")])
    summary = sel.read_selection(model.module)
    assert [layer, series] not in summary["path_moves"] and summary["banned"] == [f"{layer}@{series}"]
    # An activation series (TASD-A, "A 2:8") is banned written without its space.
    calib = str(example_dir / "mlp-calib.npz")
    model = import_model(example_dir / "mlp.pt2")
    with model.context:
        run_pipeline(model.module, [sel.SelectSeries(target="ttc-m8", max_steps=0, calib=calib)])
    act = next((layer, series) for layer, series in sel.read_selection(model.module)["path_moves"]
               if series.startswith("A "))
    model = import_model(example_dir / "mlp.pt2")
    with model.context:
        run_pipeline(model.module, [sel.SelectSeries(target="ttc-m8", max_steps=0, calib=calib,
                                                     ban=f"{act[0]}@{act[1].replace(' ', '')}")])
    assert list(act) not in sel.read_selection(model.module)["path_moves"]
    with pytest.raises(TasdcError, match=r"ban: 'nope' is not layer@series"):
        sel.SelectSeries(target="ttc-m8", ban="nope")
