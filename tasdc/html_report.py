"""One self-contained HTML page from a tasdc JSON report (``tasdc report``, ``--html``).

:func:`render_html` takes any report tasdc writes as JSON:

* ``tasdc compile --json`` (per-layer ``layers``; with ``--target`` also a
  ``simulation``);
* ``tasdc simulate --json`` (schema ``tasdc-simulate/1``; ``--html`` on
  simulate also carries the compile report);
* the TASDER report (``tasdc compile --quality --json``: ``layers`` with the
  chosen series and costs, ``probes``, ``report``).

and draws, with matplotlib (SVG inline, text as paths: no fonts, scripts or
network needed): per-layer bars of cycles, energy and EDP dense vs TASD on
the target; the chosen series per layer and its error; for TASDER the search
path (objective vs measured quality, the bound, the chosen point); and the
block-nnz histograms of the weights from the sparsity analysis. Sections
without data say what run would produce them.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

from tasdc.errors import InputError

DENSE_COLOR = "#9aa5b1"
TASD_COLOR = "#1f77b4"
CHOSEN_COLOR = "#d62728"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1100px;
       color: #1d2329; background: #fff; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #dde3e8; }
.meta { color: #52606d; font-size: 13px; } .note { color: #52606d; font-style: italic; font-size: 13px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 3px 9px; text-align: right; }
th { background: #f5f7fa; } td.l, th.l { text-align: left; }
.figure svg { max-width: 100%; height: auto; }
.kpi { display: inline-block; margin: 6px 18px 6px 0; } .kpi b { font-size: 18px; display: block; }
"""


# -- reading the JSON -------------------------------------------------------
def report_kind(data: Any) -> str:
    """``compile``, ``simulate`` or ``tasder``; anything else is an :class:`InputError`."""
    if not isinstance(data, dict):
        raise InputError("not a tasdc report (expected a JSON object)")
    if data.get("schema") == "tasdc-simulate/1":
        return "simulate"
    if isinstance(data.get("probes"), list) and isinstance(data.get("layers"), list):
        return "tasder"
    if isinstance(data.get("layers"), list):
        return "compile"
    raise InputError("not a tasdc report (no 'layers', 'probes' or 'schema': tasdc-simulate/1)")


def _compile_layers(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    if kind == "compile":
        return list(data["layers"])
    if kind == "tasder":
        return list((data.get("report") or {}).get("layers", []))
    return []


def _simulation(data: dict[str, Any], kind: str) -> dict[str, Any] | None:
    if kind == "simulate":
        return data
    sim = data.get("simulation")
    return sim if isinstance(sim, dict) else None


def _cost_rows(data: dict[str, Any], kind: str) -> tuple[str, list[tuple[str, dict[str, float], dict[str, float]]]]:
    """(target, [(layer, tasd cost, dense cost)]) with latency_cycles, energy_j, edp."""
    keys = ("latency_cycles", "energy_j", "edp")
    if kind == "tasder":
        rows = [(l["layer"], l.get("cost", {}), l.get("dense_cost", {})) for l in data["layers"]]
        return str(data.get("target", "")), [(n, {k: float(c.get(k, 0)) for k in keys},
                                              {k: float(d.get(k, 0)) for k in keys}) for n, c, d in rows]
    sim = _simulation(data, kind)
    if not sim or not isinstance(sim.get("target"), dict):
        return "", []
    base = {l["name"]: l for l in (sim.get("baseline") or {}).get("layers", [])}
    rows = []
    for layer in sim["target"].get("layers", []):
        dense = base.get(layer["name"])
        if dense is None:
            continue
        rows.append((layer["name"], {k: float(layer.get(k, 0)) for k in keys}, {k: float(dense.get(k, 0)) for k in keys}))
    target = sim["target"].get("target", "")
    baseline = (sim.get("baseline") or {}).get("target", "dense")
    return f"{target} (dense baseline: {baseline})", rows


# -- plots ----------------------------------------------------------------
def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _cost_bars(rows: list[tuple[str, dict[str, float], dict[str, float]]]) -> str:
    plt = _pyplot()
    names = [r[0] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.9 + 0.32 * len(rows)), sharey=True)
    for ax, (key, label, scale) in zip(axes, (("latency_cycles", "cycles", 1.0), ("energy_j", "energy (µJ)", 1e6),
                                              ("edp", "EDP (µJ·µs)", 1e12))):
        ys = range(len(rows))
        ax.barh([y + 0.2 for y in ys], [r[2][key] * scale for r in rows], height=0.4, color=DENSE_COLOR, label="dense")
        ax.barh([y - 0.2 for y in ys], [r[1][key] * scale for r in rows], height=0.4, color=TASD_COLOR, label="TASD")
        ax.set_title(label)
        ax.set_yticks(list(ys), names)
        ax.invert_yaxis()
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    axes[0].legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return _svg(fig)


def _error_bars(layers: list[tuple[str, str, float]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 0.9 + 0.3 * len(layers)))
    ys = range(len(layers))
    ax.barh(list(ys), [e for *_, e in layers], color=TASD_COLOR, height=0.6)
    ax.set_yticks(list(ys), [f"{n}  [{s}]" for n, s, _ in layers])
    ax.invert_yaxis()
    ax.set_xlabel("layer error (the metric the selection used; relative Frobenius error of the weight otherwise)")
    fig.tight_layout()
    return _svg(fig)


def _tasder_path(data: dict[str, Any]) -> str | None:
    probes = [p for p in data.get("probes", []) if p.get("quality") and p.get("cost")]
    if not probes:
        return None
    objective = str(data.get("objective", "edp"))
    key = {"edp": "edp", "latency": "latency_cycles", "energy": "energy_j"}.get(objective, "edp")
    dense = float((data.get("totals") or {}).get("dense", {}).get(key, 0.0)) or None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    datasets = sorted({d for p in probes for d in p["quality"]})
    markers = {"calibration": "o", "eval": "s"}
    colors = {"calibration": TASD_COLOR, "eval": "#2ca02c"}
    chosen_budget = float(data.get("error_used", -1.0))
    for dataset in datasets:
        pts = sorted(((p["cost"][key] / dense if dense else p["cost"][key], p["quality"][dataset], p)
                      for p in probes if dataset in p["quality"]), key=lambda t: (t[0], t[1]))
        ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], marker=markers.get(dataset, "^"), color=colors.get(dataset, "#9467bd"),
                linestyle="-", alpha=0.8, label=f"measured on {dataset}")
        for x, y, p in pts:
            ax.annotate(p["level"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="#52606d")
    bound = float(data.get("quality_bound", 0.0))
    ax.axhline(bound, color=CHOSEN_COLOR, linestyle="--", linewidth=1, label=f"bound {bound:g}")
    chosen = [p for p in probes if p.get("passed") and math.isclose(float(p["budget"]), chosen_budget, rel_tol=1e-9,
                                                                    abs_tol=1e-15)]
    if chosen:
        p = chosen[-1]
        x = p["cost"][key] / dense if dense else p["cost"][key]
        ax.scatter([x] * len(p["quality"]), list(p["quality"].values()), s=140, facecolors="none",
                   edgecolors=CHOSEN_COLOR, linewidths=2, zorder=5, label="chosen")
    ax.set_xlabel(f"model {objective}" + (" / dense" if dense else ""))
    ax.set_ylabel(str(data.get("quality_metric", "quality")))
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _svg(fig)


def _probe_rows(data: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """One row per search probe: position, predicted quality (budget rule), measured quality per set, verdict."""
    probes = [p for p in data.get("probes", []) if isinstance(p, dict)]
    if not probes:
        return None
    datasets = sorted({d for p in probes for d in (p.get("quality") or {})})
    header = ["position", "moves", "predicted", *(f"measured ({d})" for d in datasets), "bound", "run", "demoted moves"]
    rows = []
    for p in probes:
        predicted = p.get("predicted")
        quality = p.get("quality") or {}
        verdict = "" if p.get("passed") is None else ("met" if p["passed"] else "missed")
        rows.append([p.get("level", ""), p.get("steps", ""), "-" if predicted is None else float(predicted),
                     *(float(quality[d]) if d in quality else "-" for d in datasets), verdict,
                     "measured" if p.get("measured") else "cached", " ".join(p.get("banned") or []) or "-"])
    return header, rows


def _histograms(layers: list[dict[str, Any]]) -> str | None:
    rows = [l for l in layers if l.get("hist_m4") or l.get("hist_m8")]
    if not rows:
        return None
    plt = _pyplot()
    cols = min(4, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 2.3 * nrows), squeeze=False)
    for ax, layer in zip(axes.flat, rows):
        for key, m, color, shift in (("hist_m4", 4, TASD_COLOR, -0.2), ("hist_m8", 8, "#ff7f0e", 0.2)):
            hist = layer.get(key) or []
            total = sum(hist) or 1
            ax.bar([i / m + shift / m for i in range(len(hist))], [h / total for h in hist], width=0.35 / m,
                   color=color, label=f"M={m}")
        ax.set_title(f"{layer['layer']} (density {float(layer.get('density', float('nan'))):.2f})", fontsize=8)
        ax.set_xlabel("non-zeros per block / M", fontsize=7)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("fraction of blocks", fontsize=7)
    axes.flat[0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return _svg(fig)


# -- the page -------------------------------------------------------------
def _table(header: list[str], rows: list[list[Any]], left: set[int]) -> str:
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i in left else ""
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _series_rows(data: dict[str, Any], kind: str) -> tuple[list[str], list[list[Any]], list[tuple[str, str, float]]]:
    if kind == "tasder":
        rows = [[l["layer"], "x".join(map(str, l.get("gemm", [])[1:])), l["chosen"], l["error"], l["rel_error"],
                 "yes" if l.get("lossless") else "no", l.get("why", "")] for l in data["layers"]]
        bars = [(l["layer"], l["chosen"], float(l["error"])) for l in data["layers"]]
        return ["layer", "GEMM M×K×N", "series", "error", "rel. error", "lossless", "why"], rows, bars
    layers = _compile_layers(data, kind)
    if not layers and kind == "simulate":
        sim = data["target"]["layers"]
        rows = [[l["name"], "x".join(map(str, l.get("gemm", [])[1:])), l.get("series", ""), l.get("executed", "")]
                for l in sim]
        return ["layer", "GEMM M×K×N", "series", "executed"], rows, []
    rows, bars = [], []
    for l in layers:
        if l.get("skipped"):
            rows.append([l["layer"], "-", "dense", "-", "-", "skipped: " + str(l["skipped"])])
            continue
        series = l.get("config", "dense")
        rows.append([l["layer"], "x".join(map(str, l.get("gemm", [])[1:])), series, float(l.get("rel_error", 0.0)),
                     float(l.get("l1_dropped", 0.0)), "yes" if l.get("lossless", True) else "no"])
        bars.append((l["layer"], series, float(l.get("rel_error", 0.0))))
    return ["layer", "GEMM M×K×N", "series", "rel. error", "L1 dropped", "lossless"], rows, bars


def render_html(data: dict[str, Any], title: str | None = None) -> str:
    """The report ``data`` (parsed tasdc JSON) as one self-contained HTML page."""
    kind = report_kind(data)
    source = str(data.get("source", ""))
    title = title or f"tasdc report — {source or kind}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    meta = [f"kind: {kind}"]
    if kind == "tasder":
        meta += [f"target {data.get('target')}", f"objective {data.get('objective')}",
                 f"quality ≥ {data.get('quality_bound')} ({data.get('quality_metric')})",
                 f"bound {'met' if data.get('meets_bound') else 'missed' if data.get('meets_bound') is False else 'not measured'}"]
    elif data.get("config"):
        meta.append(f"series {data.get('config')}")
    parts.append(f'<p class="meta">{html.escape(" · ".join(meta))}</p>')

    target, costs = _cost_rows(data, kind)
    parts.append("<h2>Cost per layer: dense vs TASD</h2>")
    if costs:
        totals = {k: (sum(c[k] for _, c, _ in costs), sum(d[k] for _, _, d in costs)) for k in ("latency_cycles", "energy_j", "edp")}
        kpis = "".join(f'<span class="kpi"><b>{(t / d - 1 if d else 0):+.1%}</b>{label}, TASD vs dense</span>'
                       for (label, (t, d)) in zip(("cycles", "energy", "EDP"), totals.values()))
        parts.append(f'<p class="meta">on {html.escape(target)}; model totals over these layers (negative: TASD saves)</p>')
        parts.append(f"<div>{kpis}</div>")
        parts.append(f'<div class="figure">{_cost_bars(costs)}</div>')
    else:
        parts.append('<p class="note">No target costs in this report: compile with --target (or use simulate / '
                     "--quality) to see cycles, energy and EDP.</p>")

    header, rows, bars = _series_rows(data, kind)
    parts.append("<h2>Chosen series per layer and its error</h2>")
    if bars:
        parts.append(f'<div class="figure">{_error_bars(bars)}</div>')
    parts.append(_table(header, rows, left={0, 1, 2, len(header) - 1} if kind == "tasder" else {0, 1, 2}))

    if kind == "tasder":
        parts.append("<h2>TASDER search path</h2>")
        path = _tasder_path(data)
        if path:
            parts.append(f'<div class="figure">{path}</div>')
            parts.append('<p class="note">Each point is a budget level of the global greedy path, compiled and run on '
                         "the CPU runtime; the dashed line is the quality bound; the circled point is the chosen "
                         "selection.</p>")
        else:
            parts.append('<p class="note">Quality was not measured (no calibration or evaluation inputs): the '
                         "selection used the predicted budget only.</p>")
        probes = _probe_rows(data)
        if probes:
            header, rows = probes
            parts.append("<h3>Probes: predicted vs measured quality</h3>")
            parts.append(_table(header, rows, left={0, len(header) - 1}))

    parts.append("<h2>Block non-zero histograms of the weights</h2>")
    hist = _histograms(_compile_layers(data, kind))
    if hist:
        parts.append('<p class="note">Fraction of aligned blocks along the reduction axis holding i non-zeros '
                     "(M = 4 and M = 8); a layer is lossless under N:M when no block holds more than N.</p>")
        parts.append(f'<div class="figure">{hist}</div>')
    else:
        parts.append('<p class="note">No sparsity analysis in this report (a simulate JSON carries none: use '
                     "tasdc simulate --html or tasdc compile --json).</p>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def render_file(path: str, text: str) -> str:
    """``render_html`` of JSON ``text`` read from ``path``; bad JSON is an :class:`InputError`."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    try:
        return render_html(data)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: malformed tasdc report ({type(error).__name__}: {error})") from None
