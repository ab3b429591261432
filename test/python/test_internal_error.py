"""A failure inside LLVM / MLIR's ExecutionEngine is an internal error.

On input that passed every check, such a failure is a tasdc bug: the user
gets one line, ``tasdc: internal error: …`` with LLVM's own message and the
request to report it, exit status 70, no traceback, no output file. The
failure is forced for real: the kernels' symbols are withheld from the
engine (as a bug in their registration would), so LLVM's JIT linker fails
with "Symbols not found". A model that calls a function nobody defines is
the user's error instead (exit 2), caught before LLVM sees it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch_mlir.execution_engine import ExecutionEngine

from conftest import run_cli
from tasdc.cli import main
from tasdc.errors import EXIT_INTERNAL_ERROR, REPORT_HINT


def test_llvm_failure_is_one_internal_error_line(example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.load(example_dir / "mlp-eval.npz")["x"][:16])
    out = tmp_path / "y.npy"
    monkeypatch.setattr(ExecutionEngine, "register_runtime", lambda self, name, callback: None)
    status = main(["run", str(example_dir / "mlp.pt2"), "--input", str(x), "--config", "2:4", "--no-cache", "-o", str(out)])
    stderr = capfd.readouterr().err
    assert status == EXIT_INTERNAL_ERROR
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tasdc: internal error: JIT compilation of @main failed in LLVM: ")
    assert "Symbols not found" in lines[0] and "_mlir_ciface_tasd_kernel_0" in lines[0]
    assert lines[0].endswith(f"({REPORT_HINT})")
    assert "Traceback" not in stderr
    assert not out.exists()


def test_calling_an_undefined_function_is_a_user_error(tmp_path: Path) -> None:
    model = tmp_path / "mystery.mlir"
    model.write_text(
        "func.func private @mystery(tensor<4xf32>) -> tensor<4xf32>\n"
        "func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {\n"
        "  %y = func.call @mystery(%x) : (tensor<4xf32>) -> tensor<4xf32>\n"
        "  return %y : tensor<4xf32>\n"
        "}\n"
    )
    x = tmp_path / "x.npy"
    np.save(x, np.ones(4, np.float32))
    proc = run_cli("run", str(model), "--input", str(x), "--no-cache")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("tasdc: error: the model calls @mystery, which is neither defined in the module "
                                   "nor a tasdc runtime kernel nor a C library function")
