"""JIT start-up: identical layers compile once (tasd-cpu-dedup-functions).

The layers of a model whose weights are bound as arguments lower to the same
loop nests; after outlining, ``tasd-cpu-dedup-functions`` keeps one function
per distinct nest, so the number of functions LLVM compiles does not grow
with the depth. The merged code is the very function every copy was, so the
outputs must equal the un-merged build's bit for bit (one code path per
function on both sides; compiled with ``cache=False`` so both really JIT).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_mlir import ir

from tasdc.compiler import CompileOptions, compile_model
from tasdc.module import clone_module
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.runtime.cpu.executor import compile_for_cpu

_BEFORE_LLVM = "tasd-lower-activations-to-calls,tasd-lower-to-runtime-calls,tasd-cpu-fold-batch-broadcasts,tasd-cpu-bind-constants,"


def _stack(layers: int) -> torch.nn.Module:
    torch.manual_seed(layers)
    modules: list[torch.nn.Module] = []
    for _ in range(layers):
        modules += [torch.nn.Linear(64, 64), torch.nn.ReLU()]
    return torch.nn.Sequential(*modules).eval()


def _defined_functions(module: ir.Module, lowering: str) -> list[str]:
    """Names of the functions with a body after lowering ``module`` to the LLVM dialect."""
    work = clone_module(module)
    run_pipeline(work, parse_pipeline(_BEFORE_LLVM + lowering, work.context), verify_each=False)
    return [ir.StringAttr(op.attributes["sym_name"]).value
            for op in work.body.operations if op.operation.name == "llvm.func" and op.regions[0].blocks]


@pytest.mark.parametrize("config", ["dense", "2:4"])
def test_identical_layers_are_compiled_once(config: str) -> None:
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    merged, separate = {}, {}
    for layers in (2, 3):
        result = compile_model(_stack(layers), (x,), CompileOptions(config=config))
        merged[layers] = _defined_functions(result.module, "tasd-cpu-to-llvm")
        separate[layers] = _defined_functions(result.module, "tasd-cpu-to-llvm{dedup=false}")
    nests = {k: [n for n in v if n.startswith("tasd_nest")] for k, v in merged.items()}
    # A third identical layer adds loop nests before merging, none after.
    assert len([n for n in separate[3] if n.startswith("tasd_nest")]) > len([n for n in separate[2] if n.startswith("tasd_nest")])
    assert len(nests[3]) == len(nests[2]) >= 1


@pytest.mark.parametrize("config", ["dense", "2:4"])
def test_merged_functions_give_the_same_bits(config: str) -> None:
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    model = _stack(3)
    result = compile_model(model, (x,), CompileOptions(config=config))
    merged = compile_for_cpu(result.module, cache=False)(x.numpy())
    separate = compile_for_cpu(result.module, cache=False, lowering="tasd-cpu-to-llvm{dedup=false}")(x.numpy())
    np.testing.assert_array_equal(merged, separate)
    if config == "dense":
        with torch.no_grad():
            expected = model(x).numpy()
        # f32 dot products of 64 terms in another order than torch's, three layers deep (|y| ~ 0.3).
        np.testing.assert_allclose(merged, expected, rtol=1e-5, atol=1e-5)
