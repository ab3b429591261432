"""Tests of the direct conv layout of the N:M conv2d (tasdc.runtime.cpu.kernels).

The direct layout (``layout="direct"``: a zero-padded copy of each image, or a
1x1 input read in place, whose filter columns the micro-kernels read as
shifted runs) computes, per output, the same FMAs in the same order as the X
tiles (``layout="tiles"``): one code path's arithmetic on both sides, so the
tests require identical bits, for both micro-kernels (AVX2 and AVX-512), any
K-tile width and 1 or 2 threads. Against a float64 torch conv on the
approximated filter the tolerance is the float32 one of test_kernels.py:
``atol = 1e-4 * sqrt(K)``, ``rtol = 1e-4``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasdc.decompose import decompose
from tasdc.runtime.cpu import kernels as K
from tasdc.runtime.cpu.kernels import KernelError, conv2d_series, make_conv_cfunc_entry, memref_descriptor, pack_series

# compared against torch (BLAS): run again under the other OpenBLAS kernel (tools/dev.py)
pytestmark = pytest.mark.blas

CONFIGS = ["2:4", "1:4", "1:8", "2:8+1:8", "2:4+1:4", "4:16+1:16"]


def _dense_of(d) -> np.ndarray:
    return sum(t.to_dense().astype(np.float64) for t in d.terms)


def _torch64(x: np.ndarray, filt: np.ndarray, pads: tuple[int, int, int, int], dilation: tuple[int, int]) -> np.ndarray:
    ph0, pw0, ph1, pw1 = pads
    xp = torch.nn.functional.pad(torch.from_numpy(x).double(), (pw0, pw1, ph0, ph1))
    return torch.nn.functional.conv2d(xp, torch.from_numpy(filt), dilation=dilation).numpy()


@st.composite
def _direct_case(draw):
    """A stride-1 conv the direct layout admits: more than NARROW_MAX_T
    computed output pixels per image (rows rounded up to _DCONV_ALIGN, except
    for a 1x1 filter, read in rows of ow pixels: ``_dconv_mode``), padding up
    to the filter size."""
    kh = draw(st.integers(1, 5))
    kw = draw(st.integers(1, 5))
    dh = draw(st.integers(1, 2))
    dw = draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, k)) for k in (kh, kw, kh, kw))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pads[0] - pads[2]), 20))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pads[1] - pads[3]), 20))
    oh = h + pads[0] + pads[2] - dh * (kh - 1)
    ow = w + pads[1] + pads[3] - dw * (kw - 1)
    row = ow if kh == kw == 1 else -(-ow // K._DCONV_ALIGN) * K._DCONV_ALIGN
    if oh * row <= K.NARROW_MAX_T:
        h += K.NARROW_MAX_T  # enough output rows
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 12))
    f = draw(st.integers(1, 40))
    cfg = draw(st.sampled_from(CONFIGS))
    return n, c, h, w, f, kh, kw, pads, (dh, dw), cfg, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_direct_case())
def test_direct_equals_tiles_bitwise(case):
    """Direct (prefetching or not) and auto layouts give the X tiles' bits for
    both ISAs and two K-tile widths, where the series has no column past K;
    and the conv is within float32 tolerance of torch in float64."""
    n, c, h, w, f, kh, kw, pads, dil, cfg, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    filt = rng.standard_normal((f, c * kh * kw)).astype(np.float32)
    d = decompose(filt, cfg, axis=1)
    k = c * kh * kw
    first = pack_series(d, conv=True)
    lcm = math.lcm(*(t.m for t in first.terms))
    packs = [first, pack_series(d, kb=lcm * max(1, 32 // lcm))]
    for pk in packs:
        for isa in ("avx2", "avx512"):
            ref = conv2d_series(x, pk, kh, kw, 1, pads, dil, isa=isa, layout="tiles")
            np.testing.assert_array_equal(conv2d_series(x, pk, kh, kw, 1, pads, dil, isa=isa, layout="auto"), ref)
            if K._kpad(pk) != k:  # slots past K: no tap for them
                with pytest.raises(KernelError, match="does not apply"):
                    conv2d_series(x, pk, kh, kw, 1, pads, dil, isa=isa, layout="direct")
                continue
            for pf in (True, False):
                got = conv2d_series(x, pk, kh, kw, 1, pads, dil, isa=isa, layout="direct", prefetch=pf)
                np.testing.assert_array_equal(got, ref, err_msg=f"kb={pk.kb} {isa} prefetch={pf}")
    ref64 = _torch64(x, _dense_of(d).reshape(f, c, kh, kw), pads, dil)
    np.testing.assert_allclose(ref, ref64, rtol=1e-4, atol=1e-4 * math.sqrt(k))


def test_direct_strided_input_output_bias():
    """The padded copy reads any input strides (an NHWC buffer seen as NCHW, a
    channel slice); Y with any strides; bias accumulated on top."""
    rng = np.random.default_rng(3)
    n, c, h, w, f = 2, 8, 15, 13, 20
    p = pack_series(decompose(rng.standard_normal((f, c * 9)).astype(np.float32), "2:4", axis=1))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    ref = conv2d_series(x, p, 3, 3, 1, 1, layout="tiles")
    np.testing.assert_array_equal(conv2d_series(x, p, 3, 3, 1, 1, layout="direct"), ref)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(conv2d_series(nhwc.transpose(0, 3, 1, 2), p, 3, 3, 1, 1, layout="direct"), ref)
    wide = np.zeros((n, 2 * c, h, w), np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(conv2d_series(wide[:, ::2], p, 3, 3, 1, 1, layout="direct"), ref)
    store = np.zeros((n, h, w, f), np.float32)
    conv2d_series(x, p, 3, 3, 1, 1, out=store.transpose(0, 3, 1, 2), layout="direct")
    np.testing.assert_array_equal(store.transpose(0, 3, 1, 2), ref)
    bias = rng.standard_normal(f).astype(np.float32)
    np.testing.assert_array_equal(conv2d_series(x, p, 3, 3, 1, 1, bias=bias, layout="direct"),
                                  conv2d_series(x, p, 3, 3, 1, 1, bias=bias, layout="tiles"))


@pytest.mark.parametrize("h,w", [(9, 9), (8, 16), (13, 11)])
def test_inplace_1x1_reads_no_further_than_the_input(h, w):
    """A 1x1 conv read in place: the last pixel tile of the last image would
    read past the input buffer and copies its columns instead. The input is
    the end of its own page-aligned allocation, so an overrun would read
    whatever follows (and differ from the tiles, or fault)."""
    rng = np.random.default_rng(h * w)
    n, c, f = 2, 24, 8
    p = pack_series(decompose(rng.standard_normal((f, c)).astype(np.float32), "1:8", axis=1))
    size = n * c * h * w
    raw = np.full(size + 4096, np.nan, np.float32)
    x = raw[raw.size - size:].reshape(n, c, h, w)
    x[...] = rng.standard_normal((n, c, h, w))
    geo = np.array([0, c * h * w, h * w, w, 1, n, c, h, w, 1, 1, 1, 1, 0, 0, 1, 1, h, w], np.int64)
    assert K._dconv_mode(geo, 2, K._kpad(p), p.w_loc.size, False) == K._MODE_INPLACE
    ref = conv2d_series(x, p, 1, 1, layout="tiles")
    got = conv2d_series(x, p, 1, 1, layout="direct")
    np.testing.assert_array_equal(got, ref)
    assert np.isfinite(got).all()


def test_direct_one_and_two_threads_bitwise():
    """The parallel direct kernel splits pixels / filters and the padding of an
    image over channels only: one and two threads give identical bits."""
    import numba

    rng = np.random.default_rng(8)
    n, c, h, w, f = 2, 16, 32, 32, 64
    p = pack_series(decompose(rng.standard_normal((f, c * 9)).astype(np.float32), "2:4", axis=1))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    assert n * h * w * p.w_loc.size >= K.SERIAL_WORK  # the parallel kernel runs
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        y1 = conv2d_series(x, p, 3, 3, 1, 1, layout="direct")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        y2 = conv2d_series(x, p, 3, 3, 1, 1, layout="direct")
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, conv2d_series(x, p, 3, 3, 1, 1, layout="tiles"))


def test_direct_c_entry_equals_tiles_entry():
    """The conv C entry (what JIT'ed code calls) with layout='direct' gives the
    tiles entry's bits, padding read as zeros."""
    rng = np.random.default_rng(5)
    n, c, h, w, f = 2, 8, 20, 18, 24
    p = pack_series(decompose(rng.standard_normal((f, c * 9)).astype(np.float32), "1:8", axis=1), conv=True)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    outs = []
    for layout in ("tiles", "direct"):
        entry = make_conv_cfunc_entry(p, 3, 3, 1, 1, padding=(1, 1, 1, 1), layout=layout)
        y = np.full((n, f, h, w), np.nan, np.float32)
        xd, yd = memref_descriptor(x), memref_descriptor(y)
        import ctypes

        entry.ctypes(ctypes.addressof(xd), ctypes.addressof(yd))
        entry.check_status()
        outs.append(y)
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[0], conv2d_series(x, p, 3, 3, 1, 1))


def test_kpad_from_the_slots_not_the_terms():
    """Whether a series has slots past K (no tap for them) is read from the
    packed slots: a series read back from the kernel cache has no terms."""
    rng = np.random.default_rng(2)
    d = decompose(rng.standard_normal((8, 3 * 9)).astype(np.float32), "2:4", axis=1)  # K = 27: padded to 28
    p = pack_series(d)
    bare = K.PackedSeries(out_features=p.out_features, in_features=p.in_features, kb=p.kb, patterns=p.patterns,
                          tile_count=p.tile_count, tile_ptr=p.tile_ptr, w_loc=p.w_loc, w_val=p.w_val)
    last = max(kt * p.kb + int(p.w_loc[p.tile_ptr[kt]:p.tile_ptr[kt + 1]].max()) + 1 for kt in range(p.ntiles))
    assert K._kpad(bare) == K._kpad(p) == max(27, last)
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    if K._kpad(bare) > 27:
        with pytest.raises(KernelError, match="does not apply"):
            conv2d_series(x, bare, 3, 3, 1, 1, layout="direct")
    np.testing.assert_array_equal(conv2d_series(x, bare, 3, 3, 1, 1), conv2d_series(x, p, 3, 3, 1, 1, layout="tiles"))


def test_layout_errors():
    """Bad layout names and a direct layout that does not apply are KernelErrors."""
    rng = np.random.default_rng(1)
    p = pack_series(decompose(rng.standard_normal((8, 4 * 9)).astype(np.float32), "2:4", axis=1))
    x = rng.standard_normal((1, 4, 16, 16)).astype(np.float32)
    with pytest.raises(KernelError, match="layout must be one of"):
        conv2d_series(x, p, 3, 3, 1, 1, layout="im2col")
    with pytest.raises(KernelError, match="does not apply: stride"):
        conv2d_series(x, p, 3, 3, 2, 1, layout="direct")
    with pytest.raises(KernelError, match="does not apply"):
        conv2d_series(x[:, :, :4, :4], p, 3, 3, 1, 1, layout="direct")  # 4 rows of 6 pixels: too few
    with pytest.raises(KernelError, match="needs stride 1"):
        make_conv_cfunc_entry(p, 3, 3, 2, 1, padding=1, layout="direct")
    with pytest.raises(KernelError, match="layout must be one of"):
        make_conv_cfunc_entry(p, 3, 3, 1, 1, padding=1, layout="fast")
