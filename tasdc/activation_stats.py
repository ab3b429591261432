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
* for every candidate series ``S`` the Gram ``RᵀR`` (float64; the rows
  themselves while there are fewer rows than ``K``) of the residual
  ``R = X − approx_S(X)`` in GEMM-row form, where ``approx_S`` is the run-time
  decomposition (:func:`tasdc.reference.decompose_activation`, the weights'
  greedy and tie rule), so that the layer-output error
  ``‖R W‖ / ‖X W‖`` comes out exactly as for weights (``‖XΔ‖`` with ``Δ`` the
  weight residual): one error algebra for both sides.

:class:`ActivationSeries` is a series on the activation side: it prints as
``A 2:8`` so that weight and activation candidates can stand in one list of
options of one allocation problem.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

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
    """One layer's histograms and per-series residual Grams."""

    axis: int
    histograms: dict[int, np.ndarray]
    residuals: dict[str, list[Any]]  # series -> one Gram per GEMM batch element
    samples: int = 0

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

    def __init__(self, series: Sequence[SeriesConfig], make_gram: Callable[[int], Any]) -> None:
        self.series = [SeriesConfig(s.terms) for s in series if not s.is_dense]
        self.ms = sorted({t.m for s in self.series for t in s.terms} | {4, 8})
        self.make_gram = make_gram
        self.layers: dict[str, LayerActivationStats] = {}

    def add(self, layer: str, kind: str, sparse_operand: int, x: np.ndarray,
            gemm_rows: Callable[[np.ndarray], list[np.ndarray]]) -> None:
        """Account one batch ``x`` of ``layer``'s input (``gemm_rows`` turns an
        input-shaped array into its GEMM rows, as for the weight statistics)."""
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
        for series in self.series:
            key = str(series)
            residual = x - decompose_activation(x, key, axis)
            rows = gemm_rows(residual)
            grams = stats.residuals.get(key)
            if grams is None:
                grams = stats.residuals[key] = [self.make_gram(r.shape[1]) for r in rows]
            for gram, r in zip(grams, rows):
                gram.add(r)

    def output_errors(self, layer: str, weight_k_major: list[np.ndarray], reference: float,
                      series: Sequence[SeriesConfig]) -> list[float | None]:
        """``‖R W‖ / ‖X W‖`` per series (0 when lossless on the calibration
        data, None when the layer or series was not measured)."""
        stats = self.layers.get(layer)
        out: list[float | None] = []
        for s in series:
            plain = SeriesConfig(s.terms)
            grams = stats.residuals.get(str(plain)) if stats is not None else None
            if stats is None or not reference > 0.0:
                out.append(None)
            elif stats.lossless(plain):
                out.append(0.0)
            elif grams is None:
                out.append(None)
            else:
                energy = sum(g.energy(d) for g, d in zip(grams, weight_k_major))
                out.append(float(np.sqrt(max(energy, 0.0) / reference)))
        return out
