"""``tasdc compile``: MLIR with TASD series, a per-layer report, JSON, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


def test_compile_writes_series_and_report(example_dir: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "cnn.mlir", tmp_path / "cnn.json"
    proc = run_cli("compile", str(example_dir / "cnn.pt2"), "--config", "2:4+1:4", "-o", str(out), "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.count('"tasd.series"') == 3
    assert "linalg.conv_2d_nchw_fchw" not in text
    assert "conv2d_0" in proc.stdout and "2:4+1:4" in proc.stdout
    data = json.loads(report.read_text())
    assert [row["layer"] for row in data["layers"]] == ["conv2d_0", "conv2d_1", "matmul_2"]
    for row in data["layers"]:
        assert row["config"] == "2:4+1:4" and row["lossless"] is False
        assert 0 < row["rel_error"] < 1 and row["kept_density"] == 0.75
    # The output parses back with tasdc-opt.
    again = run_cli(str(out), tool="tasdc-opt")
    assert again.returncode == 0, again.stderr


def test_compile_transformer_leaves_attention_dense(example_dir: Path) -> None:
    proc = run_cli("compile", str(example_dir / "transformer.pt2"), "--config", "2:8+1:8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("skipped: both operands are run-time values") == 4


def test_save_temps_writes_every_stage(example_dir: Path, tmp_path: Path) -> None:
    temps = tmp_path / "temps"
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "--config", "2:4", "--save-temps", str(temps))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in temps.iterdir())
    assert names[0] == "00-import.mlir" and any("tasd-decompose-weights" in n for n in names)


def test_output_into_missing_directory_is_a_user_error(example_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "-o", str(tmp_path / "nope" / "x.mlir"))
    assert proc.returncode == 2
    assert "output directory does not exist" in proc.stderr


def test_simulate_cli_table_json_and_real_outputs(example_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    np.save(tmp_path / "x.npy", np.load(example_dir / "cnn-eval.npz")["x"][:16])
    report, out = tmp_path / "sim.json", tmp_path / "y.npy"
    proc = run_cli("simulate", str(example_dir / "cnn.pt2"), "--target", "vegeta", "--config", "1:4",
                   "--json", str(report), "--input", str(tmp_path / "x.npy"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "dense baseline" in proc.stdout and "dense/vegeta" in proc.stdout
    data = json.loads(report.read_text())
    assert data["target"]["target"] == "vegeta" and len(data["target"]["layers"]) == 3
    assert data["baseline"]["target"] == "dense"
    assert np.load(out).shape == (16, 10)


def test_compile_with_target_prints_simulation(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp.mlir"
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "--target", "stc", "--config", "2:4", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "dense/stc" in proc.stdout
    assert "tasd.accel" in out.read_text()


def test_simulate_bad_target_and_refused_pattern(example_dir: Path) -> None:
    bad = run_cli("simulate", str(example_dir / "mlp.pt2"), "--target", "nope")
    assert bad.returncode == 2 and "unknown hardware target 'nope'" in bad.stderr
    refused = run_cli("simulate", str(example_dir / "mlp.pt2"), "--target", "stc", "--config", "1:4", "--mode", "refuse")
    assert refused.returncode == 2 and "does not run pattern 1:4 natively" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_compile_tasder_meets_bound_and_reports(example_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "tasder.json"
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "--target", "vegeta", "--quality", "0.99",
                   "--calib", str(example_dir / "mlp-calib.npz"), "--eval", str(example_dir / "mlp-eval.npz"),
                   "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    assert "bound met" in proc.stdout and "measured on eval" in proc.stdout
    data = json.loads(report.read_text())
    # measured, so the default search is bisection on the greedy path; every probe: predicted vs measured
    assert any(note.startswith("bisection on the greedy path") for note in data["notes"])
    # (a probe stopped once the bound was out of reach ran the evaluation set only, and says so)
    assert data["probes"] and all(0.0 < p["predicted"] <= 1.0 for p in data["probes"])
    for p in data["probes"]:
        if p["complete"]:
            assert set(p["quality"]) == {"calibration", "eval"}
        else:
            assert set(p["quality"]) == {"eval"} and p["quality"]["eval"] < 0.99 and not p["passed"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--target", "vegeta", "--quality", "1.5"], "quality"),
        (["--target", "vegeta", "--quality", "0.99", "--objective", "speed"], "objective"),
        (["--target", "nope", "--quality", "0.99"], "unknown hardware target"),
        (["--quality", "0.99"], "--quality needs --target"),
        (["--target", "stc", "--quality", "0.99", "--config", "2:4"], "exclude each other"),
        (["--target", "stc", "--quality", "0.99", "--calib", "missing.npz"], "no such file"),
        (["--target", "stc", "--quality", "0.99", "--max-probes", "0"], "--max-probes must be a positive integer"),
        (["--target", "stc", "--search", "ladder"], "need --quality"),
        (["--target", "stc", "--quality", "0.99", "--search", "greedy"], "invalid choice"),
    ],
)
def test_compile_tasder_bad_options_exit_2(example_dir: Path, extra: list[str], message: str) -> None:
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), *extra)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr
