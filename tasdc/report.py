"""Per-layer reports, read back from the IR.

Passes record what they decided on the op that stands for a layer: the
attribute ``tasd.layer`` names the layer and ``tasd.stats`` (a dictionary)
holds its numbers. Because the report is read from the IR, ``tasdc compile``
and ``tasdc-opt`` runs report the same thing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch_mlir import ir

from tasdc.dialects.tasd import STATS_ATTR

LAYER_ATTR = "tasd.layer"


def to_attr(value: Any) -> ir.Attribute:
    """A Python scalar, string, list of ints or dict as an MLIR attribute."""
    if isinstance(value, bool):
        return ir.BoolAttr.get(value)
    if isinstance(value, int):
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
    if isinstance(value, float):
        return ir.FloatAttr.get(ir.F64Type.get(), value)
    if isinstance(value, str):
        return ir.StringAttr.get(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ir.DenseI64ArrayAttr.get(list(value))
    if isinstance(value, dict):
        return ir.DictAttr.get({k: to_attr(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return ir.ArrayAttr.get([to_attr(v) for v in value])
    raise TypeError(f"cannot store {value!r} as an attribute")


def from_attr(attr: ir.Attribute) -> Any:
    """The inverse of :func:`to_attr`."""
    if isinstance(attr, ir.BoolAttr):
        return bool(attr.value)
    if isinstance(attr, ir.IntegerAttr):
        return int(attr.value)
    if isinstance(attr, ir.FloatAttr):
        return float(attr.value)
    if isinstance(attr, ir.StringAttr):
        return attr.value
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    if isinstance(attr, ir.DictAttr):
        return {named.name: from_attr(named.attr) for named in attr}
    if isinstance(attr, ir.ArrayAttr):
        return [from_attr(a) for a in attr]
    return str(attr)


def annotate(op: ir.OpView, layer: str, stats: dict[str, Any]) -> None:
    """Record ``layer`` and merge ``stats`` into ``op``'s ``tasd.stats``."""
    merged = read_stats(op)
    merged.update(stats)
    op.attributes[LAYER_ATTR] = ir.StringAttr.get(layer)
    op.attributes[STATS_ATTR] = to_attr(merged)


def read_stats(op: ir.OpView) -> dict[str, Any]:
    if STATS_ATTR in op.attributes:
        return dict(from_attr(op.attributes[STATS_ATTR]))
    return {}


@dataclasses.dataclass
class LayerRow:
    """One layer of the report."""

    layer: str
    op: str
    stats: dict[str, Any]


@dataclasses.dataclass
class CompileReport:
    """Per-layer rows plus whole-model figures."""

    source: str
    config: str
    layers: list[LayerRow]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "config": self.config,
            "layers": [{"layer": r.layer, "op": r.op, **r.stats} for r in self.layers],
        }

    def table(self) -> str:
        """A fixed-width per-layer table."""
        header = f"{'layer':<16} {'op':<20} {'gemm MxKxN':<18} {'density':>7} {'series':<12} {'kept':>6} {'rel.err':>8} {'L1 drop':>8} {'lossless':>8}"
        lines = [header, "-" * len(header)]
        for row in self.layers:
            s = row.stats
            gemm = "x".join(str(v) for v in s.get("gemm", [])[1:]) if s.get("gemm") else "-"
            if s.get("gemm") and s["gemm"][0] > 1:
                gemm = f"{s['gemm'][0]}*{gemm}"
            if s.get("skipped"):
                lines.append(f"{row.layer:<16} {row.op:<20} {gemm:<18} {'-':>7} {'dense':<12} skipped: {s['skipped']}")
                continue
            series = s.get('config', 'dense')
            if s.get("act_config"):  # TASD-A on the activation operand
                series = f"A {s['act_config']}" if series == "dense" else f"{series}|A {s['act_config']}"
            lines.append(
                f"{row.layer:<16} {row.op:<20} {gemm:<18} {s.get('density', float('nan')):>7.3f} "
                f"{series:<12} {s.get('kept_density', 1.0):>6.3f} "
                f"{s.get('rel_error', 0.0):>8.4f} {s.get('l1_dropped', 0.0):>8.4f} "
                f"{('yes' if s.get('lossless', True) else 'no'):>8}"
            )
        return "\n".join(lines)


def collect_report(module: ir.Module, source: str = "", config: str = "dense") -> CompileReport:
    """Gather every op carrying ``tasd.layer`` in program order."""
    rows: list[LayerRow] = []

    def visit(operation: ir.Operation) -> ir.WalkResult:
        op = operation.opview
        if LAYER_ATTR in op.attributes:
            rows.append(LayerRow(ir.StringAttr(op.attributes[LAYER_ATTR]).value, op.name, read_stats(op)))
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return CompileReport(source=source, config=config, layers=rows)
