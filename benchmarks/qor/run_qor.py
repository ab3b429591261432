"""QoR of TASDER: per-layer series chosen by tasdc under a 99 % quality bound.

Model zoo (built offline, nothing downloaded):

(a) the example CNN (``examples/build_models.py``'s ``SmallCNN``: two 3x3
    conv-BN-ReLU blocks and a linear head) trained here on scikit-learn's
    ``load_digits``, in four variants: dense, and magnitude-pruned to 50 %,
    70 %, 90 % (unstructured, per layer, every conv / linear weight) then
    fine-tuned briefly with the mask kept (one magnitude threshold over all
    conv / linear weights, so the tiny first conv keeps its large weights);
(b) the example small transformer encoder classifier (``TinyTransformer``),
    trained here on digits, dense;
(c) a ResNet-50-shaped CNN (bottleneck blocks 3-4-6-3, 224x224 input,
    batch 1) and a BERT-base-shaped encoder (12 layers, d=768, 12 heads,
    FFN 3072, 128 tokens) with random weights magnitude-pruned to 80 % per
    layer:
    *cost only* — their outputs mean nothing, so no quality is measured and
    their selection rests on the pass's predicted budget over weight-space
    proxies (relative Frobenius error).

For every model x target (stc, vegeta, ttc-m8) x objective (edp, latency)
at quality 0.99 the benchmark runs :class:`tasdc.tasder.TasderSession`
(``tasd-select`` + ``tasd-decompose-weights``, quality measured by running
the compiled model on the CPU runtime; models (a)/(b) use 352 calibration
inputs from the training split and 352 evaluation inputs from the test
split) and reports: MACs issued on the target vs dense (computation
reduction), EDP / latency / energy reduction vs the dense model on the same
target (the cost model, all contractions of the model including the
activation x activation ones), measured quality (top-1 agreement with the
dense model on the evaluation inputs, and accuracy retained), and the time
of the search (selection, decomposition, JIT and measurement; the import is
listed once per model).

Run: ``.venv/bin/python benchmarks/qor/run_qor.py`` (a few minutes on 2
cores). Prints one table and writes ``benchmarks/qor/results.json``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import sys
import tempfile
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

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("stc", "vegeta", "ttc-m8")
OBJECTIVES = ("edp", "latency")
QUALITY = 0.99
PAPER = {"edp_avg": 0.74, "edp_best": 0.83, "compute_at_99": 0.40}


def load_examples() -> Any:
    spec = importlib.util.spec_from_file_location("tasdc_examples_build_models", ROOT / "examples" / "build_models.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# pruning
# --------------------------------------------------------------------------


def prunable(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_prune(model: nn.Module, sparsity: float, *, global_threshold: bool = False) -> list[torch.Tensor]:
    """Zero the smallest-magnitude ``sparsity`` fraction of the conv / linear
    weights — per layer, or with one threshold over all of them
    (``global_threshold``); return the masks."""
    masks = []
    weights = prunable(model)
    with torch.no_grad():
        if global_threshold:
            everything = torch.cat([w.abs().flatten() for w in weights])
            k = int(round(sparsity * everything.numel()))
            threshold = everything.kthvalue(k).values if k else torch.tensor(-1.0)
        for w in weights:
            if not global_threshold:
                k = int(round(sparsity * w.numel()))
                threshold = w.abs().flatten().kthvalue(k).values if k else torch.tensor(-1.0)
            mask = (w.abs() > threshold).to(w.dtype)
            w.mul_(mask)
            masks.append(mask)
    return masks


def finetune(model: nn.Module, masks: list[torch.Tensor], x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    torch.manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    weights = prunable(model)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            with torch.no_grad():
                for w, mask in zip(weights, masks):
                    w.mul_(mask)
    model.eval()


def sparsity_of(model: nn.Module) -> float:
    weights = prunable(model)
    return 1.0 - sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)


# --------------------------------------------------------------------------
# shaped models with random weights (cost only)
# --------------------------------------------------------------------------


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNet50Shaped(nn.Module):
    """ResNet-50's layer shapes (torchvision's v1.5: stride on the 3x3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks: list[nn.Module] = []
        cin = 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(count):
                blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


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


def run_model(name: str, family: str, session: Any, rows: list[dict[str, Any]], info: dict[str, Any],
              max_probes: int) -> None:
    for target in TARGETS:
        for objective in OBJECTIVES:
            start = time.perf_counter()
            result = session.compile(target, objective, QUALITY, max_probes=max_probes)
            seconds = time.perf_counter() - start
            ev = result.measured.get("eval")
            row = {
                "model": name,
                "family": family,
                "target": target,
                "objective": objective,
                "series": summarize(result),
                "mac_reduction": result.reduction["macs"],
                "edp_reduction": result.reduction["edp"],
                "latency_reduction": result.reduction["latency_cycles"],
                "energy_reduction": result.reduction["energy_j"],
                "quality": ev.value if ev else None,
                "quality_metric": result.quality_metric,
                "accuracy": ev.accuracy if ev else None,
                "dense_accuracy": ev.dense_accuracy if ev else None,
                "calibration_quality": result.measured["calibration"].value if "calibration" in result.measured else None,
                "meets_bound": result.meets_bound,
                "search_s": seconds,
                "import_s": session.timings["import"],
                "backed_off": result.backed_off,
                "relaxed": result.relaxed,
                "error_used": result.error_used,
                "probes": [p.to_json() for p in result.probes],
                "layers": {layer.layer: layer.chosen for layer in result.layers},
                **info,
            }
            rows.append(row)
            print(f"  {name:<14} {target:<7} {objective:<7} {row['series']:<40} EDP {-row['edp_reduction']:+.1%} "
                  f"({seconds:.1f}s)", file=sys.stderr, flush=True)


def why_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Plain reasons for the gap to the paper, with this run's numbers."""
    measured = [r for r in rows if r["quality"] is not None]
    cost_only = [r for r in rows if r["quality"] is None]
    out = []
    if measured:
        macs = float(np.mean([r["mac_reduction"] for r in measured]))
        edp = float(np.mean([r["edp_reduction"] for r in measured]))
        lat = float(np.mean([r["latency_reduction"] for r in measured]))
        out.append(
            f"why below (1): the measured models are tiny (8x8 digits, K <= 512, 16-sample batches). Their MACs "
            f"fall {-macs:+.1%} on average but latency only {-lat:+.1%} and EDP {-edp:+.1%}: on a 32x32 array "
            "each fold pays a fixed fill/drain (62 cycles) and the DRAM/GLB traffic of B and C, which no series "
            "shrinks; the paper's workloads are large GEMMs where the A stream dominates.")
        out.append(
            "why below (2): 99% top-1 agreement on a 10-class digit classifier is measured on 352 inputs, so at "
            "most 3 flipped predictions are allowed. The first conv (K = 9, padded to 12) gains almost nothing "
            "from any series (fill/drain dominates) and stays dense. Magnitude-pruned weights keep only large "
            "values, so a lossy series costs about as much accuracy as on a dense layer: pruning pays off only "
            "where blocks are sparse enough for a (near-)lossless sparser pattern (e.g. 2:8 at 90%).")
    stc = [r["edp_reduction"] for r in rows if r["target"] == "stc"]
    if stc:
        out.append(f"why below (3): STC runs only 2:4 at 2x (best EDP here {-max(stc):+.1%}); a lossy 2:4 is "
                   "the only saving and 2:4+2:4 (lossless) costs more than dense. ttc-m8's 1:8/2:8/4:8 at "
                   "8x/4x/2x give the largest cuts.")
    if cost_only:
        dense_share = []
        for r in cost_only:
            layers = list(r["layers"].values())
            dense_share.append(sum(1 for c in layers if c == "dense") / max(len(layers), 1))
        macs = float(np.mean([r["mac_reduction"] for r in cost_only]))
        predicted = 1 / QUALITY ** 2 - 1
        ratios = [r["error_used"] / predicted for r in measured if r["error_used"] > 0]
        out.append(
            f"why below (4): the cost-only ResNet-50/BERT-shaped rows cannot be measured, so they keep the "
            f"pass's predicted budget (sum of e^2 over 54-72 layers <= 1/q^2 - 1 = {1 / QUALITY ** 2 - 1:.4f}, "
            f"i.e. ~1.7% relative error per layer); {np.mean(dense_share):.0%} of their layers stay dense "
            f"on average and their MACs fall {-macs:+.1%}. The paper picks these series by measured accuracy"
            + (f", which on the measured models here allowed up to {max(ratios):.0f}x the predicted error "
               f"(median {np.median(ratios):.1f}x)." if ratios else "."))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="training epochs of the digits models")
    parser.add_argument("--finetune", type=int, default=3, help="fine-tuning epochs after pruning")
    parser.add_argument("--max-probes", type=int, default=6, help="measured configurations per search at most")
    parser.add_argument("--skip-shaped", action="store_true", help="leave out the ResNet-50 / BERT-base-shaped models")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    args = parser.parse_args(argv)

    from tasdc.tasder import TasderSession

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ex = load_examples()
    xtr, ytr, xte, yte = ex.digits()
    n_cal = (len(xtr) // 16 // 4) * 16
    n_eval = (len(xte) // 16) * 16
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tasdc-qor-") as tmp:
        calib, evaluation = Path(tmp) / "calib.npz", Path(tmp) / "eval.npz"
        np.savez(calib, x=xtr[:n_cal], y=ytr[:n_cal])
        np.savez(evaluation, x=xte[:n_eval], y=yte[:n_eval])
        example = torch.from_numpy(xte[:16])

        # (a) the CNN, dense and pruned
        torch.manual_seed(0)
        cnn = ex.build("cnn")
        t = time.perf_counter()
        ex.train(cnn, xtr, ytr, args.epochs)
        zoo = [("cnn-dense", cnn, 0.0)]
        for sparsity in (0.5, 0.7, 0.9):
            pruned = copy.deepcopy(cnn)
            masks = magnitude_prune(pruned, sparsity, global_threshold=True)
            finetune(pruned, masks, xtr, ytr, args.finetune)
            zoo.append((f"cnn-pruned{int(sparsity * 100)}", pruned, sparsity))
        # (b) the transformer
        torch.manual_seed(0)
        transformer = ex.build("transformer")
        ex.train(transformer, xtr, ytr, args.epochs)
        zoo.append(("transformer", transformer, 0.0))
        train_s = time.perf_counter() - t
        for name, model, sparsity in zoo:
            acc = ex.accuracy(model, xte[:n_eval], yte[:n_eval])
            info = {"test_accuracy_torch": acc, "weight_sparsity": sparsity_of(model)}
            models[name] = info
            print(f"{name}: test accuracy {acc:.4f}, weight sparsity {info['weight_sparsity']:.2f}", file=sys.stderr, flush=True)
            session = TasderSession(model, (example,), calib=calib, eval=evaluation, progress=False)
            run_model(name, "a" if name.startswith("cnn") else "b", session, rows, info, args.max_probes)
            del session

        # (c) cost only
        if not args.skip_shaped:
            for name, build, example_in in (
                ("resnet50-p80", ResNet50Shaped, torch.randn(1, 3, 224, 224)),
                ("bert-base-p80", BertBaseShaped, torch.randn(128, 768)),
            ):
                torch.manual_seed(0)
                model = build().eval()
                magnitude_prune(model, 0.8)
                info = {"weight_sparsity": sparsity_of(model), "cost_only": True}
                models[name] = info
                print(f"{name}: importing ...", file=sys.stderr, flush=True)
                session = TasderSession(model, (example_in,), progress=False)
                print(f"{name}: imported in {session.timings['import']:.1f}s", file=sys.stderr, flush=True)
                run_model(name, "c", session, rows, info, args.max_probes)
                del session
    total_s = time.perf_counter() - begin

    # -- the table ----------------------------------------------------------
    header = (f"{'model':<15} {'target':<7} {'obj':<7} {'MACs':>7} {'EDP':>7} {'latency':>8} {'energy':>7} "
              f"{'quality':>8} {'acc/dense':>13} {'search':>7}  series chosen (layers)")
    print(header)
    print("-" * len(header))
    for r in rows:
        quality = f"{r['quality']:.4f}" if r["quality"] is not None else "n/a"
        acc = (f"{r['accuracy']:.3f}/{r['dense_accuracy']:.3f}" if r["accuracy"] is not None else "cost only")
        print(f"{r['model']:<15} {r['target']:<7} {r['objective']:<7} {-r['mac_reduction']:>+7.1%} "
              f"{-r['edp_reduction']:>+7.1%} {-r['latency_reduction']:>+8.1%} {-r['energy_reduction']:>+7.1%} "
              f"{quality:>8} {acc:>13} {r['search_s']:>6.1f}s  {r['series']}")
    print("-" * len(header))
    print("reductions vs the dense model on the same target (negative = lower); quality = top-1 agreement with the "
          "dense model on 352 held-out digits (CPU runtime); 'cost only' rows have random weights: no quality, "
          "selection on weight-space proxies.")

    # -- against the paper ------------------------------------------------------
    edp_rows = [r for r in rows if r["objective"] == "edp"]
    measured = [r for r in rows if r["quality"] is not None]
    sparse_edp = [r for r in edp_rows if r["model"].startswith("cnn-pruned")]
    avg_edp = float(np.mean([r["edp_reduction"] for r in edp_rows])) if edp_rows else 0.0
    best = max(edp_rows, key=lambda r: r["edp_reduction"]) if edp_rows else None
    avg_macs = float(np.mean([r["mac_reduction"] for r in measured])) if measured else 0.0
    avg_sparse = float(np.mean([r["edp_reduction"] for r in sparse_edp])) if sparse_edp else 0.0
    ttc_edp = [r["edp_reduction"] for r in edp_rows if r["target"] == "ttc-m8"]
    lines = [
        f"paper (arXiv 2403.07953): EDP -{PAPER['edp_avg']:.0%} average, -{PAPER['edp_best']:.0%} best; "
        f"~-{PAPER['compute_at_99']:.0%} computation at 99% quality.",
        f"tasdc: EDP {-avg_edp:+.1%} average over all {len(edp_rows)} EDP rows "
        f"({'above' if avg_edp > PAPER['edp_avg'] else 'below'} the paper's average), "
        f"{-avg_sparse:+.1%} over the pruned CNNs, {-float(np.mean(ttc_edp)) if ttc_edp else 0:+.1%} on ttc-m8; "
        f"best {-best['edp_reduction']:+.1%} ({best['model']} on {best['target']}; "
        f"{'above' if best['edp_reduction'] > PAPER['edp_best'] else 'below'} the paper's best)." if best else "",
        f"tasdc: computation (MACs issued) {-avg_macs:+.1%} on average over the {len(measured)} rows whose quality "
        f"was measured, all meeting 99% top-1 agreement "
        f"({'above' if avg_macs > PAPER['compute_at_99'] else 'below'} the paper's ~40%).",
        *why_lines(rows),
        f"total benchmark time {total_s:.0f}s (training {train_s:.0f}s).",
    ]
    for line in lines:
        if line:
            print(line)
    payload = {
        "quality_bound": QUALITY,
        "targets": TARGETS,
        "objectives": OBJECTIVES,
        "paper": PAPER,
        "models": models,
        "rows": rows,
        "summary": {"edp_reduction_avg": avg_edp, "edp_reduction_best": best["edp_reduction"] if best else None,
                    "mac_reduction_avg_measured": avg_macs, "edp_reduction_avg_pruned_cnn": avg_sparse},
        "total_s": total_s,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
