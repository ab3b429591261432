"""End-to-end latency and JIT time: compiled models on the CPU runtime vs torch eager.

Models: the examples (``mlp``, ``cnn``, ``transformer``; built by
``examples/build_models.py`` if missing) and encoders built from code with
``torch.nn.TransformerEncoder`` (post-norm, ReLU FFN, random weights, no
download):

* ``encoder4``  — 4 layers, d=256, 4 heads, FFN 1024, batch 8 × 64 tokens;
* ``bert-base`` — 12 layers, d=768, 12 heads, FFN 3072 (BERT-base sized),
  batch 1 × 128 tokens (slow to JIT cold: minutes on a loaded machine).

and members of the model zoo (:mod:`tasdc.zoo`), exported as the zoo does
(inputs by name): ``zoo:minilm`` (the pretrained 6-layer, 384-wide
all-MiniLM-L6-v2, batch 2 × 16 tokens), ``zoo:resnet50`` and any other zoo
name, ``hf-bert-base``: ``transformers``' ``BertModel`` at BERT-base size
(``BertConfig()`` defaults, random weights, batch 1 × 128 tokens) and
``hf-minilm``: the same at all-MiniLM-L6-v2's size (6 layers, 384 wide, FFN
1536, random weights; batch 8 × 32 tokens) for machines without the
pretrained package. ``resnet18-224`` / ``resnet50-224``: the zoo's ResNets
at torchvision's widths, ``mobilenetv2-224``: the zoo's (shrunk)
MobileNetV2 and ``mobilenetv2-1.25-224``: torchvision's
``mobilenet_v2(width_mult=1.25)`` (5 M parameters, the compact ImageNet CNN
of the issue), random weights, batch 8 × 3 × 224 × 224. For
models with several outputs the first (the hidden states) is compared.

For each model and config (dense, 2:4, 2:4+1:4 by default) one row gives:

* ``compile s``: import + TASD passes;
* ``JIT cold``: ``compile_for_cpu`` with an empty compile cache (a fresh
  folder for every row, so every row is a real miss: kernel packing, cache
  key, lowering, LLVM; the split is printed after the row) and ``1st call``,
  the first call after it: together the first result after compile;
* ``JIT cached``: the same module again in the same process, machine code
  and packed kernels loaded from the cache; ``cold/cached`` their ratio;
* with ``--fresh-process``: ``start new``, the cached start of a new process
  (the ``tasdc run`` case): the module, saved as MLIR bytecode, is parsed
  there (not timed), then ``compile_for_cpu`` + the first call are timed;
* with ``--compare-outline``: ``JIT 1fn``, the cold JIT without
  ``tasd-cpu-outline-loops`` (one huge function, the old way);
* with ``--baseline LOWERING`` (e.g. ``'tasd-cpu-to-llvm{reassociate=false
  expand-exp=false}'``): ``base ms``, the median latency of the same module
  lowered that way, timed in the same process right after ``tasdc ms``
  (before/after of a lowering change in one run), and ``base/tasdc``;
  ``--baseline-unfused``: the same with the N:M kernels' epilogues left as
  separate loops (``compile_for_cpu(fuse_epilogues=False)``; with
  ``--baseline`` too, lowered that way); ``--baseline-residuals``: the same with
  the shortcut adds after convolutions left as loops and everything else fused
  (``compile_for_cpu(fuse_residuals=False)``; the dense library's residual entry
  is the lowering's ``epilogues`` option, so only the N:M kernels' part);
* the median latency over ``--repeat`` runs of the compiled model and of
  torch eager (dense weights, ``torch.no_grad``, same input, same thread
  count, same process; one call of each in turn, so load changes hit both)
  and their ratio (>1 means tasdc is faster); ``--clock cpu`` measures the
  process's CPU seconds instead of wall seconds (a shared, loaded machine
  preempts long calls more than short ones; CPU time is not charged for the
  wait).

``--models zoo`` is the zoo set of the issue: the example models, the
6-layer 384-wide ``hf-minilm``, the BERT-base-sized ``hf-bert-base`` and
``zoo:resnet50`` (ResNet-50's depth and blocks at a small width and image).
The compile caches are temporary folders (the user's cache is not touched).
``--threads N`` sets torch's, Numba's and OpenBLAS's thread counts.

Run: ``.venv/bin/python benchmarks/bench_end_to_end.py [--models mlp,encoder4|zoo]
[--configs dense,2:4] [--threads 1] [--repeat 30] [--fresh-process] [--compare-outline]
[--baseline LOWERING] [--baseline-unfused] [--baseline-residuals]``.
"""

from __future__ import annotations

import os

# torch and Numba each run an OpenMP pool; with the default active wait
# policy the idle pool spins and starves the other one on a 2-core machine
# (measured: 2:4 MLP 24 ms instead of 0.16 ms right after a torch run).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples" / "out"
EXAMPLES = ("mlp", "cnn", "transformer")
#: ``--models zoo``: the models the issue names for this table.
ZOO_SET = "mlp,cnn,transformer,hf-minilm,hf-bert-base,zoo:resnet50"
#: name -> (layers, d, heads, ffn, batch, tokens)
ENCODERS = {"encoder4": (4, 256, 4, 1024, 8, 64), "bert-base": (12, 768, 12, 3072, 1, 128)}
#: transformers BertModel (random weights): name -> (BertConfig sizes, batch, tokens)
#: ImageNet-sized CNNs from the zoo's definitions (random weights): name -> (zoo class args, batch, image side)
IMAGENET = {
    "resnet18-224": ("resnet18", 8, 224),  # torchvision's widths (64 ... 512), 1000 classes
    "resnet50-224": ("resnet50", 8, 224),
    "mobilenetv2-224": ("mobilenetv2", 8, 224),  # the zoo's shrunk channels, ImageNet-sized input
    # torchvision's mobilenet_v2(width_mult=1.25): the 5 M-parameter compact ImageNet CNN
    "mobilenetv2-1.25-224": ("mobilenetv2-1.25", 8, 224),
}
HF_BERTS = {
    "hf-bert-base": ({}, 1, 128),  # BertConfig() defaults: 12 layers, 768 wide, FFN 3072
    "hf-minilm": (dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536), 8, 32),
}


#: ``--clock``: ``wall`` (time.perf_counter) or ``cpu`` (time.process_time: CPU seconds of the
#: whole process, every thread; on a shared machine a run preempted by other jobs is not
#: charged for the time it waited — compare like with like, both sides use the same clock).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def medians_interleaved(fns: list[Callable[[], Any]], repeat: int, clock: str = "wall") -> list[float]:
    """Median seconds of each function, timed one call of each in turn (so a
    change of machine load hits all of them alike; this machine is shared),
    the order rotated every round (the call right after another model's
    finds the caches filled with that model's data)."""
    now = CLOCKS[clock]
    for fn in fns:
        for _ in range(3):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeat):
        for k in range(len(fns)):
            i = (round_ + k) % len(fns)
            start = now()
            fns[i]()
            times[i].append(now() - start)
    return [statistics.median(t) for t in times]


def _first_output(out: Any) -> np.ndarray:
    leaves = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    return leaves[0].detach().numpy()


def imagenet_net(name: str) -> torch.nn.Module:
    """The zoo network of an ``IMAGENET`` benchmark model (random weights, seed 0)."""
    from tasdc import zoo

    kind = IMAGENET[name][0]
    torch.manual_seed(0)
    if kind == "mobilenetv2":
        return zoo.MobileNetV2(classes=1000)
    if kind == "mobilenetv2-1.25":
        return zoo.mobilenetv2_imagenet(width=1.25)
    block, layers = (zoo._BasicBlock, [2, 2, 2, 2]) if kind == "resnet18" else (zoo._Bottleneck, [3, 4, 6, 3])
    return zoo.ResNet(block, layers, width=64, classes=1000)


def model_and_input(name: str) -> tuple[Any, Callable[[], Any], list[np.ndarray]]:
    """(source for compile_model, eager call returning the first output, inputs) of a benchmark model."""
    if name.startswith("zoo:") or name in HF_BERTS:
        from tasdc import zoo

        if name in HF_BERTS:
            from transformers import BertConfig, BertModel

            sizes, batch, tokens = HF_BERTS[name]
            torch.manual_seed(0)
            ids = torch.randint(0, 30522, (batch, tokens), generator=torch.Generator().manual_seed(1))
            model = zoo.ZooModel(name, BertModel(BertConfig(**sizes)).eval(),
                                 {"input_ids": ids, "attention_mask": torch.ones(batch, tokens, dtype=torch.long)})
        else:
            model = zoo.build(name[4:])
        inputs = dict(model.inputs)
        return model.export(), lambda: _first_output(model.module(**inputs)), [t.numpy() for t in inputs.values()]
    if name in IMAGENET:
        _, batch, side = IMAGENET[name]
        net = imagenet_net(name).eval()
        x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
        return net, lambda: net(x).detach().numpy(), [x.numpy()]
    if name in ENCODERS:
        layers, d, heads, ffn, batch, tokens = ENCODERS[name]
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True)
        module = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()
        x = torch.randn(batch, tokens, d)
        return module, lambda: module(x).numpy(), [x.numpy()]
    if name not in EXAMPLES:
        raise SystemExit(f"unknown model {name}; choose from {', '.join(EXAMPLES + tuple(ENCODERS) + tuple(HF_BERTS) + tuple(IMAGENET))}, zoo:NAME")
    if not (OUT / f"{name}.pt2").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "build_models.py"), "--out", str(OUT)], check=True)
    x = torch.from_numpy(np.load(OUT / f"{name}-eval.npz")["x"][:16])
    from tasdc.importer import import_model

    program = import_model(OUT / f"{name}.pt2").program.module()
    return OUT / f"{name}.pt2", lambda: program(x).numpy(), [x.numpy()]


def _fresh_cache() -> str:
    """Point the compile cache at a new empty folder (returned); a JIT after this is a real miss."""
    folder = tempfile.mkdtemp(prefix="tasdc-bench-cache-")
    os.environ["TASDC_CACHE_DIR"] = folder
    return folder


def start_in_new_process(module: Any, inputs: list[np.ndarray], threads: int) -> dict[str, Any]:
    """The cached start of a new process: parse the saved module (untimed), then time
    ``compile_for_cpu`` and the first call there (the cache must hit)."""
    with tempfile.TemporaryDirectory(prefix="tasdc-bench-start-") as folder:
        path = Path(folder) / "module.mlirbc"
        with open(path, "wb") as out:
            module.operation.write_bytecode(out)
        np.savez(Path(folder) / "inputs.npz", *inputs)
        proc = subprocess.run([sys.executable, __file__, "--child-start", str(path), "--threads", str(threads)],
                              capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"new-process start failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_start(path: str, threads: int) -> None:
    """``--child-start``: see :func:`start_in_new_process`; prints one JSON line."""
    start = time.perf_counter()
    import numba

    from tasdc.module import new_context
    from tasdc.runtime.cpu.executor import compile_for_cpu
    from torch_mlir import ir

    if threads:
        numba.set_num_threads(threads)
    imports = time.perf_counter() - start
    context = new_context()
    start = time.perf_counter()
    with context:
        module = ir.Module.parse(Path(path).read_bytes())
    parse = time.perf_counter() - start
    arrays = np.load(Path(path).with_name("inputs.npz"))
    inputs = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    start = time.perf_counter()
    exe = compile_for_cpu(module)
    jit = time.perf_counter() - start
    start = time.perf_counter()
    exe(*inputs)
    first = time.perf_counter() - start
    print(json.dumps({"imports": imports, "parse": parse, "jit": jit, "first": first, "hit": exe.cache_hit,
                      "kernel_hit": exe.kernel_cache_hit, "split": exe.timings}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="latency clock: wall seconds, or the process's CPU seconds (all threads)")
    parser.add_argument("--models", default="mlp,cnn,transformer,encoder4", help=f"comma-separated; 'zoo' = {ZOO_SET}")
    parser.add_argument("--configs", default="dense,2:4,2:4+1:4")
    parser.add_argument("--threads", type=int, default=0, help="torch and Numba threads (0: leave the defaults)")
    parser.add_argument("--compare-outline", action="store_true", help="also JIT without tasd-cpu-outline-loops")
    parser.add_argument("--fresh-process", action="store_true", help="also time the cached start of a new process")
    parser.add_argument("--baseline", help="also time the module lowered with this pipeline (e.g. 'tasd-cpu-to-llvm{reassociate=false}')")
    parser.add_argument("--baseline-unfused", action="store_true",
                        help="the baseline without fused kernel epilogues (tasd-cpu-fuse-kernel-epilogues)")
    parser.add_argument("--baseline-residuals", action="store_true",
                        help="the baseline with the N:M convolutions' shortcut adds left as loops (fuse_residuals=False)")
    parser.add_argument("--child-start", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_start:
        child_start(args.child_start, args.threads)
        return
    import numba

    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.runtime.cpu.executor import compile_for_cpu

    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
        # OpenBLAS (scipy's) runs the dense contractions (runtime/cpu/dense.py): same count.
        from threadpoolctl import threadpool_limits

        blas_limit = threadpool_limits(args.threads, user_api="blas")  # noqa: F841 - kept for the run
    print(f"torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, repeat {args.repeat}, clock {args.clock}, "
          f"load {os.getloadavg()[0]:.2f}")
    header = (f"{'model':<13} {'config':<9} {'compile s':>9} {'JIT cold':>8} {'1st call':>8} {'JIT cached':>10} "
              f"{'cold/cached':>11} " + (f"{'start new':>9} " if args.fresh_process else "")
              + (f"{'JIT 1fn':>8} " if args.compare_outline else "")
              + f"{'tasdc ms':>9} {'torch ms':>9} {'torch/tasdc':>11} "
              + (f"{'base ms':>9} {'base/tasdc':>10} " if args.baseline or args.baseline_unfused or args.baseline_residuals else "")
              + f"{'max |diff|':>10}")
    print(header)
    print("-" * len(header))
    models = ZOO_SET if args.models == "zoo" else args.models
    for name in models.split(","):
        source, eager, inputs = model_and_input(name)
        for config in args.configs.split(","):
            start = time.perf_counter()
            if isinstance(source, torch.nn.Module):
                result = compile_model(source, tuple(torch.from_numpy(a) for a in inputs), options=CompileOptions(config=config))
            else:
                result = compile_model(source, options=CompileOptions(config=config))
            compile_s = time.perf_counter() - start
            folder = _fresh_cache()
            start = time.perf_counter()
            exe = compile_for_cpu(result.module)
            cold_s = time.perf_counter() - start
            assert not exe.cache_hit and not exe.kernel_cache_hit, "the cold JIT must be a miss"
            start = time.perf_counter()
            exe(*inputs)
            first_s = time.perf_counter() - start
            split = ", ".join(f"{k} {v:.2f}" for k, v in exe.timings.items())
            start = time.perf_counter()
            cached = compile_for_cpu(result.module)
            cached_s = time.perf_counter() - start
            assert cached.cache_hit, "the second compile must come from the cache"
            assert cached.kernel_cache_hit or not any(getattr(k, "packed", None) for k in cached.kernels), \
                "the packed kernels must come from the cache"
            fresh = ""
            if args.fresh_process:
                child = start_in_new_process(result.module, inputs, args.threads)
                assert child["hit"], "the new process must hit the cache"
                fresh = f"{child['jit'] + child['first']:>9.2f} "
                split += (f"; new process: imports {child['imports']:.2f}, parse {child['parse']:.2f}, "
                          f"compile_for_cpu {child['jit']:.2f} ({', '.join(f'{k} {v:.2f}' for k, v in child['split'].items())}), "
                          f"1st call {child['first']:.2f}")
            one_fn = ""
            if args.compare_outline:
                start = time.perf_counter()
                compile_for_cpu(result.module, cache=False, lowering="tasd-cpu-to-llvm{outline=false}")
                one_fn = f"{time.perf_counter() - start:>8.2f} "
            def first(exe: Any = cached) -> np.ndarray:
                out = exe(*inputs)
                return out[0] if isinstance(out, tuple) else out

            timed: list[Callable[[], Any]] = [first]
            baseline = None
            if args.baseline or args.baseline_unfused or args.baseline_residuals:
                baseline = compile_for_cpu(result.module, cache=False, lowering=args.baseline or "tasd-cpu-to-llvm",
                                           fuse_epilogues=not args.baseline_unfused,
                                           fuse_residuals=not args.baseline_residuals)
                timed.append(lambda: first(baseline))
            with torch.no_grad():
                expected = eager()
                t_torch, t_tasdc, *t_base = medians_interleaved([eager] + timed, args.repeat, args.clock)
            diff = float(np.abs(first() - expected).max())
            base = ""
            if baseline is not None:
                base = f"{t_base[0] * 1e3:>9.3f} {t_base[0] / t_tasdc:>10.2f} "
                del baseline
            print(f"{name:<13} {config:<9} {compile_s:>9.2f} {cold_s:>8.2f} {first_s:>8.2f} {cached_s:>10.2f} "
                  f"{cold_s / cached_s:>11.1f} {fresh}{one_fn}"
                  f"{t_tasdc * 1e3:>9.3f} {t_torch * 1e3:>9.3f} {t_torch / t_tasdc:>11.2f} {base}{diff:>10.2e}  (cold JIT s: {split})",
                  flush=True)
            del exe, cached
            shutil.rmtree(folder, ignore_errors=True)
    print("max |diff| is against torch eager with the original dense weights (non-zero for lossy configs by design).")


if __name__ == "__main__":
    main()
