"""The CPU runtime's on-disk compile cache.

A second compile of the same module loads the stored machine code instead of
running LLVM and must give bit-identical outputs (the same machine code runs
on the same inputs, so exact equality is the right check). Damaged entries,
entries naming symbols this process lacks and unwritable folders must never
break a run: the module is JIT-compiled as if there were no cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from tasdc.compiler import CompileOptions, compile_model
from tasdc.runtime.cpu import kernel_cache, object_cache as cache
from tasdc.runtime.cpu.executor import compile_for_cpu


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entries(folder: Path) -> list[Path]:
    return sorted((folder / "cpu").glob(f"*{cache.SUFFIX}"))


def _kernel_entries(folder: Path) -> list[Path]:
    return sorted((folder / "cpu").glob(f"*{kernel_cache.SUFFIX}"))


@pytest.fixture(scope="module")
def compiled(example_dir: Path) -> dict[str, tuple[object, np.ndarray]]:
    """MLP at 2:4 (Numba cfunc kernels) and CNN at 2:4 (conv kernel through a ctypes callback)."""
    out = {}
    for name in ("mlp", "cnn"):
        result = compile_model(example_dir / f"{name}.pt2", options=CompileOptions(config="2:4"))
        out[name] = (result, np.load(example_dir / f"{name}-eval.npz")["x"][:16])
    return out


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_second_compile_hits_and_gives_identical_outputs(compiled, cache_dir: Path, name: str) -> None:
    result, x = compiled[name]
    first = compile_for_cpu(result.module)
    assert not first.cache_hit
    assert len(_entries(cache_dir)) == 1
    second = compile_for_cpu(result.module)
    assert second.cache_hit
    assert second.kernels, "the 2:4 series must still run through the N:M kernels"
    np.testing.assert_array_equal(second(x), first(x))
    uncached = compile_for_cpu(result.module, cache=False)
    assert not uncached.cache_hit
    np.testing.assert_array_equal(uncached(x), first(x))


def test_options_are_part_of_the_key(compiled, cache_dir: Path) -> None:
    result, x = compiled["mlp"]
    compile_for_cpu(result.module, opt_level=3)
    other = compile_for_cpu(result.module, opt_level=0)
    assert not other.cache_hit
    assert len(_entries(cache_dir)) == 2
    assert compile_for_cpu(result.module, opt_level=0).cache_hit


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_damaged_entry_is_ignored_and_rebuilt(compiled, cache_dir: Path, damage: str) -> None:
    result, x = compiled["mlp"]
    expected = compile_for_cpu(result.module)(x)
    (entry,) = _entries(cache_dir)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data = bytearray(b"not an object file at all")
    entry.write_bytes(bytes(data))
    rebuilt = compile_for_cpu(result.module)
    assert not rebuilt.cache_hit
    np.testing.assert_array_equal(rebuilt(x), expected)
    assert compile_for_cpu(result.module).cache_hit, "the rebuilt entry must be stored again"


def test_entry_naming_an_unknown_symbol_is_not_loaded(compiled, cache_dir: Path) -> None:
    result, x = compiled["mlp"]
    expected = compile_for_cpu(result.module)(x)
    (entry,) = _entries(cache_dir)
    data = entry.read_bytes()
    head = len(cache.MAGIC) + 32
    names, _, payload = data[head:].partition(b"\n")
    body = names + b" tasdc_no_such_symbol_anywhere\n" + payload
    entry.write_bytes(cache.MAGIC + hashlib.sha256(body).digest() + body)
    again = compile_for_cpu(result.module)
    assert not again.cache_hit
    np.testing.assert_array_equal(again(x), expected)


def test_unwritable_cache_folder_still_runs(compiled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, x = compiled["mlp"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TASDC_CACHE_DIR", str(blocker))
    first = compile_for_cpu(result.module)
    assert not first.cache_hit and not compile_for_cpu(result.module).cache_hit
    np.testing.assert_array_equal(first(x), compile_for_cpu(result.module, cache=False)(x))


def test_trim_keeps_the_newest_within_the_limit(cache_dir: Path) -> None:
    folder = cache_dir / "cpu"
    folder.mkdir(parents=True)
    paths = []
    for i in range(4):
        path = folder / f"{i}{cache.SUFFIX}"
        path.write_bytes(b"x" * 1000)


        os.utime(path, (1000 + i, 1000 + i))
        paths.append(path)
    cache.trim(2500)
    assert [p.exists() for p in paths] == [False, False, True, True]


def test_location_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASDC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "tasdc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "tasdc"
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"


def test_cli_run_uses_the_cache_and_clear_empties_it(example_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.load(example_dir / "mlp-eval.npz")["x"][:16])
    model = str(example_dir / "mlp.pt2")
    first = run_cli("run", model, "--input", str(x), "--config", "2:4")
    assert first.returncode == 0, first.stderr
    assert "from the compile cache" not in first.stdout
    second = run_cli("run", model, "--input", str(x), "--config", "2:4")
    assert second.returncode == 0, second.stderr
    assert "from the compile cache" in second.stdout
    assert first.stdout.splitlines()[:2] == second.stdout.splitlines()[:2]  # same output summary
    no_cache = run_cli("run", model, "--input", str(x), "--config", "2:4", "--no-cache")
    assert "from the compile cache" not in no_cache.stdout
    where = run_cli("cache", "dir")
    assert where.stdout.strip() == str(cache_dir)
    # the object, the packed kernels and the compiled module (tasdc/module_cache.py) of the 2:4 MLP,
    # and the dense entries' private copy of OpenBLAS when this environment made one (runtime/cpu/dense.py)
    blas = len(list((cache_dir / "blas").iterdir())) if (cache_dir / "blas").is_dir() else 0
    cleared = run_cli("cache", "clear")
    assert cleared.returncode == 0 and f"removed {3 + blas} cache entries" in cleared.stdout
    assert not _entries(cache_dir) and not _kernel_entries(cache_dir)
    bad = run_cli("cache", "purge")
    assert bad.returncode == 2


def _linear_model(seed: int) -> "torch.nn.Module":
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256)).eval()  # biases of >= 1 KB: bound too


def test_weights_are_bound_not_compiled_in(cache_dir: Path) -> None:
    """Dense weights are arguments bound at load time (tasd-cpu-bind-constants):
    the object holds no weights, so a model with other weights of the same
    shapes reuses the entry and still computes with its own weights."""
    import torch

    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    outputs = []
    for seed in (0, 1):
        model = _linear_model(seed)
        result = compile_model(model, (x,), CompileOptions(config="dense"))
        executable = compile_for_cpu(result.module)
        assert executable.cache_hit == (seed == 1)
        with torch.no_grad():
            expected = model(x).numpy()
        got = executable(x.numpy())
        # f32 sums of 256 and 512 products in another order than torch's:
        # a few ulps of the accumulated magnitude (|y| ~ 1 here).
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        outputs.append(got)
        embedded = compile_for_cpu(result.module, cache=False, bind_constants=False)
        np.testing.assert_allclose(got, embedded(x.numpy()), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs[0], outputs[1]), "different weights must give different outputs"
    (entry,) = _entries(cache_dir)
    weight_bytes = (256 * 512 + 512 * 256) * 4
    assert entry.stat().st_size < weight_bytes / 4, "the cached object must not contain the weights"


# ---- packed N:M kernels (kernel_cache) -------------------------------------


def _packed_arrays(executable) -> list[np.ndarray]:
    return [getattr(p, name) for k in executable.kernels for p in k.packed
            for name in ("tile_count", "tile_ptr", "w_loc", "w_val")]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_packed_kernels_are_cached(compiled, cache_dir: Path, name: str) -> None:
    """The second compile loads the packed kernels instead of packing them:
    the same arrays, so the same kernel code computes the same bits."""
    result, x = compiled[name]
    first = compile_for_cpu(result.module)
    assert not first.kernel_cache_hit
    assert len(_kernel_entries(cache_dir)) == 1
    second = compile_for_cpu(result.module)
    assert second.kernel_cache_hit and second.cache_hit
    for a, b in zip(_packed_arrays(first), _packed_arrays(second), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second(x), first(x))
    uncached = compile_for_cpu(result.module, cache=False)
    assert not uncached.kernel_cache_hit
    np.testing.assert_array_equal(uncached(x), first(x))


def test_loaded_kernels_are_not_a_view_of_the_entry_file(compiled, cache_dir: Path) -> None:
    """A hit reads the entry into the process's own memory (not a mapping of the file, whose
    page-cache pages made the kernels slower): the entry overwritten in place afterwards
    (the same inode, every byte of the arrays changed) leaves the loaded kernels as they were."""
    result, x = compiled["mlp"]
    expected = compile_for_cpu(result.module)(x)
    loaded = compile_for_cpu(result.module)
    assert loaded.kernel_cache_hit
    before = [a.copy() for a in _packed_arrays(loaded)]
    (entry,) = _kernel_entries(cache_dir)
    size = entry.stat().st_size
    with open(entry, "r+b") as f:  # in place: a file mapping would see these bytes
        f.write(b"\xff" * size)
    for a, b in zip(_packed_arrays(loaded), before, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded(x), expected)


def test_other_weights_miss_the_kernel_cache(cache_dir: Path) -> None:
    """Same shapes, other weights: the machine code is shared, the packed kernels are not."""
    import torch

    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    outputs = []
    for seed in (0, 1):
        result = compile_model(_linear_model(seed), (x,), CompileOptions(config="2:4"))
        executable = compile_for_cpu(result.module)
        assert executable.cache_hit == (seed == 1)
        assert not executable.kernel_cache_hit
        outputs.append(executable(x.numpy()))
        np.testing.assert_array_equal(outputs[-1], compile_for_cpu(result.module, cache=False)(x.numpy()))
    assert len(_kernel_entries(cache_dir)) == 2
    assert not np.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_damaged_kernel_entry_is_ignored_and_rebuilt(compiled, cache_dir: Path, damage: str) -> None:
    result, x = compiled["mlp"]
    expected = compile_for_cpu(result.module)(x)
    (entry,) = _kernel_entries(cache_dir)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[-100] ^= 0x01  # one bit of a weight value
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"tasdc-cpu-kernels 1\n" + bytes(200))
    else:
        data = bytearray()
    entry.write_bytes(bytes(data))
    rebuilt = compile_for_cpu(result.module)
    assert rebuilt.cache_hit and not rebuilt.kernel_cache_hit
    np.testing.assert_array_equal(rebuilt(x), expected)
    assert compile_for_cpu(result.module).kernel_cache_hit, "the rebuilt entry must be stored again"


def test_kernel_entry_with_inconsistent_tiles_is_not_used(compiled, cache_dir: Path) -> None:
    """An entry whose checksum holds but whose tile table would send the kernel
    outside its arrays (a tile pointer beyond the values) is rejected."""
    import json
    import struct
    import zlib

    result, x = compiled["mlp"]
    expected = compile_for_cpu(result.module)(x)
    (entry,) = _kernel_entries(cache_dir)
    data = bytearray(entry.read_bytes())
    head = len(kernel_cache.MAGIC) + 12
    _, length = struct.unpack("<IQ", data[len(kernel_cache.MAGIC):head])
    header = json.loads(bytes(data[head:head + length]))
    first = header[0][0]
    start = -(-(head + length) // 64) * 64
    ptr_offset, ptr_count = first["arrays"][1]
    last = start + ptr_offset + 8 * (ptr_count - 1)
    data[last:last + 8] = struct.pack("<q", 1 << 40)
    data[len(kernel_cache.MAGIC):len(kernel_cache.MAGIC) + 4] = struct.pack("<I", zlib.crc32(bytes(data[head:])))
    entry.write_bytes(bytes(data))
    again = compile_for_cpu(result.module)
    assert not again.kernel_cache_hit
    np.testing.assert_array_equal(again(x), expected)


def test_trim_and_clear_cover_kernel_entries(cache_dir: Path) -> None:
    folder = cache_dir / "cpu"
    folder.mkdir(parents=True)
    old = folder / f"old{kernel_cache.SUFFIX}"
    new = folder / f"new{cache.SUFFIX}"
    for i, path in enumerate((old, new)):
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + i, 1000 + i))
    cache.trim(1500)
    assert not old.exists() and new.exists()
    old.write_bytes(b"x")
    blas = cache_dir / "blas"  # the dense entries' private copy of OpenBLAS
    blas.mkdir()
    (blas / "libscipy_openblas-1-2.so").write_bytes(b"x")
    assert cache.clear() == 3 and not any(folder.iterdir()) and not any(blas.iterdir())


def test_micro_kernel_is_part_of_the_kernel_key(compiled, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packed tile width follows the process's micro-kernel (kernels.default_kb):
    a process with the other one packs its own entry (same code, same results)."""
    from tasdc.runtime.cpu import kernels

    result, x = compiled["mlp"]
    first = compile_for_cpu(result.module)
    monkeypatch.setattr(kernels, "_WIDE_ISA", "avx2" if kernels._WIDE_ISA == "avx512" else "avx512")
    other = compile_for_cpu(result.module)
    assert other.cache_hit and not other.kernel_cache_hit
    assert len(_kernel_entries(cache_dir)) == 2
    np.testing.assert_array_equal(other(x), first(x))
