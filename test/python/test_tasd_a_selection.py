"""TASDER with activation series (TASD-A): chosen from calibration statistics
of each layer's real input, guarded by the measured run."""

from __future__ import annotations

import numpy as np
import pytest

from tasdc.activation_stats import ActivationSeries, ActivationStats
from tasdc.decompose import SeriesConfig
from tasdc.reference import decompose_activation
from tasdc.tasder import tasder_compile


def test_cnn_on_ttc_takes_activation_series_for_post_relu_layers_and_holds_quality(example_dir):
    result = tasder_compile(example_dir / "cnn.pt2", target="ttc-m8", quality=0.99,
                            calib=example_dir / "cnn-calib.npz", eval=example_dir / "cnn-eval.npz", progress=False)
    by_layer = {row.layer: row for row in result.layers}
    # conv2d_1 and matmul_2 read post-ReLU activations (conv2d_0 reads the image)
    post_relu = [by_layer[name] for name in ("conv2d_1", "matmul_2")]
    chosen_a = [row for row in post_relu if row.chosen.startswith("A ")]
    assert chosen_a, [row.chosen for row in result.layers]
    for row in chosen_a:
        stats = next(c for c in row.candidates if c["series"] == row.chosen)
        assert stats["side"] == "activation" and "rel_error" not in stats
    assert result.meets_bound
    # the measured model really ran TASD-A: the compiled module carries the run-time decomposition
    assert "tasd.decompose_activation" in result.mlir()
    hist = result.compile.report.layers  # the selection records the input's block histograms
    assert any("activation_stats" in row.stats.get("select", {}) for row in hist)


def test_no_activation_options_without_extraction_units_or_calibration(example_dir):
    vegeta = tasder_compile(example_dir / "mlp.pt2", target="vegeta", quality=0.99,
                            calib=example_dir / "mlp-calib.npz", progress=False)
    assert all(c.get("side", "weight") == "weight" for row in vegeta.layers for c in row.candidates)
    no_calib = tasder_compile(example_dir / "mlp.pt2", target="ttc-m8", quality=0.99, progress=False)
    assert all(c.get("side", "weight") == "weight" for row in no_calib.layers for c in row.candidates)


def test_activation_output_error_is_the_relative_error_of_the_layer_output():
    """‖(X − X̂)W‖/‖XW‖ from the accumulated energies equals the direct float64 computation.
    The energies' products are float32 (K = 16: rounding ≈ 16·2⁻²⁴ relative per entry): rel 1e-5."""
    rng = np.random.default_rng(0)
    series = [SeriesConfig.parse("2:4"), SeriesConfig.parse("1:4"), SeriesConfig.parse("4:8+2:8")]
    stats = ActivationStats(series)
    xs = [np.maximum(rng.standard_normal((6, 16)), 0).astype(np.float32) for _ in range(5)]
    w = rng.standard_normal((16, 7))
    for x in xs:
        stats.add("fc", "matmul", 1, x, [x], 1, [w])
    x_all = np.concatenate(xs).astype(np.float64)
    got = stats.output_errors("fc", [ActivationSeries(s.terms) for s in series])
    for s, e in zip(series, got):
        approx = decompose_activation(x_all, str(s), 1)
        expected = np.linalg.norm((x_all - approx) @ w) / np.linalg.norm(x_all @ w)
        assert e == pytest.approx(expected, rel=1e-5)
    hist = stats.layers["fc"].histograms[4]
    assert hist.sum() == 30 * 4 and hist.tolist() == np.bincount(
        np.count_nonzero(x_all.reshape(-1, 4), axis=1), minlength=5).tolist()


def test_lossless_on_calibration_data_has_zero_error():
    x = np.zeros((8, 8), dtype=np.float32)
    x[:, ::4] = 1.0  # one non-zero per 4-block
    stats = ActivationStats([SeriesConfig.parse("1:4")])
    stats.add("fc", "matmul", 1, x, [x], 1, [np.ones((8, 3))])
    assert stats.output_errors("fc", [ActivationSeries(SeriesConfig.parse("1:4").terms)]) == [0.0]
    assert str(ActivationSeries(SeriesConfig.parse("2:8+1:8").terms)) == "A 2:8+1:8"
