"""End-to-end latency: compiled models on the CPU runtime vs torch eager.

For each example model (built by ``examples/build_models.py`` if missing) and
each config (dense, 2:4, 2:4+1:4) it reports in one table:

* first-run cost: TASD compile time (import + passes) and JIT time (lowering,
  LLVM, Numba kernel packing/compilation);
* the median latency over ``--repeat`` runs of the compiled model, of torch
  eager (dense weights, ``torch.no_grad``, same input, same thread count) and
  their ratio (>1 means tasdc is faster).

Run: ``.venv/bin/python benchmarks/bench_end_to_end.py [--repeat 30]``.
"""

from __future__ import annotations

import os

# torch and Numba each run an OpenMP pool; with the default active wait
# policy the idle pool spins and starves the other one on a 2-core machine
# (measured: 2:4 MLP 24 ms instead of 0.16 ms right after a torch run).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples" / "out"


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--models", default="mlp,cnn,transformer")
    parser.add_argument("--configs", default="dense,2:4,2:4+1:4")
    args = parser.parse_args()
    from tasdc.compiler import CompileOptions, compile_model
    import numba

    if not (OUT / "transformer.pt2").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "build_models.py"), "--out", str(OUT)], check=True)
    print(f"torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, repeat {args.repeat}, load {os.getloadavg()[0]:.2f}")
    header = f"{'model':<12} {'config':<9} {'compile s':>9} {'JIT s':>7} {'tasdc ms':>9} {'torch ms':>9} {'torch/tasdc':>11} {'max |diff|':>10}"
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        x = np.load(OUT / f"{name}-eval.npz")["x"][:16]
        for config in args.configs.split(","):
            start = time.perf_counter()
            result = compile_model(OUT / f"{name}.pt2", options=CompileOptions(config=config))
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            exe = result.cpu()
            jit_s = time.perf_counter() - start
            module = result.model.program.module()
            xt = torch.from_numpy(x)
            with torch.no_grad():
                t_torch = median_seconds(lambda: module(xt), args.repeat)
                expected = module(xt).numpy()
            t_tasdc = median_seconds(lambda: exe(x), args.repeat)
            diff = float(np.abs(exe(x) - expected).max())
            print(f"{name:<12} {config:<9} {compile_s:>9.2f} {jit_s:>7.2f} {t_tasdc * 1e3:>9.3f} {t_torch * 1e3:>9.3f} "
                  f"{t_torch / t_tasdc:>11.2f} {diff:>10.2e}")
    print("max |diff| is against torch eager with the original dense weights (non-zero for lossy configs by design).")


if __name__ == "__main__":
    main()
