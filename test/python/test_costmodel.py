"""The analytical cost model (vectorised core + per-layer wrapper)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasdc.runtime.accel.costmodel import (
    BOUNDS,
    ENERGY_COMPONENTS,
    LayerShapes,
    Pattern,
    UnsupportedPatternError,
    cost_layer,
    evaluate,
    parse_series,
    resolve_series,
)
from tasdc.runtime.accel.hardware import HARDWARE_DIR

ROOT = Path(__file__).resolve().parents[2]
BIG = (1024, 2048, 512)  # Mo, K, No: compute-bound on stc/vegeta, fill/drain small


# --------------------------------------------------------------------------
# series specs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _P:
    n: int
    m: int


@dataclass(frozen=True)
class _Cfg:
    terms: tuple


def test_parse_series_forms():
    assert parse_series("dense") == ()
    assert parse_series("") == ()
    assert parse_series(()) == ()
    assert parse_series("2:4") == (Pattern(2, 4),)
    assert parse_series(" 2:4 + 1:4 ") == (Pattern(2, 4), Pattern(1, 4))
    assert parse_series(((2, 4), (1, 4))) == (Pattern(2, 4), Pattern(1, 4))
    assert parse_series((2, 4)) == (Pattern(2, 4),)
    assert parse_series([Pattern(2, 8)]) == (Pattern(2, 8),)
    assert parse_series(_Cfg((_P(4, 8), _P(2, 8)))) == (Pattern(4, 8), Pattern(2, 8))


@pytest.mark.parametrize("bad", ["2:4+", "2-4", "a:b", "5:4", "0:4", "2:4:8", ((2, 4, 1),)])
def test_parse_series_rejects(bad):
    with pytest.raises(ValueError):
        parse_series(bad)


# --------------------------------------------------------------------------
# compute cycles
# --------------------------------------------------------------------------


def test_dense_formula_matches_os_systolic():
    c = cost_layer(_variant("dense", overlap=False), 100, 37, 70)   # SCALE-Sim's per-fold fill/drain
    assert c.folds == 4 * 3
    assert c.compute_cycles == 12 * (37 + 32 + 32 - 2)
    assert c.mac_cycles == 12 * 37 and c.fill_drain_cycles == 12 * 62
    assert c.mapping_efficiency == pytest.approx(100 * 70 / (128 * 96))
    assert c.macs == c.dense_macs == 100 * 37 * 70


def test_stc_2to4_halves_mac_cycles_compute_bound():
    d = cost_layer("stc", *BIG, "dense")
    s = cost_layer("stc", *BIG, "2:4")
    assert d.bound == "compute" and s.bound == "compute"
    assert s.mac_cycles * 2 == d.mac_cycles
    assert s.fill_drain_cycles == d.fill_drain_cycles
    assert s.macs * 2 == d.macs
    # compute-bound: latency = compute = MAC cycles + the (unchanged) fill/drain
    assert s.latency_cycles == s.compute_cycles == d.mac_cycles / 2 + d.fill_drain_cycles
    assert s.latency_cycles / d.latency_cycles < 0.52


def test_vegeta_1to4_quarter():
    d = cost_layer("vegeta", *BIG, "dense")
    s = cost_layer("vegeta", *BIG, "1:4")
    assert s.bound == "compute"
    assert s.mac_cycles * 4 == d.mac_cycles
    assert cost_layer("vegeta", *BIG, "2:4").mac_cycles * 2 == d.mac_cycles


def test_ttc_1to8_eighth():
    d = cost_layer("ttc-m8", *BIG, "dense")
    s = cost_layer("ttc-m8", *BIG, "1:8")
    assert s.mac_cycles * 8 == d.mac_cycles


def test_series_shares_fill_drain_and_adds_streams():
    one = cost_layer("vegeta", 256, 512, 256, "2:4")
    two = cost_layer("vegeta", 256, 512, 256, "2:4+1:4")
    assert two.fill_drain_cycles == one.fill_drain_cycles
    assert two.mac_cycles == one.mac_cycles + 64 * (512 // 4)
    assert [t.mac_cycles for t in two.terms] == [64 * 256, 64 * 128]


def test_ceil_tiling_and_block_padding():
    c = cost_layer("stc", 33, 10, 65, "2:4")  # K=10 -> 3 blocks -> 6 kept per row
    assert c.folds == 2 * 3
    assert c.mac_cycles == 6 * 6
    assert c.macs == 33 * 65 * 6
    assert c.mapping_efficiency == pytest.approx(33 * 65 / (64 * 96))
    assert 0 < c.mac_utilization < c.mapping_efficiency


def test_batch_and_array_count(tmp_path):
    stc = _variant("stc", overlap=False)
    one = cost_layer(stc, 64, 256, 64, "2:4")
    four = cost_layer(stc, 64, 256, 64, "2:4", batch=4)
    assert four.compute_cycles == 4 * one.compute_cycles
    assert four.energy_j == pytest.approx(4 * one.energy_j)
    # two arrays: folds spread over both
    text = (HARDWARE_DIR / "stc.toml").read_text().replace("count = 1 ", "count = 2 ").replace(
        "fill_drain_overlap = true", "fill_drain_overlap = false")
    p = tmp_path / "stc2.toml"
    p.write_text(text)
    two = cost_layer(p, 64, 256, 64, "2:4", batch=4)
    assert two.waves == four.waves / 2
    assert two.compute_cycles == four.compute_cycles / 2
    assert two.energy_j == pytest.approx(four.energy_j)


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------


def test_small_layer_everything_on_chip():
    c = cost_layer("stc", 64, 128, 64, "2:4")
    a = 64 * 64 * 1 + 64 * 64 * 2 / 8  # compressed values + 2-bit metadata
    assert c.a_dram_passes == 1 and c.b_dram_passes == 1
    assert c.dram_bytes == pytest.approx(a + 128 * 64 + 64 * 64)
    assert c.dram_metadata_bytes == pytest.approx(64 * 64 * 2 / 8)
    assert c.b_in_rf == 1


def test_large_layer_refetches():
    c = cost_layer("dense", 2048, 2048, 2048, "dense")
    assert max(c.a_dram_passes, c.b_dram_passes) > 1
    assert c.dram_bytes > 3 * 2048 * 2048
    assert c.b_in_rf == 0


def test_rf_residency_saves_glb_reads():
    small_k = cost_layer("stc", 512, 128, 512, "dense")   # B panel 4 KiB fits the 8 KiB RF
    big_k = cost_layer("stc", 512, 512, 512, "dense")     # 16 KiB does not
    assert small_k.b_in_rf == 1 and big_k.b_in_rf == 0


def test_gemv_is_memory_bound():
    c = cost_layer("stc", 4096, 4096, 1, "2:4")
    assert c.bound == "dram"
    assert c.latency_cycles == pytest.approx(c.dram_cycles)


def test_metadata_traffic_only_for_sparse():
    d = cost_layer("stc", 256, 256, 256, "dense")
    s = cost_layer("stc", 256, 256, 256, "2:4")
    assert d.dram_metadata_bytes == 0 and d.glb_metadata_bytes == 0 and d.energy_metadata_j == 0
    assert s.dram_metadata_bytes > 0 and s.glb_metadata_bytes > 0 and s.energy_metadata_j > 0
    m3 = cost_layer(_variant("ttc-m8", shared=False), 256, 256, 256, "4:8")  # 3-bit metadata, same density
    assert m3.dram_metadata_bytes == pytest.approx(s.dram_metadata_bytes * 3 / 2)
    # the shipped ttc-m8 shares one 8-bit mask per block: 4:8 needs 8 bits per block, not 4 x 3
    mask = cost_layer("ttc-m8", 256, 256, 256, "4:8")
    assert mask.dram_metadata_bytes == pytest.approx(m3.dram_metadata_bytes * 8 / 12)


# --------------------------------------------------------------------------
# energy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("target,series", [
    ("dense", "dense"), ("stc", "2:4"), ("vegeta", "2:4+1:4"), ("ttc-m8", "4:8+2:8+1:8"),
])
def test_energy_positive_and_components_sum(target, series):
    c = cost_layer(target, 300, 700, 200, series)
    assert c.energy_j > 0 and c.latency_s > 0 and c.edp > 0
    parts = c.energy
    assert set(parts) == set(ENERGY_COMPONENTS)
    assert all(v >= 0 for v in parts.values())
    assert sum(parts.values()) == pytest.approx(c.energy_j)
    assert c.edp == pytest.approx(c.energy_j * c.latency_s)
    assert c.latency_s == pytest.approx(c.latency_cycles / 1e9)


def test_energy_additive_over_layers():
    shapes = [(64, 576, 3136), (128, 1152, 784), (256, 2304, 196), (1000, 2048, 1)]
    cfgs = ["dense", "2:4", "2:4+2:4"]
    t = evaluate("stc", shapes, cfgs)
    for j, cfg in enumerate(cfgs):
        singles = [cost_layer("stc", *s, cfg) for s in shapes]
        assert t.totals()["energy_j"][j] == pytest.approx(sum(c.energy_j for c in singles))
        assert t.totals()["latency_cycles"][j] == pytest.approx(sum(c.latency_cycles for c in singles))
    choice = [0, 1, 2, 1]
    tot = t.totals(choice)
    assert tot["energy_j"] == pytest.approx(sum(t.energy_j[i, c] for i, c in enumerate(choice)))
    assert tot["edp"] == pytest.approx(tot["energy_j"] * tot["latency_s"])


def test_sparse_is_cheaper_on_its_native_target():
    for target, s in (("stc", "2:4"), ("vegeta", "1:4"), ("ttc-m8", "1:8")):
        d = cost_layer(target, *BIG, "dense")
        c = cost_layer(target, *BIG, s)
        assert c.energy_j < d.energy_j and c.edp < d.edp


# --------------------------------------------------------------------------
# monotonicity: adding a term never lowers cost
# --------------------------------------------------------------------------

_TERMS = {
    "stc": ["2:4", "1:4", "1:8", "2:8", "4:8", "4:4", "1:2"],
    "vegeta": ["1:4", "2:4", "1:8", "4:4", "1:2", "2:8"],
    "ttc-m8": ["1:8", "2:8", "4:8", "1:4", "2:4", "8:8", "1:16"],
    "dense": ["2:4", "1:8"],
}
_MONO_FIELDS = ("latency_cycles", "compute_cycles", "mac_cycles", "energy_j", "edp", "dram_bytes",
                "glb_bytes", "rf_bytes", "extraction_ops") + tuple(f"energy_{c}_j" for c in ENERGY_COMPONENTS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(sorted(_TERMS)),
    m=st.integers(1, 3000), k=st.integers(1, 5000), n=st.integers(1, 5000),
    batch=st.integers(1, 4), data=st.data(),
)
def test_adding_a_term_never_lowers_cost(target, m, k, n, batch, data):
    terms = _TERMS[target]
    series = data.draw(st.lists(st.sampled_from(terms), min_size=1, max_size=3))
    extra = data.draw(st.sampled_from(terms))
    tasd_a = target == "ttc-m8" and data.draw(st.booleans())
    base = "+".join(series)
    longer = base + "+" + extra
    t = evaluate(target, LayerShapes.single(m, k, n, batch, tasd_a), [base, longer], mode="map")
    for f in _MONO_FIELDS:
        a, b = getattr(t, f)[0]
        assert b >= a * (1 - 1e-12), (f, base, longer, a, b)


# --------------------------------------------------------------------------
# unsupported patterns: refuse / map
# --------------------------------------------------------------------------


def test_refuse_raises_naming_target_and_pattern():
    with pytest.raises(UnsupportedPatternError) as ei:
        cost_layer("stc", 64, 64, 64, "1:8")
    msg = str(ei.value)
    assert "'stc'" in msg and "1:8" in msg and "2:4" in msg
    with pytest.raises(UnsupportedPatternError, match="'dense'.*2:4"):
        evaluate("dense", [(64, 64, 64)], ["dense", "2:4"])
    assert issubclass(UnsupportedPatternError, ValueError)


def test_dense_patterns_always_run_dense():
    ref = cost_layer("stc", 256, 256, 256, "dense")
    for target, pat in (("stc", "4:4"), ("dense", "8:8"), ("vegeta", "4:4"), ("ttc-m8", "8:8")):
        c = cost_layer(target, 256, 256, 256, pat)  # refuse mode: no error
        assert c.executed == "dense" and c.mapped_from == ()
        assert c.mac_cycles == ref.mac_cycles
    assert cost_layer("dense", 256, 256, 256, "4:4").energy_j == pytest.approx(
        cost_layer("dense", 256, 256, 256, "dense").energy_j)


@pytest.mark.parametrize("target,req,to", [
    ("stc", "1:4", "2:4"),       # same M, next denser
    ("stc", "1:8", "2:4"),       # a 4-block of 1:8 holds <= 1 non-zero
    ("stc", "2:8", "2:4"),
    ("stc", "1:2", "2:4"),       # a 4-block of 1:2 holds <= 2
    ("stc", "4:8", "dense"),     # no native pattern contains it
    ("stc", "3:4", "dense"),
    ("vegeta", "1:8", "1:4"),
    ("vegeta", "3:8", "dense"),
    ("ttc-m8", "1:4", "2:8"),
    ("ttc-m8", "2:4", "4:8"),
    ("ttc-m8", "3:8", "4:8"),
    ("ttc-m8", "1:16", "1:8"),
    ("dense", "2:4", "dense"),
])
def test_map_records_mapping(target, req, to):
    c = cost_layer(target, 128, 256, 128, req, mode="map")
    assert c.mapped_from == (req,) and c.mapped_to == (to,)
    assert c.terms[0].mapped and c.terms[0].executed == to
    direct = cost_layer(target, 128, 256, 128, "dense" if to == "dense" else to)
    assert c.mac_cycles == direct.mac_cycles
    assert c.energy_j == pytest.approx(direct.energy_j)


def test_map_in_series_only_marks_mapped_terms():
    plan = resolve_series("stc", "2:4+1:4", mode="map")
    assert plan.mapped_from == ("1:4",) and plan.mapped_to == ("2:4",)
    assert plan.executed_label == "2:4+2:4"
    with pytest.raises(ValueError, match="mode"):
        resolve_series("stc", "2:4", mode="maybe")


def test_tasd_a_needs_extraction_units():
    with pytest.raises(UnsupportedPatternError, match="'stc'.*extraction"):
        cost_layer("stc", 128, 256, 128, "2:4", tasd_a=True)
    cost_layer("stc", 128, 256, 128, "dense", tasd_a=True)  # nothing to extract: fine
    a = cost_layer("ttc-m8", 128, 256, 128, "2:8+1:8", tasd_a=True)
    w = cost_layer("ttc-m8", 128, 256, 128, "2:8+1:8", tasd_a=False)
    assert a.extraction_ops == 128 * (256 // 8) * 2 and a.energy_extraction_j > 0
    assert a.dram_metadata_bytes == 0 and w.dram_metadata_bytes > 0
    assert w.extraction_ops == 0 and w.energy_extraction_j == 0
    assert a.mac_cycles == w.mac_cycles


# --------------------------------------------------------------------------
# vectorised == per-layer
# --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["dense", "stc", "vegeta", "ttc-m8"])
def test_vectorised_equals_per_layer(target):
    rng = np.random.default_rng(7)
    n = 25
    layers = LayerShapes.from_arrays(rng.integers(1, 3000, n), rng.integers(1, 5000, n),
                                     rng.integers(1, 20000, n), rng.integers(1, 4, n),
                                     tasd_a=(target == "ttc-m8") & (rng.random(n) < 0.5))
    cfgs = ["dense"] + _TERMS[target][:3] + ["+".join(_TERMS[target][:2])]
    t = evaluate(target, layers, cfgs, mode="map")
    assert t.shape == (n, len(cfgs))
    assert t.energy_j.shape == (n, len(cfgs)) and t.bound.shape == (n, len(cfgs))
    for i in range(n):
        for j, cfg in enumerate(cfgs):
            one = cost_layer(target, int(layers.m[i]), int(layers.k[i]), int(layers.n[i]), cfg,
                             batch=int(layers.batch[i]), tasd_a=bool(layers.tasd_a[i]), mode="map")
            assert one == t.layer_cost(i, j)


def test_cost_table_helpers():
    t = evaluate("vegeta", [(512, 1024, 512), (64, 64, 64)], ["dense", "2:4", "1:4"])
    assert t.configs == ("dense", "2:4", "1:4")
    assert list(t.best("edp")) == [2, 2]
    assert set(np.unique(t.bound)) <= set(BOUNDS)
    assert set(t.energy_by_component()) == set(ENERGY_COMPONENTS)
    assert t.term_mac_cycles.shape == (2, 3, 1)


def test_layer_shapes_validation():
    with pytest.raises(ValueError, match="m"):
        LayerShapes.from_arrays([0], [1], [1])
    with pytest.raises(ValueError, match="k"):
        LayerShapes.from_arrays([1], [2.5], [1])
    with pytest.raises(ValueError, match="n"):
        LayerShapes.from_arrays([1, 2], [1, 2], [1])
    with pytest.raises(ValueError):
        LayerShapes.from_list([(1, 2)])
    sub = LayerShapes.from_list([(1, 2, 3), (4, 5, 6, 2)], names=["a", "b"])[1:]
    assert list(sub.m) == [4] and list(sub.batch) == [2] and sub.names == ("b",)


def test_to_json_roundtrip():
    c = cost_layer("stc", 100, 200, 300, "1:4+2:4", mode="map")
    d = json.loads(c.to_json())
    assert d["series"] == "1:4+2:4" and d["executed"] == "2:4+2:4"
    assert d["mapped_from"] == ["1:4"] and d["mapped_to"] == ["2:4"]
    assert d["energy_by_component_j"]["mac"] == c.energy_mac_j
    assert len(d["terms"]) == 2 and d["bound"] in BOUNDS


# --------------------------------------------------------------------------
# SCALE-Sim cross-check (one small shape; the full table is
# benchmarks/validate_scalesim.py)
# --------------------------------------------------------------------------


def _validator():
    spec = importlib.util.spec_from_file_location("validate_scalesim",
                                                  ROOT / "benchmarks" / "validate_scalesim.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dense_compute_cycles_match_scalesim():
    pytest.importorskip("scalesim")
    v = _validator()
    mo, k, no = 64, 100, 48
    ss = v.scalesim_cycles(mo, k, no)
    ours = cost_layer(v.scalesim_target("dense"), mo, k, no).compute_cycles
    assert ss["stall"] == 0
    assert ss["array"] == ours
    assert abs(ss["report"] - ours) <= v.TOLERANCE_CYCLES


def test_accepts_decompose_series_config():
    dec = pytest.importorskip("tasdc.decompose")
    cfg = dec.parse_config("2:4+1:4")
    assert parse_series(cfg) == (Pattern(2, 4), Pattern(1, 4))
    t = evaluate("vegeta", [(128, 256, 128)], [dec.parse_config("dense"), cfg])
    assert t.configs == ("dense", "2:4+1:4")
    assert cost_layer("vegeta", 128, 256, 128, cfg) == t.layer_cost(0, 1)


# --------------------------------------------------------------------------
# hardware-file options and convolutions (cost-model fidelity)
# --------------------------------------------------------------------------


def _variant(base: str, **options):
    """A shipped target with ``array.fill_drain_overlap`` / ``sparsity.shared_metadata`` set."""
    import tomllib

    from tasdc.runtime.accel.hardware import hardware_from_dict

    data = tomllib.loads((HARDWARE_DIR / f"{base}.toml").read_text())
    data["name"] = f"{base}-variant"
    if "overlap" in options:
        data["array"]["fill_drain_overlap"] = options["overlap"]
    if "shared" in options:
        data["sparsity"]["shared_metadata"] = options["shared"]
    return hardware_from_dict(data, f"{base}-variant")


def test_fill_drain_overlap_pays_the_skew_once_per_layer():
    off, on = _variant("ttc-m8", overlap=False), _variant("ttc-m8", overlap=True)
    # long folds: the stream (2048/4 = 512 cycles at 2:8) hides the 32-cycle drain
    a, b = cost_layer(off, 1024, 2048, 512, "2:8"), cost_layer(on, 1024, 2048, 512, "2:8")
    folds = 32 * 16
    assert a.compute_cycles == folds * (512 + 62)                       # SCALE-Sim: skew in every fold
    assert b.compute_cycles == folds * 512 + 62                          # one fill + drain per layer
    assert b.mac_cycles == a.mac_cycles and b.fill_drain_cycles == 62
    # short folds (K = 64 at 1:8: 8 stream cycles) wait for the 32-cycle drain of C
    c = cost_layer(on, 64, 64, 64, "1:8")
    assert c.compute_cycles == 4 * 32 + 62 and c.fill_drain_cycles == 4 * (32 - 8) + 62
    # a one-fold layer is the same either way
    assert cost_layer(on, 32, 300, 32).compute_cycles == cost_layer(off, 32, 300, 32).compute_cycles


def test_shipped_overlap_settings():
    from tasdc.runtime.accel.hardware import list_targets, load_hardware

    # every shipped array pipelines its folds (same array on every target); the SCALE-Sim
    # cross-check switches the option off because SCALE-Sim serialises fill/drain per fold
    assert all(load_hardware(t).array.fill_drain_overlap for t in list_targets())
    assert not _validator().scalesim_target("dense").array.fill_drain_overlap
    assert not load_hardware("stc").sparsity.shared_metadata  # Sparseloop's STC: 2-bit CP per value
    assert load_hardware("ttc-m8").sparsity.shared_metadata


def test_shared_metadata_one_mask_per_block():
    per_term, shared = _variant("ttc-m8", shared=False), _variant("ttc-m8", shared=True)
    m, k, n = 256, 512, 256
    blocks = m * (k // 8)
    # 2:8+1:8: per term 3 kept values x 3 bits = 9 bits per block; shared: one 8-bit mask
    assert cost_layer(per_term, m, k, n, "2:8+1:8").dram_metadata_bytes == pytest.approx(blocks * 9 / 8)
    assert cost_layer(shared, m, k, n, "2:8+1:8").dram_metadata_bytes == pytest.approx(blocks * 8 / 8)
    # a single 1:8 term: its 3-bit index is shorter than a mask, so nothing changes
    assert cost_layer(shared, m, k, n, "1:8").dram_metadata_bytes == pytest.approx(blocks * 3 / 8)
    # 4:8+2:8: 18 bits per term -> 8-bit mask; energy falls with the bytes
    a, b = cost_layer(per_term, m, k, n, "4:8+2:8"), cost_layer(shared, m, k, n, "4:8+2:8")
    assert b.dram_metadata_bytes == pytest.approx(a.dram_metadata_bytes * 8 / 18)
    assert b.energy_metadata_j < a.energy_metadata_j and b.macs == a.macs
    # dense layers carry no metadata either way
    assert cost_layer(shared, m, k, n, "dense").dram_metadata_bytes == 0


def test_convolution_reads_its_input_once():
    # 3x3 conv, 64 -> 64 channels on 1x64x28x28 (padding 1): im2col B is 9x the input
    c, h, w, f = 64, 28, 28, 64
    k, n = c * 9, h * w
    src = c * h * w
    im2col = cost_layer("stc", f, k, n, "2:4")
    conv = cost_layer("stc", f, k, n, "2:4", b_source=src)
    assert conv.b_dram_passes == im2col.b_dram_passes == 1
    assert im2col.dram_bytes - conv.dram_bytes == pytest.approx((k * n - src) * 1.0)
    assert conv.energy_dram_j < im2col.energy_dram_j
    # compute and the on-chip im2col (GLB -> RF reads of the panels) are unchanged
    assert conv.compute_cycles == im2col.compute_cycles and conv.rf_bytes == im2col.rf_bytes
    # a 1x1 stride-1 conv's input is its B: nothing changes; a larger source never costs more than im2col
    assert cost_layer("stc", f, c, n, "2:4", b_source=c * n) == cost_layer("stc", f, c, n, "2:4")
    assert cost_layer("stc", f, c, n // 4, b_source=c * n) == cost_layer("stc", f, c, n // 4)


def test_hardware_option_must_be_boolean(tmp_path):
    from tasdc.runtime.accel.hardware import HardwareError, load_hardware

    p = tmp_path / "bad.toml"
    p.write_text((HARDWARE_DIR / "stc.toml").read_text().replace("fill_drain_overlap = true", "fill_drain_overlap = 1"))
    with pytest.raises(HardwareError, match=r"array\.fill_drain_overlap: expected true or false, got an integer"):
        load_hardware(p)
