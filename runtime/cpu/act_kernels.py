"""TASD-A on the CPU: Numba kernels that decompose a live activation into N:M
terms and contract the terms with a dense weight.

Selection rule (identical to :mod:`tasdc.decompose`, the weights' rule): for
each term ``N:M`` of the series in order, in every aligned M-block of the
reduction axis, keep the ``N`` largest magnitudes of what the earlier terms
left, ties to the lower in-block index; the last partial block is padded with
zeros. Only the *non-zero* kept entries matter for the product (zero fillers
add nothing), and the kernels use exactly those: they never build the
decomposed activation as a dense tensor.

* :func:`act_matmul` — ``Y[T, O] = approx(X[T, K]) · W[K, O]``, ``X`` and
  ``Y`` of any strides (so ``W·X`` runs as ``Yᵀ = approx(Xᵀ)·Wᵀ``; a
  ``batch_matmul`` of ``[B, T, K]`` with a weight broadcast over the batch
  runs as one matmul of the ``B·T`` rows, one with the weight on the left as
  ``Y[b]ᵀ = approx(X[b]ᵀ)·Wᵀ`` per batch entry). Per row:
  select the kept positions (a K-entry magnitude scratch per thread, the
  row's residual), then ``y_row = Σ_kept x[k] · W[k, :]`` in ascending ``k``:
  for a C-contiguous weight (a strided one is copied once per call) 64
  outputs at a time in 16-lane registers, the rows of a thread's chunk
  sharing each ``[K, 64]`` weight panel while it is in L2.
* :func:`act_conv2d` — unpadded NCHW convolution of ``approx(X)`` (decomposed
  along channels at every pixel) with a dense ``[KH, KW, C, F]``-packed
  filter. Each pixel is extracted once into compressed form (kept channel
  indices and values: the terms as the extraction units would stream them,
  at most ``Σ ceil(C/M_i)·N_i`` per pixel), then every output pixel gathers
  the kept channels of the input pixels it covers.
* :func:`act_decompose` — the decomposed activation itself (dense result);
  used only where no contraction consumes it directly (e.g. activation x
  activation contractions).

NaN inputs rank above every number (and so are kept and propagate, as in a
dense product); the numpy reference refuses them instead.

:class:`ActKernel` is what the executor registers for one lowered call
(``tasd-lower-activations-to-calls``); :func:`collect_act_kernels` builds them
from the module's declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from numba import njit, prange
from torch_mlir import ir

from tasdc.decompose import parse_config
from tasdc.runtime.cpu.kernels import vbcast16, vfma16, vload16, vstore16
from tasdc.elements import read_elements
from tasdc.report import from_attr

ACT_KERNEL_ATTR = "tasd.act_kernel"
ACT_WEIGHTS_ATTR = "tasd.act_weights"


class ActKernelError(ValueError):
    """A TASD-A kernel was called with operands it was not built for."""


def series_arrays(config: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ns, ms)`` int64 arrays of a series string such as ``"2:4+1:8"``."""
    terms = parse_config(config).terms
    if not terms:
        raise ActKernelError("TASD-A needs at least one N:M term, got 'dense'")
    return np.array([t.n for t in terms], dtype=np.int64), np.array([t.m for t in terms], dtype=np.int64)


@njit(cache=True, nogil=True)
def _select(x, ns, ms, mag, idx):
    """Kept non-zero positions of the 1-D ``x`` (ascending) into ``idx``; returns their count."""
    k_total = x.shape[0]
    for k in range(k_total):
        a = abs(x[k])
        if a != a:  # NaN ranks first
            a = np.inf
        mag[k] = a
    for t in range(ns.shape[0]):
        n = ns[t]
        m = ms[t]
        for b0 in range(0, k_total, m):
            b1 = min(b0 + m, k_total)
            for _ in range(n):
                best = -1
                value = np.float32(0.0)
                for j in range(b0, b1):
                    if mag[j] > value:  # strict: the lower index wins a tie
                        value = mag[j]
                        best = j
                if best < 0:  # only zeros (or taken entries) left in the block
                    break
                mag[best] = -1.0  # taken
    count = 0
    for k in range(k_total):
        if mag[k] < 0.0:
            idx[count] = k
            count += 1
    return count


@njit(fastmath=True, cache=True, nogil=True)
def _gather_row(x, idx, count, w, y):
    """``y[:] = Σ_q x[idx[q]] · w[idx[q], :]`` in ascending ``idx``."""
    o_total = y.shape[0]
    for o in range(o_total):
        y[o] = 0.0
    for q in range(count):
        k = idx[q]
        v = x[k]
        for o in range(o_total):
            y[o] += v * w[k, o]


@njit(fastmath=True, cache=True, nogil=True)
def _gather_chunk(x, idx, count, wf, o_total, o0, y, acc):
    """``y[o0 : o0+64] = Σ_q x[idx[q]] · W[idx[q], o0 : o0+64]`` for a
    C-contiguous weight (``wf`` its flat view): four 16-lane register
    accumulators, one broadcast of ``x[k]`` and four FMAs on the weight row
    per kept entry (the plain loop loads and stores ``y`` for every entry).
    Per output the same FMAs in the same (ascending ``k``) order."""
    z = vbcast16(np.float32(0.0))
    a0 = a1 = a2 = a3 = z
    for q in range(count):
        k = idx[q]
        v = vbcast16(x[k])
        b = k * o_total + o0
        a0 = vfma16(v, vload16(wf, b), a0)
        a1 = vfma16(v, vload16(wf, b + 16), a1)
        a2 = vfma16(v, vload16(wf, b + 32), a2)
        a3 = vfma16(v, vload16(wf, b + 48), a3)
    vstore16(acc, 0, a0)
    vstore16(acc, 16, a1)
    vstore16(acc, 32, a2)
    vstore16(acc, 48, a3)
    for o in range(64):
        y[o0 + o] = acc[o]


@njit(fastmath=True, cache=True, nogil=True)
def _gather_tail(x, idx, count, wf, o_total, o64, y):
    """The outputs past the last full 64-chunk, one at a time."""
    for o in range(o64, o_total):
        s = np.float32(0.0)
        for q in range(count):
            k = idx[q]
            s += x[k] * wf[k * o_total + o]
        y[o] = s


@njit(parallel=True, cache=True, nogil=True)
def _act_matmul(x, w, y, ns, ms, chunks):
    rows, k_total = x.shape
    o_total = w.shape[1]
    contiguous = w.strides[1] == 4 and w.strides[0] == 4 * o_total
    wf = w.reshape(-1) if contiguous else np.empty(0, np.float32)
    o64 = o_total - o_total % 64
    for c in prange(chunks):
        r0 = c * rows // chunks
        r1 = (c + 1) * rows // chunks
        mag = np.empty(k_total, dtype=np.float32)
        if not contiguous:
            idx = np.empty(k_total, dtype=np.int64)
            for t in range(r0, r1):
                count = _select(x[t], ns, ms, mag, idx)
                _gather_row(x[t], idx, count, w, y[t])
            continue
        # select every row of the chunk first, then walk the weight in
        # 64-column panels ([K, 64], L2-resident) across all the rows: the
        # weight streams from memory once per chunk of rows, not once per row
        idxs = np.empty((r1 - r0, k_total), dtype=np.int64)
        counts = np.empty(r1 - r0, dtype=np.int64)
        for t in range(r0, r1):
            counts[t - r0] = _select(x[t], ns, ms, mag, idxs[t - r0])
        acc = np.empty(64, dtype=np.float32)
        for o0 in range(0, o64, 64):
            for t in range(r0, r1):
                _gather_chunk(x[t], idxs[t - r0], counts[t - r0], wf, o_total, o0, y[t], acc)
        for t in range(r0, r1):
            _gather_tail(x[t], idxs[t - r0], counts[t - r0], wf, o_total, o64, y[t])


def act_matmul(x: np.ndarray, w: np.ndarray, ns: np.ndarray, ms: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``approx(x) · w`` with ``x`` decomposed along its last axis (2-D, float32)."""
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ActKernelError(f"act_matmul: incompatible shapes {list(x.shape)} x {list(w.shape)}")
    if out is None:
        out = np.empty((x.shape[0], w.shape[1]), dtype=np.float32)
    if out.shape != (x.shape[0], w.shape[1]):
        raise ActKernelError(f"act_matmul: output shape {list(out.shape)} != {[x.shape[0], w.shape[1]]}")
    rows = x.shape[0]
    if rows:
        if rows >= 8 and w.dtype == np.float32 and not w.flags.c_contiguous:
            # one copy (K·O) for the register-blocked path; a strided weight
            # (the weight on the left, W·X as Xᵀ·Wᵀ) runs ~20x slower in the plain loop
            w = np.ascontiguousarray(w)
        chunks = max(1, min(rows, 4 * numba.get_num_threads()))
        _act_matmul(x, w, out, ns, ms, chunks)
    return out


@njit(parallel=True, cache=True, nogil=True)
def _extract_pixels(x, ns, ms, cap, cidx, cval, cnt):
    """Per pixel (n, h, w): kept channels of ``x[n, :, h, w]`` in compressed form."""
    batch, channels, height, width = x.shape
    for r in prange(batch * height):
        b = r // height
        h = r % height
        mag = np.empty(channels, dtype=np.float32)
        idx = np.empty(channels, dtype=np.int64)
        for w_ in range(width):
            count = _select(x[b, :, h, w_], ns, ms, mag, idx)
            for q in range(count):
                cidx[b, h, w_, q] = idx[q]
                cval[b, h, w_, q] = x[b, idx[q], h, w_]
            cnt[b, h, w_] = count


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _conv_gather(cidx, cval, cnt, wp, y, sh, sw, dh, dw):
    batch, filters, out_h, out_w = y.shape
    kh_total, kw_total = wp.shape[0], wp.shape[1]
    for r in prange(batch * out_h):
        b = r // out_h
        oh = r % out_h
        acc = np.empty(filters, dtype=np.float32)
        for ow in range(out_w):
            for f in range(filters):
                acc[f] = 0.0
            for i in range(kh_total):
                ih = oh * sh + i * dh
                for j in range(kw_total):
                    iw = ow * sw + j * dw
                    for q in range(cnt[b, ih, iw]):
                        c = cidx[b, ih, iw, q]
                        v = cval[b, ih, iw, q]
                        for f in range(filters):
                            acc[f] += v * wp[i, j, c, f]
            for f in range(filters):
                y[b, f, oh, ow] = acc[f]


def capacity(channels: int, ns: np.ndarray, ms: np.ndarray) -> int:
    """Most entries a series can keep out of ``channels`` (its compressed width)."""
    return int(min(channels, sum(-(-channels // int(m)) * int(n) for n, m in zip(ns, ms))))


def act_conv2d(x: np.ndarray, wp: np.ndarray, ns: np.ndarray, ms: np.ndarray, strides: tuple[int, int],
               dilations: tuple[int, int], out: np.ndarray) -> np.ndarray:
    """Unpadded NCHW convolution of ``approx(x)`` (channels decomposed) with ``wp[KH, KW, C, F]``."""
    batch, channels, height, width = x.shape
    cap = max(capacity(channels, ns, ms), 1)
    cidx = np.empty((batch, height, width, cap), dtype=np.int64)
    cval = np.empty((batch, height, width, cap), dtype=np.float32)
    cnt = np.empty((batch, height, width), dtype=np.int64)
    _extract_pixels(x, ns, ms, cap, cidx, cval, cnt)
    _conv_gather(cidx, cval, cnt, wp, out, strides[0], strides[1], dilations[0], dilations[1])
    return out


@njit(parallel=True, cache=True, nogil=True)
def _act_rows(x, y, ns, ms):
    rows, k_total = x.shape
    for t in prange(rows):
        mag = np.empty(k_total, dtype=np.float32)
        idx = np.empty(k_total, dtype=np.int64)
        count = _select(x[t], ns, ms, mag, idx)
        for k in range(k_total):
            y[t, k] = 0.0
        for q in range(count):
            y[t, idx[q]] = x[t, idx[q]]


def act_decompose(x: np.ndarray, ns: np.ndarray, ms: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """``out = approx(x)`` along ``axis`` (the dense decomposed activation)."""
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    rows = moved.reshape(-1, moved.shape[-1])
    result = np.empty_like(rows)
    if rows.size:
        _act_rows(rows, result, ns, ms)
    np.moveaxis(out, axis, -1)[...] = result.reshape(moved.shape)
    return out


@dataclass
class ActKernel:
    """One lowered TASD-A call: metadata, its dense weight, and run state
    (the fields the executor reads: ``name``, ``info``, ``entry``, ``error``,
    ``calls``, ``seconds``, ``callback``)."""

    name: str
    info: dict[str, Any]
    weight: np.ndarray | None
    ns: np.ndarray = field(init=False)
    ms: np.ndarray = field(init=False)
    callback: Any = None
    entry: Any = None
    error: BaseException | None = None
    calls: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.ns, self.ms = series_arrays(self.info["config"])
        if self.weight is not None and self.info["kind"] == "act_conv2d":
            # [F, C, KH, KW] -> [KH, KW, C, F]: the gather reads all filters of one (kh, kw, c) at once
            self.weight = np.ascontiguousarray(np.transpose(self.weight, (2, 3, 1, 0)))

    @property
    def layer(self) -> str:
        return str(self.info.get("layer", self.name))

    def run(self, x: np.ndarray, y: np.ndarray) -> None:
        """``y = contraction(approx(x), weight)`` on numpy views."""
        info = self.info
        if list(x.shape) != info["dense_shape"] or list(y.shape) != info["result_shape"]:
            raise ActKernelError(f"{self.layer}: got operand {list(x.shape)} -> {list(y.shape)}, "
                                 f"compiled for {info['dense_shape']} -> {info['result_shape']}")
        kind, which, w = info["kind"], info.get("act_operand", 0), self.weight
        if kind == "act_decompose":
            act_decompose(x, self.ns, self.ms, info["axis"], y)
        elif kind == "act_matmul":
            assert w is not None
            if x.ndim == 3 and which == 0:  # X[b] · W, W broadcast over the batch: one matmul of all B*T rows
                rows = act_matmul(x.reshape(-1, x.shape[-1]), w, self.ns, self.ms)
                y[...] = rows.reshape(y.shape)
            elif x.ndim == 3:  # W · X[b], W broadcast over the batch
                for b in range(x.shape[0]):
                    act_matmul(x[b].T, w.T, self.ns, self.ms, out=y[b].T)
            elif which == 0:
                act_matmul(x, w, self.ns, self.ms, out=y)
            else:  # Y = W X  <=>  Yᵀ = approx(Xᵀ) Wᵀ
                act_matmul(x.T, w.T, self.ns, self.ms, out=y.T)
        elif kind == "act_batch_matmul":
            assert w is not None
            for b in range(x.shape[0]):
                if which == 0:
                    act_matmul(x[b], w[b], self.ns, self.ms, out=y[b])
                else:
                    act_matmul(x[b].T, w[b].T, self.ns, self.ms, out=y[b].T)
        elif kind == "act_conv2d":
            assert w is not None
            act_conv2d(x, w, self.ns, self.ms, tuple(info["strides"]), tuple(info["dilations"]), y)
        else:
            raise ActKernelError(f"{self.layer}: unknown TASD-A kernel kind {kind}")


def collect_act_kernels(module: ir.Module) -> list[ActKernel]:
    """The TASD-A kernels declared in ``module`` (their attributes are removed)."""
    kernels = []
    for op in module.body.operations:
        if op.operation.name != "func.func" or ACT_KERNEL_ATTR not in op.attributes:
            continue
        name = ir.StringAttr(op.attributes["sym_name"]).value
        info = from_attr(op.attributes[ACT_KERNEL_ATTR])
        weights = [read_elements(a) for a in ir.ArrayAttr(op.attributes[ACT_WEIGHTS_ATTR])] \
            if ACT_WEIGHTS_ATTR in op.attributes else []
        kernels.append(ActKernel(name, info, np.ascontiguousarray(weights[0], dtype=np.float32) if weights else None))
        for attr in (ACT_KERNEL_ATTR, ACT_WEIGHTS_ATTR):
            if attr in op.attributes:
                del op.attributes[attr]
    return kernels
