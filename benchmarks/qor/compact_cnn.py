"""TASDER with measured quality on a compact ImageNet-style CNN: how long the whole search takes.

Model: torchvision's MobileNetV2 at width 1.25 (``tasdc.zoo.mobilenetv2_imagenet``:
5.05 M parameters, 224 x 224 RGB, 1000 classes, batch 8, depthwise-separable
inverted residuals), torchvision's initialisation. No pretrained checkpoint
can be downloaded here and no PyPI package ships one, so the weights are
random; the BatchNorm statistics are then estimated on the images (a
forward pass in training mode over them), so every layer sees activations of
a trained network's scale instead of a random network's drifting ones.

Images: 64 calibration and 64 evaluation crops of 224 x 224 (random scale,
position and mirror, ImageNet mean/std normalisation) from the two
photographs scikit-learn ships (``load_sample_images``: china.jpg,
flower.jpg); calibration and evaluation crops come from different seeds.
There are no labels, so the quality is the top-1 agreement with the dense
model (the classifier-logits default); the bound 0.99 on 64 images means
no prediction may change.

What is timed: ``tasdc compile MODEL.pt2 --target T --quality 0.99 --calib
C --eval E`` (the CLI's default search, bisection with demotion), wall clock
of the whole process (import, calibration, dense reference, every probe),
its CPU time (user + system, all threads: what the run costs when other jobs
share the cores), plus the split the report prints (``time: ...``; the
calibration run, which also gives the calibration set's dense reference, is
in ``select+decompose``, ``reference`` is the evaluation set's dense run). The compile cache of the CPU
runtime is emptied before each run (``TASDC_CACHE_DIR`` = a fresh folder)
unless ``--warm``.

Run: ``nice -n 10 .venv/bin/python benchmarks/qor/compact_cnn.py [--targets vegeta,ttc-m8]``.
The model and the image files are built once into ``benchmarks/qor/models/compact/``
(git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "models" / "compact"
BATCH = 8
SIZE = 224
N_IMAGES = 64
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def crops(n: int, seed: int) -> np.ndarray:
    """``n`` normalised 3 x 224 x 224 crops of scikit-learn's two sample photographs."""
    import torch
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
              for im in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[1:]
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = photo[:, top:top + side, left:left + side][None]
        patch = torch.nn.functional.interpolate(patch, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        out[i] = ((patch.numpy().transpose(1, 2, 0) - MEAN) / STD).transpose(2, 0, 1)
    return out


def build(out: Path = OUT) -> dict[str, Path]:
    """The exported model and its calibration / evaluation files (built once)."""
    files = {"model": out / "mobilenetv2-w1.25.pt2", "calib": out / "calib.npz", "eval": out / "eval.npz"}
    if all(p.is_file() for p in files.values()):
        return files
    import torch

    from tasdc.zoo import mobilenetv2_imagenet

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = mobilenetv2_imagenet(1.25)
    calib, evaluation = crops(N_IMAGES, 1), crops(N_IMAGES, 2)
    bn = crops(4 * N_IMAGES, 3)
    model.train()
    with torch.no_grad():                 # BatchNorm statistics of the images (cumulative average)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        for i in range(0, len(bn), 32):
            model(torch.from_numpy(bn[i:i + 32]))
    model.eval()
    example = torch.from_numpy(calib[:BATCH])
    torch.export.save(torch.export.export(model, (example,)), files["model"])
    np.savez(files["calib"], x=calib)
    np.savez(files["eval"], x=evaluation)
    return files


def run(files: dict[str, Path], target: str, warm: bool, extra: list[str]) -> dict[str, object]:
    """One timed ``tasdc compile`` with TASDER; returns the figures of its --json report."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TASDC_NO_PROGRESS="1")
        if not warm:
            env["TASDC_CACHE_DIR"] = str(Path(tmp) / "cache")
        report = Path(tmp) / "report.json"
        command = [str(ROOT / ".venv" / "bin" / "tasdc"), "compile", str(files["model"]), "--target", target,
                   "--quality", "0.99", "--calib", str(files["calib"]), "--eval", str(files["eval"]),
                   "--json", str(report), *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"compact_cnn: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
        data = json.loads(report.read_text())
    tasder = data.get("tasder", data)
    probes = tasder.get("probes", [])
    return {
        "target": target,
        "wall_s": seconds,
        "cpu_s": cpu,           # user + system time of the tasdc process (all its threads)
        "load_end": os.getloadavg()[0],
        # wall-clock split: printed ("time: import 12.3s, ..."), never written into the --json report
        "timings": {k: float(v.rstrip("s")) for k, v in (item.rsplit(" ", 1) for line in done.stdout.splitlines()
                                                          if line.startswith("time: ")
                                                          for item in line[len("time: "):].split(", "))},
        "probes": len(probes),
        "measured_probes": sum(1 for p in probes if p.get("measured")),
        "edp_reduction": tasder.get("reduction", {}).get("edp"),
        "quality": {k: v.get("value") for k, v in tasder.get("measured", {}).items()},
        "notes": tasder.get("notes", []),
        "command": " ".join(["tasdc", *command[1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="vegeta,ttc-m8")
    parser.add_argument("--warm", action="store_true", help="keep the user's compile cache (default: an empty one)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("extra", nargs="*", help="more tasdc compile arguments (after --)")
    args = parser.parse_args(argv)
    files = build()
    load = os.getloadavg()[0]
    rows = []
    print(f"{'target':<8} {'wall s':>7} {'cpu s':>6} {'probes':>6} {'EDP':>7}  quality (top-1 agreement)   split (s)")
    for target in [t for t in args.targets.split(",") if t]:
        row = run(files, target, args.warm, args.extra)
        rows.append(row)
        split = ", ".join(f"{k} {v:.1f}" for k, v in row["timings"].items())
        quality = ", ".join(f"{k} {v:.4f}" for k, v in row["quality"].items())
        edp = row["edp_reduction"]
        print(f"{target:<8} {row['wall_s']:>7.1f} {row['cpu_s']:>6.1f} {row['measured_probes']:>6} "
              f"{'n/a' if edp is None else format(-edp, '+.1%'):>7}  {quality:<28} {split}", flush=True)
    print(f"load average at start {load:.2f}, at the end {os.getloadavg()[0]:.2f}, on {os.cpu_count()} cores "
          "(cpu s: user + system time of the tasdc process; with other jobs on the cores wall time grows, it does not)")
    if args.out:
        args.out.write_text(json.dumps({"load": load, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
