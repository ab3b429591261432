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


# ---- tasdc run: the compiled module cache (tasdc/module_cache.py) -----------


def _run(model: Path, x: Path, out: Path, *extra: str) -> str:
    from conftest import run_cli

    proc = run_cli("run", str(model), "--input", str(x), "--config", "2:4", "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _module_entries(cache_dir: Path) -> list[Path]:
    from tasdc import module_cache

    return sorted((cache_dir / "cpu").glob(f"*{module_cache.SUFFIX}"))


def test_run_reuses_the_compiled_module_and_misses_on_a_changed_byte(example_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """``tasdc run`` twice: the second compiles nothing and gives the same bits;
    a damaged entry is recompiled; one changed weight byte in the model file
    is a new key with the changed weight's result. (An ``.mlir`` model: its
    blobs are hex text, so one byte is one edit; it also runs without torch.)"""
    from conftest import run_cli

    text = tmp_path / "mlp.mlir"
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "-o", str(text))
    assert proc.returncode == 0, proc.stderr
    x = tmp_path / "x.npy"
    np.save(x, np.load(example_dir / "mlp-eval.npz")["x"][:16])
    hit = "(from the compile cache), JIT"
    assert hit not in _run(text, x, tmp_path / "a.npy")
    assert len(_module_entries(cache_dir)) == 1
    assert hit in _run(text, x, tmp_path / "b.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy"))
    (entry,) = _module_entries(cache_dir)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x01
    entry.write_bytes(bytes(data))
    assert hit not in _run(text, x, tmp_path / "c.npy"), "a damaged entry must be recompiled"
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), np.load(tmp_path / "a.npy"))
    # One byte of the largest weight blob (after its 4-byte alignment header): its low nibble of byte 37.
    source = text.read_text()
    blob = max((line for line in source.splitlines() if '"0x' in line), key=len)
    position = blob.index('"0x') + 3 + 8 + 2 * 37 + 1
    text.write_text(source.replace(blob, blob[:position] + ("0" if blob[position] != "0" else "1") + blob[position + 1:]))
    assert hit not in _run(text, x, tmp_path / "d.npy"), "a changed weight byte must miss the module cache"
    assert len(_module_entries(cache_dir)) == 2
    assert "from the compile cache" not in _run(text, x, tmp_path / "e.npy", "--no-cache")
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), np.load(tmp_path / "e.npy"))
    assert not np.array_equal(np.load(tmp_path / "d.npy"), np.load(tmp_path / "a.npy"))


def test_onnx_models_are_not_module_cached(tmp_path: Path) -> None:
    """An ONNX model may keep its weights in other files the key would not see."""
    from tasdc import module_cache

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert not module_cache.cacheable(model)
    (tmp_path / "m.pt2").write_bytes(b"x")
    assert module_cache.cacheable(tmp_path / "m.pt2") and not module_cache.cacheable(tmp_path / "missing.pt2")


def test_forked_child_reads_its_own_memory() -> None:
    """/proc/self/mem is opened per process: a descriptor inherited across
    fork would check the parent's bytes instead of the child's."""
    import os

    assert blob_reader._memory() is not None
    data = np.arange(1000, dtype=np.float32)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: change the array, then read it through the checker
        data[0] = 42.0
        ok = blob_reader._read(data.ctypes.data, 4) == np.float32(42.0).tobytes()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert blob_reader._read(data.ctypes.data, 4) == np.float32(0.0).tobytes()


def test_executable_keeps_the_weights_it_was_compiled_with(cache_dir: Path) -> None:
    """Changing a model's parameters after ``compile_for_cpu`` must not change
    what the executable computes: bound weights may be views of their blobs,
    so the importer must have copied the parameters into them."""
    class Affine(torch.nn.Module):  # x @ W + b: W and b (2 KB) bound as they are, not transposed
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(64, 512, generator=torch.Generator().manual_seed(2)))
            self.b = torch.nn.Parameter(torch.randn(512, generator=torch.Generator().manual_seed(3)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x @ self.w + self.b)

    for config in ("dense", "2:4"):
        model = Affine().eval()
        result = compile_model(model, (torch.from_numpy(_X),), CompileOptions(config=config))
        executable = compile_for_cpu(result.module)
        before = executable(_X)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(2.0)
        np.testing.assert_array_equal(executable(_X), before)
