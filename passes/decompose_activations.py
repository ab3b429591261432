"""``tasd-decompose-activations``: mark activation operands for run-time TASD (TASD-A)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from tasdc.contractions import scan
from tasdc.decompose import parse_config
from tasdc.diagnostics import remark
from tasdc.dialects.tasd import DecomposeActivationOp, activation_source, dense_operand_of, sparse_operand_of
from tasdc.module import ops_named
from tasdc.passes.base import ModulePass
from tasdc.report import annotate

#: Per-layer override written by a selection pass (``dense`` = leave alone).
ACT_CONFIG_ATTR = "tasd.act_config"

_CONSUMER_KINDS = {"linalg.matmul": 2, "linalg.batch_matmul": 3, "tasd.matmul": 2, "tasd.batch_matmul": 3}


def activation_axis(op_name: str, operand: int) -> int:
    """Reduction axis of operand ``operand`` (0 = lhs/input, 1 = rhs) of a contraction."""
    if op_name in ("linalg.conv_2d_nchw_fchw", "tasd.conv2d"):
        return 1  # NCHW input: channels (the im2col reduction with channels innermost)
    rank = _CONSUMER_KINDS[op_name]
    return rank - 1 if operand == 0 else rank - 2


def _i64(value: int) -> ir.IntegerAttr:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)


def _size(value: ir.Value) -> int:
    size = 1
    for extent in ir.RankedTensorType(value.type).shape:
        size *= extent
    return size


@dataclasses.dataclass(frozen=True)
class DecomposeActivations(ModulePass):
    """Decompose the run-time operand of every weight contraction at run time.

    The rule: for every contraction with a constant weight (the candidates of
    ``tasd-decompose-weights``, in linalg form or already a ``tasd.series``),
    its activation operand ``x`` is replaced by
    ``tasd.decompose_activation(x) {config, axis}`` with ``axis`` the
    reduction axis of ``x`` in that contraction (a convolution input: its
    channel axis 1). With ``both-operands`` the two operands of
    activation x activation ``linalg.matmul``/``linalg.batch_matmul`` (such
    as attention's QKᵀ) are marked as well. A contraction's own
    ``tasd.act_config`` attribute (set by ``tasd-select``) overrides
    ``config``; ``dense`` leaves it alone (so ``config=dense`` applies only
    the per-layer choices). Run it before ``tasd-decompose-weights``, which
    does not carry ``tasd.act_config`` over to the series it builds. Activations with fewer than
    ``min-size`` elements, and operands already decomposed, are left alone
    (the former with a remark), and so are convolution inputs whose channel
    count is not a multiple of every M of the series (a channel block must
    not straddle two kernel positions of the im2col reduction). The contraction's ``tasd.stats`` records
    ``act_config`` (the report's series column shows it as ``A <series>``).
    """

    name: ClassVar[str] = "tasd-decompose-activations"
    config: str = "2:4"
    min_size: int = 0
    both_operands: bool = False

    def __post_init__(self) -> None:
        parse_config(self.config)
        if self.min_size < 0:
            raise ValueError(f"min-size must be >= 0, got {self.min_size}")

    def _config_for(self, op: ir.OpView) -> str:
        if ACT_CONFIG_ATTR in op.attributes:
            return str(parse_config(ir.StringAttr(op.attributes[ACT_CONFIG_ATTR]).value))
        return self.config

    def run(self, module: ir.Module) -> None:
        found = scan(module)
        for candidate in found.candidates:
            which = 1 - candidate.sparse_operand
            self._mark(candidate.op, [candidate.op], which, candidate.layer)
        for series in ops_named(module, "tasd.series"):
            terms = [value.owner for value in series.operands]
            which = 1 - sparse_operand_of(terms[0])[0]
            layer = ir.StringAttr(series.attributes["tasd.layer"]).value if "tasd.layer" in series.attributes else "series"
            self._mark(series, terms, which, layer)
        if not self.both_operands:
            return
        for skipped in found.skipped:
            op = skipped.op
            if op.name in ("linalg.matmul", "linalg.batch_matmul") and "both operands are run-time" in skipped.reason:
                for which in (0, 1):
                    self._mark(op, [op], which, skipped.layer)

    def _mark(self, owner: ir.OpView, consumers: list[ir.OpView], which: int, layer: str) -> None:
        """Decompose operand ``which`` of every op in ``consumers`` (one shared value)."""
        config = self._config_for(owner)
        if parse_config(config).is_dense:
            return
        value = consumers[0].operands[which]
        if activation_source(value) is not None:
            return
        if _size(value) < self.min_size:
            remark(owner.location, f"{layer}: activation left dense: {_size(value)} elements < min-size {self.min_size}")
            return
        if any(consumer.operands[which] != value for consumer in consumers):
            remark(owner.location, f"{layer}: terms contract different activations; left dense")
            return
        axis = activation_axis(consumers[0].name, which)
        if consumers[0].name in ("linalg.conv_2d_nchw_fchw", "tasd.conv2d"):
            channels = ir.RankedTensorType(value.type).shape[1]
            odd = sorted({t.m for t in parse_config(config).terms if channels % t.m})
            if odd:  # channel blocks would straddle (kh, kw) positions of the im2col reduction
                remark(owner.location, f"{layer}: activation left dense: {channels} input channels are not a "
                                       f"multiple of M={odd[0]}")
                return
        with ir.InsertionPoint(consumers[0]), consumers[0].location:
            decomposed = DecomposeActivationOp(value, ir.StringAttr.get(config), _i64(axis), value.type).result
        for consumer in consumers:
            consumer.operation.operands[which] = decomposed
        annotate(owner, layer, {"act_config": config})


__all__ = ["ACT_CONFIG_ATTR", "DecomposeActivations", "activation_axis", "dense_operand_of"]
