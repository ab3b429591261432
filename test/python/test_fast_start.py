"""The cached start reads weights at memory speed and never trusts a stale entry.

* ``blob_view`` (tasdc/blob_reader.py) finds a ``dense_resource`` blob's own
  bytes behind the attribute; what it returns must be exactly the blob, for
  blobs MLIR owns (parsed text) and blobs over numpy buffers, and it must
  refuse (``None``: the getter loops run instead) whatever it cannot check.
* The caches are keyed by the weights: one changed byte of one compressed
  weight (a value or an index) must miss the kernel cache, and one changed
  byte of a bound dense weight must reach the result although the machine
  code comes from the cache. A key that ignored a weight would give a wrong
  answer silently, so every check compares against an uncached compile of
  the changed module, bit for bit (same code path on both sides).
* A cold compile and a cached start in a new process give bit-identical
  results (same machine code, same packed kernels, same inputs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_mlir import ir

from tasdc import blob_reader
from tasdc.compiler import CompileOptions, compile_model
from tasdc.elements import make_elements, read_elements, read_elements_transposed, resource_view
from tasdc.module import new_context
from tasdc.runtime.cpu.executor import compile_for_cpu

_PARSED = """
func.func @f() -> (tensor<3x5xf32>, tensor<2x4xi8>) {
  %0 = arith.constant dense_resource<w> : tensor<3x5xf32>
  %1 = arith.constant dense_resource<idx> : tensor<2x4xi8>
  return %0, %1 : tensor<3x5xf32>, tensor<2x4xi8>
}
{-#
  dialect_resources: {
    builtin: {
      w: "0x040000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041",
      idx: "0x010000000001020303020100"
    }
  }
#-}
"""


def _constants(module: ir.Module) -> list[ir.OpView]:
    found: list[ir.OpView] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "arith.constant":
            found.append(op.opview)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def test_view_of_a_parsed_blob_is_the_blob() -> None:
    with new_context():
        module = ir.Module.parse(_PARSED)
        values, indices = (op.attributes["value"] for op in _constants(module))
        view = resource_view(values)
        assert view is not None and not view.flags.writeable
        np.testing.assert_array_equal(view, np.arange(1, 16, dtype=np.float32).reshape(3, 5))
        np.testing.assert_array_equal(resource_view(indices), np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.int8))
        np.testing.assert_array_equal(read_elements_transposed(values), view.T)
        copy = read_elements(values)
        assert copy.flags.writeable and not np.shares_memory(copy, view)
    del module, values, indices
    # The view keeps its attribute, hence the context and the blob, alive.
    np.testing.assert_array_equal(view.ravel(), np.arange(1, 16, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64])
def test_view_of_a_buffer_blob_shares_the_buffer(dtype) -> None:
    data = (np.arange(130 * 70).reshape(130, 70) % 113 - 50).astype(dtype)
    with new_context(), ir.Location.unknown():
        attr = make_elements(data, "w")
        view = resource_view(attr)
    assert view is not None and np.shares_memory(view, data)
    np.testing.assert_array_equal(view, data)


def test_renamed_keys_view_their_own_blob() -> None:
    """Parsing the same key twice into one context renames the second blob
    (``w_1``): each attribute must view its own bytes."""
    with new_context():
        first = ir.Module.parse(_PARSED)
        second = ir.Module.parse(_PARSED.replace("0000803F", "0000A03F"))  # element 0: 1.0 -> 1.25
        a, b = (_constants(m)[0].attributes["value"] for m in (first, second))
        assert resource_view(a)[0, 0] == 1.0 and resource_view(b)[0, 0] == 1.25


def test_unverifiable_pointer_falls_back_to_the_getter(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the found bytes disagree with MLIR's getter the view is refused and
    the getter loop reads the same values."""
    data = np.random.default_rng(0).standard_normal((40, 24)).astype(np.float32)
    decoy = data.copy()
    decoy[17, 3] += 1.0  # one element off
    with new_context(), ir.Location.unknown():
        attr = make_elements(data, "w")
        monkeypatch.setattr(blob_reader, "_find_data", lambda *args: decoy.ctypes.data)
        monkeypatch.setattr(blob_reader, "_SAMPLES", data.size)  # sample every element
        assert resource_view(attr) is None
        np.testing.assert_array_equal(read_elements(attr), data)
        np.testing.assert_array_equal(read_elements_transposed(attr), data.T)
        monkeypatch.setattr(blob_reader, "_find_data", lambda *args: None)
        assert resource_view(attr) is None
        np.testing.assert_array_equal(read_elements(attr, copy=False), data)


def test_unreadable_memory_is_refused_not_faulted() -> None:
    assert blob_reader._read(16, 8) is None
    assert blob_reader._find_data(16, b"w", 4) is None


# ---- caches keyed by every weight byte ---------------------------------------


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32)).eval()


_X = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)


def _compile(config: str):
    return compile_model(_model(), (torch.from_numpy(_X),), CompileOptions(config=config))


def _change_one_byte(op: ir.OpView, flat_index: int, byte: int) -> None:
    """Replace ``op``'s constant with a copy whose element ``flat_index`` has
    ``byte`` XOR-ed into its most significant byte (little-endian)."""
    attr = op.attributes["value"]
    array = read_elements(attr)
    raw = array.reshape(-1).view(np.uint8)
    raw[flat_index * array.itemsize + array.itemsize - 1] ^= byte
    with op.context, op.location:
        op.attributes["value"] = make_elements(array, "changed", ir.RankedTensorType(attr.type))


def _sparse_weight_constants(module: ir.Module, operand: int) -> list[ir.OpView]:
    found: list[ir.OpView] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "tasd.sparse_weight":
            owner = op.operands[operand].owner
            found.append(owner.opview if hasattr(owner, "opview") else owner)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


@pytest.mark.parametrize("operand", [0, 1], ids=["value", "index"])
def test_one_changed_compressed_weight_byte_misses_the_kernel_cache(cache_dir: Path, operand: int) -> None:
    result = _compile("2:4")
    original = compile_for_cpu(result.module)(_X)
    assert compile_for_cpu(result.module).kernel_cache_hit
    (op, *_) = _sparse_weight_constants(result.module, operand)
    # a value: one exponent bit (x4 or /4); an index (in-block position 0..3): 0 <-> 1, 2 <-> 3
    _change_one_byte(op, 5, 0x01)
    changed = compile_for_cpu(result.module)
    assert changed.cache_hit, "same shapes: the machine code is shared"
    assert not changed.kernel_cache_hit, "a changed weight byte must miss the kernel cache"
    got = changed(_X)
    expected = compile_for_cpu(result.module, cache=False)(_X)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, original), "the changed weight must change the result"
    assert compile_for_cpu(result.module).kernel_cache_hit


def test_one_changed_bound_weight_byte_reaches_the_result(cache_dir: Path) -> None:
    """Dense weights are bound at load time: the code is a cache hit, the values are the module's."""
    result = _compile("dense")
    original = compile_for_cpu(result.module)(_X)
    weights = [op for op in _constants(result.module)
               if isinstance(op.results[0].type, ir.RankedTensorType) and ir.RankedTensorType(op.results[0].type).rank == 2]
    _change_one_byte(weights[0], 7, 0x01)
    changed = compile_for_cpu(result.module)
    assert changed.cache_hit
    got = changed(_X)
    np.testing.assert_array_equal(got, compile_for_cpu(result.module, cache=False)(_X))
    assert not np.array_equal(got, original)


_CHILD = """
import json, sys
import numpy as np
from torch_mlir import ir
from tasdc.module import new_context
from tasdc.runtime.cpu.executor import compile_for_cpu
with new_context():
    module = ir.Module.parse(open(sys.argv[1], "rb").read())
    exe = compile_for_cpu(module)
    np.save(sys.argv[2], exe(np.load(sys.argv[3])))
    print(json.dumps({"hit": exe.cache_hit, "kernel_hit": exe.kernel_cache_hit}))
"""


@pytest.mark.parametrize("config", ["dense", "2:4"])
def test_cached_start_in_a_new_process_is_bit_identical(cache_dir: Path, tmp_path: Path, config: str) -> None:
    result = _compile(config)
    cold = compile_for_cpu(result.module)
    assert not cold.cache_hit
    expected = cold(_X)
    module_path, x_path, y_path = tmp_path / "m.mlirbc", tmp_path / "x.npy", tmp_path / "y.npy"
    with open(module_path, "wb") as out:
        result.module.operation.write_bytecode(out)
    np.save(x_path, _X)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(module_path), str(y_path), str(x_path)],
                          capture_output=True, text=True, check=True)
    flags = json.loads(proc.stdout.strip().splitlines()[-1])
    assert flags["hit"] and flags["kernel_hit"] == (config != "dense")
    np.testing.assert_array_equal(np.load(y_path), expected)
