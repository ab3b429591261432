"""Bad input exits with status 2 and one line naming what and where.

Weight blobs of ``.mlir`` input are validated before anything reads them:
each shape of bad blob below used to crash (segfault, ``LLVM ERROR: out of
memory``) or read memory outside the blob; the tools run in a subprocess so
that a regression shows as a failed test, not a dead test run. The other
cases call the drivers' ``main`` in-process.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from tasdc import cli, opt
from tasdc.arrays import read_arrays
from tasdc.errors import InputError

# A 2:4 weight: values [2, 4] f32 and indices [2, 4] i8 (dense [4, 4]).
_VALUES = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
_INDICES = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.int8)


def _hex(array: np.ndarray, alignment: int) -> str:
    return "0x" + alignment.to_bytes(4, "little").hex().upper() + array.tobytes().hex().upper()


def _module(values_hex: str | None, indices_hex: str | None = None, extra: str = "") -> str:
    entries = []
    if values_hex is not None:
        entries.append(f'      w_values: "{values_hex}"')
    entries.append(f'      w_indices: "{indices_hex or _hex(_INDICES, 1)}"')
    entries += [f"      {e}" for e in extra.splitlines() if e]
    return f"""module {{
  func.func @main(%x: tensor<3x4xf32>) -> tensor<3x4xf32> {{
    %v = arith.constant dense_resource<w_values> : tensor<2x4xf32>
    %i = arith.constant dense_resource<w_indices> : tensor<2x4xi8>
    %w = "tasd.sparse_weight"(%v, %i) {{axis = 0 : i64, m = 4 : i64, n = 2 : i64, padding = 0 : i64}} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<4x4xf32>
    %y = "tasd.matmul"(%x, %w) {{sparse_operand = 1 : i64}} : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %s = "tasd.series"(%y) {{config = "2:4"}} : (tensor<3x4xf32>) -> tensor<3x4xf32>
    return %s : tensor<3x4xf32>
  }}
}}

{{-#
  dialect_resources: {{
    builtin: {{
{(","+chr(10)).join(entries)}
    }}
  }}
#-}}
"""


def _expect_one_line(proc, *fragments: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and ": error: " in lines[0], proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_good_blobs_run(tmp_path: Path) -> None:
    path = tmp_path / "good.mlir"
    path.write_text(_module(_hex(_VALUES, 4)))
    proc = run_cli(str(path), "-p", "tasd-expand-to-linalg", tool="tasdc-opt")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "values, indices, extra, fragments",
    [
        (None, None, "", ["bad.mlir:3:10:", "w_values", "is missing"]),  # missing blob feeding tasd.sparse_weight
        (_hex(_VALUES[:1], 4), None, "", ["bad.mlir:3:10:", "holds 16 bytes, the type needs 32"]),  # short
        (_hex(_VALUES, 4) + "00000000", None, "", ["bad.mlir:3:10:", "holds 36 bytes, the type needs 32"]),  # long
        ("0x04000000", None, "", ["bad.mlir:3:10:", "holds 0 bytes"]),  # header only
        (None, _hex(_INDICES[:1], 1), 'w_values: "' + _hex(_VALUES, 4) + '"', ["bad.mlir:4:10:", "w_indices", "holds 4 bytes"]),
        (_hex(_VALUES, 0), None, "", ["bad.mlir:15:", "'w_values' has alignment header 0"]),  # used to abort (LLVM OOM)
        (_hex(_VALUES, 1 << 31), None, "", ["bad.mlir:15:", "alignment header 2147483648"]),
        (_hex(_VALUES, 3), None, "", ["bad.mlir:15:", "alignment header 3"]),
        (_hex(_VALUES, 4), None, 'w_values: "' + _hex(_VALUES[:1], 4) + '"', ["bad.mlir:17:", "'w_values' is defined twice"]),
    ],
    ids=["missing", "short", "long", "header-only", "short-indices", "align-0", "align-huge", "align-3", "duplicate"],
)
@pytest.mark.parametrize("command", ["opt", "run"])
def test_bad_blob_exits_2_with_one_line(tmp_path: Path, values, indices, extra, fragments, command) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(_module(values, indices, extra))
    if command == "opt":
        proc = run_cli(str(path), "-p", "tasd-expand-to-linalg", tool="tasdc-opt")
    else:
        np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
        proc = run_cli("run", str(path), "--input", str(tmp_path / "x.npy"))
    _expect_one_line(proc, *fragments)


def test_file_truncated_inside_the_resource_section(tmp_path: Path) -> None:
    """A large blob, then a blob string cut off at the end of the file: MLIR's
    parser used to segfault on this (found by tools/fuzz.py)."""
    big = np.arange(40000, dtype=np.float32)
    text = _module(_hex(_VALUES, 4), extra=f'big: "{_hex(big, 4)}"\nw_more: "0x04000000ABC')
    path = tmp_path / "cut.mlir"
    path.write_text(text[: text.index("0x04000000ABC") + 13])
    for _ in range(3):  # the crash was not on every run
        proc = run_cli(str(path), "-p", "canonicalize", tool="tasdc-opt")
        _expect_one_line(proc, "expected '\"' in string literal")


def test_blob_in_a_comment_is_not_a_blob(tmp_path: Path) -> None:
    """FileCheck lines quote blobs; only the resource section counts."""
    path = tmp_path / "c.mlir"
    path.write_text("// CHECK: w_values: \"0x00000000\"\n" + _module(_hex(_VALUES, 4)))
    assert opt.main([str(path), "-p", "canonicalize"]) == 0


def test_reparse_into_the_same_context_finds_renamed_blobs() -> None:
    from tasdc.module import new_context, parse_module

    context = new_context()
    text = _module(_hex(_VALUES, 4))
    parse_module(text, context)
    parse_module(text, context)  # MLIR renames the second blobs w_values_1, …


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


@pytest.fixture
def mlir_model(tmp_path: Path) -> Path:
    path = tmp_path / "m.mlir"
    path.write_text(_module(_hex(_VALUES, 4)))
    return path


@pytest.mark.parametrize("config", ["1:3", "3:3", "1:1", "2:6", "1:32"])
@pytest.mark.parametrize("command", ["compile", "simulate", "run"])
def test_m_the_kernels_cannot_run_is_refused_everywhere(capsys, mlir_model: Path, tmp_path: Path, config, command) -> None:
    extra = {"compile": [], "simulate": ["--target", "stc"], "run": ["--input", str(tmp_path / "x.npy")]}[command]
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    line = _main(capsys, command, str(mlir_model), "--config", config, *extra)
    assert f"'{config}'" in line and "allowed M values (2, 4, 8, 16)" in line


def _huge_npy(path: Path) -> Path:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2500000, 2500000), }"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: (d / "e.npy").write_bytes(b"") and None or d / "e.npy", "empty file"),
        (lambda d: (d / "e.npz").write_bytes(b"") and None or d / "e.npz", "empty file"),
        (lambda d: Path("/dev/null"), "empty file"),
        (lambda d: _huge_npy(d / "h.npy"), "header claims a [2500000, 2500000] float32 array (25,000,000,000,000 bytes)"),
        (lambda d: (d / "t.npy").write_bytes(b"\x93NUMPY\x01\x00") and None or d / "t.npy", "not a .npy array"),
        (lambda d: (d / "g.npy").write_bytes(b"garbage!") and None or d / "g.npy", "no numpy or zip magic"),
    ],
    ids=["empty-npy", "empty-npz", "dev-null", "23TiB-header", "truncated-header", "garbage"],
)
def test_bad_array_files(capsys, mlir_model: Path, tmp_path: Path, make, fragment) -> None:
    path = make(tmp_path)
    line = _main(capsys, "run", str(mlir_model), "--input", str(path))
    assert fragment in line and str(path) in line


def test_non_finite_data_is_refused(capsys, tmp_path: Path) -> None:
    np.save(tmp_path / "nan.npy", np.full((3, 4), np.nan, np.float32))
    np.savez(tmp_path / "inf.npz", x=np.array([1.0, np.inf], np.float32))
    with pytest.raises(InputError, match=r"array 'x' has 1 non-finite values \(NaN/inf\) of 2; refusing calibration"):
        read_arrays(tmp_path / "inf.npz", what="calibration")
    with pytest.raises(InputError, match="has 12 non-finite"):
        read_arrays(tmp_path / "nan.npy")


def test_nan_calibration_and_eval_data(capsys, mlir_model: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "nan.npz", x=np.full((3, 4), np.nan, np.float32))
    for flag in ("--calib", "--eval"):
        line = _main(capsys, "compile", str(mlir_model), "--target", "vegeta", "--quality", "0.99", flag, str(tmp_path / "nan.npz"))
        assert "non-finite values" in line


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--quality", "1e-300", "--target", "vegeta"], "quality 1e-300 is too small"),
        (["--quality", "abc"], "argument --quality: invalid float value: 'abc'"),
        (["--mode", "bogus"], "argument --mode: invalid choice: 'bogus'"),
        (["--config", "2:4 +"], "invalid series config '2:4 +': term #2 is empty"),
        (["--config", " 2:4+2:3"], "invalid N:M pattern '2:3'"),
    ],
)
def test_bad_compile_options(capsys, mlir_model: Path, argv, fragment) -> None:
    assert fragment in _main(capsys, "compile", str(mlir_model), *argv)


def test_bad_run_and_simulate_options(capsys, mlir_model: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    assert "argument --repeat: invalid int value: 'abc'" in _main(capsys, "run", str(mlir_model), "--input", str(tmp_path / "x.npy"), "--repeat", "abc")
    assert "tasdc: error: argument COMMAND: invalid choice: 'bogus'" in _main(capsys, "bogus")
    assert "the following arguments are required: --target" in _main(capsys, "simulate", str(mlir_model))
    assert "is a directory" in _main(capsys, "run", str(mlir_model), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path))


def test_tasdc_opt_argument_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        opt.main(["--no-such-flag"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "tasdc-opt: error: unrecognized arguments: --no-such-flag\n"


def test_outputs_that_cannot_be_written(capsys, mlir_model: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    line = _main(capsys, "compile", str(mlir_model), "-o", str(tmp_path))
    assert "-o " in line and "is a directory" in line
    line = _main(capsys, "compile", str(mlir_model), "--save-temps", str(tmp_path / "a-file"))
    assert "--save-temps" in line and "exists and is not a directory" in line


def test_config_with_spaces_is_normalised(capsys, mlir_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mlir"
    assert cli.main(["compile", str(mlir_model), "--config", "  2:4 ", "-o", str(out)]) == 0
    assert "config=2:4" in capsys.readouterr().out and out.exists()


@pytest.mark.parametrize("text", ["", "// only a comment\n", "module {\n}\n"])
def test_model_without_a_function_is_refused(capsys, tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.mlir"
    path.write_text(text)
    for argv in (["compile", str(path)], ["simulate", str(path), "--target", "stc"]):
        assert "the module has no function to compile" in _main(capsys, *argv)
    assert "/dev/null: the module has no function" in _main(capsys, "compile", "/dev/null")


def test_simulating_a_model_without_layers_is_refused(capsys, tmp_path: Path) -> None:
    path = tmp_path / "id.mlir"
    path.write_text("func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n  return %x : tensor<2xf32>\n}\n")
    assert "no contraction layer" in _main(capsys, "simulate", str(path), "--target", "stc")


def test_implausible_hardware_is_refused(capsys, mlir_model: Path, tmp_path: Path) -> None:
    from tasdc.runtime.accel.hardware import list_targets  # noqa: F401 - the shipped files load

    shipped = Path(cli.__file__).resolve().parents[1] / "runtime" / "accel" / "hardware" / "vegeta.toml"
    (tmp_path / "huge.toml").write_text(re.sub(r"(?m)^rows\s*=.*$", "rows = 1000000000000", shipped.read_text()))
    line = _main(capsys, "compile", str(mlir_model), "--target", str(tmp_path / "huge.toml"))
    assert "array.rows: 1000000000000 is outside the plausible range (at most 65536)" in line


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_contraction_into_uninitialized_output_is_refused(capsys, tmp_path: Path, dtype: str) -> None:
    """A matmul accumulating into a tensor.empty reads uninitialized memory (it once ran to 915.5 for 4.0 in
    f16, and to 1.4e9 in f32): refused before anything runs, one line naming the op and where."""
    path = tmp_path / "empty.mlir"
    path.write_text(
        f"func.func @main(%x: tensor<2x4x{dtype}>) -> tensor<2x4x{dtype}> {{\n"
        f"  %w = arith.constant dense<1.0> : tensor<4x4x{dtype}>\n"
        f"  %0 = tensor.empty() : tensor<2x4x{dtype}>\n"
        f"  %1 = linalg.matmul ins(%x, %w : tensor<2x4x{dtype}>, tensor<4x4x{dtype}>) outs(%0 : tensor<2x4x{dtype}>) -> tensor<2x4x{dtype}>\n"
        f"  return %1 : tensor<2x4x{dtype}>\n}}\n"
    )
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float16 if dtype == "f16" else np.float32))
    line = _main(capsys, "run", str(path), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert f"{path}:4:8: 'linalg.matmul' reads its output operand, a tensor.empty (uninitialized values)" in line
    assert not (tmp_path / "y.npy").exists()


def test_float16_model_runs(capsys, tmp_path: Path) -> None:
    """A model that computes in f16 (its accumulator initialized): x·W in f16, exact here (small integers)."""
    path = tmp_path / "f16.mlir"
    path.write_text(
        "func.func @main(%x: tensor<2x4xf16>) -> tensor<2x4xf16> {\n"
        "  %w = arith.constant dense<1.0> : tensor<4x4xf16>\n"
        "  %z = arith.constant 0.0 : f16\n"
        "  %0 = tensor.empty() : tensor<2x4xf16>\n"
        "  %i = linalg.fill ins(%z : f16) outs(%0 : tensor<2x4xf16>) -> tensor<2x4xf16>\n"
        "  %1 = linalg.matmul ins(%x, %w : tensor<2x4xf16>, tensor<4x4xf16>) outs(%i : tensor<2x4xf16>) -> tensor<2x4xf16>\n"
        "  return %1 : tensor<2x4xf16>\n}\n"
    )
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float16))
    status = cli.main(["run", str(path), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")])
    assert status == 0, capsys.readouterr().err
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y.astype(np.float32), np.full((2, 4), 4.0, np.float32))


def test_bfloat16_message_is_complete() -> None:
    import torch

    from tasdc.importer import import_model

    pytest.importorskip("torch")
    if importlib.util.find_spec("ml_dtypes") is not None:
        pytest.skip("ml_dtypes is installed: torch-mlir imports bfloat16 weights")
    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    with pytest.raises(InputError) as info:
        import_model(model, (torch.ones(2, 4, dtype=torch.bfloat16),))
    message = str(info.value)
    assert "pip install ml_dtypes" in message and not message.rstrip().endswith(":"), message
