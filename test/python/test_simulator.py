"""The simulated accelerator: plan pass, tile-level program, runtime trace, report.

The key property: what the simulator records by executing the instruction
stream (cycles per level, bound, energy components, EDP, counts) equals what
the analytical cost model predicts for the same plan.
"""

from __future__ import annotations

import json
import math
import tomllib

import numpy as np
import pytest
from torch_mlir import ir

from tasdc.errors import TasdcError
from tasdc.importer import import_model
from tasdc.module import new_context, parse_module
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.runtime.accel.costmodel import (
    ENERGY_COMPONENTS,
    UnsupportedPatternError,
    cost_layer,
    resolve_series,
)
from tasdc.runtime.accel.hardware import HARDWARE_DIR, hardware_from_dict, list_targets, load_hardware
from tasdc.runtime.accel.program import (
    INSTRUCTION_KINDS,
    LayerPlan,
    PlanTerm,
    ProgramError,
    choose_schedule,
    lower_module,
    lower_plans,
    read_plans,
    term_geometry,
)
from tasdc.runtime.accel.simulator import SCHEMA, simulate_module, simulate_program
from tasdc.simulate import simulate_model

MODELS = ("mlp", "cnn", "transformer")
TARGETS = ("dense", "stc", "vegeta", "ttc-m8")
CONFIGS = ("dense", "2:4", "2:4+1:4", "1:8+1:8")

INT_FIELDS = ("folds", "waves", "mac_cycles", "fill_drain_cycles", "compute_cycles", "macs", "dense_macs",
              "extraction_ops", "extraction_cycles", "a_dram_passes", "b_dram_passes")
FLOAT_FIELDS = ("dram_bytes", "dram_metadata_bytes", "dram_cycles", "glb_bytes", "glb_metadata_bytes",
                "glb_cycles", "rf_bytes", "rf_cycles", "latency_cycles", "latency_s", "mac_utilization",
                *(f"energy_{c}_j" for c in ENERGY_COMPONENTS), "energy_j", "edp")
PLAN_FIELDS = {  # tasd.accel key -> trace field
    "folds": "folds", "waves": "waves", "macs": "macs", "dense_macs": "dense_macs", "mac_cycles": "mac_cycles",
    "compute_cycles": "compute_cycles", "dram_cycles": "dram_cycles", "glb_cycles": "glb_cycles",
    "rf_cycles": "rf_cycles", "extraction_cycles": "extraction_cycles", "latency_cycles": "latency_cycles",
    "latency_s": "latency_s", "energy_j": "energy_j", "edp": "edp", "a_dram_passes": "a_dram_passes",
    "b_dram_passes": "b_dram_passes", "bound": "bound",
}


def assert_trace_matches(trace, cost, where: str) -> None:
    """Integer counts exactly, floats to 1e-9 relative, bound and B-in-RF flag exactly."""
    for name in INT_FIELDS:
        got, want = getattr(trace, name), getattr(cost, name)
        assert got == want and float(got).is_integer(), f"{where}: {name} {got} != {want}"
    for name in FLOAT_FIELDS:
        got, want = getattr(trace, name), getattr(cost, name)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=0.0), f"{where}: {name} {got} != {want}"
    assert trace.bound == cost.bound, f"{where}: bound {trace.bound} != {cost.bound}"
    assert bool(trace.b_in_rf) == bool(cost.b_in_rf), where
    assert trace.executed == cost.executed, where


# --------------------------------------------------------------------------
# fixtures: every model imported once, every (model, config) decomposed once
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(example_dir):
    return {name: import_model(example_dir / f"{name}.pt2") for name in MODELS}


@pytest.fixture(scope="module")
def compiled(imported):
    """(model, config) -> a decomposed clone of the imported module (cached)."""
    cache: dict[tuple[str, str], object] = {}

    def get(model: str, config: str):
        key = (model, config)
        if key not in cache:
            base = imported[model]
            module = base.module.operation.clone()
            steps = "tasd-sparsity-analysis"
            if config != "dense":
                steps += f",tasd-decompose-weights{{config={config}}}"
            with base.context:
                run_pipeline(module, parse_pipeline(steps, base.context))
            cache[key] = module
        return cache[key]

    return get


# --------------------------------------------------------------------------
# the key test: simulator trace == cost model, every model x target x config
# --------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("model", MODELS)
def test_trace_equals_cost_model(compiled, model, config):
    module = compiled(model, config)
    for target in TARGETS:
        report = simulate_module(module, target, mode="map")
        plans = {p.name: p for p in read_plans(module)}
        assert set(plans) == {t.name for t in report.layers} and len(plans) == len(report.layers)
        for trace in report.layers:
            plan = plans[trace.name]
            where = f"{model} {config} {target} {trace.name}"
            batch, m, k, n = plan.gemm
            cost = cost_layer(target, m, k, n, plan.series, batch, tasd_a=plan.tasd_a, mode="map",
                              b_source=trace.b_source)
            assert_trace_matches(trace, cost, where)
            # ... and what the plan pass recorded from its one vectorised call
            for key, name in PLAN_FIELDS.items():
                want, got = plan.attrs[key], getattr(trace, name)
                assert got == want if isinstance(want, (str, int)) else math.isclose(got, want, rel_tol=1e-9), \
                    f"{where}: plan {key} {want} != trace {got}"
            for c in ENERGY_COMPONENTS:
                assert math.isclose(plan.attrs["energy"][c], trace.energy[c], rel_tol=1e-9, abs_tol=0.0)
        # the baseline: the same layers as dense series on the dense target
        assert [t.name for t in report.baseline.layers] == [t.name for t in report.layers]
        for trace in report.baseline.layers:
            batch, m, k, n = trace.gemm
            assert trace.series == "dense" and trace.executed == "dense"
            assert_trace_matches(trace, cost_layer("dense", m, k, n, "dense", batch, b_source=trace.b_source),
                                 f"baseline {trace.name}")


def test_tasd_a_trace_equals_cost_model(compiled):
    """Run-time decomposition of the attention's activations on TTC-M8 (EXTRACT instructions)."""
    module = compiled("transformer", "2:4")
    report = simulate_module(module, "ttc-m8", activations="2:8+1:8")
    tasd_a = [t for t in report.layers if t.tasd_a]
    assert len(tasd_a) == 4
    for trace in report.layers:
        batch, m, k, n = trace.gemm
        cost = cost_layer("ttc-m8", m, k, n, trace.series, batch, tasd_a=trace.tasd_a, mode="map",
                          b_source=trace.b_source)
        assert_trace_matches(trace, cost, trace.name)
    for trace in tasd_a:
        assert trace.instructions["EXTRACT"] > 0 and trace.instructions["DMA_A_DENSE"] > 0
        assert trace.extraction_ops > 0 and trace.energy["extraction"] > 0
        assert "DMA_A" not in trace.instructions


def _plan(hw, gemm, series, tasd_a=False, mode="map", b_source=0) -> LayerPlan:
    sp = resolve_series(hw, series, mode)
    terms = tuple(PlanTerm(t.requested_label, t.executed_label, t.speedup, t.mapped) for t in sp.terms)
    schedule = choose_schedule(hw, gemm, [term_geometry(i, t, gemm[2]) for i, t in enumerate(terms)])
    return LayerPlan(f"l{gemm}", "linalg.matmul", hw.name, mode, "matmul", gemm, tasd_a, sp.label,
                     sp.executed_label, terms, schedule.kind, schedule.b_chunk_cols, schedule.b_in_rf,
                     b_source=b_source)


def _small_target():
    """Three 16x8 arrays and a 16 KiB GLB: every schedule and multi-array waves."""
    data = tomllib.loads((HARDWARE_DIR / "ttc-m8.toml").read_text())
    data["name"] = "small"
    data["array"].update(rows=16, cols=8, count=3)
    data["memory"]["glb"].update(size_kib=16, metadata_size_kib=1)
    data["sparsity"]["shared_metadata"] = False   # per-term metadata: the 1 KiB metadata bank overflows
    return hardware_from_dict(data, "small")


def test_trace_equals_cost_model_on_every_schedule():
    """Shapes the examples do not reach: B chunks, per-tile fetches, ragged folds, several arrays."""
    rng = np.random.default_rng(7)
    shapes = [(1, 1, 1, 1), (1, 33, 37, 65), (2, 100, 300, 70), (1, 1024, 2048, 512), (3, 64, 4096, 4096),
              (1, 513, 9, 12544), (1, 4096, 4096, 33), (1, 64, 100000, 64)]
    shapes += [tuple(int(v) for v in (rng.integers(1, 4), *rng.integers(1, 5000, size=3))) for _ in range(12)]
    seen = set()
    for hw in [*(load_hardware(t) for t in TARGETS), _small_target()]:
        for gemm in shapes:
            for series in ("dense", "2:4", "2:4+1:4", "1:8+1:8", "4:8+2:8", "3:7"):
                for tasd_a in ((False, True) if hw.extraction is not None else (False,)):
                    plan = _plan(hw, gemm, series, tasd_a)
                    trace = simulate_program(lower_plans([plan], hw)).layers[0]
                    cost = cost_layer(hw, gemm[1], gemm[2], gemm[3], series, gemm[0], tasd_a=tasd_a, mode="map")
                    assert_trace_matches(trace, cost, f"{hw.name} {gemm} {series} tasd_a={tasd_a}")
                    seen.add((trace.schedule, hw.array.count > 1))
    assert {s for s, _ in seen} == {"a_resident", "b_chunks", "tile"} and (("tile", True) in seen)


def _with_options(hw, overlap: bool, shared: bool):
    data = tomllib.loads((HARDWARE_DIR / "ttc-m8.toml").read_text())
    data["name"] = hw.name
    data["array"].update(rows=hw.array.rows, cols=hw.array.cols, count=hw.array.count, fill_drain_overlap=overlap)
    data["sparsity"]["shared_metadata"] = shared
    data["memory"]["glb"].update(size_kib=hw.memory.glb.size_kib, metadata_size_kib=hw.memory.glb.metadata_size_kib)
    return hardware_from_dict(data, hw.name)


def test_trace_equals_cost_model_with_options_and_conv_sources():
    """Fill/drain overlap, shared metadata and conv inputs (B read from its source) on every schedule."""
    shapes = [(1, 33, 37, 65), (2, 100, 300, 70), (1, 64, 576, 784), (1, 513, 9, 12544), (1, 4096, 4096, 33),
              (1, 64, 100000, 64), (3, 7, 64, 5)]
    seen = set()
    for base in (load_hardware("ttc-m8"), _small_target()):
        for overlap, shared in ((True, True), (True, False), (False, True)):
            hw = _with_options(base, overlap, shared)
            for gemm in shapes:
                for series in ("dense", "2:8+1:8", "4:8+2:8", "1:4", "2:4+1:4"):
                    for source in (0, max(1, gemm[2] * gemm[3] // 9), gemm[2] * gemm[3] * 2):
                        plan = _plan(hw, gemm, series, b_source=source)
                        trace = simulate_program(lower_plans([plan], hw)).layers[0]
                        cost = cost_layer(hw, gemm[1], gemm[2], gemm[3], series, gemm[0], mode="map",
                                          b_source=source or None)
                        assert_trace_matches(trace, cost, f"{hw.name} {overlap} {shared} {gemm} {series} {source}")
                        assert trace.instructions.get("FILL", 0) == int(overlap)
                        seen.add(trace.schedule)
    assert seen == {"a_resident", "b_chunks", "tile"}


def test_expanded_stream_matches_compact_program():
    hw = _small_target()
    plan = _plan(hw, (2, 37, 50, 29), "2:8+1:8", tasd_a=True)
    layer = lower_plans([plan], hw).layers[0]
    trace = simulate_program(lower_plans([plan], hw)).layers[0]
    flat: dict[str, int] = {}
    for ins in layer.expand():
        flat[ins.kind] = flat.get(ins.kind, 0) + 1
    assert flat == trace.instructions
    assert flat["MAC"] == trace.folds * 2 and flat["DRAIN"] == flat["STORE_C"] == trace.folds
    assert set(flat) <= set(INSTRUCTION_KINDS) and "EXTRACT" in flat
    assert "row_fold" in layer.listing() and "EXTRACT t1" in layer.listing()


# --------------------------------------------------------------------------
# model-level invariants
# --------------------------------------------------------------------------


def _compute_bound(report, k_multiple: int):
    layers = [t for t in report.layers if t.bound == "compute" and t.series != "dense"
              and t.gemm[2] % k_multiple == 0]
    assert layers, "no compute-bound decomposed layer"
    return layers


def test_stc_2to4_halves_and_vegeta_1to4_quarters_mac_cycles(compiled):
    stc = simulate_module(compiled("transformer", "2:4"), "stc")
    for trace in _compute_bound(stc, 4):
        dense = stc.baseline.layer(trace.name)
        assert trace.executed == "2:4" and dense.bound == "compute"
        assert 2 * trace.mac_cycles == dense.mac_cycles
        assert 2 * trace.macs == dense.macs == trace.dense_macs
        # pipelined folds (fill_drain_overlap): a fold lasts at least its 32-cycle drain, so short-K layers tie
        assert trace.compute_cycles <= dense.compute_cycles
        assert trace.compute_cycles < dense.compute_cycles or dense.mac_cycles <= 32 * dense.waves
    veg = simulate_module(compiled("transformer", "1:4"), "vegeta")
    for trace in _compute_bound(veg, 4):
        dense = veg.baseline.layer(trace.name)
        assert trace.executed == "1:4" and 4 * trace.mac_cycles == dense.mac_cycles


@pytest.mark.parametrize("model", MODELS)
def test_energy_positive_and_additive(compiled, model):
    report = simulate_module(compiled(model, "2:4+1:4"), "ttc-m8")
    for run in (report.run, report.baseline):
        totals = run.totals
        for trace in run.layers:
            assert trace.energy_j > 0 and trace.edp > 0 and trace.latency_cycles > 0
            assert all(v >= 0 for v in trace.energy.values())
            assert math.isclose(sum(trace.energy.values()), trace.energy_j, rel_tol=1e-12)
        for name in ("energy_j", "latency_s", "latency_cycles", "compute_cycles", "dram_bytes", "macs",
                     *(f"energy_{c}_j" for c in ENERGY_COMPONENTS)):
            assert math.isclose(totals[name], sum(getattr(t, name) for t in run.layers), rel_tol=1e-12), name
        assert math.isclose(totals["edp"], totals["energy_j"] * totals["latency_s"], rel_tol=1e-12)
        assert sum(totals["instructions"].values()) == sum(sum(t.instructions.values()) for t in run.layers)


def test_unsupported_pattern_map_records_refuse_raises(compiled):
    module = compiled("cnn", "2:4+1:4")
    report = simulate_module(module, "stc", mode="map")
    for trace in report.layers:
        assert (trace.series, trace.executed) == ("2:4+1:4", "2:4+2:4")
        assert (trace.mapped_from, trace.mapped_to) == ("1:4", "2:4")
    assert "mapped to native patterns of stc" in report.table()
    assert report.to_dict()["target"]["layers"][0]["mapped_to"] == "2:4"
    with pytest.raises(TasdcError) as info:
        simulate_module(module, "stc", mode="refuse")
    assert isinstance(info.value, UnsupportedPatternError)
    message = str(info.value)
    assert "\n" not in message and "1:4" in message and "'stc'" in message and "layer 'conv2d_0'" in message
    with pytest.raises(TasdcError, match="no TASD extraction units"):
        simulate_module(compiled("transformer", "dense"), "vegeta", mode="refuse", activations="2:4")
    # map mode runs such activations dense and says so
    mapped = simulate_module(compiled("transformer", "dense"), "vegeta", mode="map", activations="2:4")
    attention = [t for t in mapped.layers if t.mapped_from.startswith("TASD-A")]
    assert len(attention) == 4 and all(t.executed == "dense" and not t.tasd_a for t in attention)


def test_bad_target_and_stale_plan(compiled):
    module = compiled("mlp", "2:4")
    with pytest.raises(TasdcError, match="unknown hardware target 'tpu'"):
        simulate_module(module, "tpu")
    simulate_module(module, "stc")
    with pytest.raises(ProgramError, match="planned for target 'stc'"):
        lower_module(module, "vegeta")


# --------------------------------------------------------------------------
# every model on every shipped target; the report
# --------------------------------------------------------------------------


def test_all_models_on_all_targets(compiled):
    assert set(TARGETS) <= set(list_targets())
    for model in MODELS:
        for target in TARGETS:
            report = simulate_module(compiled(model, "2:4"), target)
            table = report.table()
            assert table.strip() and all(t.name in table for t in report.layers)
            assert "total" in table and f"dense/{target}" in table
            doc = json.loads(report.to_json())
            assert doc["schema"] == SCHEMA and doc["target"]["target"] == target
            assert len(doc["target"]["layers"]) == len(report.layers) > 0
            assert doc["baseline"]["target"] == "dense"
            assert set(doc["ratios"]) == {"latency", "energy", "edp"} and doc["ratios"]["latency"] > 0
            layer = doc["target"]["layers"][0]
            for key in ("name", "gemm", "executed", "instructions", "macs", "dense_macs", "compute_cycles",
                        "dram_cycles", "glb_cycles", "rf_cycles", "bound", "energy", "energy_j", "edp"):
                assert key in layer, key
            assert json.loads(json.dumps(doc)) == doc


def test_simulate_model_end_to_end(example_dir, tmp_path):
    out = tmp_path / "cnn-stc.json"
    report = simulate_model(example_dir / "cnn.pt2", "stc", config="2:4", json_path=out)
    doc = json.loads(out.read_text())
    assert doc["config"] == "2:4" and doc["source"].endswith("cnn.pt2")
    assert [l["name"] for l in doc["target"]["layers"]] == [t.name for t in report.layers]
    assert report.ratios["edp"] > 1.0  # 2:4 on STC beats dense
    assert "cnn.pt2" in report.table()


def test_reparsed_planned_module_simulates_identically(compiled):
    """The plan lives in the IR: printing and re-parsing keeps the numbers."""
    module = compiled("cnn", "1:8+1:8")
    first = simulate_module(module, "ttc-m8")
    text = str(module)
    again = parse_module(text, new_context())
    second = simulate_module(again, "ttc-m8")  # already planned: no re-planning
    assert [t.to_dict() for t in first.layers] == [t.to_dict() for t in second.layers]
    assert isinstance(again, ir.Module)


def test_custom_hardware_object(compiled):
    """A Hardware built in Python (three small arrays, a small GLB) runs a real model."""
    hw = _small_target()
    module = compiled("cnn", "2:4+1:4")
    report = simulate_module(module, hw, baseline=None)
    assert report.baseline is None and report.ratios is None and report.run.target == "small"
    assert {t.schedule for t in report.layers} != {"a_resident"}
    assert any("runs as" in r for r in report.run.remarks)  # mapping remarks are kept, not printed
    for trace in report.layers:
        batch, m, k, n = trace.gemm
        assert_trace_matches(trace, cost_layer(hw, m, k, n, trace.series, batch, mode="map",
                                               b_source=trace.b_source), trace.name)
    assert json.loads(report.to_json())["baseline"] is None
    assert "total" in report.table() and "x lat" not in report.table()


def test_every_contraction_is_costed_depthwise_and_grouped_as_dense():
    """A depthwise-separable block: the depthwise and grouped convolutions are not decomposed but
    are layers of both the TASD and the dense run (their MACs in both totals), costed as dense GEMMs
    (one per group) whose input is read once from DRAM."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
            self.pw = nn.Conv2d(16, 32, 1, bias=False)
            self.gc = nn.Conv2d(32, 32, 3, padding=1, groups=4, bias=False)

        def forward(self, x):
            return self.gc(torch.relu(self.pw(self.dw(x))))

    torch.manual_seed(0)
    imported = import_model(Block().eval(), (torch.randn(2, 16, 10, 10),))
    module = imported.module.operation.clone()
    with imported.context:
        run_pipeline(module, parse_pipeline("tasd-sparsity-analysis,tasd-decompose-weights{config=2:4}",
                                            imported.context))
    report = simulate_module(module, "stc")
    kinds = {t.kind: t for t in report.layers}
    assert set(kinds) == {"depthwise_conv2d", "conv2d", "grouped_conv2d"}
    dw, gc = kinds["depthwise_conv2d"], kinds["grouped_conv2d"]
    assert dw.gemm == (16, 1, 9, 2 * 10 * 10) and dw.series == "dense" and dw.executed == "dense"
    assert gc.gemm == (4, 8, 8 * 9, 2 * 10 * 10) and gc.series == "dense"
    assert kinds["conv2d"].series == "2:4"
    assert dw.b_source == 2 * 12 * 12        # per channel: its (padded) input plane, read once
    assert gc.b_source == 2 * 8 * 12 * 12
    for trace in report.layers:
        batch, m, k, n = trace.gemm
        assert_trace_matches(trace, cost_layer("stc", m, k, n, trace.series, batch, mode="map",
                                               b_source=trace.b_source), trace.name)
    base = {t.kind: t for t in report.baseline.layers}
    assert base["depthwise_conv2d"].macs == dw.macs == 16 * 9 * 200
    assert report.totals["macs"] == sum(t.macs for t in report.layers)
    assert report.baseline.totals["dense_macs"] == sum(t.dense_macs for t in report.layers)
    share = dw.dense_macs + gc.dense_macs
    share /= sum(t.dense_macs for t in report.layers)
    assert (f"not decomposed, costed dense in both runs: 2 depthwise/grouped convolution layers ({share:.1%} "
            "of the contraction MACs)") in report.table()
    assert "not modelled: non-contraction ops" in report.table()
