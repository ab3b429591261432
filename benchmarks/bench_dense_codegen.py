"""Dense contractions: naive loops, MLIR codegen and the library entries, against numpy.

Part 1 (GFLOP/s, medians): single contractions compiled through the CPU
runtime (``compile_for_cpu``) three ways — *before* =
``tasd-cpu-to-llvm{library=false vectorize=false}`` (``convert-linalg-to-loops``),
*codegen* = ``{library=false}`` (tiled and vectorized by
``tasd-cpu-vectorize-contractions``), *library* = the default
(``tasd-cpu-dense-to-library-calls``: OpenBLAS ``sgemm`` through a Numba
cfunc, timed with OpenBLAS pinned to one thread) — and ``numpy.matmul``
(OpenBLAS) in the same process, with all its threads and pinned to one
thread (threadpoolctl). The compiled code is single-threaded.
Shapes: a 1024³ matmul, BERT-base's FFN (128×768·768×3072) and every distinct
dense contraction of ``examples/out/transformer.pt2`` compiled dense.

Part 2 (end-to-end, medians): the transformer example compiled dense and
with 2:4, before/after, vs torch eager (``torch.no_grad``, all threads).

The machine is shared: the load average is printed before and after, each
number is a median of many runs (the slow naive runs get fewer).

Run: ``.venv/bin/python benchmarks/bench_dense_codegen.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples" / "out"

from tasdc.module import new_context, parse_module  # noqa: E402
from tasdc.passes.vectorize_contractions import contraction_sizes  # noqa: E402
from tasdc.runtime.cpu import executor  # noqa: E402


def median_seconds(fn: Callable[[], object], min_runs: int, budget: float) -> tuple[float, int]:
    """Median over at least ``min_runs`` runs (more while within ``budget`` seconds)."""
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget and len(times) < 200):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


#: The loop path, for the "before" column, and the code generator's path.
NAIVE_LOOPS = "tasd-cpu-to-llvm{library=false vectorize=false}"
CODEGEN = "tasd-cpu-to-llvm{library=false}"


def _t(shape: tuple[int, ...]) -> str:
    return f"tensor<{'x'.join(map(str, shape))}xf32>"


def contraction_module(sizes: tuple[int, ...]):
    *batch, m, n, k = sizes
    b = tuple(batch)
    op = "linalg.batch_matmul" if b else "linalg.matmul"
    a_t, b_t, c_t = _t(b + (m, k)), _t(b + (k, n)), _t(b + (m, n))
    text = f"""
func.func @main(%a: {a_t}, %b: {b_t}) -> {c_t} {{
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : {c_t}
  %i = linalg.fill ins(%z : f32) outs(%e : {c_t}) -> {c_t}
  %y = {op} ins(%a, %b : {a_t}, {b_t}) outs(%i : {c_t}) -> {c_t}
  return %y : {c_t}
}}"""
    return parse_module(text, new_context())


def ensure_models() -> None:
    if not (OUT / "transformer.pt2").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "build_models.py")], check=True)


def transformer_shapes() -> list[tuple[int, ...]]:
    from tasdc.compiler import CompileOptions, compile_model

    result = compile_model(OUT / "transformer.pt2", options=CompileOptions(config="dense"))
    found: list[tuple[int, ...]] = []

    def visit(op):  # noqa: ANN001
        sizes = contraction_sizes(op)
        if sizes is not None and sizes not in found:
            found.append(sizes)
        from torch_mlir import ir

        return ir.WalkResult.ADVANCE

    result.model.module.operation.walk(visit)
    return found


def describe(sizes: tuple[int, ...]) -> str:
    *batch, m, n, k = sizes
    text = f"{m}x{k}·{k}x{n}"
    return f"{batch[0]}×({text})" if batch else text


def bench_contractions(shapes: list[tuple[str, tuple[int, ...]]], quick: bool) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    # The CPU runtime's per-call cost (Python marshalling + invoke), measured
    # on a 1x1x1 matmul: small shapes are dominated by it, so the table also
    # gives the after-time net of it.
    tiny = executor.compile_for_cpu(contraction_module((1, 1, 1)))
    one = np.ones((1, 1), np.float32)
    overhead, _ = median_seconds(lambda: tiny(one, one), 50, 1.0)
    print(f"per-call overhead of CpuExecutable (1x1x1 matmul): {1e6 * overhead:.0f} µs")
    rows = []
    for label, sizes in shapes:
        *batch, m, n, k = sizes
        bsz = batch[0] if batch else 1
        flops = 2.0 * bsz * m * n * k
        rng = np.random.default_rng(0)
        a = rng.uniform(-1, 1, tuple(batch) + (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, tuple(batch) + (k, n)).astype(np.float32)
        ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
        scale = np.abs(ref).max() or 1.0
        after = executor.compile_for_cpu(contraction_module(sizes), lowering=CODEGEN)
        library = executor.compile_for_cpu(contraction_module(sizes))
        before = executor.compile_for_cpu(contraction_module(sizes), lowering=NAIVE_LOOPS)
        errs = [np.abs(f(a, b) - ref).max() / scale for f in (after, library, before)]
        naive_budget = 2.0 if quick else 8.0
        t_before, n_before = median_seconds(lambda: before(a, b), 3 if flops > 1e9 else 5, naive_budget)
        t_after, n_after = median_seconds(lambda: after(a, b), 10, 1.0 if quick else 3.0)
        t_np, _ = median_seconds(lambda: np.matmul(a, b), 10, 1.0 if quick else 3.0)
        if threadpool_limits is not None:
            with threadpool_limits(limits=1):
                t_np1, _ = median_seconds(lambda: np.matmul(a, b), 10, 1.0 if quick else 3.0)
                t_lib, _ = median_seconds(lambda: library(a, b), 10, 1.0 if quick else 3.0)
        else:
            t_np1 = t_lib = float("nan")
        g = lambda t: flops / t / 1e9  # noqa: E731
        rows.append((
            label, describe(sizes), g(t_before), g(t_after), g(t_lib), g(t_np), g(t_np1),
            t_np1 / t_after, t_np1 / t_lib, max(errs), n_before, n_after,
        ))
    header = (
        f"{'case':<18} {'shape':<26} {'before':>8} {'codegen':>8} {'library':>8} {'np(all)':>8} {'np(1t)':>8} "
        f"{'codegen/np1':>11} {'library/np1':>11} {'max rel err':>11} {'runs':>8}"
    )
    print("GFLOP/s (medians, per-call overhead included); compiled code and library single-threaded;")
    print("np(all) = OpenBLAS with all threads, np(1t) = one thread; x/np1 = speed relative to np(1t)")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r[0]:<18} {r[1]:<26} {r[2]:>8.2f} {r[3]:>8.2f} {r[4]:>8.2f} {r[5]:>8.2f} {r[6]:>8.2f} "
            f"{r[7]:>10.2f}x {r[8]:>10.2f}x {r[9]:>11.1e} {r[10]:>3}/{r[11]:<4}"
        )


def bench_end_to_end(quick: bool) -> None:
    from tasdc.compiler import CompileOptions, compile_model

    x = np.load(OUT / "transformer-eval.npz")["x"][:16]
    repeat = 30 if quick else 200
    print(f"\ntransformer.pt2 end to end, batch {x.shape[0]}: median ms over >= {repeat} runs (ratio = torch / tasdc, > 1: tasdc faster)")
    header = f"{'config':<8} {'loops ms':>9} {'default ms':>10} {'torch ms':>9} {'speedup':>8} {'vs torch':>8} {'max |Δ| vs torch':>16}"
    print(header)
    print("-" * len(header))
    for config in ("dense", "2:4"):
        result = compile_model(OUT / "transformer.pt2", options=CompileOptions(config=config))
        module = result.model.program.module()
        xt = torch.from_numpy(x)
        with torch.no_grad():
            expected = module(xt).numpy()

            def eager() -> object:
                return module(xt)

            t_torch, _ = median_seconds(eager, repeat, 1.0)
        after = result.cpu()
        before = executor.compile_for_cpu(result.model.module, lowering=NAIVE_LOOPS)
        t_after, _ = median_seconds(lambda: after(x), repeat, 1.0)
        t_before, _ = median_seconds(lambda: before(x), max(10, repeat // 5), 3.0)
        diff = float(np.abs(after(x) - expected).max())
        print(
            f"{config:<8} {1e3 * t_before:>9.3f} {1e3 * t_after:>10.3f} {1e3 * t_torch:>9.3f} "
            f"{t_before / t_after:>7.2f}x {t_torch / t_after:>7.2f}x {diff:>16.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs (smoke test)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end part")
    args = parser.parse_args()
    ensure_models()
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    shapes = [("matmul 1024³", (1024, 1024, 1024)), ("BERT FFN", (128, 3072, 768)),
              ("BERT FFN b8", (1024, 3072, 768))]
    shapes += [("transformer", s) for s in transformer_shapes()]
    bench_contractions(shapes, args.quick)
    if not args.no_e2e:
        bench_end_to_end(args.quick)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
