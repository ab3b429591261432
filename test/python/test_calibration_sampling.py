"""Calibration statistics on a sample of GEMM rows (:mod:`tasdc.calibration`).

The sampled rows are exactly the unfolded rows; errors from the sampled
statistics lie within the standard error the module docstring states for the
full calibration set's errors; with every row kept they equal the full-data
computation up to float32 rounding; the TASD-A energies computed on rows equal
decomposing the whole input and convolving.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasdc import calibration
from tasdc.activation_stats import ActivationSeries, ActivationStats
from tasdc.decompose import SeriesConfig, decompose
from tasdc.layer_errors import output_errors, weight_k_major
from tasdc.reference import decompose_activation
from tasdc.runtime.cpu.kernels import im2col

CONFIGS = [SeriesConfig.parse(c) for c in ("2:4", "1:4", "2:8+1:8")]


def _conv_probe(shape: tuple[int, ...], kernel=(3, 3), strides=(1, 1), dilations=(1, 1)) -> calibration._Probe:
    return calibration._Probe("conv", "conv2d", 1, shape, 0, int(np.prod(shape)), kernel, strides, dilations)


def _layer_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Post-ReLU activations whose scale varies smoothly over the image (rows are not alike)."""
    n, c, h, w = shape
    scale = np.exp(np.add.outer(np.sin(np.arange(h) / 3.0), np.cos(np.arange(w) / 4.0)))
    x = np.maximum(rng.standard_normal(shape) + 0.3, 0.0) * scale * rng.uniform(0.5, 2.0, (n, 1, 1, 1))
    return x.astype(np.float32)


@pytest.mark.parametrize("kernel,strides,dilations", [((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)),
                                                      ((1, 1), (1, 1), (1, 1)), ((3, 1), (1, 2), (2, 1))])
def test_sampled_patches_are_the_unfolded_rows(kernel, strides, dilations):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 11, 9)).astype(np.float32)
    probe = _conv_probe(x.shape, kernel, strides, dilations)
    full, _, _ = im2col(x, kernel[0], kernel[1], strides, 0, dilations)
    take = np.sort(rng.choice(full.shape[0], 40, replace=False))
    assert probe.rows_per_element(x) == full.shape[0]
    np.testing.assert_array_equal(calibration._gemm_rows(probe, x, take)[0], full[take])  # a gather: exact
    np.testing.assert_array_equal(calibration._gemm_rows(probe, x)[0], full)               # 1x1: a transpose


def _collect(x: np.ndarray, probe: calibration._Probe, batches: int, sample_rows: int,
             act: ActivationStats | None = None, weights: list[np.ndarray] | None = None) -> list[calibration.Gram]:
    """What collect_calibration accumulates for one layer whose input over the calibration set is ``x``."""
    grams: dict[str, list[calibration.Gram]] = {}
    keep: dict[str, float] = {}
    per = x.shape[0] // batches
    probe.shape = (per,) + x.shape[1:]
    probe.size = int(np.prod(probe.shape))
    for b in range(batches):
        flat = np.ascontiguousarray(x[b * per:(b + 1) * per]).reshape(-1)
        calibration._account([probe], flat, per, per, b, batches, sample_rows, keep, act,
                             {probe.layer: weights or []}, grams)
    return grams[probe.layer]


def _exact_errors(rows: np.ndarray, w_km: np.ndarray, residuals: list[np.ndarray]) -> list[float]:
    rows = rows.astype(np.float64)
    ref = np.linalg.norm(rows @ w_km)
    return [float(np.linalg.norm(rows @ d) / ref) for d in residuals]


def _standard_error(rows: np.ndarray, w_km: np.ndarray, d_km: np.ndarray, n: int) -> float:
    """The docstring's relative standard error of e from n of N rows: ½·cv·√((1 − f)/n)."""
    rows = rows.astype(np.float64)
    a = np.sum((rows @ d_km) ** 2, axis=1)
    b = np.sum((rows @ w_km) ** 2, axis=1)
    big_n = rows.shape[0]
    cv = float(np.std(big_n * (a / a.sum() - b / b.sum())))
    return 0.5 * cv * math.sqrt((1 - n / big_n) / n)


def test_sampled_weight_errors_are_within_the_stated_standard_error():
    rng = np.random.default_rng(1)
    x = _layer_input(rng, (16, 24, 20, 20))
    w = rng.standard_normal((32, 24 * 9)).astype(np.float32)       # [F, C*KH*KW], reduction axis 1
    probe = _conv_probe(x.shape)
    rows = im2col(x, 3, 3, (1, 1), 0, (1, 1))[0]                   # 16 * 18 * 18 = 5184 rows
    w_km = weight_k_major(w, 1, "conv2d")[0]
    residuals = [weight_k_major(decompose(w, c, 1).residual, 1, "conv2d")[0] for c in CONFIGS]
    exact = _exact_errors(rows, w_km, residuals)

    full = _collect(x, probe, batches=4, sample_rows=0)
    got_full = output_errors(full, w, 1, "conv2d", CONFIGS, [False] * len(CONFIGS))
    assert got_full == pytest.approx(exact, rel=1e-5)   # every row: only float32 products (K = 216) differ

    sampled = _collect(x, probe, batches=4, sample_rows=1024)
    assert sampled[0].count == 4 * math.ceil(1024 / 5184 * 1296)  # the same fraction of every batch
    got = output_errors(sampled, w, 1, "conv2d", CONFIGS, [False] * len(CONFIGS))
    for e, e_exact, d in zip(got, exact, residuals):
        se = _standard_error(rows, w_km, d, sampled[0].count)
        assert 0 < se < 0.05
        # 4 standard errors (a normal deviate beyond 4 has probability 6e-5; the draw is seeded)
        assert abs(e / e_exact - 1) <= 4 * se, (e, e_exact, se)
        assert e != e_exact   # it did sample


def test_activation_energies_on_rows_equal_decomposing_the_whole_input():
    """TASD-A: decomposing each sampled patch row along its channels equals decomposing the whole
    input along its channels and unfolding it; the energies match the full-tensor computation."""
    rng = np.random.default_rng(2)
    x = _layer_input(rng, (8, 16, 14, 14))
    w = rng.standard_normal((12, 16 * 9)).astype(np.float32)
    w_km = weight_k_major(w, 1, "conv2d")
    probe = _conv_probe(x.shape)
    rows = im2col(x, 3, 3, (1, 1), 0, (1, 1))[0]
    series = [ActivationSeries(c.terms) for c in CONFIGS]
    residual_rows = [im2col(x - decompose_activation(x, str(SeriesConfig(s.terms)), 1), 3, 3, (1, 1), 0, (1, 1))[0]
                     for s in series]
    exact = [float(np.linalg.norm(r.astype(np.float64) @ w_km[0]) / np.linalg.norm(rows.astype(np.float64) @ w_km[0]))
             for r in residual_rows]

    every = ActivationStats(series)
    _collect(x, probe, batches=2, sample_rows=0, act=every, weights=w_km)
    assert every.output_errors("conv", series) == pytest.approx(exact, rel=1e-5)  # float32 products only

    sampled = ActivationStats(series)
    grams = _collect(x, probe, batches=2, sample_rows=600, act=sampled, weights=w_km)
    got = sampled.output_errors("conv", series)
    n = grams[0].count
    for e, e_exact, r in zip(got, exact, residual_rows):
        # the residual as a "weight change" of the same rows: ‖R W‖ over the rows of X
        a = np.sum((r.astype(np.float64) @ w_km[0]) ** 2, axis=1)
        b = np.sum((rows.astype(np.float64) @ w_km[0]) ** 2, axis=1)
        cv = float(np.std(len(a) * (a / a.sum() - b / b.sum())))
        se = 0.5 * cv * math.sqrt((1 - n / len(a)) / n)
        assert abs(e / e_exact - 1) <= 4 * se, (e, e_exact, se)
    # the histograms count every input, sampled or not
    for m in (4, 8):
        np.testing.assert_array_equal(sampled.layers["conv"].histograms[m], every.layers["conv"].histograms[m])


def test_sampling_is_deterministic_and_uniform_without_replacement():
    a = calibration._sample("conv2d_3", 5, 10_000, 0.1)
    b = calibration._sample("conv2d_3", 5, 10_000, 0.1)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 1000 and len(np.unique(a)) == 1000 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, calibration._sample("conv2d_3", 6, 10_000, 0.1))   # another batch, other rows
    assert calibration._sample("conv2d_3", 5, 10_000, 1.0) is None                   # fewer rows than the cap
