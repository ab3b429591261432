"""Dense contractions through the library entries (``tasd-cpu-dense-to-library-calls``
+ ``runtime/cpu/dense.py``) against float64 references.

Tolerance: every output element is a sum of K products computed in float32
(OpenBLAS's blocking and FMA order differ per CPU kernel), so by the standard
bound of recursive summation ``|err| <= K·u·(|A|·|B|)`` elementwise with
``u = 2⁻²⁴``, for *any* summation order; the tests allow twice that (plus
the rounding of an added init) and compare in float64. The bound does not
depend on the BLAS kernel, the CPU or the thread count; an indexing or stride
bug gives errors of the size of the result itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc.module import clone_module, new_context, parse_module
from tasdc.passes.dense_to_calls import DenseToLibraryCalls
from tasdc.runtime.cpu.executor import compile_for_cpu

from mlir_text import matmul_text as _matmul_text
from mlir_text import tensor_type as _t

U = 2.0 ** -24


def _assert_within(got: np.ndarray, exact: np.ndarray, scale: np.ndarray, k: int, init: np.ndarray | None = None) -> None:
    """``|got - exact| <= 2·K·u·scale (+ u·|exact|)``: see the module docstring."""
    bound = 2 * k * U * scale + 2 * U * np.abs(exact) + (0 if init is None else 2 * U * np.abs(init))
    err = np.abs(got.astype(np.float64) - exact)
    assert got.shape == exact.shape
    assert np.all(err <= bound + 1e-30), f"max excess {np.max(err - bound)} (max err {err.max()})"


def _compile(text: str):
    module = parse_module(text, new_context())
    probe = parse_module(text, module.context)
    DenseToLibraryCalls().run(probe)
    assert "call @tasd_dense_" in str(probe), "the pass must take the op, or this tests the code generator"
    return compile_for_cpu(module, cache=False)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 13, 5), (33, 17, 35), (64, 100, 48), (130, 300, 257)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_matmul(m: int, k: int, n: int, accumulate: bool) -> None:
    rng = np.random.default_rng(m * 7 + k)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    args = [a, b]
    exact = a.astype(np.float64) @ b.astype(np.float64)
    init = None
    if accumulate:
        c = rng.uniform(-1, 1, (m, n)).astype(np.float32)
        args.append(c)
        init = 2 * c.astype(np.float64)
        exact = exact + init
    got = _compile(_matmul_text("linalg.matmul", (m, k), (k, n), (m, n), accumulate))(*args)
    _assert_within(got, exact, np.abs(a).astype(np.float64) @ np.abs(b), k, init)


@pytest.mark.parametrize("b,m,k,n", [(3, 5, 7, 9), (32, 16, 8, 16), (2, 21, 3, 37)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_batch_matmul(b: int, m: int, k: int, n: int, accumulate: bool) -> None:
    rng = np.random.default_rng(b + m)
    x = rng.uniform(-1, 1, (b, m, k)).astype(np.float32)
    w = rng.uniform(-1, 1, (b, k, n)).astype(np.float32)
    args = [x, w]
    exact = x.astype(np.float64) @ w.astype(np.float64)
    init = None
    if accumulate:
        c = rng.uniform(-1, 1, (b, m, n)).astype(np.float32)
        args.append(c)
        init = 2 * c.astype(np.float64)
        exact = exact + init
    got = _compile(_matmul_text("linalg.batch_matmul", (b, m, k), (b, k, n), (b, m, n), accumulate))(*args)
    _assert_within(got, exact, np.abs(x).astype(np.float64) @ np.abs(w), k, init)


def test_strided_operands_are_copied_correctly() -> None:
    """Operands that are views with gaps between rows or elements (an
    ``extract_slice`` with stride 2, a batch slice at an offset) reach the entry
    as strided memrefs; the result must not depend on that."""
    text = f"""
func.func @main(%a: {_t((6, 20))}, %b: {_t((10, 7))}, %x: {_t((4, 3, 5))}, %w: {_t((2, 5, 6))}) -> ({_t((6, 7))}, {_t((2, 3, 6))}) {{
  %z = arith.constant 0.0 : f32
  %s = tensor.extract_slice %a[0, 1] [6, 10] [1, 2] : {_t((6, 20))} to {_t((6, 10))}
  %e = tensor.empty() : {_t((6, 7))}
  %i = linalg.fill ins(%z : f32) outs(%e : {_t((6, 7))}) -> {_t((6, 7))}
  %y = linalg.matmul ins(%s, %b : {_t((6, 10))}, {_t((10, 7))}) outs(%i : {_t((6, 7))}) -> {_t((6, 7))}
  %xs = tensor.extract_slice %x[1, 0, 0] [2, 3, 5] [2, 1, 1] : {_t((4, 3, 5))} to {_t((2, 3, 5))}
  %e2 = tensor.empty() : {_t((2, 3, 6))}
  %i2 = linalg.fill ins(%z : f32) outs(%e2 : {_t((2, 3, 6))}) -> {_t((2, 3, 6))}
  %y2 = linalg.batch_matmul ins(%xs, %w : {_t((2, 3, 5))}, {_t((2, 5, 6))}) outs(%i2 : {_t((2, 3, 6))}) -> {_t((2, 3, 6))}
  return %y, %y2 : {_t((6, 7))}, {_t((2, 3, 6))}
}}"""
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-1, 1, (6, 20)).astype(np.float32), rng.uniform(-1, 1, (10, 7)).astype(np.float32)
    x, w = rng.uniform(-1, 1, (4, 3, 5)).astype(np.float32), rng.uniform(-1, 1, (2, 5, 6)).astype(np.float32)
    y, y2 = _compile(text)(a, b, x, w)
    s = a[:, 1::2].astype(np.float64)
    _assert_within(y, s @ b, np.abs(s) @ np.abs(b), 10)
    xs = x[1::2].astype(np.float64)
    _assert_within(y2, xs @ w, np.abs(xs) @ np.abs(w), 5)


def _conv_bound(x: np.ndarray, w: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    exact = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), **kw).numpy()
    scale = torch.nn.functional.conv2d(torch.from_numpy(np.abs(x)).double(), torch.from_numpy(np.abs(w)).double(), **kw).numpy()
    return exact, scale


@pytest.mark.parametrize("groups,cin,f,k,stride,dilation,side", [
    (1, 3, 8, 3, 1, 1, 11),  # im2col, small images: one GEMM over both images
    (1, 6, 5, 1, 1, 1, 11),  # 1x1 stride 1
    (1, 4, 6, 1, 2, 1, 11),  # 1x1 strided
    (2, 4, 6, 3, 2, 1, 11),  # grouped (conv_2d_ngchw_gfchw)
    (3, 6, 3, 3, 1, 2, 11),  # grouped, dilated
    (1, 5, 7, 3, 1, 1, 20),  # >= SMALL_PLANE output pixels: GEMMs per image
    (1, 3, 4, 3, 1, 1, 70),  # ... and over several im2col blocks, one ending inside an output row
    (1, 4, 3, 1, 1, 1, 66),  # ... and 1x1 stride 1 without im2col
    (2, 4, 2, 3, 1, 1, 70),  # ... grouped
])
def test_conv2d_with_bias(groups: int, cin: int, f: int, k: int, stride: int, dilation: int, side: int) -> None:
    """Through torch-mlir's lowering (the bias is the broadcast init, added after the call)."""
    conv = torch.nn.Conv2d(cin, f, k, stride=stride, dilation=dilation, groups=groups, padding=1).eval()
    x = torch.randn(2, cin, side, side + 1, generator=torch.Generator().manual_seed(0))
    _check_model(conv, x, "tasd_dense_conv2d")


@pytest.mark.parametrize("k,stride,dilation", [(3, 1, 1), (3, 2, 1), (5, 1, 2)])
def test_depthwise_conv2d(k: int, stride: int, dilation: int) -> None:
    conv = torch.nn.Conv2d(6, 6, k, stride=stride, dilation=dilation, groups=6, padding=k // 2).eval()
    x = torch.randn(2, 6, 13, 12, generator=torch.Generator().manual_seed(1))
    _check_model(conv, x, "tasd_dense_depthwise_conv2d")


def _check_model(conv: torch.nn.Conv2d, x: torch.Tensor, entry: str) -> None:
    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.pipeline import parse_pipeline, run_pipeline

    result = compile_model(conv, (x,), CompileOptions(config="dense"))
    probe = clone_module(result.module)
    run_pipeline(probe, parse_pipeline("tasd-cpu-dense-to-library-calls", probe.context))
    assert f"call @{entry}" in str(probe)
    got = compile_for_cpu(result.module, cache=False)(x.numpy())
    w = conv.weight.detach().numpy()
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), conv.padding, conv.padding))
    exact, scale = _conv_bound(xp, w, stride=conv.stride, dilation=conv.dilation, groups=conv.groups)
    bias = conv.bias.detach().numpy().astype(np.float64)[None, :, None, None]
    exact = exact + bias
    red = w.shape[1] * w.shape[2] * w.shape[3]
    _assert_within(got, exact, scale, red, np.broadcast_to(bias, exact.shape))


def test_large_matmul_split_over_threads() -> None:
    """A product above ``PARALLEL_FLOPS`` with two Numba threads is computed as row
    blocks on both (one single-threaded sgemm each): same bound as above."""
    import numba

    from tasdc.runtime.cpu.dense import PARALLEL_FLOPS

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    m, k, n = 515, 256, 520
    assert 2 * m * k * n >= PARALLEL_FLOPS
    rng = np.random.default_rng(11)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    exe = _compile(_matmul_text("linalg.matmul", (m, k), (k, n), (m, n), False))
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        got = exe(a, b)
    finally:
        numba.set_num_threads(before)
    _assert_within(got, a.astype(np.float64) @ b.astype(np.float64), np.abs(a).astype(np.float64) @ np.abs(b), k)


def test_conv2d_images_split_over_threads_bit_identically() -> None:
    """With two Numba threads a large convolution splits its images over them (each
    image still one sequence of single-threaded GEMMs): the same bits as one thread."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    from tasdc.compiler import CompileOptions, compile_model

    conv = torch.nn.Conv2d(16, 32, 3, padding=1, bias=False).eval()
    x = torch.randn(8, 16, 32, 32, generator=torch.Generator().manual_seed(2))  # 2·8·32·1024·144 flops > PARALLEL_FLOPS
    with torch.no_grad():
        exe = compile_model(conv, (x,), CompileOptions(config="dense")).cpu(cache=False)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        exe(-x.numpy())  # a reused output buffer then holds other values, not the expected ones
        numba.set_num_threads(2)
        two = exe(x.numpy())
        numba.set_num_threads(1)
        one = exe(x.numpy())
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, two)
    exact, scale = _conv_bound(x.numpy(), conv.weight.detach().numpy(), padding=1)
    _assert_within(two, exact, scale, 16 * 9)


_THREADPOOL_CHILD = r"""
import sys
import numba, numpy as np, torch
from threadpoolctl import threadpool_info, threadpool_limits
from tasdc.compiler import CompileOptions, compile_model
from tasdc.runtime.cpu.object_cache import cache_dir

nn = torch.nn
# 1x1 convolutions on 56x56 images: one short GEMM per image on each Numba thread, many per call
model = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.Conv2d(256, 64, 1, bias=False),
                      nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.Conv2d(64, 256, 1, bias=False)).eval()
x = torch.randn(8, 64, 56, 56, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    exe = compile_model(model, (x,), CompileOptions(config="dense")).cpu(cache=False)
threadpool_limits(2, user_api="blas")  # as a user's (or a benchmark's) thread setting does
numba.set_num_threads(2)
for _ in range(60):
    exe(x.numpy())
blas = str(cache_dir() / "blas")
print("seen:", [i["filepath"] for i in threadpool_info() if i["filepath"].startswith(blas)])
"""


def test_two_threads_never_run_an_openblas_pool_inside_numba_threads(tmp_path) -> None:
    """With ``threadpool_limits(2)`` and two Numba threads, a convolution split over
    the threads still runs single-threaded GEMMs: OpenBLAS (pthreads) prints "Detect
    OpenMP Loop … may hang" whenever its pool is entered from a parallel region, once
    per call. ``OPENBLAS_CORETYPE=Haswell`` makes an AVX-512 host load the private
    SkylakeX copy of ``runtime/cpu/dense.py`` (which threadpoolctl must not see); other
    hosts check the shared library's thread count, which is process-wide: when each
    GEMM set it to 1 and back on its own Numba thread, one thread's reset let the
    other's GEMM start the pool (seen on an AVX2 host: 1 warning in 20 calls of this
    model, 9 in 10 calls of resnet50; a race, so this test catches it often, not always)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", NUMBA_NUM_THREADS="2", TASDC_CACHE_DIR=str(tmp_path))
    env.pop("TASDC_DENSE_BLAS", None)
    proc = subprocess.run([sys.executable, "-c", _THREADPOOL_CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OpenBLAS Warning" not in proc.stderr
    assert "seen: []" in proc.stdout


# --------------------------------------------------------------------------
# the convolution methods (runtime/cpu/dense.py: im2col, implicit GEMM per tap, stacked taps)
# --------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tasdc.runtime.cpu import dense  # noqa: E402

_METHODS = (dense.IM2COL, dense.IMPLICIT, dense.STACKED)


def _check_conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int], groups: int, got: np.ndarray) -> None:
    exact, scale = _conv_bound(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    _assert_within(got, exact, scale, w.shape[1] * w.shape[2] * w.shape[3])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 20), f=st.integers(1, 9), groups=st.integers(1, 2),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), ph=st.integers(0, 2), pw=st.integers(0, 3),
       h=st.integers(1, 19), wid=st.integers(1, 19), method=st.sampled_from(_METHODS), seed=st.integers(0, 2 ** 16))
def test_conv_methods_match_torch(n: int, c: int, f: int, groups: int, kh: int, kw: int, sh: int, sw: int, dh: int,
                                  dw: int, ph: int, pw: int, h: int, wid: int, method: int, seed: int) -> None:
    """Every method (forced) over shapes, strides, paddings, dilations and groups against
    torch's conv2d in float64, within the summation bound of the module docstring (the
    methods sum in different orders: im2col over (c, i, j), the implicit GEMMs per tap or
    per filter row)."""
    if h + 2 * ph < dh * (kh - 1) + 1 or wid + 2 * pw < dw * (kw - 1) + 1:
        return  # no output
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, c * groups, h, wid)).astype(np.float32)
    w = rng.uniform(-1, 1, (f * groups, c, kh, kw)).astype(np.float32)
    got = dense.conv2d(x, w, (sh, sw), (ph, pw), (dh, dw), groups, method)
    _check_conv(x, w, (sh, sw), (ph, pw), (dh, dw), groups, got)


@pytest.mark.parametrize("method", [dense.IMPLICIT, dense.STACKED])
@pytest.mark.parametrize("layout", ["plain", "bound"])
def test_implicit_filter_layouts_and_strided_operands(method: int, layout: str) -> None:
    """The implicit GEMMs read a filter in their own layout in place (as
    ``tasd-cpu-tap-major-filters`` binds it) or rearrange any other, and take strided
    input and output views."""
    from tasdc.passes.tap_major_filters import LAYOUTS

    rng = np.random.default_rng(method)
    x = rng.uniform(-1, 1, (3, 40, 12, 2 * 13)).astype(np.float32)[:, ::2, :, ::2]  # strided channels and columns
    w = rng.uniform(-1, 1, (24, 20, 3, 3)).astype(np.float32)
    if layout == "bound":
        forward, backward = LAYOUTS[method]
        w = np.ascontiguousarray(w.transpose(forward)).transpose(backward)
    out = np.full((3, 48, 12, 2 * 13), np.nan, np.float32)[:, ::2, :, ::2]
    for stride in (1, 2):
        oh, ow = (12 + 2 - 3) // stride + 1, (13 + 2 - 3) // stride + 1
        view = out[:, :, :oh, :ow]
        dense.conv2d(x, w, (stride, stride), (1, 1), (1, 1), 1, method, out=view)
        _check_conv(x, w, (stride, stride), (1, 1), (1, 1), 1, view)


@pytest.mark.parametrize("side,n", [(32, 8), (12, 8)])  # one image per thread; all images interleaved, row blocks split
@pytest.mark.parametrize("method", [dense.IMPLICIT, dense.STACKED])
def test_implicit_two_threads_bit_identical(side: int, n: int, method: int) -> None:
    """Above ``PARALLEL_FLOPS`` the implicit GEMMs split images (large planes) or blocks of
    output rows (small planes, all images in each GEMM) over two Numba threads: the same
    GEMMs as on one thread, so the same bits (never a split of the reduction)."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(side)
    c, f = 64, 128
    x = rng.uniform(-1, 1, (n, c, side, side)).astype(np.float32)
    w = rng.uniform(-1, 1, (f, c, 3, 3)).astype(np.float32)
    assert 2.0 * n * f * side * side * c * 9 >= dense.PARALLEL_FLOPS
    assert (side * side < dense.SMALL_PLANE) == (side == 12)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = dense.conv2d(x, w, padding=(1, 1), method=method)
        numba.set_num_threads(2)
        two = dense.conv2d(x, w, padding=(1, 1), method=method)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, two)
    _check_conv(x, w, (1, 1), (1, 1), (1, 1), 1, two)


@pytest.mark.blas
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 40), f=st.integers(1, 40), groups=st.integers(1, 2), pad=st.integers(0, 2),
       h=st.integers(1, 19), wid=st.integers(1, 19), strided=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_winograd_matches_torch(n: int, c: int, f: int, groups: int, pad: int, h: int, wid: int, strided: bool,
                                seed: int) -> None:
    """Winograd F(2×2, 3×3) (forced) over image sizes (odd ones: the last tile row or column
    half outside), paddings, groups and strided operands, against torch in float64. Its
    transforms add the inputs of a tile's whole 4×4 patch before multiplying, so an output's
    rounding error scales with inputs outside its own 3×3 window, and the filter transform's
    roundings add a term independent of C: the bound is eight times the module's with K
    taken as ``9·C + 64`` and each output plane's largest ``Σ|w||x|`` as the scale (observed
    errors are about the direct methods'; a wrong tile or transform is off by O(1))."""
    if h + 2 * pad < 3 or wid + 2 * pad < 3:
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, c * groups, h, 2 * wid)).astype(np.float32)
    x = x[..., ::2] if strided else np.ascontiguousarray(x[..., :wid])
    w = rng.uniform(-1, 1, (f * groups, c, 3, 3)).astype(np.float32)
    got = dense.conv2d(x, w, (1, 1), (pad, pad), (1, 1), groups, dense.WINOGRAD)
    exact, scale = _conv_bound(x, w, padding=(pad, pad), groups=groups)
    plane_max = np.broadcast_to(scale.max(axis=(2, 3), keepdims=True), scale.shape)
    _assert_within(got, exact, 8 * plane_max, c * 9 + 64)


def test_winograd_filter_transform_is_g_g_gt() -> None:
    """``U = G g Gᵀ`` per (filter, channel), 16 points ξ = 4·row + column, against the
    definition in float64: within two f32 roundings of each entry's terms."""
    from tasdc.runtime.cpu import winograd

    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (5, 7, 3, 3)).astype(np.float32)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    exact = np.einsum("ai,fcij,bj->abfc", g, w.astype(np.float64), g).reshape(16, 5, 7)
    scale = np.einsum("ai,fcij,bj->abfc", np.abs(g), np.abs(w.astype(np.float64)), np.abs(g)).reshape(16, 5, 7)
    got = winograd.filter_transform(w)
    assert got.shape == (16, 5, 7) and got.dtype == np.float32
    assert np.all(np.abs(got - exact) <= 4 * U * scale)


def test_winograd_is_auto_for_3x3_stride_1_only() -> None:
    """``AUTO`` takes Winograd for 3×3 stride-1 undilated kernels with enough channels and
    tiles; a forced Winograd on any other shape runs the implicit GEMM or im2col instead."""
    tiles = dense.WINOGRAD_MIN_TILES
    assert dense.conv_method(16, 3, 3, 1, 1, 1, 1, tiles) == dense.WINOGRAD
    assert dense.conv_method(15, 3, 3, 1, 1, 1, 1, tiles) == dense.IM2COL
    assert dense.conv_method(16, 3, 3, 1, 1, 1, 1, tiles - 1) == dense.STACKED
    assert dense.conv_method(64, 3, 3, 2, 2, 1, 1, tiles) == dense.STACKED
    assert dense.conv_method(64, 3, 3, 1, 1, 2, 2, tiles) == dense.STACKED
    assert dense.conv_method(64, 5, 5, 1, 1, 1, 1, tiles) == dense.STACKED
    assert dense.conv_method(3, 7, 7, 2, 2, 1, 1, tiles) == dense.STACKED  # the ResNet stem (STACKED_MIN_TAPS)
    assert dense.conv_method(3, 3, 3, 2, 2, 1, 1, tiles) == dense.IM2COL
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 16, 9, 9)).astype(np.float32)
    w = rng.uniform(-1, 1, (8, 16, 3, 3)).astype(np.float32)
    forced = dense.conv2d(x, w, (2, 2), (1, 1), method=dense.WINOGRAD)
    assert np.array_equal(forced, dense.conv2d(x, w, (2, 2), (1, 1), method=dense.STACKED))


def test_conv2d_wrapper_rejects_bad_input() -> None:
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="float32"):
        dense.conv2d(x.astype(np.float64), np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="groups"):
        dense.conv2d(x, np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="no output"):
        dense.conv2d(x, np.zeros((2, 4, 7, 7), np.float32))
    with pytest.raises(ValueError, match="method"):
        dense.conv2d(x, np.zeros((2, 4, 3, 3), np.float32), method=7)
    with pytest.raises(ValueError, match="bias"):
        dense.conv2d(x, np.zeros((2, 4, 3, 3), np.float32), bias=np.zeros(3, np.float32))


def _conv_operands(rng: np.random.Generator, n: int, c: int, f: int, groups: int, k: int,
                   side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random f32 ``x[n, c*groups, side, side]``, ``w[f*groups, c, k, k]`` and ``bias[f*groups]``."""
    x = rng.uniform(-1, 1, (n, c * groups, side, side)).astype(np.float32)
    w = rng.uniform(-1, 1, (f * groups, c, k, k)).astype(np.float32)
    return x, w, rng.uniform(-1, 1, f * groups).astype(np.float32)


def _nan_output(shape: tuple[int, ...], strided: bool) -> np.ndarray:
    """A NaN-filled f32 output of ``shape``, contiguous or every other column of a wider one."""
    out = np.full(shape[:3] + (2 * shape[3],), np.nan, np.float32)
    return out[..., ::2] if strided else np.ascontiguousarray(out[..., :shape[3]])


def _bias_clamp_reference(y: np.ndarray, bias: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The loop the epilogue replaces, in float32: ``y + bias[f]``, then ``v > lo ? v : lo``,
    then ``hi < v ? hi : v``."""
    v = (y + bias[None, :, None, None]).astype(np.float32)
    v = np.where(v > np.float32(lo), v, np.float32(lo))
    return np.where(np.float32(hi) < v, np.float32(hi), v)


@pytest.mark.blas
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 20), f=st.integers(1, 9), groups=st.integers(1, 2),
       k=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1), side=st.integers(3, 24),
       method=st.sampled_from((dense.AUTO, dense.WINOGRAD) + _METHODS), strided=st.booleans(),
       bounds=st.sampled_from([(0.0, 6.0), (0.0, np.inf), (-np.inf, np.inf), (-0.25, 0.5)]), seed=st.integers(0, 2 ** 16))
def test_conv2d_epilogue_is_the_plain_entry_then_bias_and_clamp(n: int, c: int, f: int, groups: int, k: int, stride: int,
                                                                pad: int, side: int, method: int, strided: bool,
                                                                bounds: tuple[float, float], seed: int) -> None:
    """``tasd_dense_conv2d_epilogue`` runs the same GEMMs as the plain entry and adds the bias
    and clamps each block as it is written: the same bits as the plain entry followed by the
    float32 loop it replaces, for every method (im2col blocks, 1×1 in place, small planes
    with all images in one GEMM, the implicit GEMMs' blocks of rows, Winograd's output
    transform) and for a strided output (written through a temporary)."""
    if side + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    x, w, bias = _conv_operands(rng, n, c, f, groups, k, side)
    plain = dense.conv2d(x, w, (stride, stride), (pad, pad), (1, 1), groups, method)
    ref = _bias_clamp_reference(plain, bias, *bounds)
    out = _nan_output(ref.shape, strided)
    got = dense.conv2d(x, w, (stride, stride), (pad, pad), (1, 1), groups, method, out=out, bias=bias, clamp=bounds)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.blas
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 20), f=st.integers(1, 9), groups=st.integers(1, 2),
       k=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1), side=st.integers(3, 24),
       strided=st.booleans(), bounds=st.sampled_from([(0.0, 6.0), (0.0, np.inf), (-np.inf, np.inf)]),
       seed=st.integers(0, 2 ** 16))
def test_conv2d_residual_is_the_bias_entry_then_the_add_and_clamp(n: int, c: int, f: int, groups: int, k: int, stride: int,
                                                                  pad: int, side: int, strided: bool,
                                                                  bounds: tuple[float, float], seed: int) -> None:
    """``tasd_dense_conv2d_residual``: the epilogue entry with the bias alone, then
    ``min(max(y + r, lo), hi)`` in float32 (the loop it replaces): the same bits, for a
    contiguous or strided residual and output."""
    if side + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    x, w, bias = _conv_operands(rng, n, c, f, groups, k, side)
    biased = dense.conv2d(x, w, (stride, stride), (pad, pad), (1, 1), groups, bias=bias)
    r = rng.uniform(-1, 1, biased.shape).astype(np.float32)
    if strided:
        r = np.ascontiguousarray(r.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    ref = np.minimum(np.maximum(biased + r, np.float32(bounds[0])), np.float32(bounds[1]))
    out = _nan_output(ref.shape, strided)
    got = dense.conv2d(x, w, (stride, stride), (pad, pad), (1, 1), groups, out=out, bias=bias, clamp=bounds, residual=r)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_conv2d_residual_two_threads_bit_identical() -> None:
    """Above ``RESIDUAL_PARALLEL_ELEMENTS`` the residual pass splits the planes over the threads."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (4, 32, 28, 28)).astype(np.float32)
    w = rng.uniform(-1, 1, (64, 32, 1, 1)).astype(np.float32)
    bias = rng.uniform(-1, 1, 64).astype(np.float32)
    r = rng.uniform(-1, 1, (4, 64, 28, 28)).astype(np.float32)
    assert r.size >= dense.RESIDUAL_PARALLEL_ELEMENTS
    outs = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            outs.append(dense.conv2d(x, w, bias=bias, clamp=(0.0, np.inf), residual=r))
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))
    assert 0 < np.mean(outs[0] == 0.0) < 1
    with pytest.raises(ValueError, match="a residual needs a bias"):
        dense.conv2d(x, w, residual=r)
    with pytest.raises(ValueError, match="a residual needs"):
        dense.conv2d(x, w, bias=bias, residual=r[:, :, :5])


@pytest.mark.parametrize("c,f,k,stride,side,method", [
    (64, 96, 3, 1, 28, dense.STACKED), (64, 96, 3, 1, 28, dense.WINOGRAD), (64, 96, 1, 1, 56, dense.AUTO),
    (64, 96, 3, 2, 29, dense.AUTO), (64, 96, 3, 1, 14, dense.STACKED), (64, 96, 3, 1, 14, dense.WINOGRAD),
    (256, 384, 1, 1, 14, dense.AUTO), (256, 384, 1, 2, 28, dense.AUTO),  # small planes: im2col of all images, one GEMM
])
def test_conv2d_epilogue_two_threads_bit_identical(c: int, f: int, k: int, stride: int, side: int, method: int) -> None:
    """Above ``PARALLEL_FLOPS`` the images (or, for small planes, the blocks of rows of the
    implicit GEMM or the images of im2col's one GEMM; for Winograd, its blocks of tiles) are
    split over two Numba threads; each block's epilogue is applied by the thread that wrote it."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(k + side)
    x = rng.uniform(-1, 1, (4, c, side, side)).astype(np.float32)
    w = rng.uniform(-1, 1, (f, c, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, f).astype(np.float32)
    pad = k // 2
    outs = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            outs.append(dense.conv2d(x, w, (stride, stride), (pad, pad), method=method, bias=bias, clamp=(0.0, 6.0)))
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))
    assert 0 < np.mean(outs[0] == 0.0) < 1


def test_model_binds_filters_in_the_implicit_layout() -> None:
    """Through ``compile_model``: the 3×3 convolutions with >= 16 channels (BatchNorm folded
    first) get their filter bound in their method's layout, read through a transposed view:
    per tap ``[KH, KW, F, C]`` for the stride-1 one (Winograd: 2·8·8 = 128 tiles), stacked
    ``[KH, F, C, KW]`` for the stride-2 one (implicit GEMM); a 3-channel stem keeps
    ``[F, C, KH, KW]`` (im2col). Results against torch."""
    from tasdc.compiler import CompileOptions, compile_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(16, 32, 3, padding=1),
                              torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 24, 3, stride=2, padding=1, bias=False)).eval()
    with torch.no_grad():
        net[2].running_mean.uniform_(-1, 1)
        net[2].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 15, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exe = compile_model(net, (x,), CompileOptions(config="dense")).cpu(cache=False)
        ref = net(x).double().numpy()
    shapes = sorted(tuple(b.shape) for b in exe.bound if b.ndim == 4)
    assert shapes == [(3, 3, 32, 16), (3, 24, 32, 3), (16, 3, 3, 3)], shapes
    got = exe(x.numpy())
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


# --------------------------------------------------------------------------
# depthwise convolutions (runtime/cpu/dense.py: stride-phase scratch planes)
# --------------------------------------------------------------------------


def _depthwise_reference(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                         dilation: tuple[int, int], bias: np.ndarray | None = None,
                         clamp: tuple[float, float] = (-np.inf, np.inf)) -> np.ndarray:
    """The entry's arithmetic in numpy float32: every output ``((0 + w₀₀·x) + w₀₁·x) + …``
    in row-major tap order, each product and sum rounded on its own (IEEE, no FMA), then
    ``+ bias[c]`` and the clamp, so the bits are the same on any CPU."""
    n, c, h, wid = x.shape
    kh, kw = w.shape[1:]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wid + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    acc = np.zeros((n, c, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]
            acc = acc + w[None, :, i, j, None, None] * tap
    if bias is not None:
        acc = np.minimum(np.maximum(acc + bias[None, :, None, None], np.float32(clamp[0])), np.float32(clamp[1]))
    return acc


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 6), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 3), dw=st.integers(1, 2),
       ph=st.integers(0, 3), pw=st.integers(0, 3), h=st.integers(1, 23), wid=st.integers(1, 23),
       strided=st.booleans(), epilogue=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_depthwise_matches_the_float32_reference_bit_for_bit(n: int, c: int, kh: int, kw: int, sh: int, sw: int,
                                                             dh: int, dw: int, ph: int, pw: int, h: int, wid: int,
                                                             strided: bool, epilogue: bool, seed: int) -> None:
    """Every stride (each tap reads one stride phase of the scratch plane), dilation,
    padding and filter size (3×3: all taps in one pass; others one pass per tap), on
    packed or strided operands, with or without the bias and ReLU6 of the epilogue entry:
    the same bits as the numpy reference."""
    if h + 2 * ph < dh * (kh - 1) + 1 or wid + 2 * pw < dw * (kw - 1) + 1:
        return  # no output
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2 * c, h, 2 * wid)).astype(np.float32)
    x = x[:, ::2, :, ::2] if strided else np.ascontiguousarray(x[:, :c, :, :wid])
    w = rng.uniform(-1, 1, (c, kh, kw)).astype(np.float32)
    bias = rng.uniform(-1, 1, c).astype(np.float32) if epilogue else None
    ref = _depthwise_reference(x, w, (sh, sw), (ph, pw), (dh, dw), bias, (0.0, 0.5))
    out = np.full((n, c, ref.shape[2], 2 * ref.shape[3]), np.nan, np.float32)
    out = out[:, :, :, ::2] if strided else np.ascontiguousarray(out[:, :, :, :ref.shape[3]])
    got = dense.depthwise_conv2d(x, w, (sh, sw), (ph, pw), (dh, dw), out=out, bias=bias, clamp=(0.0, 0.5))
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("wid,stride", [(7, 1), (14, 1), (16, 1), (17, 1), (14, 2), (15, 2), (28, 2), (31, 2),
                                        (32, 2), (33, 2)])
def test_depthwise_short_rows_bit_for_bit(wid: int, stride: int) -> None:
    """Rows of at most 16 floats (and stride-2 rows of at most 32, split into even and odd
    columns) are copied with masked vector loads and stores (``_copy_short``,
    ``_copy_pairs``); on both sides of those limits the result is the reference's bits,
    and the output's padding columns stay untouched."""
    rng = np.random.default_rng(wid * 10 + stride)
    x = rng.uniform(-1, 1, (2, 5, 9, wid)).astype(np.float32)
    w = rng.uniform(-1, 1, (5, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, 5).astype(np.float32)
    ref = _depthwise_reference(x, w, (stride, stride), (1, 1), (1, 1), bias, (0.0, 0.5))
    wide = np.full((2, 5, ref.shape[2], ref.shape[3] + 3), np.nan, np.float32)
    got = dense.depthwise_conv2d(x, w, (stride, stride), (1, 1), out=wide[:, :, :, :ref.shape[3]], bias=bias, clamp=(0.0, 0.5))
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert np.isnan(wide[:, :, :, ref.shape[3]:]).all()


@pytest.mark.parametrize("side,stride", [(56, 1), (56, 2), (7, 1)])
def test_depthwise_two_threads_bit_identical(side: int, stride: int) -> None:
    """Above ``DEPTHWISE_PARALLEL_FLOPS`` the channel planes are split over two Numba
    threads; each plane is computed the same way on any thread."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(side + stride)
    n, c = (4, 96) if side > 7 else (8, 320)
    x = rng.uniform(-1, 1, (n, c, side, side)).astype(np.float32)
    w = rng.uniform(-1, 1, (c, 3, 3)).astype(np.float32)
    oh = (side - 1) // stride + 1
    assert 2.0 * n * c * oh * oh * 9 >= dense.DEPTHWISE_PARALLEL_FLOPS
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = dense.depthwise_conv2d(x, w, (stride, stride), (1, 1))
        numba.set_num_threads(2)
        two = dense.depthwise_conv2d(x, w, (stride, stride), (1, 1))
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32))
    assert np.array_equal(one.view(np.uint32), _depthwise_reference(x, w, (stride, stride), (1, 1), (1, 1)).view(np.uint32))
