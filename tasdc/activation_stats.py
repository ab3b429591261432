"""Activation statistics for choosing TASD-A series: what each layer's real
input looks like on calibration data, and what each activation series would
cost it in output error.

``tasd-select`` runs the model once over the calibration inputs (its
instrumented dense clone, :func:`tasdc.calibration.collect_calibration`)
and hands every layer's input batch to :meth:`ActivationStats.add`. Per layer
this keeps

* the block-nnz histograms of the input along its reduction axis for every
  block size of the candidate series (``hist[m][j]`` = blocks of ``m``
  holding ``j`` non-zeros), so a series whose ``ΣN`` covers the largest
  count seen is lossless *on the calibration data*;
* for every candidate series ``S`` the energy ``‖R W‖²`` of the layer's
  output error, where ``R = X − approx_S(X)`` is the residual of the run-time
  decomposition (:func:`tasdc.reference.decompose_activation`, the weights'
  greedy and tie rule) in GEMM-row form, and ``‖X W‖²`` on the same rows, so
  that the layer-output error is ``‖R W‖ / ‖X W‖``, the same ratio as for
  weights (``‖XΔ‖`` with ``Δ`` the weight residual).

The energies are computed directly, ``R W`` on the GEMM rows the calibration
run samples (:data:`tasdc.calibration.SAMPLE_ROWS` per layer, see there for
the statistics): the residual of a row is its decomposition along the
reduction axis (a convolution's patch row ``(c, kh, kw)``: along ``c`` for
every kernel position, which equals decomposing the whole input along its
channels and unfolding it), so no full-size residual or convolution is
formed, and the cost per series is that of the layer's own product on the
sampled rows (a Gram ``RᵀR`` would cost ``K/N`` times more on a layer with
``K`` inputs and ``N`` outputs). The block histograms count every input.

:class:`ActivationSeries` is a series on the activation side: it prints as
``A 2:8`` so that weight and activation candidates can stand in one list of
options of one allocation problem.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from tasdc.decompose import SeriesConfig, block_histogram
from tasdc.reference import decompose_activation


@dataclasses.dataclass(frozen=True)
class ActivationSeries(SeriesConfig):
    """A series applied to a layer's activation operand at run time (TASD-A)."""

    def __str__(self) -> str:
        return f"A {SeriesConfig(self.terms)}"

    @property
    def weight_side(self) -> SeriesConfig:
        """The same patterns as a plain series (what the pass attributes carry)."""
        return SeriesConfig(self.terms)


def activation_axis(kind: str, sparse_operand: int, rank: int) -> int:
    """Reduction axis of a layer's run-time operand (a convolution input: channels)."""
    if kind == "conv2d":
        return 1
    return rank - 1 if sparse_operand == 1 else rank - 2


@dataclasses.dataclass
class LayerActivationStats:
    """One layer's histograms and per-series output-error energies."""

    axis: int
    histograms: dict[int, np.ndarray]
    residuals: dict[str, float]  # series -> ‖R W‖² on the sampled rows
    samples: int = 0
    reference: float = 0.0       # ‖X W‖² on the same rows

    def max_block_nnz(self, m: int) -> int:
        hist = self.histograms.get(m)
        if hist is None or not hist.any():
            return 0
        return int(np.flatnonzero(hist)[-1])

    def lossless(self, series: SeriesConfig) -> bool:
        """Exact on every calibration input (equal-M series only; mixed-M: never claimed)."""
        return bool(series.same_m and self.max_block_nnz(int(series.m)) <= int(series.max_nnz_per_block or 0))

    def to_json(self) -> dict[str, Any]:
        return {"axis": self.axis, "samples": self.samples,
                "hist": {str(m): [int(c) for c in h] for m, h in self.histograms.items()},
                "max_block_nnz": {str(m): self.max_block_nnz(m) for m in self.histograms}}


class ActivationStats:
    """Per layer name: :class:`LayerActivationStats` over all calibration batches."""

    def __init__(self, series: Sequence[SeriesConfig]) -> None:
        self.series = [SeriesConfig(s.terms) for s in series if not s.is_dense]
        self.ms = sorted({t.m for s in self.series for t in s.terms} | {4, 8})
        self.layers: dict[str, LayerActivationStats] = {}

    def add(self, layer: str, kind: str, sparse_operand: int, x: np.ndarray, rows: list[np.ndarray],
            group: int, weights: list[np.ndarray]) -> None:
        """Account one batch ``x`` of ``layer``'s input: its block histograms, and
        the output energies on ``rows`` (its GEMM rows, sampled or all, one array
        per GEMM batch element; ``group`` consecutive columns share a channel: a
        convolution's ``KH·KW``, else 1) through ``weights`` (``[K, out]`` each)."""
        axis = activation_axis(kind, sparse_operand, x.ndim)
        stats = self.layers.get(layer)
        if stats is None:
            stats = self.layers[layer] = LayerActivationStats(
                axis, {m: np.zeros(m + 1, dtype=np.int64) for m in self.ms}, {})
        stats.samples += 1
        for m in self.ms:
            stats.histograms[m] += block_histogram(x, m, axis)
        if not np.isfinite(x).all():
            return
        stats.reference += sum(_energy(r, w) for r, w in zip(rows, weights))
        for series in self.series:
            key = str(series)
            error = 0.0
            for r, w in zip(rows, weights):
                split = r.reshape(r.shape[0], -1, group)
                residual = (split - decompose_activation(split, key, 1)).reshape(r.shape)
                error += _energy(residual, w)
            stats.residuals[key] = stats.residuals.get(key, 0.0) + error

    def output_errors(self, layer: str, series: Sequence[SeriesConfig]) -> list[float | None]:
        """``‖R W‖ / ‖X W‖`` per series (0 when lossless on the calibration
        data, None when the layer or series was not measured or its output is
        zero)."""
        stats = self.layers.get(layer)
        out: list[float | None] = []
        for s in series:
            plain = SeriesConfig(s.terms)
            energy = stats.residuals.get(str(plain)) if stats is not None else None
            if stats is None or not stats.reference > 0.0:
                out.append(None)
            elif stats.lossless(plain):
                out.append(0.0)
            elif energy is None:
                out.append(None)
            else:
                out.append(float(np.sqrt(max(energy, 0.0) / stats.reference)))
        return out


def _energy(rows: np.ndarray, weight: np.ndarray) -> float:
    """``‖rows · weight‖²`` (the product in float32, the sum in float64)."""
    y = np.asarray(rows, dtype=np.float32) @ np.asarray(weight, dtype=np.float32)
    return float(np.einsum("ij,ij->", y, y, dtype=np.float64))
