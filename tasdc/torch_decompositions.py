"""PyTorch-level decompositions tasdc adds to torch-mlir's table before the import.

torch-mlir runs ``ExportedProgram.run_decompositions`` with its own table, then
lowers the aten ops that remain. Ops it has no lowering for, but that decompose
into ops it lowers, get a decomposition here (:func:`decomposition_table`):

* ``nn.EmbeddingBag`` / ``F.embedding_bag`` (``aten.embedding_bag.padding_idx``,
  ``aten._embedding_bag``; DLRM-style recommenders): "failed to legalize operation
  'torch.aten.embedding_bag.padding_idx'". The bags become a membership mask
  ``[bags, indices]`` built from the offsets, and the reduction of the gathered rows
  a product with that mask (sum, mean) or a masked maximum (max).
* ``nn.Bilinear`` (``aten.bilinear``): torch decomposes it into ``aten._trilinear``,
  which torch-mlir lowers to broadcast products and sums, so its weight was in no
  contraction (absent from the report, never decomposed). Here the weight
  ``W[out, in1, in2]`` becomes the right operand of one matmul,
  ``x1 · W'[in1, out·in2]``, whose result is multiplied by ``x2`` and summed over
  ``in2``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

#: ``mode`` of ``aten._embedding_bag``.
_SUM, _MEAN, _MAX = 0, 1, 2


def _embedding_bag(weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor, scale_grad_by_freq: bool = False,
                   mode: int = _SUM, sparse: bool = False, per_sample_weights: torch.Tensor | None = None,
                   include_last_offset: bool = False, padding_idx: int | None = -1
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``aten._embedding_bag`` for a 1-D ``indices`` with bag starts ``offsets`` (what
    ``F.embedding_bag`` passes for 1-D and 2-D inputs alike), in ops torch-mlir lowers.

    Returns ``(output, offset2bag, bag_size, max_indices)`` as aten does; only ``output``
    is meant to be read (the others are what the backward pass reads: ``offset2bag`` and
    ``bag_size`` are computed, ``max_indices`` is zero). Entries equal to ``padding_idx``
    (≥ 0) are left out of every bag and of the mean's count; an empty bag gives zeros.
    """
    count = indices.shape[0]
    bags = offsets.shape[0] - 1 if include_last_offset else offsets.shape[0]
    starts = offsets[:bags]
    if include_last_offset:
        ends = offsets[1:bags + 1]
    else:
        ends = torch.cat([offsets[1:], torch.full((1,), count, dtype=offsets.dtype, device=offsets.device)])
    position = torch.arange(count, dtype=offsets.dtype, device=offsets.device)
    member = (position.unsqueeze(0) >= starts.unsqueeze(1)) & (position.unsqueeze(0) < ends.unsqueeze(1))
    if padding_idx is not None and padding_idx >= 0:
        member = member & (indices != padding_idx).unsqueeze(0)
    rows = torch.ops.aten.embedding.default(weight, indices)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.unsqueeze(1).to(rows.dtype)
    size = member.sum(1)
    if mode == _MAX:
        lowest = torch.full((), float("-inf"), dtype=rows.dtype, device=rows.device)
        output = torch.where(member.unsqueeze(2), rows.unsqueeze(0), lowest).amax(1)
        output = torch.where((size > 0).unsqueeze(1), output, torch.zeros((), dtype=rows.dtype, device=rows.device))
    else:
        output = torch.mm(member.to(rows.dtype), rows)
        if mode == _MEAN:
            output = output / size.clamp(min=1).unsqueeze(1).to(rows.dtype)
    offset2bag = (position.unsqueeze(1) >= starts.unsqueeze(0)).sum(1) - 1
    max_indices = torch.zeros((bags, weight.shape[1]) if mode == _MAX else (bags,), dtype=offsets.dtype,
                              device=offsets.device)
    return output, offset2bag, size.to(offsets.dtype), max_indices


def _embedding_bag_padding_idx(weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                               scale_grad_by_freq: bool, mode: int, sparse: bool,
                               per_sample_weights: torch.Tensor | None, include_last_offset: bool,
                               padding_idx: int | None) -> tuple[torch.Tensor, ...]:
    """``aten.embedding_bag.padding_idx`` (no default arguments): :func:`_embedding_bag`."""
    return _embedding_bag(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
                          include_last_offset, padding_idx)


def _bilinear(x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
              ) -> torch.Tensor:
    """``aten.bilinear``, ``y[.., o] = Σ_ij x1[.., i] W[o, i, j] x2[.., j] + b[o]``, as a
    matmul with the weight (``[in1, out·in2]``) then a product with ``x2`` summed over ``j``."""
    out, in1, in2 = weight.shape
    lead = x1.shape[:-1]
    left = torch.mm(x1.reshape(-1, in1), weight.permute(1, 0, 2).reshape(in1, out * in2))
    y = (left.reshape(-1, out, in2) * x2.reshape(-1, 1, in2)).sum(-1)
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, out)


def decomposition_table() -> dict[Any, Callable[..., Any]]:
    """torch-mlir's decomposition table with tasdc's additions (this module's docstring)."""
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    table = dict(get_decomposition_table())
    aten = torch.ops.aten
    table[aten._embedding_bag.default] = _embedding_bag
    table[aten.embedding_bag.default] = _embedding_bag
    table[aten.embedding_bag.padding_idx] = _embedding_bag_padding_idx
    table[aten.bilinear.default] = _bilinear
    return table
