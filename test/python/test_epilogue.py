"""Fused epilogues of the N:M kernel entries (``Epilogue``, ``tasd-cpu-fuse-kernel-epilogues``).

Tolerance: an entry with an epilogue computes the same sums as one without
(same slots, same order) and then ``scale·y + shift`` in float32, perhaps as
one fused multiply-add, where the reference rounds the product first: the two
differ by at most one rounding of ``scale·y`` plus one of the result,
``2⁻²⁴·(|scale·y| + |ref|)`` each way; the test allows twice that. Clamped
values are exact. Any wrong channel, a missed block or an epilogue applied
twice moves an output by O(1).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numba
import numpy as np
import pytest
import torch

from tasdc.decompose import decompose
from tasdc.module import clone_module
from tasdc.passes.dense_to_calls import DenseToLibraryCalls
from tasdc.passes.fold_batch_norm import FoldBatchNorm
from tasdc.runtime.cpu.kernels import (Epilogue, KernelError, conv2d_series, make_cfunc_entry, make_conv_cfunc_entry,
                                     memref_descriptor, pack_series)

U = 2.0 ** -24


def _apply(y: np.ndarray, e: Epilogue, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference, scale·y) in float32 with the channel on ``channel_axis``."""
    shape = [1] * y.ndim
    shape[channel_axis] = -1
    scaled = y * np.asarray(e.scale, np.float32).reshape(shape)
    ref = np.minimum(np.maximum(scaled + np.asarray(e.shift, np.float32).reshape(shape), np.float32(e.lo)), np.float32(e.hi))
    return ref, scaled


def _assert_epilogue(got: np.ndarray, plain: np.ndarray, e: Epilogue, channel_axis: int) -> None:
    ref, scaled = _apply(plain, e, channel_axis)
    bound = 4 * U * (np.abs(scaled) + np.abs(ref))
    assert np.all(np.abs(got - ref) <= bound), f"max excess {np.max(np.abs(got - ref) - bound)}"


def _epilogue(rng: np.random.Generator, channels: int, lo: float = 0.0, hi: float = 6.0) -> Epilogue:
    return Epilogue(rng.uniform(-2, 2, channels).astype(np.float32), rng.uniform(-1, 1, channels).astype(np.float32), lo, hi)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("t,k,o", [(7, 40, 5), (130, 64, 72), (300, 96, 20)])
def test_matmul_entry_applies_the_epilogue(t: int, k: int, o: int, transpose: bool) -> None:
    rng = np.random.default_rng(t + k + o)
    p = pack_series(decompose(rng.standard_normal((o, k)).astype(np.float32), "2:4+1:8", axis=1))
    e = _epilogue(rng, o, lo=-0.5, hi=1.5)
    x = rng.standard_normal((k, t) if transpose else (t, k)).astype(np.float32)
    shape = (o, t) if transpose else (t, o)
    plain, fused = np.empty(shape, np.float32), np.full(shape, np.nan, np.float32)
    assert make_cfunc_entry(p, transpose=transpose)(x, plain) == 0
    entry = make_cfunc_entry(p, transpose=transpose, epilogue=e)
    assert entry(x, fused) == 0
    entry.check_status()
    _assert_epilogue(fused, plain, e, 0 if transpose else 1)
    assert 0 < np.mean((fused == -0.5) | (fused == 1.5)) < 1  # both clamps and the affine part are exercised


def _conv_case(rng: np.random.Generator, config: str, kh: int, stride: int, side: int) -> tuple[Any, np.ndarray, int]:
    """A packed 8 -> 24 filter ``kh × kh`` of ``config``, an input ``[2, 8, side, side]`` and
    the output side at ``stride`` with ``kh // 2`` padding."""
    p = pack_series(decompose(rng.standard_normal((24, 8 * kh * kh)).astype(np.float32), config, axis=1), conv=True)
    x = rng.standard_normal((2, 8, side, side)).astype(np.float32)
    return p, x, (side + 2 * (kh // 2) - kh) // stride + 1


@pytest.mark.parametrize("kh,stride,layout,side", [
    (3, 1, "tiles", 12), (3, 1, "direct", 20), (3, 2, "tiles", 15), (1, 1, "direct", 16), (1, 1, "tiles", 9)])
def test_conv_entry_applies_the_epilogue(kh: int, stride: int, layout: str, side: int) -> None:
    """Every conv path (X tiles; the direct layout on a padded copy; a 1x1 conv read in place)."""
    rng = np.random.default_rng(kh * 100 + side)
    n, f = 2, 24
    pad = kh // 2
    p, x, oh = _conv_case(rng, "1:8", kh, stride, side)
    e = _epilogue(rng, f)
    outs = []
    for epilogue in (None, e):
        entry = make_conv_cfunc_entry(p, kh, kh, stride, 1, padding=pad, layout=layout, epilogue=epilogue)
        y = np.full((n, f, oh, oh), np.nan, np.float32)
        xd, yd = memref_descriptor(x), memref_descriptor(y)
        assert entry.ctypes(ctypes.addressof(xd), ctypes.addressof(yd)) == 0
        entry.check_status()
        outs.append(y)
    _assert_epilogue(outs[1], outs[0], e, 1)


def test_epilogue_bits_do_not_depend_on_threads() -> None:
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(3)
    p = pack_series(decompose(rng.standard_normal((96, 256)).astype(np.float32), "2:4", axis=1))
    e = _epilogue(rng, 96)
    x = rng.standard_normal((512, 256)).astype(np.float32)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y = np.empty((512, 96), np.float32)
            make_cfunc_entry(p, epilogue=e)(x, y)
            outs.append(y)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))


def test_epilogue_clamps_in_float32() -> None:
    """The fused epilogue and the residual add compare float32 sums with float32 bounds: a
    float64 bound (``-np.inf`` / ``0.0`` literals) made LLVM widen every lane to double and
    back, 1.1 of 4.0 ms in MobileNetV2's 1x1 expand at 1:8. Checked on the LLVM IR of both
    helpers compiled for the kernels' argument types (no ``fpext`` / ``fptrunc``)."""
    from numba import types as nt

    from tasdc.runtime.cpu import kernels

    f32 = nt.Array(nt.float32, 1, "C")
    cases = [(kernels._epilogue, (f32, nt.int64, nt.int64, nt.int64, nt.int64, nt.int64, f32, nt.boolean)),
             (kernels._residual_run, (f32, nt.int64, f32, nt.int64, nt.int64, f32, nt.int64, nt.int64, nt.int64,
                                      nt.float32, nt.float32))]
    for helper, sig in cases:
        fresh = numba.njit(**{k: v for k, v in helper.targetoptions.items() if k != "cache"})(helper.py_func)
        fresh.compile(sig)
        # the native function only (not the wrappers that unbox Python floats)
        functions = {d.split("(", 1)[0]: d for d in fresh.inspect_llvm(sig).split("\ndefine ")[1:]}
        native = [body for header, body in functions.items()
                  if helper.__name__ in header and "cpython" not in header and "@cfunc." not in header]
        assert len(native) == 1, helper.__name__
        assert "fpext" not in native[0] and "fptrunc" not in native[0], helper.__name__


def test_epilogue_errors() -> None:
    rng = np.random.default_rng(4)
    p = pack_series(decompose(rng.standard_normal((6, 16)).astype(np.float32), "2:4", axis=1))
    with pytest.raises(KernelError, match="accumulate"):
        make_cfunc_entry(p, accumulate=True, epilogue=Epilogue(np.ones(6), np.zeros(6)))
    with pytest.raises(KernelError, match="5 values for 6 outputs"):
        make_cfunc_entry(p, epilogue=Epilogue(np.ones(5), np.zeros(6)))
    with pytest.raises(KernelError, match="lo <= hi"):
        make_cfunc_entry(p, epilogue=Epilogue(np.ones(6), np.zeros(6), 1.0, 0.0))


def _random_statistics(*norms: torch.nn.BatchNorm2d) -> None:
    """Non-trivial inference statistics and shifts (torch's seed sets them)."""
    with torch.no_grad():
        for bn in norms:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.bias.uniform_(-0.5, 0.5)


class _Block(torch.nn.Module):
    """conv -> BatchNorm -> ReLU6 -> conv -> BatchNorm, flattened -> Linear -> ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(16, 32, 3, padding=1, bias=False), torch.nn.BatchNorm2d(32)
        self.c2, self.b2 = torch.nn.Conv2d(32, 16, 1, bias=False), torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16 * 8 * 8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(torch.nn.functional.relu6(self.b1(self.c1(x)))))
        return torch.relu(self.fc(torch.flatten(y, 1)))


def test_compiled_model_with_fused_epilogues_matches_unfused() -> None:
    """Through ``compile_for_cpu``: BatchNorm (non-trivial statistics), ReLU6, a Linear's bias
    and ReLU after N:M kernels run inside them, and the outputs equal the unfused lowering's
    to float32 rounding (BatchNorm's steps rounded once instead of four times)."""
    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.runtime.cpu.executor import compile_for_cpu

    torch.manual_seed(0)
    model = _Block().eval()
    with torch.no_grad():
        for bn in (model.b1, model.b2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    result = compile_model(model, (x,), CompileOptions(config="2:4"))
    fused = compile_for_cpu(result.module, cache=False)
    plain = compile_for_cpu(result.module, cache=False, fuse_epilogues=False)
    assert sum(k.epilogue is not None for k in fused.kernels) == 3
    assert all(k.epilogue is None for k in plain.kernels)
    got, ref = fused(x.numpy()), plain(x.numpy())
    assert np.any(ref == 0.0) and np.any(ref > 0)  # the final ReLU clamps some outputs, not all
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


class _DenseBlock(torch.nn.Module):
    """A dense ResNet-style block: conv + BatchNorm + ReLU, a strided conv + BatchNorm +
    ReLU6, a 1×1 conv + BatchNorm whose sum with a shortcut is ReLU'd, a depthwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(3, 24, 3, padding=1, bias=False), torch.nn.BatchNorm2d(24)
        self.c2, self.b2 = torch.nn.Conv2d(24, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32)
        self.c3, self.b3 = torch.nn.Conv2d(32, 32, 1, bias=False), torch.nn.BatchNorm2d(32)
        self.dw = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.nn.functional.relu6(self.b2(self.c2(y)))
        y = torch.relu(self.b3(self.c3(y)) + y)
        return torch.relu(self.dw(y))


def test_dense_conv_epilogues_equal_the_unfused_loops_bit_for_bit() -> None:
    """Through ``compile_model`` (config dense) and ``compile_for_cpu``: the convolutions'
    folded BatchNorm biases and their ReLU / ReLU6 run inside the library calls
    (``tasd_dense_conv2d_epilogue``; ``tasd_dense_conv2d_residual`` where a shortcut is added) with the
    same f32 operations as the generated loops of ``fuse_epilogues=False``, after the same
    GEMMs: the same bits. Both against torch in float64 too."""
    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.runtime.cpu.executor import compile_for_cpu

    torch.manual_seed(0)
    model = _DenseBlock().eval()
    _random_statistics(model.b1, model.b2, model.b3)
    x = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    result = compile_model(model, (x,), CompileOptions(config="dense"))
    calls = clone_module(result.module)
    FoldBatchNorm().run(calls)
    DenseToLibraryCalls().run(calls)
    text = str(calls)
    assert text.count("call @tasd_dense_conv2d_epilogue(") == 2 and "call @tasd_dense_conv2d(" not in text
    assert text.count("call @tasd_dense_conv2d_residual(") == 1  # relu(b3(c3(y)) + y)
    assert text.count("call @tasd_dense_depthwise_conv2d_epilogue(") == 1
    fused = compile_for_cpu(result.module, cache=False)
    plain = compile_for_cpu(result.module, cache=False, fuse_epilogues=False)
    got, ref = fused(x.numpy()), plain(x.numpy())
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert 0 < np.mean(ref == 0.0) < 1
    with torch.no_grad():
        exact = model.double()(x.double()).numpy()
    assert np.abs(got - exact).max() <= 1e-4 * max(1.0, float(np.abs(exact).max()))


@pytest.mark.parametrize("kh,stride,layout,side", [
    (3, 1, "tiles", 12), (3, 1, "direct", 20), (3, 2, "tiles", 15), (1, 1, "direct", 16), (1, 1, "tiles", 9)])
@pytest.mark.parametrize("residual_layout", ["nchw", "nhwc"])
def test_conv_entry_adds_the_residual_before_the_clamp(kh: int, stride: int, layout: str, side: int, residual_layout: str) -> None:
    """Every conv path with a residual operand (contiguous, or an NHWC buffer seen as NCHW:
    other strides): ``clamp(map(conv) + r)`` with the add and clamp in float32 after the
    same map as an entry without the clamp, so exactly that entry's output plus ``r``,
    clamped (bit for bit). ``conv2d_series(residual=)`` runs the same kernel."""
    rng = np.random.default_rng(kh * 1000 + side)
    n, f = 2, 24
    pad = kh // 2
    p, x, oh = _conv_case(rng, "2:4", kh, stride, side)
    e = _epilogue(rng, f, lo=0.0, hi=2.0)
    unclamped = np.full((n, f, oh, oh), np.nan, np.float32)
    assert make_conv_cfunc_entry(p, kh, kh, stride, 1, padding=pad, layout=layout,
                                 epilogue=Epilogue(e.scale, e.shift))(x, unclamped) == 0
    r = rng.standard_normal((n, f, oh, oh)).astype(np.float32)
    if residual_layout == "nhwc":
        r = np.ascontiguousarray(r.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    entry = make_conv_cfunc_entry(p, kh, kh, stride, 1, padding=pad, layout=layout, epilogue=e, residual=True)
    y = np.full((n, f, oh, oh), np.nan, np.float32)
    assert entry(x, y, r) == 0
    entry.check_status()
    ref = np.minimum(np.maximum(unclamped + r, np.float32(0.0)), np.float32(2.0))
    assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    assert 0 < np.mean(ref == 0.0) < 1 and 0 < np.mean(ref == 2.0) < 1  # both bounds and the add are exercised
    series = conv2d_series(x, p, kh, kh, stride, pad, layout=layout, epilogue=e, residual=r)
    assert np.array_equal(series.view(np.uint32), ref.view(np.uint32))


def test_residual_bits_do_not_depend_on_threads() -> None:
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(7)
    n, c, f, side = 4, 32, 64, 28
    p = pack_series(decompose(rng.standard_normal((f, c * 9)).astype(np.float32), "2:4", axis=1), conv=True)
    x = rng.standard_normal((n, c, side, side)).astype(np.float32)
    r = rng.standard_normal((n, f, side, side)).astype(np.float32)
    e = _epilogue(rng, f)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            for layout in ("tiles", "direct"):
                outs.append(conv2d_series(x, p, 3, 3, 1, 1, layout=layout, epilogue=e, residual=r))
    finally:
        numba.set_num_threads(before)
    for other in outs[1:]:
        assert np.array_equal(outs[0].view(np.uint32), other.view(np.uint32))


def test_residual_errors() -> None:
    """No residual entry without an epilogue; a residual of the wrong shape is a status
    naming both shapes, never a crash; conv2d_series checks its arguments."""
    rng = np.random.default_rng(9)
    p = pack_series(decompose(rng.standard_normal((8, 4 * 9)).astype(np.float32), "2:4", axis=1), conv=True)
    with pytest.raises(KernelError, match="needs an epilogue"):
        make_conv_cfunc_entry(p, 3, 3, padding=1, residual=True)
    entry = make_conv_cfunc_entry(p, 3, 3, padding=1, epilogue=Epilogue(np.ones(8), np.zeros(8)), residual=True)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    y = np.zeros((2, 8, 6, 6), np.float32)
    assert entry(x, y, np.zeros((2, 8, 6, 5), np.float32)) != 0
    with pytest.raises(KernelError, match=r"residual operand has dims \[2, 8, 6, 5\], the output \[2, 8, 6, 6\]"):
        entry.check_status()
    with pytest.raises(KernelError, match="takes a residual"):
        entry(x, y)
    xd, yd = memref_descriptor(x), memref_descriptor(y)
    assert entry.ctypes(ctypes.addressof(xd), ctypes.addressof(yd), None) != 0  # a null residual descriptor
    with pytest.raises(KernelError, match="residual operand"):
        entry.check_status()
    with pytest.raises(KernelError, match="residual must be"):
        conv2d_series(x, p, 3, 3, 1, 1, residual=np.zeros((2, 8, 6, 6), np.float64))
    with pytest.raises(KernelError, match="bias or epilogue"):
        conv2d_series(x, p, 3, 3, 1, 1, bias=np.zeros(8, np.float32), epilogue=Epilogue(np.ones(8), np.zeros(8)))


class _ResidualBlocks(torch.nn.Module):
    """ResNet's basic block (``relu(bn(conv(relu(bn(conv(x))))) + x)``) and MobileNetV2's
    projection + shortcut without a clamp (``bn(conv1x1(y)) + y``)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.c2, self.b2 = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16)
        self.c3, self.b3 = torch.nn.Conv2d(16, 16, 1, bias=False), torch.nn.BatchNorm2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)
        return self.b3(self.c3(y)) + y


def test_compiled_residual_blocks_fuse_the_shortcut_bit_for_bit() -> None:
    """Through ``compile_for_cpu``: both shortcuts go into their N:M conv calls (two
    kernels take a residual), and the outputs equal ``fuse_residuals=False``'s (the map
    in the kernel, the add and ReLU as generated loops) bit for bit; both near torch."""
    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.runtime.cpu.executor import compile_for_cpu

    torch.manual_seed(0)
    model = _ResidualBlocks().eval()
    _random_statistics(model.b1, model.b2, model.b3)
    x = torch.randn(2, 16, 10, 10, generator=torch.Generator().manual_seed(1))
    result = compile_model(model, (x,), CompileOptions(config="2:4"))
    fused = compile_for_cpu(result.module, cache=False)
    plain = compile_for_cpu(result.module, cache=False, fuse_residuals=False)
    assert sum(k.residual for k in fused.kernels) == 2 and not any(k.residual for k in plain.kernels)
    got, ref = fused(x.numpy()), plain(x.numpy())
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    unfused = compile_for_cpu(result.module, cache=False, fuse_epilogues=False)(x.numpy())
    np.testing.assert_allclose(got, unfused, rtol=1e-5, atol=1e-5 * float(np.abs(unfused).max()))
