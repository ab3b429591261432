"""Hardware descriptions: shipped targets and validation of user files."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest

from tasdc.runtime.accel.hardware import (
    HARDWARE_DIR,
    Hardware,
    HardwareError,
    list_targets,
    load_hardware,
)

SHIPPED = ["dense", "stc", "ttc-m8", "vegeta"]


# --------------------------------------------------------------------------
# helpers: a tiny TOML writer for the schema's shapes
# --------------------------------------------------------------------------


def _val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_val(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def dumps(d: dict, prefix: str = "") -> str:
    lines = []
    tables = []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_val(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        out += f"\n[{name}]\n" + dumps(v, name)
    return out


def base(target: str = "stc") -> dict:
    with open(HARDWARE_DIR / f"{target}.toml", "rb") as f:
        return tomllib.load(f)


def write(tmp_path: Path, data: dict, name: str = "hw.toml") -> Path:
    p = tmp_path / name
    p.write_text(dumps(data))
    return p


def expect_error(tmp_path: Path, data: dict, key: str, *words: str) -> str:
    p = write(tmp_path, data)
    with pytest.raises(HardwareError) as ei:
        load_hardware(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(p) in msg, msg
    assert key in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# --------------------------------------------------------------------------
# shipped targets
# --------------------------------------------------------------------------


def test_list_targets():
    assert list_targets() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_targets_load(name):
    hw = load_hardware(name)
    assert isinstance(hw, Hardware)
    assert hw.name == name
    assert hw.macs == 1024
    assert hw.array.dataflow == "os"
    assert hw.technology.node_nm == 45
    assert load_hardware(HARDWARE_DIR / f"{name}.toml") == hw  # by path too
    hash(hw)  # frozen and hashable


def test_shipped_targets_are_comparable():
    """Same technology, array, buffers and datatypes; only sparsity differs
    (plus the B feed bandwidth and TTC's extraction units)."""
    hws = [load_hardware(n) for n in SHIPPED]
    ref = hws[0]
    for hw in hws[1:]:
        assert hw.technology == ref.technology
        assert hw.array == ref.array
        assert hw.datatype == ref.datatype
        assert hw.energy == ref.energy
        assert hw.memory.dram == ref.memory.dram
        assert hw.memory.glb.size_kib == ref.memory.glb.size_kib
        assert hw.memory.rf.size_kib == ref.memory.rf.size_kib
        assert hw.memory.rf.read_pj_per_byte == ref.memory.rf.read_pj_per_byte


def test_shipped_native_patterns():
    assert load_hardware("dense").native_pattern_names() == []
    assert load_hardware("stc").native_pattern_names() == ["2:4"]
    assert sorted(load_hardware("vegeta").native_pattern_names()) == ["1:4", "2:4"]
    assert sorted(load_hardware("ttc-m8").native_pattern_names()) == ["1:8", "2:8", "4:8"]
    assert load_hardware("stc").native(2, 4).speedup == 2.0
    assert load_hardware("vegeta").native(1, 4).speedup == 4.0
    assert load_hardware("ttc-m8").extraction is not None
    assert all(load_hardware(n).extraction is None for n in ("dense", "stc", "vegeta"))
    assert load_hardware("stc").supports(4, 4) and load_hardware("dense").supports(8, 8)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_cites_a_source(name):
    text = (HARDWARE_DIR / f"{name}.toml").read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if re.match(r"^[A-Za-z_]+\s*=\s*[-+0-9]", s):
            assert "#" in s, f"{name}.toml line {i + 1} has no source comment: {s}"
        if s.startswith("{"):  # inline pattern tables: a comment in the block above
            block = lines[:i + 1]
            start = max(j for j, x in enumerate(block) if x.strip().startswith("patterns"))
            assert any("#" in x for x in block[start:]), s
    assert "assumption:" in text


def test_user_copy_can_be_edited(tmp_path):
    d = base("stc")
    d["array"]["rows"] = 16
    d["name"] = "stc-small"
    hw = load_hardware(write(tmp_path, d))
    assert hw.name == "stc-small" and hw.array.rows == 16 and hw.macs == 512
    assert Path(hw.source).name == "hw.toml"


def test_unknown_target_name():
    with pytest.raises(HardwareError, match="unknown hardware target 'tpu'.*stc"):
        load_hardware("tpu")


def test_missing_file(tmp_path):
    p = tmp_path / "nope.toml"
    with pytest.raises(HardwareError, match="nope.toml"):
        load_hardware(p)


def test_hardware_error_is_value_error():
    assert issubclass(HardwareError, ValueError)


def test_toml_syntax_error(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("name = \n")
    with pytest.raises(HardwareError) as ei:
        load_hardware(p)
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)


# --------------------------------------------------------------------------
# validation rules: each names the file and the key
# --------------------------------------------------------------------------


def mutate(path: str, value, target: str = "stc") -> dict:
    d = copy.deepcopy(base(target))
    *parents, last = path.split(".")
    cur = d
    for p in parents:
        cur = cur[p]
    if value is _DELETE:
        del cur[last]
    else:
        cur[last] = value
    return d


_DELETE = object()


@pytest.mark.parametrize("path,key", [
    ("colour", "colour"),
    ("array.colums", "array.colums"),
    ("memory.glb.banks", "memory.glb.banks"),
    ("memory.cache", "memory.cache"),
    ("technology.vdd", "technology.vdd"),
])
def test_unknown_keys(tmp_path, path, key):
    expect_error(tmp_path, mutate(path, 1), key, "unknown key")


def test_unknown_key_in_pattern(tmp_path):
    d = base("stc")
    d["sparsity"]["patterns"][0]["k"] = 4
    expect_error(tmp_path, d, "sparsity.patterns[0].k", "unknown key")


def test_unknown_key_in_extraction(tmp_path):
    d = base("ttc-m8")
    d["extraction"]["width"] = 8
    expect_error(tmp_path, d, "extraction.width", "unknown key")


@pytest.mark.parametrize("path", [
    "name", "array.rows", "memory.dram.energy_pj_per_byte", "energy", "memory.rf",
    "sparsity.patterns", "schema_version", "technology.clock_ghz",
])
def test_missing_keys(tmp_path, path):
    expect_error(tmp_path, mutate(path, _DELETE), path, "missing")


def test_missing_key_in_pattern(tmp_path):
    d = base("stc")
    del d["sparsity"]["patterns"][0]["speedup"]
    expect_error(tmp_path, d, "sparsity.patterns[0].speedup", "missing")


def test_optional_keys(tmp_path):
    d = mutate("description", _DELETE)
    assert load_hardware(write(tmp_path, d)).description == ""


@pytest.mark.parametrize("path,value,words", [
    ("array.rows", "32", ("integer",)),
    ("array.rows", 32.0, ("integer",)),
    ("array.rows", True, ("boolean",)),
    ("technology.clock_ghz", "fast", ("number",)),
    ("technology.clock_ghz", False, ("boolean",)),
    ("name", 3, ("string",)),
    ("array.dataflow", 1, ("string",)),
    ("sparsity.patterns", "2:4", ("array",)),
    ("memory.glb", 5, ("table",)),
    ("sparsity.metadata_bits", 2.0, ("integer",)),
])
def test_wrong_types(tmp_path, path, value, words):
    expect_error(tmp_path, mutate(path, value), path, *words)


def test_wrong_type_in_pattern(tmp_path):
    d = base("stc")
    d["sparsity"]["patterns"][0]["n"] = "2"
    expect_error(tmp_path, d, "sparsity.patterns[0].n", "integer")


@pytest.mark.parametrize("path,value", [
    ("array.rows", 0),
    ("array.cols", -32),
    ("array.count", 0),
    ("memory.glb.size_kib", -1),
    ("memory.rf.size_kib", 0),
    ("memory.dram.bandwidth_gb_per_s", 0.0),
    ("memory.glb.bandwidth_bytes_per_cycle", 0),
    ("technology.clock_ghz", 0),
    ("datatype.value_bytes", 0),
])
def test_zero_or_negative_sizes(tmp_path, path, value):
    expect_error(tmp_path, mutate(path, value), path, "> 0")


@pytest.mark.parametrize("path", [
    "energy.mac_pj", "memory.dram.energy_pj_per_byte", "memory.glb.read_pj_per_byte",
    "sparsity.metadata_bits",
])
def test_negative_energies(tmp_path, path):
    expect_error(tmp_path, mutate(path, -1), path, ">= 0")


@pytest.mark.parametrize("pattern,key,words", [
    ({"n": 5, "m": 4, "speedup": 1.0}, "sparsity.patterns[0].n", ("N > M", "5:4")),
    ({"n": 0, "m": 4, "speedup": 1.0}, "sparsity.patterns[0].n", (">= 1", "0:4")),
    ({"n": -1, "m": 4, "speedup": 1.0}, "sparsity.patterns[0].n", (">= 1",)),
    ({"n": 2, "m": 0, "speedup": 1.0}, "sparsity.patterns[0].m", (">= 1",)),
    ({"n": 2, "m": 6, "speedup": 2.0}, "sparsity.patterns[0].m", ("power of two", "2:6")),
    ({"n": 1, "m": 8, "speedup": 8.0}, "sparsity.patterns[0].m", ("metadata", "1:8", "3")),
    ({"n": 2, "m": 4, "speedup": 3.0}, "sparsity.patterns[0].speedup", ("M/N", "2:4")),
    ({"n": 2, "m": 4, "speedup": 0.5}, "sparsity.patterns[0].speedup", ("2:4",)),
    ({"n": 4, "m": 4, "speedup": 2.0}, "sparsity.patterns[0].speedup", ("dense", "4:4")),
])
def test_pattern_rules(tmp_path, pattern, key, words):
    d = base("stc")  # 2-bit metadata
    d["sparsity"]["patterns"] = [pattern]
    expect_error(tmp_path, d, key, *words)


def test_duplicate_pattern(tmp_path):
    d = base("stc")
    d["sparsity"]["patterns"] = [{"n": 2, "m": 4, "speedup": 2.0}, {"n": 2, "m": 4, "speedup": 1.5}]
    expect_error(tmp_path, d, "sparsity.patterns[1]", "duplicate", "2:4")


def test_unsupported_dataflow(tmp_path):
    expect_error(tmp_path, mutate("array.dataflow", "ws"), "array.dataflow", "'ws'", "'os'")


def test_schema_version(tmp_path):
    expect_error(tmp_path, mutate("schema_version", 2), "schema_version", "unsupported")


def test_extraction_needs_sparse_patterns(tmp_path):
    d = base("dense")
    d["extraction"] = dict(base("ttc-m8")["extraction"])
    expect_error(tmp_path, d, "extraction", "sparse pattern")


def test_metadata_buffer_needed_for_sparse(tmp_path):
    expect_error(tmp_path, mutate("memory.glb.metadata_size_kib", 0),
                 "memory.glb.metadata_size_kib", "sparse")


def test_rf_must_stage_a_block(tmp_path):
    d = mutate("memory.rf.size_kib", 0.0625)  # 64 B < 32 cols x 4 x 1 B
    expect_error(tmp_path, d, "memory.rf.size_kib", "block")


def test_empty_name(tmp_path):
    expect_error(tmp_path, mutate("name", "  "), "name", "empty")


def test_dense_target_schema_roundtrip(tmp_path):
    hw = load_hardware(write(tmp_path, base("dense")))
    assert hw.sparsity.patterns == () and hw.sparsity.metadata_bits == 0
