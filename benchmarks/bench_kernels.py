"""Benchmark of the TASD Numba CPU kernel against numpy dense and scipy CSR.

    .venv/bin/python benchmarks/bench_kernels.py [--reps 30] [--rounds 3] [--quick] [--isa both]

On machines where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set (see the
environment notes) run it as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_kernels.py``
so that numpy uses its best kernel; the script prints what OpenBLAS reports.

For each GEMM ``Y[T, O] = X[T, K] @ Wᵀ`` (BERT-base linear layers at 128
tokens and three ResNet-50 3x3 convolutions as im2col GEMMs) and each series
it reports, in one table from one run:

* the Numba kernel's median time and dense-equivalent GFLOP/s (2·T·K·O / t),
* numpy dense ``x @ W.T`` (OpenBLAS) on the same shape,
* scipy CSR at the same density, the faster of ``(W_csr @ x.T).T`` and
  ``x @ W_csr.T`` (single-threaded, as scipy is),
* the ratios numpy/numba and scipy/numba (> 1: the kernel is faster),

then the cost of each two-term series against the sum of its terms.

``--conv`` times convolutions of ResNet-18/50 at 224² input, batch 8
(``CONV_SHAPES``) instead: the N:M conv kernel (``conv2d_series``: X tiles
packed straight from the NCHW input, padding read as zeros) against numpy
im2col + ``sgemm`` (the kernels' im2col, then ``W @ cols``; the output left
as ``[F, N*P]``, no layout pass: in numpy's favour), torch's ``conv2d`` and
the previous N:M route (im2col, then the GEMM kernel on the column matrix),
all in the same rounds, at ``--threads`` threads for numba, OpenBLAS and torch. With
``--isa both`` each series is also timed with both wide micro-kernels (8-lane
AVX2 and 16-lane AVX-512, in the same rounds, each on the packing its ISA's
host makes: ``pack_series(..., isa=...)``) and a last table compares them
with numpy (the avx2 column against ``OPENBLAS_CORETYPE=Haswell`` is the
AVX2-machine case); the kernel runs with the host's pick (``wide_kernel_isa``) otherwise. X is
row-major for all three (for convolutions the im2col matrix would be K-major,
which the kernel reads a little faster). Timings interleave the methods in
rounds (blocks of ``--reps`` calls) and take the median of all calls, to
damp noise from other processes on a 2-core machine: load average is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp

import numba

from tasdc.decompose import decompose
from tasdc.runtime.cpu.kernels import conv2d_series, im2col, pack_series, series_matmul, wide_kernel_isa

SHAPES = [
    # name, T, K, O
    ("BERT qkv/out 768x768", 128, 768, 768),
    ("BERT ffn1 768->3072", 128, 768, 3072),
    ("BERT ffn2 3072->768", 128, 3072, 768),
    ("R50 conv2_x 3x3 64", 3136, 576, 64),
    ("R50 conv3_x 3x3 128", 784, 1152, 128),
    ("R50 conv5_x 3x3 512", 49, 4608, 512),
]
CONFIGS = ["2:4", "1:4", "2:8", "1:8", "2:4+1:4", "2:8+1:8"]
#: ResNet-18/50 convolutions at 224² input, batch 8:
#: name, N, C, H (= W), F, kernel, stride, padding
CONV_SHAPES = [
    ("conv1 7x7/2 3->64 @224", 8, 3, 224, 64, 7, 2, 3),
    ("3x3 64->64 @56", 8, 64, 56, 64, 3, 1, 1),
    ("3x3/2 64->128 @56", 8, 64, 56, 128, 3, 2, 1),
    ("3x3 128->128 @28", 8, 128, 28, 128, 3, 1, 1),
    ("3x3 256->256 @14", 8, 256, 14, 256, 3, 1, 1),
    ("3x3 512->512 @7", 8, 512, 7, 512, 3, 1, 1),
    ("1x1 64->256 @56 (r50)", 8, 64, 56, 256, 1, 1, 0),
    ("1x1 256->64 @56 (r50)", 8, 256, 56, 64, 1, 1, 0),
    ("1x1 512->128 @28 (r50)", 8, 512, 28, 128, 1, 1, 0),
    ("1x1 1024->256 @14 (r50)", 8, 1024, 14, 256, 1, 1, 0),
    ("1x1 512->2048 @7 (r50)", 8, 512, 7, 2048, 1, 1, 0),
]
CONV_CONFIGS = ["2:4", "1:4", "1:8"]
#: ``--conv-model``: the zoo ResNets of ``bench_end_to_end.py``'s resnet18-224 / resnet50-224
CONV_MODELS = {"resnet18": ("_BasicBlock", [2, 2, 2, 2]), "resnet50": ("_Bottleneck", [3, 4, 6, 3])}
SERIES_PARTS = {"2:4+1:4": ("2:4", "1:4"), "2:8+1:8": ("2:8", "1:8")}
#: speed-up goals over numpy dense (issue #13), on AVX2 and AVX-512 alike
GOAL_24, GOAL_14 = 1.6, 3.0


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    rows = []
    for info in threadpool_info():
        rows.append(
            f"{info.get('internal_api')} {info.get('version')} kernel={info.get('architecture')} "
            f"threads={info.get('num_threads')} ({os.path.basename(info.get('filepath', ''))})"
        )
    return "; ".join(rows) or "no BLAS found by threadpoolctl"


def _ran_parallel() -> bool:
    """Run one tiny kernel call so that numba reports its threading layer."""
    d = decompose(np.ones((4, 8), np.float32), "2:4", axis=1)
    series_matmul(np.ones((2, 8), np.float32), pack_series(d))
    return True


def _time_block(fn, reps: int, clock=time.perf_counter) -> list[float]:
    fn()  # warm (caches, OpenMP / OpenBLAS thread wake-up)
    out = []
    for _ in range(reps):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="calls per timing block")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per shape")
    ap.add_argument("--quick", action="store_true", help="first two shapes, fewer reps")
    ap.add_argument("--threads", type=int, default=None, help="threads for both numba and OpenBLAS (default: numba's default, 2 here)")
    ap.add_argument("--isa", choices=("host", "both"), default="host", help="both: also time the AVX2 and AVX-512 micro-kernels side by side")
    ap.add_argument("--conv", action="store_true", help="time the ResNet convolutions (CONV_SHAPES) instead of the GEMMs")
    ap.add_argument("--conv-configs", default=",".join(CONV_CONFIGS), help="series for --conv (comma-separated)")
    ap.add_argument("--conv-cases", default=None, help="--conv: indices into CONV_SHAPES (comma-separated; default all)")
    ap.add_argument("--conv-model", choices=sorted(CONV_MODELS), default=None,
                    help="every conv layer of this model (batch 8, 224²): torch conv2d vs the N:M conv per layer and in total")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                    help="--conv-model: wall clock, or the process's CPU time (default; a call waiting for a core on a loaded machine is not charged)")
    args = ap.parse_args(argv)
    # as compile_for_cpu does: the kernels' per-call buffers (the direct layout's padded
    # image, megabytes) reused instead of faulted in again on every call
    from tasdc.runtime.cpu.memory import retain_freed_memory

    retain_freed_memory()
    nthreads = args.threads or numba.get_num_threads()
    numba.set_num_threads(nthreads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=nthreads, user_api="blas")
    except ImportError:
        pass
    shapes = SHAPES[:2] if args.quick else SHAPES
    reps = 5 if args.quick else args.reps
    rounds = 1 if args.quick else args.rounds

    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}")
    print(f"cpu: {os.cpu_count()} logical cores; numba threads = {numba.get_num_threads()} (threading layer: {numba.threading_layer() if _ran_parallel() else numba.config.THREADING_LAYER})")
    print(f"BLAS (threadpoolctl): {_blas_info()}")
    print(f"wide micro-kernel picked at load time: {wide_kernel_isa()}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if var in os.environ:
            print(f"  note: {var}={os.environ[var]} is set")
    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")

    if args.conv_model:
        return _conv_model_main(args, nthreads, load0)
    if args.conv:
        return _conv_main(args, nthreads, load0)
    rng = np.random.default_rng(0)
    rows = []
    t_start = time.perf_counter()
    for name, t, k, o in shapes:
        x = rng.standard_normal((t, k)).astype(np.float32)
        w = rng.standard_normal((o, k)).astype(np.float32)
        wdense = np.ascontiguousarray(w)
        packs = {}
        isa_packs = {}
        csrs = {}
        for cfg in CONFIGS:
            d = decompose(w, cfg, axis=1)
            packs[cfg] = pack_series(d)
            # each micro-kernel on the packing its ISA's host would make (K-tile width)
            for isa in ("avx2", "avx512"):
                isa_packs[cfg, isa] = pack_series(d, isa=isa) if args.isa == "both" else None
            csr = sp.csr_matrix(d.approximation)
            csrs[cfg] = (csr, csr.T.tocsr())
        out = np.empty((t, o), np.float32)
        # first call compiles (or loads from Numba's cache)
        for cfg in CONFIGS:
            series_matmul(x, packs[cfg], out)
        times: dict[str, list[float]] = {}
        xT = np.ascontiguousarray(x.T)
        # pick the faster scipy formulation once per config
        sp_fn = {}
        for cfg in CONFIGS:
            csr, csr_t = csrs[cfg]
            f1 = lambda csr=csr: (csr @ xT).T  # noqa: E731
            f2 = lambda csr_t=csr_t: x @ csr_t  # noqa: E731  (x @ W_csr.T, W.T kept as CSR)
            a = min(_time_block(f1, 2))
            b = min(_time_block(f2, 2))
            sp_fn[cfg] = (f1, "W@xT") if a <= b else (f2, "x@WT")
        sp_reps = max(2, reps // 4)
        for _ in range(rounds):
            times.setdefault("numpy", []).extend(_time_block(lambda: np.matmul(x, wdense.T), reps))
            for cfg in CONFIGS:
                p = packs[cfg]
                times.setdefault(cfg, []).extend(_time_block(lambda p=p: series_matmul(x, p, out), reps))
            for cfg in CONFIGS:
                times.setdefault("sp " + cfg, []).extend(_time_block(sp_fn[cfg][0], sp_reps))
            if args.isa == "both":
                for cfg in CONFIGS:
                    for isa in ("avx2", "avx512"):
                        p = isa_packs[cfg, isa]
                        times.setdefault(f"{cfg}@{isa}", []).extend(
                            _time_block(lambda p=p, isa=isa: series_matmul(x, p, out, isa=isa), reps))
        med = {key: statistics.median(v) for key, v in times.items()}
        flops = 2.0 * t * k * o
        for cfg in CONFIGS:
            rows.append(
                dict(
                    shape=f"{name} (T={t},K={k},O={o})",
                    cfg=cfg,
                    density=packs[cfg].density,
                    nb=med[cfg],
                    nb_min=min(times[cfg]),
                    np_min=min(times["numpy"]),
                    gf=flops / med[cfg] / 1e9,
                    np_=med["numpy"],
                    np_gf=flops / med["numpy"] / 1e9,
                    sp=med["sp " + cfg],
                    sp_how=sp_fn[cfg][1],
                    avx2=med.get(f"{cfg}@avx2"),
                    avx512=med.get(f"{cfg}@avx512"),
                )
            )
        print(f"  measured {name} ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

    load1 = os.getloadavg()
    print()
    print(f"median of {rounds} x {reps} calls (min in brackets); numba and OpenBLAS at {nthreads} thread(s), scipy CSR single-threaded")
    hdr = (
        f"{'shape':<42} {'series':<8} {'dens':>5} {'numba ms':>9} {'(min)':>7} {'GF/s':>5} {'numpy ms':>9} {'(min)':>7} "
        f"{'GF/s':>5} {'scipy ms':>9} {'(form)':>7} {'np/nb':>6} {'sp/nb':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    last = None
    for r in rows:
        shape = r["shape"] if r["shape"] != last else ""
        last = r["shape"]
        print(
            f"{shape:<42} {r['cfg']:<8} {r['density']:>5.3f} {r['nb'] * 1e3:>9.3f} {r['nb_min'] * 1e3:>7.3f} {r['gf']:>5.0f} "
            f"{r['np_'] * 1e3:>9.3f} {r['np_min'] * 1e3:>7.3f} {r['np_gf']:>5.0f} "
            f"{r['sp'] * 1e3:>9.3f} {r['sp_how']:>7} {r['np_'] / r['nb']:>6.2f} {r['sp'] / r['nb']:>6.2f}"
        )
    print()
    print("series cost vs sum of its terms (t_series / (t_term1 + t_term2); <= 1.00 is the goal):")
    by = {(r["shape"], r["cfg"]): r for r in rows}
    shapes_seen = list(dict.fromkeys(r["shape"] for r in rows))
    for s in shapes_seen:
        parts = []
        for series, (a, b) in SERIES_PARTS.items():
            ratio = by[(s, series)]["nb"] / (by[(s, a)]["nb"] + by[(s, b)]["nb"])
            parts.append(f"{series}: {ratio:.2f}")
        print(f"  {s:<42} " + "   ".join(parts))
    print()
    print(f"goals (numpy/numba, issue #13): 2:4 >= {GOAL_24}x, 1:4 >= {GOAL_14}x; two-term series <= sum of terms")
    print("  (by medians, then by minima in brackets: minima are what the code does when no other process preempts it)")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    for s in shapes_seen:
        cells = []
        for key_nb, key_np in (("nb", "np_"), ("nb_min", "np_min")):
            g24 = by[(s, "2:4")][key_np] / by[(s, "2:4")][key_nb]
            g14 = by[(s, "1:4")][key_np] / by[(s, "1:4")][key_nb]
            ser = max(by[(s, se)][key_nb] / (by[(s, a)][key_nb] + by[(s, b)][key_nb]) for se, (a, b) in SERIES_PARTS.items())
            cells.append((g24, g14, ser))
        (a24, a14, aser), (b24, b14, bser) = cells
        print(
            f"  {s:<42} 2:4 {a24:5.2f}x {verdict(a24 >= GOAL_24):<6} [{b24:5.2f}x {verdict(b24 >= GOAL_24):<6}]  "
            f"1:4 {a14:5.2f}x {verdict(a14 >= GOAL_14):<6} [{b14:5.2f}x {verdict(b14 >= GOAL_14):<6}]  "
            f"series {aser:4.2f} {verdict(aser <= 1.0):<6} [{bser:4.2f} {verdict(bser <= 1.0):<6}]"
        )
    if args.isa == "both":
        print()
        print("micro-kernels side by side (median ms; np/x = numpy dense time / kernel time):")
        print(f"{'shape':<42} {'series':<8} {'avx2 ms':>8} {'avx512 ms':>9} {'numpy ms':>9} {'np/avx2':>7} {'np/avx512':>9} {'avx2/avx512':>11}")
        last = None
        for r in rows:
            shape = r["shape"] if r["shape"] != last else ""
            last = r["shape"]
            print(f"{shape:<42} {r['cfg']:<8} {r['avx2'] * 1e3:>8.3f} {r['avx512'] * 1e3:>9.3f} {r['np_'] * 1e3:>9.3f} "
                  f"{r['np_'] / r['avx2']:>7.2f} {r['np_'] / r['avx512']:>9.2f} {r['avx2'] / r['avx512']:>11.2f}")
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (other processes share the 2 cores)")
    return 0


def _conv_main(args: argparse.Namespace, nthreads: int, load0: tuple[float, float, float]) -> int:
    """``--conv``: the N:M conv kernel against numpy im2col + sgemm and torch, same rounds."""
    import torch

    torch.set_num_threads(nthreads)
    cfgs = [c for c in args.conv_configs.split(",") if c]
    cases = CONV_SHAPES if args.conv_cases is None else [CONV_SHAPES[int(i)] for i in args.conv_cases.split(",")]
    reps = 2 if args.quick else max(1, args.reps // 5)
    rounds = 1 if args.quick else args.rounds
    isas = ("avx2", "avx512") if args.isa == "both" else (wide_kernel_isa(),)
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    results = []
    for name, n, c, h, f, k, s, p in cases:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((f, c * k * k)).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w.reshape(f, c, k, k))
        fns = {
            "numpy": lambda: w @ im2col(x, k, k, s, p)[0].T,
            "torch": lambda: torch.nn.functional.conv2d(xt, wt, stride=s, padding=p),
        }
        for cfg in cfgs:
            d = decompose(w, cfg, axis=1)
            for isa in isas:
                pk = pack_series(d, isa=isa, conv=True)
                fns[f"{cfg}@{isa}"] = lambda pk=pk, isa=isa: conv2d_series(x, pk, k, k, s, p, isa=isa)
                fns[f"{cfg}@{isa} im2col"] = lambda pk=pk, isa=isa: series_matmul(im2col(x, k, k, s, p)[0], pk, isa=isa)
        times: dict[str, list[float]] = {}
        for _ in range(rounds):
            for key, fn in fns.items():
                times.setdefault(key, []).extend(_time_block(fn, reps))
        med = {key: statistics.median(v) for key, v in times.items()}
        mins = {key: min(v) for key, v in times.items()}
        oh = (h + 2 * p - k) // s + 1
        flops = 2.0 * n * oh * oh * f * c * k * k
        results.append((f"{name} (K={c * k * k}, P={oh}²)", flops, med, mins))
        print(f"  measured {name} ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print()
    print(f"convolutions, batch 8: median of {rounds} x {reps} calls; numba, OpenBLAS and torch at {nthreads} thread(s)")
    print("ratios: reference time / N:M conv time by medians (by minima in brackets); 'via im2col' = the previous route")
    hdr = (f"{'conv':<40} {'series':<12} {'numpy ms':>9} {'torch ms':>9} {'N:M ms':>8} {'GF/s':>5} {'via im2col':>10} "
           f"{'np/N:M':>13} {'torch/N:M':>13} {'im2col/N:M':>10}")
    print(hdr)
    print("-" * len(hdr))
    for shape, flops, med, mins in results:
        first = True
        for cfg in cfgs:
            for isa in isas:
                key = f"{cfg}@{isa}"
                nm = med[key]
                print(f"{shape if first else '':<40} {key:<12} {med['numpy'] * 1e3:>9.2f} {med['torch'] * 1e3:>9.2f} {nm * 1e3:>8.2f} "
                      f"{flops / nm / 1e9:>5.0f} {med[key + ' im2col'] * 1e3:>10.2f} "
                      f"{med['numpy'] / nm:>5.2f} [{mins['numpy'] / mins[key]:>5.2f}] {med['torch'] / nm:>5.2f} [{mins['torch'] / mins[key]:>5.2f}] "
                      f"{med[key + ' im2col'] / nm:>10.2f}")
                first = False
    print("(GF/s: dense-equivalent, 2*N*P*F*K / time)")
    print(f"\nload average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (other processes share the 2 cores)")
    return 0



def _model_convs(model: str, batch: int = 8, side: int = 224) -> list[tuple[tuple[int, ...], int]]:
    """The conv layers of a zoo ResNet as ``((N, C, H, W, F, k, stride, padding), count)``, in first-use order."""
    import torch

    from tasdc import zoo

    block, layers = CONV_MODELS[model]
    net = zoo.ResNet(getattr(zoo, block), layers, width=64, classes=1000).eval()
    seen: dict[tuple[int, ...], int] = {}

    def hook(mod: torch.nn.Conv2d, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if mod.groups != 1 or mod.dilation != (1, 1) or mod.kernel_size[0] != mod.kernel_size[1]:
            raise SystemExit(f"unexpected conv in {model}: {mod}")
        n, c, h, w = inp[0].shape
        key = (n, c, h, w, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0])
        seen[key] = seen.get(key, 0) + 1

    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(batch, 3, side, side))
    return list(seen.items())


def _conv_model_main(args: argparse.Namespace, nthreads: int, load0: tuple[float, float, float]) -> int:
    """``--conv-model``: every conv layer shape of a ResNet (batch 8, 224²), torch ``conv2d`` vs the N:M
    conv with X tiles and in the direct layout (without and with prefetching), all in the same rounds;
    per layer and in total (each shape times its count in the model). ``auto`` is what
    ``layout="auto"`` runs (the tiles or the direct column)."""
    import torch

    from tasdc.runtime.cpu import kernels as K

    torch.set_num_threads(nthreads)
    cfgs = [c for c in args.conv_configs.split(",") if c]
    convs = _model_convs(args.conv_model)
    reps = 2 if args.quick else max(1, args.reps // 5)
    rounds = 1 if args.quick else args.rounds
    isa = wide_kernel_isa()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    rows = []
    for (n, c, h, w_, f, k, s, p), count in convs:
        x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
        w = rng.standard_normal((f, c * k * k)).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w.reshape(f, c, k, k))
        fns = {"torch": lambda: torch.nn.functional.conv2d(xt, wt, stride=s, padding=p)}
        auto = {}
        for cfg in cfgs:
            pk = pack_series(decompose(w, cfg, axis=1), conv=True)
            oh_, ow_ = (h + 2 * p - k) // s + 1, (w_ + 2 * p - k) // s + 1
            geo = np.array([0, c * h * w_, h * w_, w_, 1, n, c, h, w_, k, k, s, s, p, p, 1, 1, oh_, ow_], np.int64)
            kpad = K._kpad(pk)
            parallel = numba.get_num_threads() > 1 and n * oh_ * ow_ * pk.w_loc.size >= K.SERIAL_WORK  # as _run_conv decides
            auto[cfg] = "direct" if K._dconv_mode(geo, 0, kpad, pk.w_loc.size, parallel) > 0 else "tiles"
            fns[f"{cfg} tiles"] = lambda pk=pk: conv2d_series(x, pk, k, k, s, p, layout="tiles")
            if K._dconv_mode(geo, 2, kpad, pk.w_loc.size, False) > 0:
                fns[f"{cfg} direct"] = lambda pk=pk: conv2d_series(x, pk, k, k, s, p, layout="direct", prefetch=False)
                fns[f"{cfg} direct+pf"] = lambda pk=pk: conv2d_series(x, pk, k, k, s, p, layout="direct", prefetch=True)
        times: dict[str, list[float]] = {}
        for _ in range(rounds):
            for key, fn in fns.items():
                times.setdefault(key, []).extend(_time_block(fn, reps, clock))
        med = {key: statistics.median(v) for key, v in times.items()}
        oh = (h + 2 * p - k) // s + 1
        rows.append((f"{k}x{k}/{s} {c}->{f} @{h} (P={oh}²) x{count}", count, med, auto))
        print(f"  measured {k}x{k}/{s} {c}->{f} @{h} ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print()
    print(f"{args.conv_model} conv layers, batch 8, 224² input: median of {rounds} x {reps} calls per layer; "
          f"numba and torch at {nthreads} thread(s); micro-kernel {isa}; {args.clock} clock")
    print("ms per call; 'direct' without prefetching (the default), '+pf' with; auto = what layout='auto' runs; "
          "ratios torch / N:M (> 1: tasdc faster)")
    hdr = (f"{'layer':<36} {'series':<6} {'torch':>7} {'tiles':>7} {'direct':>7} {'+pf':>7} {'auto':>6} "
           f"{'t/tiles':>7} {'t/auto':>6} {'tiles/dir':>9} {'pf/dir':>8}")
    print(hdr)
    print("-" * len(hdr))
    tot = {}
    for name, count, med, auto in rows:
        first = True
        tot["torch"] = tot.get("torch", 0.0) + count * med["torch"]
        for cfg in cfgs:
            tl = med[f"{cfg} tiles"]
            dr = med.get(f"{cfg} direct")
            npf = med.get(f"{cfg} direct+pf")
            au = dr if auto[cfg] == "direct" else tl
            for key, v in ((f"{cfg} tiles", tl), (f"{cfg} auto", au), (f"{cfg} +pf", npf if auto[cfg] == "direct" else tl)):
                tot[key] = tot.get(key, 0.0) + count * v
            fmt = lambda v: f"{v * 1e3:>7.2f}" if v is not None else f"{'-':>7}"
            tcol = f"{med['torch'] * 1e3:.2f}" if first else ""
            print(f"{name if first else '':<36} {cfg:<6} {tcol:>7} {fmt(tl)} {fmt(dr)} {fmt(npf)} "
                  f"{auto[cfg]:>6} {med['torch'] / tl:>7.2f} {med['torch'] / au:>6.2f} "
                  f"{(tl / dr if dr else float('nan')):>9.2f} {(npf / dr if dr else float('nan')):>8.2f}")
            first = False
    print("-" * len(hdr))
    print(f"whole model, all conv layers (ms per forward): torch {tot['torch'] * 1e3:.1f}")
    for cfg in cfgs:
        print(f"  {cfg:<6} tiles {tot[cfg + ' tiles'] * 1e3:7.1f} (torch/tiles {tot['torch'] / tot[cfg + ' tiles']:.2f})   "
              f"auto {tot[cfg + ' auto'] * 1e3:7.1f} (torch/auto {tot['torch'] / tot[cfg + ' auto']:.2f})   "
              f"auto with prefetch {tot[cfg + ' +pf'] * 1e3:7.1f} (torch/that {tot['torch'] / tot[cfg + ' +pf']:.2f})")
    print(f"\nload average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
