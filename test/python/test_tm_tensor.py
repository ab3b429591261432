"""torch-mlir's TMTensor ops (``tm_tensor.scan`` for ``cumsum``, …) through the CPU runtime.

torch-mlir's linalg-on-tensors output lowers ``torch.cumsum`` — RoBERTa's (and
XLM-R's, CamemBERT's, …) position ids, ``cumsum(input_ids != pad) * mask`` — to
``tm_tensor.scan``, which one-shot bufferization does not know: every such
model failed in ``tasd-cpu-to-llvm`` with "op was not bufferized", and the
printed ``tasdc-opt`` reproducer did not parse ("Dialect `tm_tensor' not
found"). Bufferizing the op with its own pass must also read its input where
the op reads it: read at the producer, an op in between (the zero fill of the
scan's output, made from the same ``tensor.empty``) overwrote it in place and
every position id came out 1.

Exact comparisons: integer cumsum is exact; the float cumsum over 8 values is
computed by both sides left to right in float32 (torch's CPU cumsum is a
sequential loop), so ``rtol = 1e-6`` only absorbs a different accumulation order
should either side change it.
"""

from __future__ import annotations

import numpy as np
import torch

from tasdc.compiler import CompileOptions, compile_model
from tasdc.module import new_context, parse_module


class PositionIds(torch.nn.Module):
    """transformers' ``create_position_ids_from_input_ids`` (RoBERTa) and an embedding lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(40, 4, padding_idx=1)
        self.proj = torch.nn.Linear(4, 8)

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = ids.ne(1).int()
        positions = (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + 1
        return positions, self.proj(self.embed(positions)), torch.cumsum(x, 1)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 40, (2, 8), generator=g)
    ids[1, 5:] = 1  # padding
    return ids, torch.randn(2, 8, generator=g)


def test_cumsum_runs_on_cpu_and_matches_torch() -> None:
    torch.manual_seed(0)
    model = PositionIds().eval()
    ids, x = _inputs()
    for config in ("dense", "2:4+2:4"):
        compiled = compile_model(model, (ids, x), CompileOptions(config=config))
        assert "tm_tensor.scan" in compiled.mlir()
        got = compiled(ids.numpy(), x.numpy())
        with torch.no_grad():
            want = [t.numpy() for t in model(ids, x)]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[2], want[2], rtol=1e-6, atol=1e-6)


def test_module_with_tm_tensor_parses_again() -> None:
    """A compiled module (``tasdc compile -o``, a ``tasdc-opt`` reproducer) holding
    ``tm_tensor`` ops reads back in a fresh context."""
    compiled = compile_model(PositionIds().eval(), _inputs(), CompileOptions(config="2:4"))
    module = parse_module(str(compiled.module), new_context(), "saved.mlir")
    assert "tm_tensor.scan" in str(module)
