"""TASD-A end to end: CPU latency, accuracy and simulated EDP with activation series.

    .venv/bin/python benchmarks/bench_tasd_a.py [--model examples/out/cnn.pt2] [--repeat 20]
    .venv/bin/python benchmarks/bench_tasd_a.py --resnet 64 [--configs dense,4:8]   # ResNet-50-shaped, 64x64
    .venv/bin/python benchmarks/bench_tasd_a.py --zoo resnet18 [--configs dense,2:8]  # a model of tasdc/zoo.py

``--zoo NAME`` exports that zoo model (random weights, eval mode) and runs it
on 8 random samples shaped like its example input; like ``--resnet`` it has
no accuracy, only agreement with the dense build.

``--resnet S`` uses the model zoo's ResNet-50-shaped network
(``benchmarks/qor/run_qor.py``; random weights, BatchNorm in eval mode) at
S x S, batch 2, on random inputs: there is no accuracy, only agreement with
the dense build.

For the model (a ``.pt2`` with ``<stem>-eval.npz`` beside it holding ``x``
and labels ``y``) and each activation series (``dense`` first: the
competitor, same run) it reports:

* CPU runtime: median latency of one batch over ``--repeat`` runs, top-1
  accuracy on the eval set and top-1 agreement with the dense build;
* simulated on ``--target`` (default ``ttc-m8``): latency, energy and EDP of
  the whole model and the EDP ratio dense/TASD-A (> 1: TASD-A is better),
  from the same compiled module the CPU ran.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TASDC_NO_PROGRESS", "1")

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from tasdc.compiler import CompileOptions, compile_model
from tasdc.runtime.accel.simulator import simulate_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("examples/out/cnn.pt2"))
    parser.add_argument("--configs", default="dense,2:4,1:4,2:8,1:8", help="activation series, comma-separated")
    parser.add_argument("--target", default="ttc-m8")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--resnet", type=int, default=0, help="ResNet-50-shaped model at this input size instead of --model")
    parser.add_argument("--zoo", default="", help="a model of tasdc/zoo.py (single input) instead of --model")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.resnet:
        import sys
        import tempfile

        import torch

        sys.path.insert(0, str(Path(__file__).parent / "qor"))
        from run_qor import ResNet50Shaped

        torch.manual_seed(0)
        xs = np.random.default_rng(0).standard_normal((8, 3, args.resnet, args.resnet)).astype(np.float32)
        labels = None
        args.model = Path(tempfile.mkdtemp()) / "resnet50.pt2"
        torch.export.save(torch.export.export(ResNet50Shaped().eval(), (torch.from_numpy(xs[:2]),)), str(args.model))
    elif args.zoo:
        import tempfile

        import torch

        from tasdc import zoo

        model = zoo.build(args.zoo)
        if len(model.inputs) != 1:
            parser.error(f"--zoo: {args.zoo} takes {len(model.inputs)} inputs; this benchmark feeds one")
        (example,) = model.inputs.values()
        shape = (8,) + tuple(example.shape[1:])
        xs = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        labels = None
        args.model = Path(tempfile.mkdtemp()) / f"{args.zoo}.pt2"
        torch.export.save(model.export(), str(args.model))
    else:
        data = np.load(args.model.with_name(f"{args.model.stem}-eval.npz"))
        xs, labels = data["x"].astype(np.float32), data["y"]
    print(f"{args.model}  target {args.target}  load average {os.getloadavg()}")
    header = (f"{'act-config':<10} {'ms/batch':>9} {'x dense':>8} {'top-1':>7} {'agree':>7} "
              f"{'sim cycles':>11} {'sim nJ':>10} {'sim EDP J*s':>12} {'EDP dense/this':>15}")
    print(header)
    print("-" * len(header))
    dense_pred: np.ndarray | None = None
    dense_ms = dense_edp = 0.0
    for config in args.configs.split(","):
        result = compile_model(args.model, options=CompileOptions(act_config=config))
        run = result.cpu()
        batch = run.arg_types[0][0][0]
        usable = len(xs) // batch * batch
        preds = np.concatenate([run(xs[i:i + batch]).argmax(axis=1) for i in range(0, usable, batch)])
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            run(xs[:batch])
            times.append(time.perf_counter() - start)
        ms = statistics.median(times) * 1e3
        report = simulate_module(result.module, args.target, baseline=None)
        totals = report.run.to_dict()["totals"]
        if dense_pred is None:
            dense_pred, dense_ms, dense_edp = preds, ms, totals["edp"]
        print(f"{config:<10} {ms:>9.3f} {dense_ms / ms:>8.2f} {np.mean(preds == labels[:usable]) if labels is not None else float('nan'):>7.3f} "
              f"{np.mean(preds == dense_pred):>7.3f} {totals['latency_cycles']:>11,.0f} {totals['energy_j'] * 1e9:>10.1f} "
              f"{totals['edp']:>12.4g} {dense_edp / totals['edp']:>15.2f}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
