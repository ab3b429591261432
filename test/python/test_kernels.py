"""Tests of the Numba CPU kernels (tasdc.runtime.cpu.kernels).

Tolerance: Y is accumulated in float32 over K products (FMA, any order) and
compared with a float64 reference. With x, w ~ N(0, 1) the rounding error is
a random walk of about sqrt(K) * eps32 * |x||w| (eps32 = 6e-8), so
``atol = 1e-4 * sqrt(K)`` (plus ``rtol = 1e-4``) leaves a ~1000x margin over
rounding while any wrong index, dropped slot or double-counted term moves an
output by O(1) and fails.
"""

from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tasdc.decompose import decompose
from tasdc.runtime.cpu import kernels as K
from tasdc.runtime.cpu.kernels import (
    KernelError,
    MemRef2D,
    conv2d_series,
    im2col,
    make_cfunc_entry,
    memref_descriptor,
    pack_series,
    pack_term,
    series_matmul,
)

# Compared against BLAS results: run again under the other OpenBLAS kernel (tools/dev.py).
pytestmark = pytest.mark.blas

SHAPES = [(1, 37, 13), (7, 100, 1), (129, 61, 13), (33, 64, 5)]  # (T, K, O)


def _weight(rng, o, k, density=0.6):
    w = rng.standard_normal((o, k)).astype(np.float32)
    w[rng.random((o, k)) > density] = 0.0
    return w


def _check(y, x, dense):
    k = x.shape[-1]
    ref = x.astype(np.float64) @ dense.astype(np.float64).T
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * math.sqrt(max(k, 1)))


def _dense_of(d):
    return sum(t.to_dense().astype(np.float64) for t in d.terms)


PATTERNS = [(1, 2), (2, 2), (1, 4), (2, 4), (3, 4), (4, 4), (1, 8), (2, 8), (4, 8), (7, 8), (1, 16), (4, 16), (16, 16)]


@pytest.mark.parametrize("n,m", PATTERNS, ids=[f"{n}:{m}" for n, m in PATTERNS])
def test_single_term_every_pattern(n, m):
    rng = np.random.default_rng(n * 100 + m)
    for t, k, o in SHAPES:
        w = _weight(rng, o, k)
        d = decompose(w, f"{n}:{m}", axis=1)
        p = pack_series(d)
        x = rng.standard_normal((t, k)).astype(np.float32)
        _check(series_matmul(x, p), x, _dense_of(d))
        np.testing.assert_array_equal(p.to_dense(), d.approximation)


@pytest.mark.parametrize("cfg", ["2:4+1:4", "2:8+1:8", "4:16+1:16", "2:4+1:8", "1:2+2:8+1:16"])
def test_series(cfg):
    rng = np.random.default_rng(len(cfg))
    for t, k, o in SHAPES + [(65, 130, 17)]:
        w = _weight(rng, o, k, density=0.9)
        d = decompose(w, cfg, axis=1)
        p = pack_series(d)
        assert p.patterns == tuple(cfg.split("+"))
        x = rng.standard_normal((t, k)).astype(np.float32)
        y = series_matmul(x, p)
        _check(y, x, _dense_of(d))
        # one merged pass equals the sum of the terms run one by one
        ysum = sum(series_matmul(x, pack_series([term])).astype(np.float64) for term in d.terms)
        np.testing.assert_allclose(y, ysum, rtol=1e-4, atol=1e-4 * math.sqrt(k))


def test_both_orientations():
    rng = np.random.default_rng(3)
    for t, k, o in [(5, 50, 9), (70, 33, 13)]:
        w = _weight(rng, o, k)  # [O, K]
        d1 = decompose(w, "2:4", axis=1)
        d0 = decompose(np.ascontiguousarray(w.T), "2:4", axis=0)  # [K, O] matmul B operand
        p1, p0 = pack_series(d1), pack_series(d0)
        np.testing.assert_array_equal(p1.to_dense(), p0.to_dense())
        x = rng.standard_normal((t, k)).astype(np.float32)
        _check(series_matmul(x, p0), x, _dense_of(d1))
        # a series may mix orientations
        mixed = pack_series([decompose(w, "2:8", axis=1).terms[0], decompose(np.ascontiguousarray(w.T), "1:4", axis=0).terms[0]])
        dense = decompose(w, "2:8", axis=1).approximation.astype(np.float64) + decompose(w, "1:4", axis=1).approximation
        _check(series_matmul(x, mixed), x, dense)


def test_strided_inputs_outputs_and_batch():
    rng = np.random.default_rng(4)
    t, k, o = 77, 90, 21
    d = decompose(_weight(rng, o, k), "2:4+1:4", axis=1)
    p = pack_series(d)
    dense = _dense_of(d)
    x = rng.standard_normal((t, k)).astype(np.float32)
    # K-major input (transposed im2col layout): read in place
    xt = np.ascontiguousarray(x.T).T
    assert not xt.flags.c_contiguous
    _check(series_matmul(xt, p), x, dense)
    # step slicing in both dims
    big = rng.standard_normal((2 * t, 3 * k)).astype(np.float32)
    xs = big[::2, ::3]
    _check(series_matmul(xs, p), np.ascontiguousarray(xs), dense)
    # batch dims are flattened
    xb = rng.standard_normal((3, 5, k)).astype(np.float32)
    yb = series_matmul(xb, p)
    assert yb.shape == (3, 5, o)
    _check(yb.reshape(15, o), xb.reshape(15, k), dense)
    # strided out, overwrite and accumulate
    outbuf = np.full((t, 2 * o + 3), 7.0, np.float32)
    out = outbuf[:, 1 : 2 * o + 1 : 2]
    series_matmul(x, p, out=out)
    _check(out, x, dense)
    assert np.all(outbuf[:, 0] == 7.0) and np.all(outbuf[:, 2 : 2 * o + 1 : 2] == 7.0)
    series_matmul(x, p, out=out, accumulate=True)
    _check(out / 2, x, dense)
    # transposed out ([O, T] buffer), as conv2d uses it
    yt = np.empty((o, t), np.float32)
    series_matmul(x, p, out=yt.T)
    _check(yt.T, x, dense)


@pytest.mark.parametrize("t", [1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 128, 130])
def test_t_tile_edges(t):
    rng = np.random.default_rng(t)
    k, o = 45, 11
    d = decompose(_weight(rng, o, k), "1:4+1:4", axis=1)
    p = pack_series(d)
    x = rng.standard_normal((t, k)).astype(np.float32)
    _check(series_matmul(x, p), x, _dense_of(d))


@pytest.mark.parametrize("kb", [16, 32, 128, 256])
def test_k_tile_sizes(kb):
    rng = np.random.default_rng(kb)
    t, k, o = 40, 301, 9
    d = decompose(_weight(rng, o, k), "2:16+1:8", axis=1)
    p = pack_series(d, kb=kb)
    assert p.kb == kb and p.ntiles == -(-304 // kb)
    x = rng.standard_normal((t, k)).astype(np.float32)
    _check(series_matmul(x, p), x, _dense_of(d))


def test_degenerate_shapes():
    rng = np.random.default_rng(5)
    d = decompose(_weight(rng, 4, 8), "2:4", axis=1)
    p = pack_series(d)
    assert series_matmul(np.zeros((0, 8), np.float32), p).shape == (0, 4)
    x = rng.standard_normal(8).astype(np.float32)  # 1-D x: a single row
    _check(series_matmul(x, p)[None], x[None], _dense_of(d))


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_operand_errors():
    rng = np.random.default_rng(6)
    p = pack_series(decompose(_weight(rng, 6, 20), "2:4", axis=1))
    x = rng.standard_normal((3, 20)).astype(np.float32)
    with pytest.raises(KernelError, match="float32"):
        series_matmul(x.astype(np.float64), p)
    with pytest.raises(KernelError, match="K=20"):
        series_matmul(x[:, :19], p)
    with pytest.raises(KernelError, match=r"expected \[3, 6\]"):
        series_matmul(x, p, out=np.empty((3, 5), np.float32))
    with pytest.raises(KernelError, match="float32"):
        series_matmul(x, p, out=np.empty((3, 6), np.float64))
    with pytest.raises(KernelError, match="PackedSeries"):
        series_matmul(x, "2:4")
    with pytest.raises(KernelError, match="zero stride"):
        series_matmul(x, p, out=np.lib.stride_tricks.as_strided(np.zeros(6, np.float32), (3, 6), (0, 4)))
    sq = np.zeros((6, 20), np.float32)
    with pytest.raises(KernelError, match="overlap"):
        series_matmul(sq, p, out=sq[:, :6])
    with pytest.raises(KernelError, match="without a copy"):
        series_matmul(rng.standard_normal((2, 3, 20)).astype(np.float32), p, out=np.zeros((3, 2, 6), np.float32).transpose(1, 0, 2))
    assert isinstance(KernelError("x"), ValueError)


def test_corrupted_indices_detected_at_pack_time():
    rng = np.random.default_rng(7)
    terms = decompose(_weight(rng, 5, 24, density=1.0), "2:4+1:4", axis=1).terms
    bad = terms[1]
    idx = bad.indices.copy()
    idx[3, 2] = 7
    with pytest.raises(KernelError, match=r"term 1 \(1:4\): index 7 out of range for M=4 at row 3"):
        pack_series([terms[0], type(bad)(bad.pattern, bad.values, idx, bad.axis, bad.dense_shape, bad.padding)])
    idx = terms[0].indices.copy()
    idx[2, 0], idx[2, 1] = idx[2, 1], idx[2, 0]
    with pytest.raises(KernelError, match="not distinct and ascending in block 0 of output row 2"):
        pack_term(terms[0].values, idx, 2, 4, 1, (5, 24), 0)
    idx = terms[0].indices.copy()
    idx[0, 5] = -1
    with pytest.raises(KernelError, match="index -1 out of range"):
        pack_term(terms[0].values, idx, 2, 4, 1, (5, 24), 0)
    with pytest.raises(KernelError, match="padding"):
        pack_term(terms[0].values, terms[0].indices, 2, 4, 1, (5, 24), 3)
    with pytest.raises(KernelError, match="values shape"):
        pack_term(terms[0].values[:, :-2], terms[0].indices[:, :-2], 2, 4, 1, (5, 24), 0)
    with pytest.raises(KernelError, match="M=32 not supported"):
        pack_term(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int8), 1, 32, 1, (1, 32), 0)
    with pytest.raises(KernelError, match="dense"):
        pack_series([terms[0], decompose(_weight(rng, 5, 28), "1:4", axis=1).terms[0]])
    with pytest.raises(KernelError, match="empty series"):
        pack_series([])


# --------------------------------------------------------------------------
# C entry
# --------------------------------------------------------------------------


def _desc_view(buf: np.ndarray, offset: int, shape, strides) -> MemRef2D:
    """Hand-built descriptor: base pointer of buf, element offset and strides."""
    d = MemRef2D()
    d.allocated = buf.ctypes.data
    d.aligned = buf.ctypes.data
    d.offset = offset
    d.sizes[0], d.sizes[1] = shape
    d.strides[0], d.strides[1] = strides
    return d


def test_cfunc_entry_via_ctypes():
    rng = np.random.default_rng(8)
    t, k, o = 37, 70, 13
    d = decompose(_weight(rng, o, k), "2:4+1:4", axis=1)
    p = pack_series(d)
    dense = _dense_of(d)
    entry = make_cfunc_entry(p, name="tasd_series_matmul_test")
    assert entry.name == "tasd_series_matmul_test" and entry.address
    # X: K-major buffer with an element offset, Y: strided view into a bigger buffer
    xbuf = rng.standard_normal(5 + k * t).astype(np.float32)
    x = xbuf[5:].reshape(k, t).T
    ybuf = np.full((t, 2 * o), -1.0, np.float32)
    xd = _desc_view(xbuf, 5, (t, k), (1, t))
    yd = _desc_view(ybuf, 1, (t, o), (2 * o, 2))
    fn = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)(entry.address)
    assert fn(ctypes.addressof(xd), ctypes.addressof(yd)) == 0
    entry.check_status()
    _check(ybuf[:, 1::2], x, dense)
    assert np.all(ybuf[:, 0::2] == -1.0)
    # the convenience __call__ builds descriptors from arrays
    y = np.zeros((t, o), np.float32)
    assert entry(np.ascontiguousarray(x), y) == 0
    _check(y, x, dense)
    assert entry.calls == 2
    # accumulate entry
    acc = make_cfunc_entry(p, accumulate=True)
    assert acc(np.ascontiguousarray(x), y) == 0
    _check(y / 2, x, dense)


def test_cfunc_entry_errors_become_exceptions():
    rng = np.random.default_rng(9)
    p = pack_series(decompose(_weight(rng, 6, 20), "2:4", axis=1))
    entry = make_cfunc_entry(p)
    x = rng.standard_normal((4, 20)).astype(np.float32)
    # shape mismatch: returns a status instead of raising in the callback
    assert entry(x, np.zeros((4, 7), np.float32)) == K.STATUS_Y_COLS
    with pytest.raises(KernelError, match="Y has 7 columns, the weight has O=6 outputs"):
        entry.check_status()
    entry.check_status()  # reset after raising
    assert entry(x[:, :18].copy(), np.zeros((4, 6), np.float32)) == K.STATUS_X_COLS
    with pytest.raises(KernelError, match="X has 18 columns, the weight expects K=20"):
        entry.check_status()
    assert entry(x, np.zeros((3, 6), np.float32)) == K.STATUS_Y_ROWS
    with pytest.raises(KernelError, match="Y has 3 rows, X has 4 rows"):
        entry.check_status()
    assert entry.ctypes(None, None) == K.STATUS_NULL_DESCRIPTOR
    with pytest.raises(KernelError, match="null"):
        entry.check_status()
    # a good call afterwards works and leaves a clean status
    y = np.zeros((4, 6), np.float32)
    assert entry(x, y) == 0
    entry.check_status()
    _check(y, x, p.to_dense())


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "n,c,h,w,f,kh,kw,stride,padding,dilation,cfg",
    [
        (1, 3, 9, 11, 5, 3, 3, 1, 0, 1, "2:4"),
        (2, 3, 12, 10, 7, 3, 3, 2, 1, 1, "2:4+1:4"),
        (2, 4, 9, 9, 6, 3, 2, (2, 1), (1, 0), (1, 2), "2:8+1:8"),
        (1, 8, 7, 7, 16, 1, 1, 1, 0, 1, "1:4"),
        (3, 2, 20, 20, 3, 5, 5, 3, 2, 2, "4:16+1:16"),
    ],
)
def test_conv2d_matches_torch(n, c, h, w, f, kh, kw, stride, padding, dilation, cfg):
    rng = np.random.default_rng(c * h + f)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    filt = rng.standard_normal((f, c, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    d = decompose(filt.reshape(f, -1), cfg, axis=1)
    p = pack_series(d)
    out = conv2d_series(x, p, kh, kw, stride=stride, padding=padding, dilation=dilation, bias=bias)
    approx = torch.from_numpy(np.ascontiguousarray(d.approximation.reshape(f, c, kh, kw)))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), approx.double(), torch.from_numpy(bias).double(), stride=stride, padding=padding, dilation=dilation).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * math.sqrt(c * kh * kw))


def test_im2col_matches_unfold():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32)
    cols, oh, ow = im2col(x, 3, 2, stride=(2, 1), padding=1, dilation=(1, 2))
    ref = torch.nn.functional.unfold(torch.from_numpy(x), (3, 2), dilation=(1, 2), padding=1, stride=(2, 1)).numpy()
    # unfold: [N, C*kh*kw, L]; ours: [N*L, C*kh*kw] as a view of a K-major buffer
    assert cols.shape == (2 * oh * ow, 3 * 3 * 2) and cols.T.flags.c_contiguous
    np.testing.assert_array_equal(cols, ref.transpose(0, 2, 1).reshape(-1, 18))
    with pytest.raises(KernelError, match="channels"):
        conv2d_series(x, pack_series(decompose(_weight(rng, 4, 12), "2:4", axis=1)), 3, 3)


# --------------------------------------------------------------------------
# Numba cache: a second process must not compile
# --------------------------------------------------------------------------


def test_second_process_uses_numba_cache():
    rng = np.random.default_rng(11)
    p = pack_series(decompose(_weight(rng, 8, 40), "2:4", axis=1))
    series_matmul(rng.standard_normal((70, 40)).astype(np.float32), p)  # make sure the cache is written
    series_matmul(rng.standard_normal((5, 40)).astype(np.float32), p)
    code = textwrap.dedent(
        """
        import time, numpy as np
        t0 = time.perf_counter()
        from tasdc.decompose import decompose
        from tasdc.runtime.cpu import kernels as K
        p = K.pack_series(decompose(np.ones((8, 40), np.float32), "2:4", axis=1))
        K.series_matmul(np.ones((70, 40), np.float32), p)
        K.series_matmul(np.ones((5, 40), np.float32), p)
        print(sum(K._run_series.stats.cache_misses.values()), sum(K._run_series.stats.cache_hits.values()), time.perf_counter() - t0)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    misses, hits, secs = res.stdout.split()
    assert int(misses) == 0 and int(hits) >= 1, res.stdout


def test_cfunc_entry_called_from_mlir_jit():
    """The entry as the MLIR lowering uses it: func.call of a private
    llvm.emit_c_interface declaration, registered with register_runtime."""
    pytest.importorskip("torch_mlir")
    from torch_mlir import execution_engine, ir, passmanager
    from torch_mlir.runtime import get_ranked_memref_descriptor

    rng = np.random.default_rng(12)
    d = decompose(_weight(rng, 13, 70), "2:4+1:4", axis=1)
    entry = make_cfunc_entry(pack_series(d), name="tasd_series_matmul_mlirtest")
    mt = "memref<?x?xf32, strided<[?, ?], offset: ?>>"
    src = f"""
    func.func private @tasd_series_matmul_mlirtest({mt}, {mt}) -> i32 attributes {{llvm.emit_c_interface}}
    func.func @main(%x: memref<?x?xf32>, %y: memref<?x?xf32>) -> i32 attributes {{llvm.emit_c_interface}} {{
      %xc = memref.cast %x : memref<?x?xf32> to {mt}
      %yc = memref.cast %y : memref<?x?xf32> to {mt}
      %r = func.call @tasd_series_matmul_mlirtest(%xc, %yc) : ({mt}, {mt}) -> i32
      return %r : i32
    }}
    """
    with ir.Context():
        module = ir.Module.parse(src)
        passmanager.PassManager.parse("builtin.module(finalize-memref-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts)").run(module.operation)
        engine = execution_engine.ExecutionEngine(module)
        engine.register_runtime("tasd_series_matmul_mlirtest", entry.ctypes)
        x = rng.standard_normal((9, 70)).astype(np.float32)
        y = np.zeros((9, 13), np.float32)
        ybad = np.zeros((9, 12), np.float32)
        status = ctypes.c_int32(-1)

        def run(a, b):
            args = [ctypes.pointer(ctypes.pointer(get_ranked_memref_descriptor(v))) for v in (a, b)]
            engine.invoke("main", *args, ctypes.pointer(status))
            return status.value

        assert run(x, y) == 0
        entry.check_status()
        _check(y, x, _dense_of(d))
        assert run(x, ybad) == K.STATUS_Y_COLS
        with pytest.raises(KernelError, match="Y has 12 columns"):
            entry.check_status()


@pytest.mark.parametrize("t,k,o", [(256, 768, 512), (3, 40, 8)])
def test_serial_and_parallel_dispatch_agree_with_numpy(t, k, o):
    """Above SERIAL_WORK slot-FMAs the parallel kernel runs, below it the serial twin."""
    from tasdc.runtime.cpu import kernels as K

    rng = np.random.default_rng(21)
    d = decompose(_weight(rng, o, k), "2:4+1:4", axis=1)
    p = pack_series(d)
    x = rng.standard_normal((t, k)).astype(np.float32)
    work = t * p.w_loc.size
    assert (work >= K.SERIAL_WORK) == (t == 256)
    dense = sum(term.to_dense() for term in d.terms).astype(np.float64)
    np.testing.assert_allclose(series_matmul(x, p), x.astype(np.float64) @ dense.T, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("t,o", [(64, 1), (65, 7), (130, 12), (200, 33), (256, 40)])
def test_wide_micro_kernels(isa, t, o):
    """Both wide micro-kernels (8-lane AVX2, 16-lane AVX-512; the latter runs
    anywhere, LLVM splits its vectors without AVX-512) against numpy, and
    against each other: per output they do the same FMAs in the same slot
    order, so their results are identical."""
    rng = np.random.default_rng(t * 7 + o)
    k = 300
    d = decompose(_weight(rng, o, k, density=0.8), "2:4+1:8", axis=1)
    p = pack_series(d, kb=64)  # T >= 128 then runs the 16-lane kernel's 128-row tiles (kb <= 64)
    x = rng.standard_normal((t, k)).astype(np.float32)
    y = series_matmul(x, p, isa=isa)
    _check(y, x, _dense_of(d))
    other = "avx2" if isa == "avx512" else "avx512"
    np.testing.assert_array_equal(y, series_matmul(x, p, isa=other))
    # accumulate adds each output's chain once (the transposed 8x8 write-out)
    base = rng.standard_normal((t, o)).astype(np.float32)
    out = base.copy()
    series_matmul(x, p, out=out, accumulate=True, isa=isa)
    np.testing.assert_array_equal(out, base + y)
    entry = make_cfunc_entry(p, isa=isa)
    ye = np.zeros((t, o), np.float32)
    assert entry(x, ye) == 0
    np.testing.assert_array_equal(ye, y)


def test_isa_choice():
    assert K.wide_kernel_isa() in ("avx2", "avx512")
    assert K.wide_kernel_isa() == ("avx512" if K.host_has_avx512() else "avx2") or os.environ.get("TASDC_KERNEL_ISA")
    with pytest.raises(KernelError, match="isa must be"):
        series_matmul(np.zeros((2, 4), np.float32), pack_series(decompose(np.ones((3, 4), np.float32), "2:4", axis=1)), isa="sse")


@pytest.mark.parametrize(
    "n,c,h,w,f,kh,kw,stride,dilation,pad,cfg,transposed_out",
    [
        (1, 3, 9, 11, 5, 3, 3, 1, 1, 0, "2:4", False),
        (2, 4, 9, 9, 6, 3, 2, (2, 1), (1, 2), (1, 0, 2, 1), "2:8+1:8", False),  # padding [ph0, pw0, ph1, pw1]
        (3, 8, 20, 20, 70, 3, 3, 1, 1, 1, "2:4+1:4", False),   # T = 400 per image: wide micro-kernel
        (2, 3, 12, 10, 7, 3, 3, 2, 1, (2, 2, 0, 1), "1:4", True),  # an output that is not NFHW-contiguous
    ],
)
def test_conv_cfunc_entry_matches_torch(n, c, h, w, f, kh, kw, stride, dilation, pad, cfg, transposed_out):
    """The conv2d C entry (what JIT'ed code calls, no Python) on memref
    descriptors, against torch in f64 on the approximated filter; a bad
    shape is a status, never a crash."""
    from tasdc.runtime.cpu.executor import _descriptor_of

    rng = np.random.default_rng(n * c + f)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    filt = rng.standard_normal((f, c, kh, kw)).astype(np.float32)
    d = decompose(filt.reshape(f, -1), cfg, axis=1)
    entry = K.make_conv_cfunc_entry(pack_series(d), kh, kw, stride, dilation, padding=pad)
    approx = torch.from_numpy(np.ascontiguousarray(d.approximation.reshape(f, c, kh, kw)))
    ph0, pw0, ph1, pw1 = K._pads(pad)
    xpad = torch.nn.functional.pad(torch.from_numpy(x).double(), (pw0, pw1, ph0, ph1))
    ref = torch.nn.functional.conv2d(xpad, approx.double(), stride=stride, dilation=dilation).numpy()
    if transposed_out:  # y[n, f, oh, ow] stored as [n, oh, ow, f]
        store = np.zeros((n,) + ref.shape[2:] + (f,), np.float32)
        y = store.transpose(0, 3, 1, 2)
    else:
        y = np.zeros(ref.shape, np.float32)
    xd = _descriptor_of(x)
    yd = _descriptor_of(np.ascontiguousarray(y)) if not transposed_out else _descriptor_of(store)
    if transposed_out:  # the descriptor of the strided view
        yd.shape[:] = y.shape
        yd.strides[:] = [s // 4 for s in y.strides]
    assert entry.ctypes(ctypes.addressof(xd), ctypes.addressof(yd)) == 0
    entry.check_status()
    got = y if transposed_out else np.ctypeslib.as_array(ctypes.cast(yd.aligned, ctypes.POINTER(ctypes.c_float)), shape=ref.shape)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * math.sqrt(c * kh * kw))
    bad = _descriptor_of(np.zeros((n, f + 1) + ref.shape[2:], np.float32))
    assert entry.ctypes(ctypes.addressof(xd), ctypes.addressof(bad)) == K.STATUS_CONV_SHAPE
    with pytest.raises(KernelError, match="conv2d operands do not match"):
        entry.check_status()


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_thread_count_does_not_change_results(isa):
    """Threads split the outputs (T-tiles, O-chunks), never a reduction: one
    and two threads give bit-identical results."""
    import numba

    rng = np.random.default_rng(5)
    t, k, o = 300, 512, 200
    p = pack_series(decompose(_weight(rng, o, k), "2:4+1:4", axis=1))
    x = rng.standard_normal((t, k)).astype(np.float32)
    assert t * p.w_loc.size >= K.SERIAL_WORK  # the parallel kernel runs
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        y1 = series_matmul(x, p, isa=isa)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        y2 = series_matmul(x, p, isa=isa)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)


def test_cfunc_entry_weight_on_the_left():
    """``Y[O, N] = W X[K, N]`` (the weight on the left): the entry runs the
    kernel on the transposed views in place; same code path as
    ``series_matmul(x.T, p, out=y.T)``, so the results are identical."""
    rng = np.random.default_rng(31)
    k, o, n = 70, 13, 150
    d = decompose(_weight(rng, o, k), "2:4+1:4", axis=1)
    p = pack_series(d)
    x = rng.standard_normal((k, n)).astype(np.float32)
    entry = make_cfunc_entry(p, transpose=True)
    y = np.zeros((o, n), np.float32)
    assert entry(x, y) == 0
    entry.check_status()
    _check(y.T, x.T, _dense_of(d))
    expected = np.zeros((o, n), np.float32)
    series_matmul(x.T, p, out=expected.T)
    np.testing.assert_array_equal(y, expected)
    assert entry(x[:-1], y) == K.STATUS_X_COLS
    with pytest.raises(KernelError, match=r"X has 69 columns, the weight expects K=70 \(weight on the left"):
        entry.check_status()


@pytest.mark.parametrize("transpose", [False, True])
def test_cfunc_batch_entry(transpose):
    """A ``batch_matmul`` series with its own weights per batch element runs
    through one C entry on rank-3 memrefs (either side), each element
    identical to the 2-D kernel on its weights."""
    rng = np.random.default_rng(32 + transpose)
    b, k, o, t = 3, 40, 9, 70
    decs = [decompose(_weight(rng, o, k), "2:4", axis=1) for _ in range(b)]
    packs = [pack_series(d) for d in decs]
    before = [(p.w_loc.copy(), p.w_val.copy()) for p in packs]
    entry = make_cfunc_entry(packs, transpose=transpose)
    # the slots are stored once: every element's arrays are views of the entry's combined copy
    for p, (loc, val) in zip(packs, before):
        np.testing.assert_array_equal(p.w_loc, loc)
        np.testing.assert_array_equal(p.w_val, val)
        assert np.shares_memory(p.w_loc, entry.batch_weights[0]) and np.shares_memory(p.w_val, entry.batch_weights[1])
    xs = rng.standard_normal((b, k, t) if transpose else (b, t, k)).astype(np.float32)
    y = np.zeros((b, o, t) if transpose else (b, t, o), np.float32)
    assert entry(xs, y) == 0
    entry.check_status()
    for i in range(b):
        xi, yi = (xs[i].T, y[i].T) if transpose else (xs[i], y[i])
        _check(yi, xi, _dense_of(decs[i]))
        np.testing.assert_array_equal(yi, series_matmul(xi, packs[i]))
    assert entry(xs[:2], y[:2]) == K.STATUS_BATCH
    with pytest.raises(KernelError, match="batch of X is 2, of Y or the weights 3"):
        entry.check_status()
    other = pack_series(decompose(_weight(rng, o, k), "1:4", axis=1))
    with pytest.raises(KernelError, match="batch element 1 .* is not packed like element 0"):
        make_cfunc_entry([packs[0], other])


@pytest.mark.parametrize("isa,cfg,k,kb", [("avx512", "1:8", 9, 16), ("avx512", "2:4", 27, 28), ("avx512", "1:8", 144, 72),
                                          ("avx512", "1:8", 300, 104), ("avx512", "2:4", 300, 60), ("avx512", "2:4", 768, 64),
                                          ("avx2", "2:4", 27, 28), ("avx2", "2:4", 300, 76), ("avx2", "2:4", 768, 96),
                                          ("avx2", "1:4", 768, 128), ("avx2", "2:4+1:4", 768, 96), ("avx2", "1:8", 300, 104)])
def test_default_tile_no_wider_than_k(isa, cfg, k, kb):
    """The default K-tile is never wider than K rounded up to the blocks (a
    first conv layer's K = 9 would otherwise pack 128-column tiles of zeros),
    and K is cut into tiles of equal width (144 = 72 + 72, not 128 + 16).
    The 8-lane kernel's tiles are 96 columns wide for density >= 1/2, else
    128; the 16-lane kernel's 64 for density >= 1/4 (``default_kb``)."""
    rng = np.random.default_rng(k)
    d = decompose(_weight(rng, 5, k), cfg, axis=1)
    p = pack_series(d, isa=isa)
    assert p.kb == kb
    x = rng.standard_normal((150, k)).astype(np.float32)
    _check(series_matmul(x, p), x, _dense_of(d))


@pytest.mark.parametrize("cfg", ["2:4", "1:4", "2:4+1:8"])
def test_k_tile_width_does_not_change_results(cfg):
    """Each ISA's default K-tile (64, 96 or 128 columns, ``default_kb``) and any
    other width give bit-identical outputs: per output the kernel runs one FMA
    chain over the slots in K order, and a partial sum crosses a tile boundary
    through a float32 buffer (exact). This is what lets the tile width follow
    the micro-kernel without breaking the AVX2 = AVX-512 rule."""
    rng = np.random.default_rng(11)
    k, o = 768, 40
    d = decompose(_weight(rng, o, k), cfg, axis=1)
    x = rng.standard_normal((130, k)).astype(np.float32)
    ref = series_matmul(x, pack_series(d, kb=64), isa="avx512")
    for kb in (32, 96, 128, 256):
        for isa in ("avx2", "avx512"):
            np.testing.assert_array_equal(series_matmul(x, pack_series(d, kb=kb), isa=isa), ref)
    np.testing.assert_array_equal(series_matmul(x, pack_series(d, isa="avx2"), isa="avx2"), ref)
    with pytest.raises(KernelError, match="isa must be"):
        pack_series(d, isa="neon")


# --------------------------------------------------------------------------
# conv2d without an im2col matrix: X tiles packed from the NCHW input
# --------------------------------------------------------------------------

CONV_CASES = [
    # n, c, h, w, f, kh, kw, stride, padding [ph0, pw0, ph1, pw1], dilation, series
    (2, 5, 9, 11, 7, 3, 3, 1, (1, 1, 1, 1), 1, "2:4"),            # P = 99 < 128: tiles span images
    (3, 4, 13, 10, 9, 3, 2, (2, 1), (0, 2, 1, 0), (1, 2), "2:8+1:8"),  # asymmetric padding
    (1, 3, 30, 30, 16, 7, 7, 2, (3, 3, 3, 3), 1, "1:4"),          # a first layer: K = 147
    (2, 16, 12, 12, 70, 1, 1, 1, (0, 0, 0, 0), 1, "2:4+1:4"),     # 1x1; 70 rows: 4-row blocks + rest
    (2, 16, 24, 24, 36, 1, 1, 1, (0, 0, 0, 0), 1, "2:4"),         # 1x1, P = 576: whole 128-row tiles in one image
    (2, 16, 24, 24, 12, 1, 1, 2, (0, 0, 0, 0), 1, "1:4"),         # 1x1 stride 2: the conv kernel
    (2, 8, 6, 6, 5, 5, 5, 1, (4, 4, 4, 4), 1, "1:8"),             # whole input rows / columns of padding
    (1, 16, 20, 20, 33, 3, 3, 1, (1, 1, 1, 1), 1, "2:4"),         # T = 400: 128-row tiles + a 16-row rest
    (1, 4, 5, 5, 6, 3, 3, 1, (1, 1, 1, 1), 1, "2:4"),             # T = 25: the narrow micro-kernel
    (2, 6, 11, 9, 8, 3, 3, 3, (2, 0, 0, 2), (2, 1), "4:16+1:16"),  # stride 3 with dilation
]


def _im2col_reference(x, packed, kh, kw, stride, pads, dilation, isa):
    """The same conv the old way: zero-pad, im2col, then the GEMM kernel on the
    K-major column matrix. Per output the FMAs and their order are the conv
    kernel's (slots in K order, one chain), so the results must be identical."""
    ph0, pw0, ph1, pw1 = pads
    xp = np.pad(x, ((0, 0), (0, 0), (ph0, ph1), (pw0, pw1)))
    cols, oh, ow = im2col(xp, kh, kw, stride, 0, dilation)
    y = series_matmul(cols, packed, isa=isa)  # [N*P, F]
    n, f = x.shape[0], packed.out_features
    return np.ascontiguousarray(y.reshape(n, oh * ow, f).transpose(0, 2, 1).reshape(n, f, oh, ow))


def _torch_conv64(x, dense_filter, stride, pads, dilation):
    ph0, pw0, ph1, pw1 = pads
    xp = torch.nn.functional.pad(torch.from_numpy(x).double(), (pw0, pw1, ph0, ph1))
    return torch.nn.functional.conv2d(xp, torch.from_numpy(dense_filter).double(), stride=stride, dilation=dilation).numpy()


@pytest.mark.parametrize("n,c,h,w,f,kh,kw,stride,pads,dilation,cfg", CONV_CASES)
def test_conv_kernel_equals_im2col_gemm(n, c, h, w, f, kh, kw, stride, pads, dilation, cfg):
    """conv2d_series packs X tiles straight from the input (padding read as
    zeros): bit-identical to pad + im2col + the GEMM kernel for both ISAs and
    several K-tile widths, and within the float32 tolerance of a float64 torch
    conv on the approximated filter (atol 1e-4 * sqrt(K), module docstring)."""
    rng = np.random.default_rng(n * 100 + c * 10 + f)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    filt = _weight(rng, f, c * kh * kw, density=0.8)
    d = decompose(filt, cfg, axis=1)
    p = pack_series(d)
    ref = _im2col_reference(x, p, kh, kw, stride, pads, dilation, "avx512")
    k = c * kh * kw
    got64 = _torch_conv64(x, _dense_of(d).reshape(f, c, kh, kw), stride, pads, dilation)
    np.testing.assert_allclose(ref, got64, rtol=1e-4, atol=1e-4 * math.sqrt(k))
    lcm = math.lcm(*(t.m for t in p.terms))
    for kb in sorted({p.kb, lcm * max(1, 32 // lcm), 128 - 128 % lcm}):
        pk = pack_series(d, kb=kb)
        for isa in ("avx2", "avx512"):
            np.testing.assert_array_equal(conv2d_series(x, pk, kh, kw, stride, pads, dilation, isa=isa), ref, err_msg=f"kb={kb} {isa}")


def test_conv_kernel_strided_input_output_bias_and_errors():
    """Any input / output strides (an NHWC buffer seen as NCHW, a channel
    slice), bias accumulated on top, and bad arguments as KernelError."""
    rng = np.random.default_rng(3)
    n, c, h, w, f, kh, kw = 2, 6, 10, 9, 12, 3, 3
    d = decompose(_weight(rng, f, c * kh * kw), "2:4+1:8", axis=1)
    p = pack_series(d)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    ref = conv2d_series(x, p, kh, kw, 1, 1)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(conv2d_series(nhwc.transpose(0, 3, 1, 2), p, kh, kw, 1, 1), ref)
    wide = np.zeros((n, 2 * c, h, w), np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(conv2d_series(wide[:, ::2], p, kh, kw, 1, 1), ref)
    store = np.zeros((n, h, w, f), np.float32)
    conv2d_series(x, p, kh, kw, 1, 1, out=store.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(store.transpose(0, 3, 1, 2), ref)
    bias = rng.standard_normal(f).astype(np.float32)
    np.testing.assert_allclose(conv2d_series(x, p, kh, kw, 1, 1, bias=bias), ref + bias[None, :, None, None], rtol=1e-6, atol=1e-6)
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(conv2d_series(ro, p, kh, kw, 1, 1), ref)
    with pytest.raises(KernelError, match="padding"):
        conv2d_series(x, p, kh, kw, 1, (1, 2, 3))
    with pytest.raises(KernelError, match="invalid conv geometry"):
        conv2d_series(x, p, kh, kw, 1, (1, -1, 1, 1))
    with pytest.raises(KernelError, match="empty"):
        conv2d_series(x[:, :, :1, :1], p, kh, kw, 1, 0)
    with pytest.raises(KernelError, match="float32"):
        conv2d_series(x.astype(np.float64), p, kh, kw)
    with pytest.raises(KernelError, match="out must be"):
        conv2d_series(x, p, kh, kw, 1, 1, out=np.zeros((n, f, h, w + 1), np.float32))
    with pytest.raises(KernelError, match="invalid conv geometry"):
        K.make_conv_cfunc_entry(p, kh, kw, padding=(0, -1, 0, 0))


def test_conv_kernel_thread_count_does_not_change_results():
    """The parallel conv kernel splits output pixels / filters only: one and
    two threads give bit-identical results."""
    import numba

    rng = np.random.default_rng(8)
    n, c, h, w, f = 2, 16, 32, 32, 64
    p = pack_series(decompose(_weight(rng, f, c * 9), "2:4", axis=1))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    assert n * h * w * p.w_loc.size >= K.SERIAL_WORK  # the parallel kernel runs
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        y1 = conv2d_series(x, p, 3, 3, 1, 1)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        y2 = conv2d_series(x, p, 3, 3, 1, 1)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)


def test_series_entry_first_then_dense_entries_load_in_a_new_process() -> None:
    """An embedder may load the series C entry before anything has started Numba's
    threads and then the dense library entries: that order once aborted the process
    in LLVM's linker ("Symbol not found: allocate_sched")."""
    import subprocess
    import sys

    child = (
        "from tasdc.runtime.cpu import kernels\n"
        "kernels._generic_cfunc()\n"
        "from tasdc.runtime.cpu import dense\n"
        "for name in dense.LIBRARY_ENTRIES:\n"
        "    dense.library_entry(name)\n"
        "print('loaded')\n"
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "loaded" in proc.stdout, proc.stderr[-2000:]
