"""tasdc passes inside a native MLIR ``PassManager``, between upstream passes.

Every tasdc pass has ``as_pass()``: a callable for ``PassManager.add``, so a
pipeline of your own (torch-mlir's, IREE's input pipeline, …) can call TASD
between its passes and keep MLIR's timing, IR printing and verifier::

    python examples/native_passmanager.py            # a small MLP built here
    python examples/native_passmanager.py model.pt2  # or any .pt2 / .mlir / .onnx

It prints MLIR's pass timing report and the per-layer TASD report.
"""

from __future__ import annotations

import sys

import torch
from torch_mlir.passmanager import PassManager

from tasdc import import_model
from tasdc.passes.decompose_weights import DecomposeWeights
from tasdc.passes.sparsity_analysis import SparsityAnalysis
from tasdc.report import collect_report


def main(argv: list[str]) -> None:
    if argv:
        model = import_model(argv[0])
    else:
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        model = import_model(mlp, (torch.randn(4, 64),))
    with model.context:
        pm = PassManager("builtin.module")
        pm.add("canonicalize")
        pm.add(*SparsityAnalysis().as_pass_args())
        pm.add(*DecomposeWeights(config="2:4+1:4").as_pass_args())
        pm.add("cse")
        pm.enable_timing()
        pm.run(model.module.operation)
    print(collect_report(model.module, source=model.source, config="2:4+1:4").table())


if __name__ == "__main__":
    main(sys.argv[1:])
