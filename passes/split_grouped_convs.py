"""``tasd-split-grouped-convs``: a grouped convolution with a constant filter becomes one convolution per group."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import linalg, tensor

from tasdc.elements import make_elements
from tasdc.errors import PipelineError
from tasdc.module import ops_named, window_pair
from tasdc.passes.base import ModulePass
from tasdc.passes.fold_batch_norm import erase_dead, evaluate_constant


def _group_slice(builder_type: ir.RankedTensorType, source: ir.Value, group: int) -> ir.Value:
    """``source[:, group]`` of a ``[N, G, ...]`` tensor, the group dim dropped."""
    shape = ir.RankedTensorType(source.type).shape
    sizes = [shape[0], 1, *shape[2:]]
    return tensor.extract_slice(builder_type, source, [], [], [], [0, group] + [0] * (len(shape) - 2), sizes,
                                [1] * len(shape))


@dataclasses.dataclass(frozen=True)
class SplitGroupedConvs(ModulePass):
    """Rewrite ``linalg.conv_2d_ngchw_gfchw`` with a constant filter as one ``conv_2d_nchw_fchw`` per group.

    Rule, on tensors with static shapes and at most ``max_groups`` groups
    (default 64): ``Y[N, G, O, OH, OW] = conv_ngchw_gfchw(X[N, G, C, H, W],
    F[G, O, C, KH, KW])`` becomes, for each group ``g``,
    ``conv_2d_nchw_fchw(X[:, g], F[g]) -> Y0[:, g]`` (``tensor.extract_slice``
    of the input and of the init, the filter slice a new constant) put back
    with ``tensor.insert_slice`` into the init, same strides and dilations.
    The same sums in the same order per output: results are identical up to
    the runtime's summation order. A run-time filter, dynamic shapes or more
    groups than ``max_groups`` are left grouped (the contraction scan reports
    why).

    Why: TASD decomposes a 2-D convolution's filter along ``C·KH·KW``; a grouped
    convolution is ``G`` such convolutions side by side (ResNeXt, RegNet,
    SqueezeBERT, ShuffleNet), whose weights were left dense as "a grouped
    convolution is one GEMM per group". Depthwise convolutions (one channel
    per group, ``linalg.depthwise_conv_2d_nchw_chw``) are not grouped convs
    here: their per-group reduction is only ``KH·KW``. ``compile_model`` runs
    it first in the TASD pipeline when a series config is given; a dense
    compile keeps the grouped op, whose runtime entry is faster than the
    groups one by one (measured, one thread, ``[8, 128, 28, 28]``, two 3×3
    layers: 10.8 vs 12.0 ms at 4 groups, 7.2 vs 8.7 ms at 32), and whose JIT
    is shorter (2.7 vs 5.3 s at 32 groups). TASDER's per-layer selection does
    not see the groups (they stay dense there).
    """

    name: ClassVar[str] = "tasd-split-grouped-convs"

    max_groups: int = 64

    def __post_init__(self) -> None:
        if self.max_groups < 1:
            raise PipelineError(f"tasd-split-grouped-convs: max-groups must be at least 1, got {self.max_groups}")

    def run(self, module: ir.Module) -> None:
        with module.context:
            for op in ops_named(module, "linalg.conv_2d_ngchw_gfchw"):
                self._split(op)

    def _split(self, op: ir.OpView) -> None:
        if len(op.results) != 1:
            return  # on memrefs: not this pass's stage
        x, f, init = op.operands[0], op.operands[1], op.operands[2]
        types = [v.type for v in (x, f, init)]
        if not all(isinstance(t, ir.RankedTensorType) and ir.RankedTensorType(t).has_static_shape for t in types):
            return
        x_type, f_type, y_type = (ir.RankedTensorType(t) for t in types)
        groups = x_type.shape[1]
        if groups > self.max_groups:
            return
        weights = evaluate_constant(f)  # a constant filter, through reshapes
        if weights is None:
            return
        strides, dilations = window_pair(op, "strides"), window_pair(op, "dilations")
        with ir.InsertionPoint(op), op.location:
            x_group = ir.RankedTensorType.get([x_type.shape[0], *x_type.shape[2:]], x_type.element_type)
            y_group = ir.RankedTensorType.get([y_type.shape[0], *y_type.shape[2:]], y_type.element_type)
            f_group = ir.RankedTensorType.get(list(f_type.shape[1:]), f_type.element_type)
            result = init
            for g in range(groups):
                filter_g = ir.Operation.create("arith.constant", results=[f_group], attributes={
                    "value": make_elements(np.ascontiguousarray(weights[g]), f"tasd_group_filter_{g}", f_group)}).results[0]
                conv = linalg.conv_2d_nchw_fchw(_group_slice(x_group, x, g), filter_g,
                                                outs=[_group_slice(y_group, result, g)],
                                                strides=strides, dilations=dilations)
                shape = y_type.shape
                result = tensor.insert_slice(conv, result, [], [], [], [0, g] + [0] * (len(shape) - 2),
                                             [shape[0], 1, *shape[2:]], [1] * len(shape))
        op.results[0].replace_all_uses_with(result)
        op.operation.erase()
        erase_dead(f)
