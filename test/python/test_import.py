"""Front end: the three example models import; bad inputs exit 2 with one line."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torch_mlir import ir

from conftest import MODELS, run_cli
from tasdc.errors import InputError
from tasdc.importer import import_model


def _op_names(module: ir.Module) -> set[str]:
    names: set[str] = set()

    def visit(op: ir.Operation) -> ir.WalkResult:
        names.add(op.name)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return names


@pytest.mark.parametrize("name", MODELS)
def test_examples_import_to_linalg(example_dir: Path, name: str) -> None:
    model = import_model(example_dir / f"{name}.pt2")
    names = _op_names(model.module)
    assert model.module.operation.verify()
    assert not any(n.startswith("torch.") for n in names)
    assert "linalg.matmul" in names
    if name == "cnn":
        assert "linalg.conv_2d_nchw_fchw" in names
    if name == "transformer":
        assert "linalg.batch_matmul" in names


def test_nn_module_and_mlir_file_import(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    model = import_model(net, (torch.randn(2, 8),))
    assert "linalg.matmul" in _op_names(model.module)
    path = tmp_path / "net.mlir"
    path.write_text(str(model.module))
    again = import_model(path)
    assert str(again.module) == str(model.module)


def test_module_without_inputs_is_a_user_error() -> None:
    with pytest.raises(InputError, match="example_inputs are required"):
        import_model(torch.nn.Linear(2, 2))


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(bytes(range(256)) * 4)
    state_dict = tmp_path / "state.pt2"  # a zip, but torch.save's, not torch.export's
    torch.save({"w": torch.zeros(2)}, state_dict)
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(b"PK\x03\x04" + b"\x00" * 20)
    torch_dialect = tmp_path / "torch.mlir"
    torch_dialect.write_text(
        "func.func @f(%arg0: !torch.vtensor<[2],f32>) -> !torch.vtensor<[2],f32> {\n"
        "  %0 = torch.aten.relu %arg0 : !torch.vtensor<[2],f32> -> !torch.vtensor<[2],f32>\n"
        "  return %0 : !torch.vtensor<[2],f32>\n}\n"
    )
    unknown = tmp_path / "weights.bin"
    unknown.write_bytes(b"\x00\x01\x02binary")
    return {
        "missing": tmp_path / "missing.pt2",
        "directory": tmp_path,
        "garbage": garbage,
        "wrong-kind": state_dict,
        "truncated": truncated,
        "torch-dialect": torch_dialect,
        "binary": unknown,
    }


EXPECTED = {
    "missing": "no such file",
    "directory": "is a directory",
    "garbage": "not a torch.export archive",
    "wrong-kind": "not a torch.export archive (no archive_format entry)",
    "truncated": "not a torch.export archive",
    "torch-dialect": "'torch.aten.relu' is not linalg-on-tensors",
    "binary": "unrecognised model file",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_cli_bad_input_exit_2_one_line(tmp_path: Path, case: str) -> None:
    path = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out.mlir"
    proc = run_cli("compile", str(path), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tasdc: error: ")
    assert EXPECTED[case] in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("config,message", [("3:2", "N must be <= M"), ("0:4", "'0:4'"), ("2:4+", "empty")])
def test_cli_bad_config_exit_2(example_dir: Path, tmp_path: Path, config: str, message: str) -> None:
    out = tmp_path / "out.mlir"
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "--config", config, "-o", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr
    assert not out.exists()


def test_cli_help_lists_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "compile" in proc.stdout


def test_nan_weight_is_a_user_error_naming_the_layer(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(8, 4))
    with torch.no_grad():
        net[0].weight[1, 2] = float("nan")
    path = tmp_path / "nan.pt2"
    torch.export.save(torch.export.export(net.eval(), (torch.randn(2, 8),)), str(path))
    out = tmp_path / "out.mlir"
    proc = run_cli("compile", str(path), "--config", "2:4", "-o", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "layer matmul_0 (linalg.matmul)" in proc.stderr and "NaN/Inf" in proc.stderr
    assert not out.exists()


def test_op_torch_mlir_cannot_lower_is_named_and_not_printed(capfd: pytest.CaptureFixture[str]) -> None:
    """Ops torch-mlir has no linalg lowering for (``torch.lgamma``, ``torch.special.i0``: aten
    ops its torch dialect imports as generic ``torch.operator``) are named in the one error
    line, with where the model computes the first; MLIR's own diagnostic goes into it instead
    of onto stderr. Before: "python exception: Failure while executing pass pipeline" and a
    multi-line op dump on stderr, then "failed to legalize operation 'torch.operator'"."""

    class Special(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.lgamma(x) + torch.special.i0(x)

    capfd.readouterr()
    with pytest.raises(InputError, match=r"cannot lower the model to linalg-on-tensors: no lowering for "
                                         r"torch\.aten\.i0, torch\.aten\.lgamma \(at .*test_import\.py:\d+\)$") as raised:
        import_model(Special(), (torch.rand(4, 4) + 1,))
    assert "\n" not in str(raised.value)
    assert "error" not in capfd.readouterr().err
