"""The error algebra of a layer's candidate weight series (``tasd-select``).

For every layer and candidate the pass always records two weight-space
proxies, the relative Frobenius error ``‖W − Ŵ‖/‖W‖`` and the L1 mass
dropped ``Σ|W − Ŵ| / Σ|W|`` (``Ŵ`` = the sum of the series' terms). With
``calib=PATH`` (an ``.npz`` with the model input ``x``, or an ``.npy``) it
also measures the *layer-output* relative error ``‖X(W − Ŵ)‖/‖XW‖`` of the
contraction on the calibration inputs (bias excluded; ``X`` = the layer's
actual input activations, im2col patches for a convolution).

The output error comes from the calibration statistics of
:mod:`tasdc.calibration`: per layer only ``XᵀX`` (or the rows of ``X`` while
there are fewer than K), so ``‖XΔ‖² = Σ (XᵀX Δ) ∘ Δ`` for the weight residual
``Δ = W − Ŵ``. The activation side (TASD-A) uses the same algebra on the
residual of the activation instead (:mod:`tasdc.activation_stats`).

The error that drives the decision (``metric``): the layer-output relative
error when calibration statistics exist for the layer, else the relative
Frobenius error (which equals the output error for white inputs). Exactly
lossless series have error 0 by definition (no float noise from ``XᵀX``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from tasdc.calibration import Gram, single_threaded_blas
from tasdc.decompose import SeriesConfig, decompose, l1_dropped, relative_error

_CACHE_LIMIT = 200_000
_weight_cache: dict[tuple, tuple[float, float, bool]] = {}
_output_cache: dict[tuple, float] = {}


def array_digest(array: np.ndarray) -> str:
    """A short content digest of ``array`` (cache key of its errors)."""
    return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8), digest_size=16).hexdigest()


def _sorted_block_stats(w: np.ndarray, axis: int, m: int) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """Column sums of the ascending per-block squares and magnitudes, the
    largest non-zero count of a block, and the totals."""
    moved = np.moveaxis(w, axis, -1)
    k = moved.shape[-1]
    kp = -(-k // m) * m
    rows = moved.reshape(-1, k)
    if kp != k:
        padded = np.zeros((rows.shape[0], kp), dtype=w.dtype)
        padded[:, :k] = rows
        rows = padded
    s = np.abs(rows.reshape(-1, m))
    s.sort(axis=1)  # ascending magnitudes per block (in place: ``s`` is a fresh array)
    col_abs = s.sum(axis=0, dtype=np.float64)
    col_sq = np.einsum("ij,ij->j", s, s, dtype=np.float64)
    # sorted ascending: the largest non-zero count is m minus the first column holding a non-zero
    nonzero_cols = np.flatnonzero(s.max(axis=0) > 0) if s.size else np.zeros(0, dtype=np.intp)
    max_nnz = int(m - nonzero_cols[0]) if nonzero_cols.size else 0
    return col_sq, col_abs, max_nnz, float(col_sq.sum()), float(col_abs.sum())


def weight_errors(w: np.ndarray, axis: int, configs: Sequence[SeriesConfig], digest: str | None = None
                  ) -> list[tuple[float, float, bool]]:
    """``(relative Frobenius error, L1 dropped, lossless)`` of each config.

    Equal-M series come from one sort per block size (a series with equal M
    keeps the top ΣN magnitudes of every block, so the dropped mass is that
    of the M − ΣN smallest); mixed-M series are decomposed.
    """
    out: list[tuple[float, float, bool] | None] = [None] * len(configs)
    todo = []
    for j, config in enumerate(configs):
        key = (digest, axis, str(config)) if digest else None
        if key is not None and key in _weight_cache:
            out[j] = _weight_cache[key]
        elif config.is_dense:
            out[j] = (0.0, 0.0, True)
        else:
            todo.append(j)
    stats: dict[int, tuple] = {}
    for j in todo:
        config = configs[j]
        if config.same_m:
            m = config.m
            if m not in stats:
                stats[m] = _sorted_block_stats(w, axis, m)
            col_sq, col_abs, max_nnz, tot_sq, tot_abs = stats[m]
            drop = max(m - config.max_nnz_per_block, 0)
            lossless = max_nnz <= config.max_nnz_per_block
            if lossless or tot_sq == 0.0:
                value = (0.0, 0.0, True)
            else:
                value = (math.sqrt(float(col_sq[:drop].sum()) / tot_sq), float(col_abs[:drop].sum()) / tot_abs, False)
        else:
            result = decompose(w, config, axis)
            exact = result.is_exact
            value = (0.0, 0.0, True) if exact else (relative_error(w, result.approximation),
                                                    l1_dropped(w, result.approximation), False)
        out[j] = value
        if digest:
            if len(_weight_cache) > _CACHE_LIMIT:
                _weight_cache.clear()
            _weight_cache[(digest, axis, str(config))] = value
    return out  # type: ignore[return-value]



def weight_k_major(a: np.ndarray, axis: int, kind: str) -> list[np.ndarray]:
    """A weight (or weight residual) as ``[K, out]`` matrices, one per GEMM batch element."""
    if kind == "batch_matmul":
        sub = axis - 1
        return [np.moveaxis(a[b], sub, 0).reshape(a.shape[axis], -1) for b in range(a.shape[0])]
    return [np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)]


def output_energy(grams: list[Gram], w: np.ndarray, axis: int, kind: str) -> float:
    """``‖X W‖²`` of a layer on the calibration inputs."""
    return sum(g.energy(d) for g, d in zip(grams, weight_k_major(w, axis, kind)))


def output_errors(grams: list[Gram], w: np.ndarray, axis: int, kind: str, configs: Sequence[SeriesConfig],
                  lossless: Sequence[bool], cache_key: tuple | None = None) -> list[float] | None:
    """Relative layer-output error ``‖X(W − Ŵ)‖/‖XW‖`` of each config (None if
    the layer output is identically zero on the calibration data)."""
    with single_threaded_blas():
        return _output_errors(grams, w, axis, kind, configs, lossless, cache_key)


def _output_errors(grams: list[Gram], w: np.ndarray, axis: int, kind: str, configs: Sequence[SeriesConfig],
                   lossless: Sequence[bool], cache_key: tuple | None) -> list[float] | None:

    def k_major(a: np.ndarray) -> list[np.ndarray]:
        return weight_k_major(a, axis, kind)

    ref_key = cache_key + ("reference",) if cache_key else None
    ref = _output_cache.get(ref_key) if ref_key else None
    if ref is None:
        ref = sum(g.energy(d) for g, d in zip(grams, k_major(w)))
        if ref_key and len(_output_cache) < _CACHE_LIMIT:
            _output_cache[ref_key] = ref
    if not ref > 0.0:
        return None
    out = []
    for config, exact in zip(configs, lossless):
        if config.is_dense or exact:
            out.append(0.0)
            continue
        key = cache_key + (str(config),) if cache_key else None
        if key is not None and key in _output_cache:
            out.append(_output_cache[key])
            continue
        residual = decompose(w, config, axis).residual
        err = sum(g.energy(d) for g, d in zip(grams, k_major(residual)))
        value = math.sqrt(max(err, 0.0) / ref)
        if key is not None:
            if len(_output_cache) > _CACHE_LIMIT:
                _output_cache.clear()
            _output_cache[key] = value
        out.append(value)
    return out



__all__ = ["array_digest", "output_energy", "output_errors", "weight_errors", "weight_k_major"]
