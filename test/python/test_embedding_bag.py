"""``nn.EmbeddingBag`` compiles and runs (``tasdc/torch_decompositions.py``).

torch-mlir has no lowering for ``aten.embedding_bag``: a model with one (a
DLRM-style recommender) failed with "failed to legalize operation
'torch.aten.embedding_bag.padding_idx'". tasdc now adds a decomposition of it
to torch-mlir's table: the bags as a membership mask from the offsets, reduced
by a product with the gathered rows (sum, mean) or a masked maximum (max).

Covered: the three modes; 1-D indices with offsets, including an empty bag
(zeros) and ``include_last_offset``; 2-D indices (fixed-length bags);
``padding_idx`` (left out of the sums and of the mean's count); per-sample
weights (sum). The Linear after the bag is decomposed under ``2:4+2:4``.

Tolerance: float32 sums of ≤ 5 rows in another order (BLAS product with the
0/1 mask vs torch's loop), then a 16×8 Linear; observed ≤ 3e-7 relative to the
largest output. ``atol = rtol = 1e-5``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tasdc.compiler import CompileOptions, compile_model

TOL = 1e-5


class Bags(nn.Module):
    """An EmbeddingBag (20 rows of 16) and a Linear to 8 on its output."""

    def __init__(self, mode: str, padding_idx: int | None = None, include_last_offset: bool = False) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 16, mode=mode, padding_idx=padding_idx, include_last_offset=include_last_offset)
        self.proj = nn.Linear(16, 8)

    def forward(self, indices: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.proj(self.bag(indices, *rest))


OFFSET_INPUTS = (torch.tensor([4, 1, 2, 5, 2, 9, 7, 8, 2, 3]), torch.tensor([0, 3, 3, 7]))  # bag 1 is empty


def _check(model: nn.Module, inputs: tuple[torch.Tensor, ...], config: str = "dense") -> None:
    torch.manual_seed(0)
    model = model.eval()
    with torch.no_grad():
        want = model(*inputs).numpy()
    compiled = compile_model(model, inputs, CompileOptions(config=config))
    if config != "dense":
        assert [row.op for row in compiled.report.layers].count("tasd.series") == 1  # the Linear
    got = compiled(*(t.numpy() for t in inputs))
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_offsets_with_an_empty_bag(mode: str) -> None:
    torch.manual_seed(0)
    _check(Bags(mode), OFFSET_INPUTS)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_padding_idx_left_out(mode: str) -> None:
    torch.manual_seed(0)
    _check(Bags(mode, padding_idx=2), OFFSET_INPUTS)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_two_dimensional_indices_lossless_series(mode: str) -> None:
    torch.manual_seed(0)
    _check(Bags(mode), (torch.randint(0, 20, (4, 5), generator=torch.Generator().manual_seed(1)),), "2:4+2:4")


def test_include_last_offset() -> None:
    torch.manual_seed(0)
    _check(Bags("mean", include_last_offset=True), (OFFSET_INPUTS[0], torch.tensor([0, 3, 3, 7, 10])))


def test_per_sample_weights() -> None:
    torch.manual_seed(0)
    weights = torch.rand(10, generator=torch.Generator().manual_seed(2))
    _check(Bags("sum"), (*OFFSET_INPUTS, weights))
