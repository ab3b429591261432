"""ONNX in: the example models exported to ONNX compile, run and match the .pt2 path.

The ONNX files are written by torch's TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``): the dynamo exporter of torch
2.13 needs ``onnxscript``, which the project does not install.

Tolerance: both paths decompose the same float32 weights into the same
series and run the same kernels, but the graphs differ (ONNX ``Gemm`` with
the bias fused, BatchNorm kept vs folded by the exporter), so float32
summation orders differ: rtol = atol = 1e-4 on logits of magnitude ~1-10
(as in test_cpu_runtime.py); observed differences are ~1e-6.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MODELS, ROOT, run_cli
from tasdc.compiler import CompileOptions, compile_model
from tasdc.importer import load_exported_program

RTOL = ATOL = 1e-4

# The TorchScript exporter folds BatchNorm into the convolution weights (eval
# mode), so the CNN's ONNX weights differ from the .pt2's, where BatchNorm
# stays separate: compare the CNN with the lossless 2:4+2:4, the others with
# the lossy 2:4 (same weights, so same errors and outputs).
CONFIGS = {"mlp": "2:4", "cnn": "2:4+2:4", "transformer": "2:4"}


def export_onnx(example_dir: Path, name: str, out: Path, **save: object) -> Path:
    """The example model ``name`` (weights from its .pt2) as an ONNX file."""
    import onnx

    sys.path.insert(0, str(ROOT / "examples"))
    from build_models import build

    model = build(name)
    model.load_state_dict(load_exported_program(example_dir / f"{name}.pt2").state_dict)
    model.eval()
    x = torch.from_numpy(np.load(example_dir / f"{name}-eval.npz")["x"][:16])
    path = out / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False)
    if save:
        onnx.save(onnx.load(str(path)), str(path), **save)
    return path


@pytest.mark.parametrize("name", MODELS)
def test_onnx_matches_pt2(example_dir: Path, tmp_path: Path, name: str) -> None:
    x = np.load(example_dir / f"{name}-eval.npz")["x"][:16]
    onnx_path = export_onnx(example_dir, name, tmp_path)
    options = CompileOptions(config=CONFIGS[name])
    from_onnx = compile_model(onnx_path, options=options)
    from_pt2 = compile_model(example_dir / f"{name}.pt2", options=options)
    # The same weights reach the TASD passes: same layers, shapes, series and errors.
    decomposed = [(r.stats["gemm"], r.stats["config"], r.stats["rel_error"]) for r in from_pt2.report.layers
                  if r.op == "tasd.series"]
    assert decomposed, "the .pt2 path decomposes at least one layer"
    got = [(r.stats["gemm"], r.stats["config"], r.stats["rel_error"]) for r in from_onnx.report.layers
           if r.op == "tasd.series"]
    assert [(g, c) for g, c, _ in got] == [(g, c) for g, c, _ in decomposed]
    np.testing.assert_allclose([e for *_, e in got], [e for *_, e in decomposed], rtol=1e-5)
    np.testing.assert_allclose(from_onnx(x), from_pt2(x), rtol=RTOL, atol=ATOL)


def test_onnx_external_data_and_cli(example_dir: Path, tmp_path: Path) -> None:
    """Initializers in a file next to the model are the decomposed weights; losing it is exit 2."""
    path = export_onnx(example_dir, "mlp", tmp_path, save_as_external_data=True, all_tensors_to_one_file=True,
                       location="mlp.weights", size_threshold=0)
    assert (tmp_path / "mlp.weights").stat().st_size > 64 * 256 * 4  # fc1's weight lives there
    x = np.load(example_dir / "mlp-eval.npz")["x"][:16]
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", str(path), "--input", str(tmp_path / "x.npy"), "--config", "2:4", "-o", str(tmp_path / "y.npy"))
    assert proc.returncode == 0, proc.stderr
    reference = compile_model(example_dir / "mlp.pt2", options=CompileOptions(config="2:4"))(x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference, rtol=RTOL, atol=ATOL)

    (tmp_path / "mlp.weights").unlink()
    proc = run_cli("compile", str(path), "--config", "2:4")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "missing external data file" in proc.stderr and "mlp.weights" in proc.stderr


def test_bad_onnx_is_one_line(example_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    from tasdc.cli import main

    good = export_onnx(example_dir, "mlp", tmp_path)
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(blob[: len(blob) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a protobuf \x00\x01" * 10)
    model = onnx.load(str(good))
    model.opset_import[0].version = 99
    future = tmp_path / "future.onnx"
    onnx.save(model, str(future))
    model = onnx.load(str(good))
    model.graph.node[0].op_type = "NoSuchOp"
    unknown = tmp_path / "unknown-op.onnx"
    onnx.save(model, str(unknown))
    cases = {truncated: "not a valid ONNX model", garbage: "not a valid ONNX model",
             future: "unsupported ONNX opset 99", unknown: "NoSuchOp"}
    for path, message in cases.items():
        assert main(["compile", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"tasdc: error: {path}:") and message in err, err
