"""tasdc passes inside a native MLIR ``PassManager`` (``ModulePass.as_pass``).

The same pass code runs on both sides (tasdc's own pipeline runner and the
native PassManager), so the printed modules must be identical.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from conftest import ROOT
from tasdc import import_model
from tasdc.importer import module_text
from tasdc.module import new_context, parse_module
from tasdc.passes import get_all_passes
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.report import collect_report


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))


@pytest.fixture(scope="module")
def imported_text() -> str:
    return module_text(import_model(_mlp(), (torch.randn(4, 16),)).module)


def _fresh(text: str) -> ir.Module:
    """The module in a context of its own (resource names stay as they are)."""
    return parse_module(text, new_context())


def _native(module: ir.Module, pipeline: str) -> None:
    """Run ``pipeline`` (tasdc passes via as_pass, others textually) in one PassManager."""
    registry = get_all_passes()
    with module.context:
        pm = PassManager("builtin.module")
        for step in parse_pipeline(pipeline, module.context):
            if getattr(step, "name", None) in registry:
                pm.add(*step.as_pass_args())
            else:
                pm.add(step.describe())
        pm.run(module.operation)


PIPELINES = [
    "canonicalize,tasd-sparsity-analysis,tasd-decompose-weights{config=2:4+1:4},cse",
    "tasd-decompose-weights{config=2:4},tasd-plan-accel{target=vegeta}",
    "tasd-decompose-weights{config=1:4},tasd-expand-to-linalg",
    "tasd-decompose-weights{config=2:4},tasd-lower-to-runtime-calls,tasd-cpu-to-llvm",
]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_native_passmanager_matches_tasdc_pipeline(imported_text: str, pipeline: str) -> None:
    ours, native = _fresh(imported_text), _fresh(imported_text)
    run_pipeline(ours, parse_pipeline(pipeline, ours.context))
    _native(native, pipeline)
    assert str(native) == str(ours)
    assert collect_report(native).to_json() == collect_report(ours).to_json()


def test_every_registered_pass_has_as_pass() -> None:
    for name, load in get_all_passes().items():
        cls = load()
        run, pass_name, argument, description = cls().as_pass_args() if name != "tasd-plan-accel" else \
            cls(target="vegeta").as_pass_args()
        assert callable(run) and argument == name and pass_name == cls.__name__ and description


def test_user_error_signals_pass_failure(imported_text: str) -> None:
    """A TasdcError inside a pass fails the native run with an MLIRError naming it."""
    module = _fresh(imported_text)
    steps = parse_pipeline("tasd-decompose-weights{config=1:4},tasd-plan-accel{target=stc mode=refuse}", module.context)
    with module.context:
        pm = PassManager("builtin.module")
        for step in steps:
            pm.add(*step.as_pass_args())
        with pytest.raises(ir.MLIRError) as caught:
            pm.run(module.operation)
    messages = [d.message for d in caught.value.error_diagnostics]
    assert any(m.startswith("tasd-plan-accel:") and "1:4" in m for m in messages), messages


def test_native_example_runs() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "native_passmanager.py")],
                         capture_output=True, text=True, check=True)
    assert "SparsityAnalysis" in out.stderr and "DecomposeWeights" in out.stderr  # MLIR's timing report (stderr)
    assert out.stdout.count("2:4+1:4") == 2  # both Linear layers decomposed
