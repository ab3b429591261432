"""The CPU runtime runs whole models: MLIR JIT plus Numba N:M kernels.

Tolerances: outputs are logits of magnitude ~1-10 computed in float32 with
different summation orders (Numba kernels block K differently from torch's
BLAS), so we allow rtol=1e-4 with atol=1e-4; the observed differences are
around 1e-6. Dense and 2:4+2:4 (lossless) are compared with torch eager on
the original model; 2:4 (lossy) with the reference path of the same TASD ops
(``tasd-expand-to-linalg``: the numpy reference weights through MLIR's own
code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MODELS, run_cli
from tasdc.compiler import CompileOptions, compile_model
from tasdc.errors import TasdcError
from tasdc.runtime.cpu import executor
from tasdc.runtime.cpu import kernels as K
from tasdc.runtime.cpu.kernels import KernelError

# Compared against BLAS results: run again under the other OpenBLAS kernel (tools/dev.py).
pytestmark = pytest.mark.blas

RTOL = ATOL = 1e-4


def _inputs(example_dir: Path, name: str) -> np.ndarray:
    return np.load(example_dir / f"{name}-eval.npz")["x"][:16]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("config", ["dense", "2:4+2:4"])
def test_dense_and_lossless_match_torch(example_dir: Path, name: str, config: str) -> None:
    result = compile_model(example_dir / f"{name}.pt2", options=CompileOptions(config=config))
    x = _inputs(example_dir, name)
    with torch.no_grad():
        expected = result.model.program.module()(torch.from_numpy(x)).numpy()
    got = result(x)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    if config != "dense":
        assert result.cpu().kernels, "series must run through the N:M kernels"


@pytest.mark.parametrize("name", MODELS)
def test_lossy_matches_reference_semantics(example_dir: Path, name: str) -> None:
    result = compile_model(example_dir / f"{name}.pt2", options=CompileOptions(config="2:4"))
    x = _inputs(example_dir, name)
    got = result(x)
    reference = result.cpu(expand=True)(x)
    assert not result.cpu(expand=True).kernels
    np.testing.assert_allclose(got, reference, rtol=RTOL, atol=ATOL)
    with torch.no_grad():
        dense = result.model.program.module()(torch.from_numpy(x)).numpy()
    assert np.abs(got - dense).max() > 1e-3, "2:4 drops weights, so it must differ from the dense model"


@pytest.fixture(scope="module")
def cnn_2of4(example_dir: Path):
    return compile_model(example_dir / "cnn.pt2", options=CompileOptions(config="2:4"))


def test_corrupted_index_array_is_rejected_at_pack_time(cnn_2of4) -> None:
    kernel = next(k for k in cnn_2of4.cpu().kernels if k.info["kind"] == "conv2d")
    term = kernel.info["terms"][0]
    values = np.ones([1, 1], np.float32)
    rows, k = term["dense_shape"][0], term["dense_shape"][1] + term["padding"]
    slots = k // term["m"] * term["n"]
    values = np.ones((rows, slots), np.float32)
    indices = np.zeros((rows, slots), np.int8)
    indices[:, 1::2] = 1
    indices[3, 4] = 9  # out of range for M=4
    with pytest.raises(KernelError, match="out of range"):
        executor._pack(kernel.name, {**kernel.info, "terms": [term]}, [values, indices])


def test_failing_conv_entry_raises_python_error_and_process_survives(example_dir: Path, cnn_2of4) -> None:
    exe = cnn_2of4.cpu()
    x = _inputs(example_dir, "cnn")
    kernel = next(k for k in exe.kernels if k.info["kind"] == "conv2d")
    assert kernel.entry is not None, "conv2d series run through the C entry (no Python callback)"
    saved = kernel.entry.params.copy()
    kernel.entry.params[K._P_KH] += 1  # the entry now refuses its operands' geometry
    try:
        with pytest.raises(KernelError, match="conv2d operands do not match"):
            exe(x)
    finally:
        kernel.entry.params[:] = saved
    # The executable still works afterwards.
    assert np.isfinite(exe(x)).all()


def test_failing_python_callback_raises_python_error(example_dir: Path, cnn_2of4) -> None:
    """The ctypes callback path (batch_matmul and sparse-left series) records
    an error raised in Python and the call raises it afterwards."""
    import ctypes

    from tasdc.runtime.cpu.executor import _make_callback

    exe = cnn_2of4.cpu()
    kernel = next(k for k in exe.kernels if k.info["kind"] == "conv2d")
    callback = _make_callback(kernel, 4, 4)
    saved = kernel.info["dense_shape"]
    kernel.info["dense_shape"] = [1, 2, 3, 4]  # Kernel.run now refuses its operand
    try:
        x = np.zeros(saved, np.float32)
        y = np.zeros(kernel.info["result_shape"], np.float32)
        from tasdc.runtime.cpu.executor import _descriptor_of

        xd, yd = _descriptor_of(x), _descriptor_of(y)
        callback(ctypes.addressof(xd), ctypes.addressof(yd))  # must not raise into C
        assert isinstance(kernel.error, KernelError) and "compiled for" in str(kernel.error)
    finally:
        kernel.info["dense_shape"] = saved
        kernel.error = None


def test_failing_cfunc_entry_raises_python_error(example_dir: Path) -> None:
    result = compile_model(example_dir / "mlp.pt2", options=CompileOptions(config="2:4"))
    exe = result.cpu()
    x = _inputs(example_dir, "mlp")
    entry = exe.kernels[0].entry
    assert entry is not None
    saved = entry.params.copy()
    entry.params[0] = -1  # corrupt the parameter block's magic number
    try:
        with pytest.raises(KernelError):
            exe(x)
    finally:
        entry.params[:] = saved
    np.testing.assert_allclose(exe(x), result.cpu(expand=True)(x), rtol=RTOL, atol=ATOL)


def test_wrong_input_shape_is_a_user_error(cnn_2of4) -> None:
    with pytest.raises(TasdcError, match="expected"):
        cnn_2of4(np.zeros((3, 1, 8, 8), np.float32))


def test_run_cli_saves_outputs(example_dir: Path, tmp_path: Path) -> None:
    x = _inputs(example_dir, "transformer")
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npz"
    proc = run_cli("run", str(example_dir / "transformer.pt2"), "--input", str(tmp_path / "x.npy"), "--config", "2:4+2:4", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    result = compile_model(example_dir / "transformer.pt2")
    with torch.no_grad():
        expected = result.model.program.module()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.load(out)["output"], expected, rtol=RTOL, atol=ATOL)


def test_run_cli_summary_and_errors(example_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _inputs(example_dir, "mlp"))
    proc = run_cli("run", str(example_dir / "mlp.pt2"), "--input", str(tmp_path / "x.npy"))
    assert proc.returncode == 0 and "output shape [16, 10]" in proc.stdout
    np.save(tmp_path / "bad.npy", np.zeros((2, 2), np.float32))
    bad = run_cli("run", str(example_dir / "mlp.pt2"), "--input", str(tmp_path / "bad.npy"))
    assert bad.returncode == 2 and "input 'x' has shape [2, 2], the model takes [16, 1, 8, 8]" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


class ReturnsUnownedBuffers(torch.nn.Module):
    """Outputs the function does not compute: its input as is, a weight constant, one value twice."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(64, dtype=torch.float32).reshape(8, 8) / 7)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = x @ self.w
        return y, x, self.w, y


@pytest.mark.parametrize("config", ["dense", "2:4"])
def test_returned_arguments_and_constants_are_copied_out(config: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Regressions: buffer deallocation clones a returned buffer the function does not own; the clone
    reached LLVM unlowered ("Failure while creating the ExecutionEngine"). And two results sharing one
    buffer were copied out one after the other with a free in between (the second read freed memory).
    Both the JIT (cache miss) and the loaded object (cache hit) are checked; the copies are exact."""
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    model = ReturnsUnownedBuffers()
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    result = compile_model(model, (torch.from_numpy(x),), CompileOptions(config=config))
    runs = [executor.compile_for_cpu(result.module) for _ in range(2)]
    assert [run.cache_hit for run in runs] == [False, True]
    for run in runs:
        for _ in range(3):
            y, x_out, w_out, y2 = run(x)
            np.testing.assert_array_equal(x_out, x)
            np.testing.assert_array_equal(w_out, model.w.detach().numpy())
            np.testing.assert_array_equal(y, y2)
    if config == "dense":  # float32 accumulation over K=8 against float64: 8 ulps of the largest output
        ref = x.astype(np.float64) @ model.w.detach().double().numpy()
        np.testing.assert_allclose(y, ref, rtol=0, atol=8 * np.finfo(np.float32).eps * np.abs(ref).max())


def test_weight_on_the_left_and_per_batch_weights_run_through_c_entries() -> None:
    """``W @ x`` (the weight on the left) and ``bmm(z, W3)`` with a weight
    per batch element: both series run through the kernels' C entries (no
    Python callback) and match torch (2:4+2:4 is lossless; tolerance as above)."""

    class LeftAndBatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.wl = torch.nn.Parameter(torch.randn(24, 32, generator=g))
            self.w3 = torch.nn.Parameter(torch.randn(3, 40, 16, generator=g))

        def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.relu(self.wl @ x), torch.bmm(z, self.w3)

    model = LeftAndBatch().eval()
    x, z = torch.randn(32, 200), torch.randn(3, 130, 40)
    result = compile_model(model, (x, z), CompileOptions(config="2:4+2:4"))
    kernels = result.cpu().kernels
    assert sorted((k.info["kind"], k.info["sparse_operand"]) for k in kernels) == [("batch_matmul", 1), ("matmul", 0)]
    assert all(k.entry is not None for k in kernels)
    with torch.no_grad():
        expected = model(x, z)
    for got, want in zip(result(x.numpy(), z.numpy()), expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=RTOL, atol=ATOL)
    assert all(k.entry.calls == 1 for k in kernels)


def test_attention_layouts_folded_into_fusion_give_the_same_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder layer (batch-first attention: transposes to sequence-first and back, heads split
    and merged) with its row-keeping transposes folded into the elementwise ops around them
    (tasd-cpu-generalize-transposes, the default) computes every element the same way as with
    each transpose copied on its own: bit-identical outputs, dense and 2:4 (lit
    generalize-transposes.mlir checks that the copies go)."""
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = np.random.default_rng(5).standard_normal((3, 10, 32)).astype(np.float32)
    for config in ("dense", "2:4"):
        result = compile_model(model, (torch.from_numpy(x),), CompileOptions(config=config))
        folded = executor.compile_for_cpu(result.module, cache=False)
        copied = executor.compile_for_cpu(result.module, cache=False, lowering="tasd-cpu-to-llvm{generalize-transposes=false}")
        np.testing.assert_array_equal(folded(x), copied(x))
        if config == "dense":
            with torch.no_grad():
                np.testing.assert_allclose(folded(x), model(torch.from_numpy(x)).numpy(), rtol=RTOL, atol=ATOL)


class _Permutes(torch.nn.Module):
    """Inner transposes (the last dim moves) and an outer one (it stays), as attention writes them."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return x.permute(1, 2, 3, 0) * 2.0, x.transpose(-1, -2) + 1.0, x.permute(1, 0, 2, 3) - 1.0


@pytest.mark.parametrize("interchange,generalize", [(True, True), (False, True), (True, False)])
def test_transposes_copy_the_same_bits_in_either_loop_order(interchange: bool, generalize: bool, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """tasd-cpu-interchange-transposes only reorders the loops of a copy, and
    tasd-cpu-generalize-transposes lets the fusion read the outer one in place: the results are
    the permuted input exactly (one elementwise op after each, computed the same way on both sides)."""
    monkeypatch.setenv("TASDC_CACHE_DIR", str(tmp_path / "cache"))
    x = np.random.default_rng(3).standard_normal((6, 3, 4, 5)).astype(np.float32)
    result = compile_model(_Permutes(), (torch.from_numpy(x),), CompileOptions(config="dense"))
    options = f"interchange={str(interchange).lower()} generalize-transposes={str(generalize).lower()}"
    run = executor.compile_for_cpu(result.module, lowering=f"tasd-cpu-to-llvm{{{options}}}")
    a, b, c = run(x)
    np.testing.assert_array_equal(a, x.transpose(1, 2, 3, 0) * np.float32(2.0))
    np.testing.assert_array_equal(b, x.transpose(0, 1, 3, 2) + np.float32(1.0))
    np.testing.assert_array_equal(c, x.transpose(1, 0, 2, 3) - np.float32(1.0))
