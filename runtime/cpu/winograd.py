"""Winograd F(2×2, 3×3) for dense 3×3 stride-1 convolutions (``tasd_dense_conv2d``'s ``WINOGRAD`` method).

Each 2×2 block of outputs ("tile") of one channel is ``Aᵀ [Σ_c (G g_fc Gᵀ) ⊙ (Bᵀ d_c B)] A``
over the 4×4 input patch ``d_c`` at the tile's corner (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016): 16 products per tile and channel pair instead of 36,
so the 16 GEMMs ``M_ξ[F, tiles] = U_ξ[F, C] · V_ξ[C, tiles]`` (ξ = one of the 4×4 points)
do 4/9 of the direct convolution's multiply-adds. With

    Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G  = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]
    Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]

the input and output transforms are additions only, the filter transform ``U = G g Gᵀ``
additions and exact halvings, all in float32 (per call: about 16/9 of the filter's size). The rounding differs from a direct sum of products
(the transforms add and subtract inputs before multiplying): the error bound grows by a small
constant factor (the tests bound it against float64).

The tiles of all images form one sequence, cut into blocks of ``tiles_per_block`` (a function
of C and F only, never of the thread count: the same bits on any thread); per block the input
transform fills ``V[16, C, T]``, 16 single-threaded ``sgemm`` calls write ``M[16, F, T]``, and
the output transform writes the ``2×2`` outputs of each tile to NCHW ``Y`` (dropping those past
the output's edge) with the entry's epilogue (bias, clamp) applied as they are stored. Blocks
run in parallel over Numba's threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tasdc.runtime.cpu.dense import _alive, _sgemm_rm

#: ``V`` and ``M`` of a block hold about this many floats (L2-resident), at least ``MIN_TILES`` tiles.
BLOCK_FLOATS = 1 << 18
MIN_TILES = 64


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``U[16, F, C] = G g Gᵀ`` of a filter ``w[F, C, 3, 3]``, as the entry computes it (float32;
    tests and experiments)."""
    f, ch = w.shape[0], w.shape[1]
    wc = np.ascontiguousarray(w, dtype=np.float32)
    u = np.empty(16 * _plane(f, ch), np.float32)
    _filter_transform(wc.reshape(-1), np.array([ch * 9, 9, 3, 1], np.int64), f, ch, u)
    return np.ascontiguousarray(u.reshape(16, -1)[:, :f * ch].reshape(16, f, ch))


@njit(cache=True, nogil=True)
def _filter_transform(wflat: np.ndarray, ws: np.ndarray, f: int, ch: int, u: np.ndarray) -> None:
    """``u[ξ·P + o·C + c] = (G g Gᵀ)[ξ]`` (``P = _plane(F, C)``) of the filter ``W[F, C, 3, 3]`` at element strides
    ``ws``, in float32: ``G g`` first (rows ``g0``, ``½(g0 + g1 + g2)``, ``½(g0 - g1 + g2)``,
    ``g2``), then the same on its columns. Vectorized over C (unit stride when the filter is
    bound per tap, ``[KH, KW, F, C]``, as ``tasd-cpu-tap-major-filters`` binds it for this method)."""
    fc = np.uint64(_plane(f, ch))
    uch = np.uint64(ch)
    half = np.float32(0.5)
    for o in range(f):
        at = np.uint64(o * ch)
        b00 = o * ws[0]
        taps = np.empty(9, np.int64)
        for i in range(3):
            for j in range(3):
                taps[i * 3 + j] = b00 + i * ws[2] + j * ws[3]
        s1 = ws[1]
        for c in range(uch):
            off = np.int64(c) * s1
            g00, g01, g02 = wflat[taps[0] + off], wflat[taps[1] + off], wflat[taps[2] + off]
            g10, g11, g12 = wflat[taps[3] + off], wflat[taps[4] + off], wflat[taps[5] + off]
            g20, g21, g22 = wflat[taps[6] + off], wflat[taps[7] + off], wflat[taps[8] + off]
            # rows of G g
            r10 = half * (g00 + g10 + g20)
            r11 = half * (g01 + g11 + g21)
            r12 = half * (g02 + g12 + g22)
            r20 = half * (g00 - g10 + g20)
            r21 = half * (g01 - g11 + g21)
            r22 = half * (g02 - g12 + g22)
            # (G g) Gᵀ, row by row: t0, ½(t0 + t1 + t2), ½(t0 - t1 + t2), t2
            k = at + c
            u[k] = g00
            u[fc + k] = half * (g00 + g01 + g02)
            u[2 * fc + k] = half * (g00 - g01 + g02)
            u[3 * fc + k] = g02
            u[4 * fc + k] = r10
            u[5 * fc + k] = half * (r10 + r11 + r12)
            u[6 * fc + k] = half * (r10 - r11 + r12)
            u[7 * fc + k] = r12
            u[8 * fc + k] = r20
            u[9 * fc + k] = half * (r20 + r21 + r22)
            u[10 * fc + k] = half * (r20 - r21 + r22)
            u[11 * fc + k] = r22
            u[12 * fc + k] = g20
            u[13 * fc + k] = half * (g20 + g21 + g22)
            u[14 * fc + k] = half * (g20 - g21 + g22)
            u[15 * fc + k] = g22


@njit(cache=True, nogil=True, inline="always")
def _plane(rows: int, count: int) -> int:
    """Floats from one of the 16 planes of ``V`` (``rows`` = C) or ``M`` (``rows`` = F) to the
    next: the plane's size plus 32 floats, so that the 16 planes a transform reads or writes
    at once do not fall on the same L1 sets (plane sizes are often multiples of 4 KB)."""
    return rows * count + 32


@njit(cache=True, nogil=True)
def tiles_per_block(ch: int, f: int, total: int) -> int:
    """Tiles per block: ``V`` and ``M`` together about ``BLOCK_FLOATS`` floats, at least ``MIN_TILES``."""
    return min(total, max(MIN_TILES, BLOCK_FLOATS // (16 * (ch + f))))


@njit(cache=True, nogil=True)
def _row_segments(t0: int, t1: int, th: int, tw: int) -> np.ndarray:
    """The tiles ``t0 … t1-1`` as runs within one row of tiles: ``[image, tile row, first
    column, end column, position of the first in the block]`` per run."""
    runs = np.empty(((t1 - t0) // max(tw, 1) + 2, 5), np.int64)
    n = 0
    t = t0
    while t < t1:
        img = t // (th * tw)
        rest = t - img * th * tw
        p = rest // tw
        qa = rest - p * tw
        qb = min(tw, qa + (t1 - t))
        runs[n, 0], runs[n, 1], runs[n, 2], runs[n, 3], runs[n, 4] = img, p, qa, qb, t - t0
        n += 1
        t += qb - qa
    return runs[:n]


@njit(cache=True, nogil=True)
def _input_transform(xflat: np.ndarray, xs: np.ndarray, geometry: np.ndarray, runs: np.ndarray, count: int,
                     v: np.ndarray, ev: np.ndarray, od: np.ndarray) -> None:
    """``V[ξ, c, t] = (Bᵀ d B)[ξ]`` of each tile's 4×4 input patch ``d`` of channel ``c``, for the
    tiles of ``runs`` (:func:`_row_segments`; ``count`` tiles in all). Each patch row ``k`` is
    first split into its even and odd padded columns (``ev[k·n + j]`` = column ``2j``,
    ``od[k·n + j]`` = column ``2j + 1``, ``n = TW + 1``: tile ``q`` reads columns ``2q … 2q+3`` =
    ``ev[q], od[q], ev[q+1], od[q+1]``), so every step after the split runs over the tiles
    with unit stride (and vectorizes; indices are unsigned for that, as in ``dense.py``)."""
    ch, h, wid, pt, pl, tw = geometry[0], geometry[2], geometry[3], geometry[6], geometry[7], geometry[9]
    n = np.uint64(tw + 1)
    plane = np.uint64(_plane(ch, count))
    one = np.uint64(1)
    for c in range(ch):
        for e in range(runs.shape[0]):
            img, p, qa, qb, at = runs[e, 0], runs[e, 1], runs[e, 2], runs[e, 3], runs[e, 4]
            ua, ub = np.uint64(qa), np.uint64(qb)
            # columns inside the input: 0 <= 2j - pl < wid (even), 0 <= 2j + 1 - pl < wid (odd)
            je0 = np.uint64(max(qa, (pl + 1) // 2))
            je1 = max(je0, np.uint64(min(qb + 1, (wid + pl + 1) // 2)))
            jo0 = np.uint64(max(qa, pl // 2))
            jo1 = max(jo0, np.uint64(min(qb + 1, (wid + pl) // 2)))
            for k in range(4):
                r = 2 * p - pt + k
                row = np.uint64(k) * n
                if r < 0 or r >= h:
                    for j in range(ua, ub + one):
                        ev[row + j] = 0.0
                        od[row + j] = 0.0
                    continue
                for j in range(ua, je0):
                    ev[row + j] = 0.0
                for j in range(je1, ub + one):
                    ev[row + j] = 0.0
                for j in range(ua, jo0):
                    od[row + j] = 0.0
                for j in range(jo1, ub + one):
                    od[row + j] = 0.0
                src = img * xs[0] + c * xs[1] + r * xs[2]
                if xs[3] == 1:
                    se = np.uint64(src - pl)  # + 2j >= 0 for the j below
                    for j in range(je0, je1):
                        ev[row + j] = xflat[se + np.uint64(2) * j]
                    for j in range(jo0, jo1):
                        od[row + j] = xflat[se + np.uint64(2) * j + one]
                else:
                    for j in range(je0, je1):
                        ev[row + j] = xflat[src + (2 * np.int64(j) - pl) * xs[3]]
                    for j in range(jo0, jo1):
                        od[row + j] = xflat[src + (2 * np.int64(j) + 1 - pl) * xs[3]]
            # Bᵀ d on the rows, in place: rows 0 … 3 become d0 - d2, d1 + d2, d2 - d1, d1 - d3
            n2, n3 = n + n, n + n + n
            for j in range(ua, ub + one):
                a0, a1, a2, a3 = ev[j], ev[n + j], ev[n2 + j], ev[n3 + j]
                ev[j] = a0 - a2
                ev[n + j] = a1 + a2
                ev[n2 + j] = a2 - a1
                ev[n3 + j] = a1 - a3
                b0, b1, b2, b3 = od[j], od[n + j], od[n2 + j], od[n3 + j]
                od[j] = b0 - b2
                od[n + j] = b1 + b2
                od[n2 + j] = b2 - b1
                od[n3 + j] = b1 - b3
            # (Bᵀ d) B: per tile q, columns e0 = ev[q], e1 = od[q], e2 = ev[q+1], e3 = od[q+1]
            base = np.uint64(c * count + at - qa)
            for i in range(4):
                row = np.uint64(i) * n
                o0 = np.uint64(4 * i) * plane + base
                o1 = o0 + plane
                o2 = o1 + plane
                o3 = o2 + plane
                for q in range(ua, ub):
                    e0 = ev[row + q]
                    e1 = od[row + q]
                    e2 = ev[row + q + one]
                    e3 = od[row + q + one]
                    v[o0 + q] = e0 - e2
                    v[o1 + q] = e1 + e2
                    v[o2 + q] = e2 - e1
                    v[o3 + q] = e1 - e3


@njit(cache=True, nogil=True)
def _output_transform(m: np.ndarray, yflat: np.ndarray, ys: np.ndarray, geometry: np.ndarray, runs: np.ndarray,
                      count: int, out: np.ndarray, bias: np.ndarray, lo: float, hi: float) -> None:
    """``Y = Aᵀ M A`` per tile of ``runs`` into NCHW ``Y``, each output ``min(max(y + bias[f], lo),
    hi)`` (no ``bias``: ``+ 0``, which leaves every value but -0.0 as it is). ``out`` is scratch
    for four rows of ``TW + 1``: the four outputs of each tile, by tile, before they are
    interleaved into Y's rows."""
    f, oh, ow, tw = geometry[1], geometry[4], geometry[5], geometry[9]
    n = np.uint64(tw + 1)
    one = np.uint64(1)
    two = np.uint64(2)
    has_bias = bias.size > 0
    plane = np.uint64(_plane(f, count))
    for o in range(f):
        bo = bias[o] if has_bias else np.float32(0.0)
        for e in range(runs.shape[0]):
            img, p, qa, qb, at = runs[e, 0], runs[e, 1], runs[e, 2], runs[e, 3], runs[e, 4]
            ua, ub = np.uint64(qa), np.uint64(qb)
            base = np.uint64(o * count + at - qa)
            k0, k1, k2, k3 = base, base + plane, base + 2 * plane, base + 3 * plane
            k4, k5, k6, k7 = base + 4 * plane, base + 5 * plane, base + 6 * plane, base + 7 * plane
            k8, k9, k10, k11 = base + 8 * plane, base + 9 * plane, base + 10 * plane, base + 11 * plane
            k12, k13, k14, k15 = base + 12 * plane, base + 13 * plane, base + 14 * plane, base + 15 * plane
            n2, n3 = n + n, n + n + n
            for q in range(ua, ub):
                z00 = m[k0 + q] + m[k4 + q] + m[k8 + q]
                z01 = m[k1 + q] + m[k5 + q] + m[k9 + q]
                z02 = m[k2 + q] + m[k6 + q] + m[k10 + q]
                z03 = m[k3 + q] + m[k7 + q] + m[k11 + q]
                z10 = m[k4 + q] - m[k8 + q] - m[k12 + q]
                z11 = m[k5 + q] - m[k9 + q] - m[k13 + q]
                z12 = m[k6 + q] - m[k10 + q] - m[k14 + q]
                z13 = m[k7 + q] - m[k11 + q] - m[k15 + q]
                y00 = z00 + z01 + z02 + bo
                y01 = z01 - z02 - z03 + bo
                y10 = z10 + z11 + z12 + bo
                y11 = z11 - z12 - z13 + bo
                y00 = y00 if y00 > lo else lo
                y01 = y01 if y01 > lo else lo
                y10 = y10 if y10 > lo else lo
                y11 = y11 if y11 > lo else lo
                out[q] = hi if hi < y00 else y00
                out[n + q] = hi if hi < y01 else y01
                out[n2 + q] = hi if hi < y10 else y10
                out[n3 + q] = hi if hi < y11 else y11
            full = np.uint64(max(qa, min(qb, ow // 2)))  # tiles whose two columns are both inside
            for a in range(2):
                r = 2 * p + a
                if r >= oh:
                    break
                dst = img * ys[0] + o * ys[1] + r * ys[2]
                left = np.uint64(2 * a) * n
                right = left + n
                if ys[3] == 1:
                    ud = np.uint64(dst)
                    for q in range(ua, full):
                        yflat[ud + two * q] = out[left + q]
                        yflat[ud + two * q + one] = out[right + q]
                else:
                    for q in range(qa, np.int64(full)):
                        yflat[dst + 2 * q * ys[3]] = out[left + np.uint64(q)]
                        yflat[dst + (2 * q + 1) * ys[3]] = out[right + np.uint64(q)]
                if full < ub:  # the last tile of an odd-width row: its first column only
                    yflat[dst + 2 * (qb - 1) * ys[3]] = out[left + ub - one]


@njit(cache=True, nogil=True)
def _block(xflat: np.ndarray, xs: np.ndarray, up: int, yflat: np.ndarray, ys: np.ndarray, geometry: np.ndarray,
           t0: int, t1: int, v: np.ndarray, m: np.ndarray, ev: np.ndarray, od: np.ndarray, bias: np.ndarray, lo: float,
           hi: float) -> None:
    """Tiles ``t0 … t1-1`` (over images, tile rows, tile columns): input transform into ``v``,
    the 16 GEMMs into ``m``, output transform into ``Y``. ``ev`` and ``od`` are scratch for
    four rows of ``TW + 1`` floats each."""
    ch, f, th, tw = geometry[0], geometry[1], geometry[8], geometry[9]
    count = t1 - t0
    runs = _row_segments(t0, t1, th, tw)
    _input_transform(xflat, xs, geometry, runs, count, v, ev, od)
    # the 16 GEMMs: M[ξ] (F × T) = U[ξ] (F × C) · V[ξ] (C × T)
    vp = np.int64(v.ctypes.data)
    mp = np.int64(m.ctypes.data)
    for xi in range(16):
        _sgemm_rm(f, count, ch, up + 4 * xi * _plane(f, ch), ch, vp + 4 * xi * _plane(ch, count), count, mp + 4 * xi * _plane(f, count),
                  count, 0.0)
    _output_transform(m, yflat, ys, geometry, runs, count, ev, bias, lo, hi)


@njit(cache=True, nogil=True)
def _blocks(xflat: np.ndarray, xs: np.ndarray, up: int, yflat: np.ndarray, ys: np.ndarray, geometry: np.ndarray,
            first: int, last: int, block: int, total: int, bias: np.ndarray, lo: float, hi: float) -> None:
    """Blocks ``first … last-1`` of ``block`` tiles each (the last one shorter) with this thread's scratch."""
    ch, f, tw = geometry[0], geometry[1], geometry[9]
    v = np.empty(16 * _plane(ch, block), np.float32)
    m = np.empty(16 * _plane(f, block), np.float32)
    ev = np.empty(4 * (tw + 1), np.float32)
    od = np.empty(4 * (tw + 1), np.float32)
    for b in range(first, last):
        t0 = b * block
        _block(xflat, xs, up, yflat, ys, geometry, t0, min(total, t0 + block), v, m, ev, od, bias, lo, hi)


@njit(parallel=True, cache=True, nogil=True)
def _blocks_parallel(xflat: np.ndarray, xs: np.ndarray, up: int, yflat: np.ndarray, ys: np.ndarray, geometry: np.ndarray,
                     blocks: int, block: int, total: int, parts: int, bias: np.ndarray, lo: float, hi: float) -> None:
    """:func:`_blocks` as ``parts`` contiguous ranges of the blocks over Numba's threads."""
    for t in prange(parts):
        _blocks(xflat, xs, up, yflat, ys, geometry, blocks * t // parts, blocks * (t + 1) // parts, block, total, bias, lo, hi)


@njit(cache=True, nogil=True)
def winograd_conv(xflat: np.ndarray, xs: np.ndarray, wflat: np.ndarray, ws: np.ndarray, yflat: np.ndarray, ys: np.ndarray,
                  n_img: int, ch: int, h: int, wid: int, f: int, oh: int, ow: int, pt: int, pl: int, threads: int,
                  parallel_flops: float, bias: np.ndarray, lo: float, hi: float) -> None:
    """``Y[N, F, OH, OW] = X[N, C, H, W] ⋆ W[F, C, 3, 3]`` (stride 1, zero padding ``pt`` rows
    above and ``pl`` columns left), every operand at element strides ``xs`` / ``ws`` / ``ys``, by
    F(2×2, 3×3) (see the module docstring); at least ``parallel_flops`` (of the direct
    convolution) split the blocks over ``threads``."""
    u = np.empty(16 * _plane(f, ch), np.float32)
    _filter_transform(wflat, ws, f, ch, u)
    th = (oh + 1) // 2
    tw = (ow + 1) // 2
    total = n_img * th * tw
    block = tiles_per_block(ch, f, total)
    blocks = (total + block - 1) // block
    geometry = np.empty(10, np.int64)
    geometry[0], geometry[1], geometry[2], geometry[3], geometry[4] = ch, f, h, wid, oh
    geometry[5], geometry[6], geometry[7], geometry[8], geometry[9] = ow, pt, pl, th, tw
    up = np.int64(u.ctypes.data)
    if threads > 1 and blocks > 1 and 18.0 * n_img * f * ch * oh * ow >= parallel_flops:
        _blocks_parallel(xflat, xs, up, yflat, ys, geometry, blocks, block, total, min(threads, blocks), bias, lo, hi)
    else:
        _blocks(xflat, xs, up, yflat, ys, geometry, 0, blocks, block, total, bias, lo, hi)
    _alive(u, geometry, u)  # the GEMMs read U through its raw address
