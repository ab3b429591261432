"""``tasdc sweep --show``: the stored cells as a table or JSON, with the Pareto front.

The Pareto front is taken per model and objective over the cells that
finished: a cell is on it when no other cell of the same model and objective
has both a higher-or-equal quality and a higher-or-equal reduction of that
objective (one of them strictly). Quality is the measured quality (the
lowest over the measured sets) or, for a model without calibration /
evaluation inputs, the bound the selection was made for.
"""

from __future__ import annotations

import json
from typing import Any

REDUCTION_OF = {"edp": "edp_reduction", "latency": "latency_reduction", "energy": "energy_reduction"}
JSON_KEYS = ("model", "target", "quality", "objective", "max_terms", "status", "error", "edp_reduction",
             "latency_reduction", "energy_reduction", "macs_reduction", "measured_quality", "meets_bound",
             "configs", "seconds", "pareto")


def _quality_of(cell: dict[str, Any]) -> float:
    q = cell.get("measured_quality")
    return float(q) if q is not None else float(cell["quality"])


def mark_pareto(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``cells`` with ``pareto`` set (False for failed cells)."""
    out = [dict(c, pareto=False) for c in cells]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in out:
        if cell["status"] == "ok":
            groups.setdefault((cell["model"], cell["objective"]), []).append(cell)
    for (_, objective), members in groups.items():
        column = REDUCTION_OF[objective]
        points = [(_quality_of(c), float(c[column] or 0.0)) for c in members]
        for cell, (q, r) in zip(members, points):
            cell["pareto"] = not any(q2 >= q and r2 >= r and (q2 > q or r2 > r) for q2, r2 in points)
    return out


def to_json(cells: list[dict[str, Any]]) -> str:
    """The cells as a JSON list (the keys of :data:`JSON_KEYS`)."""
    return json.dumps([{k: c.get(k) for k in JSON_KEYS} for c in mark_pareto(cells)], indent=1)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{-value:+.1%}"


def table(cells: list[dict[str, Any]]) -> str:
    """The cells, then the Pareto front of every model and objective."""
    marked = mark_pareto(cells)
    header = (f"{'model':<14} {'target':<26} {'quality':>7} {'objective':<9} {'status':<6} {'EDP':>7} "
              f"{'latency':>8} {'energy':>7} {'MACs':>7} {'measured':>8} {'bound':<6} {'secs':>6}  series / error")
    lines = [header, "-" * len(header)]
    for c in marked:
        if c["status"] == "ok":
            series = ", ".join(f"{k}={v}" for k, v in (c.get("configs") or {}).items())
            measured = "-" if c["measured_quality"] is None else f"{c['measured_quality']:.4f}"
            bound = {True: "met", False: "MISSED", None: "-"}[c["meets_bound"]]
            lines.append(f"{c['model']:<14} {c['target']:<26} {c['quality']:>7g} {c['objective']:<9} "
                         f"{'ok':<6} {_pct(c['edp_reduction']):>7} {_pct(c['latency_reduction']):>8} "
                         f"{_pct(c['energy_reduction']):>7} {_pct(c['macs_reduction']):>7} {measured:>8} "
                         f"{bound:<6} {c['seconds'] or 0:>6.1f}  {series}")
        else:
            lines.append(f"{c['model']:<14} {c['target']:<26} {c['quality']:>7g} {c['objective']:<9} "
                         f"{'FAILED':<6} {'':>7} {'':>8} {'':>7} {'':>7} {'':>8} {'':<6} "
                         f"{c['seconds'] or 0:>6.1f}  {c['error']}")
    ok = sum(c["status"] == "ok" for c in marked)
    lines.append(f"{len(marked)} cells: {ok} ok, {len(marked) - ok} failed "
                 f"(reductions vs the dense model on the same target; '-' = not measured)")
    fronts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in marked:
        if c["pareto"]:
            fronts.setdefault((c["model"], c["objective"]), []).append(c)
    for (model, objective), members in fronts.items():
        column = REDUCTION_OF[objective]
        members.sort(key=lambda c: -_quality_of(c))
        shown = "; ".join(f"{c['target']} @ {c['quality']:g}: quality {_quality_of(c):.4f}, "
                          f"{objective} {_pct(c[column])}" for c in members)
        lines.append(f"pareto {model} ({objective} reduction vs quality): {shown}")
    return "\n".join(lines)
