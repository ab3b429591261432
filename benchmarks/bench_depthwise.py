"""Depthwise convolutions alone: torch eager vs the dense library's ``tasd_dense_depthwise_conv2d``.

Every distinct depthwise convolution of an ImageNet-sized CNN of
``bench_end_to_end.py`` (default ``mobilenetv2-1.25-224``, found with forward
hooks), at the given batch, run without bias through
``torch.nn.functional.conv2d(groups=C)`` and through ``runtime/cpu/dense.py``'s
``depthwise_conv2d``. Every round calls each side once, alternating which goes
first; times are medians per call (µs), the total is summed over the layers
(× how often the shape occurs in the model). ``--batch 1`` is what a model
tiled per image by ``tasd-cpu-tile-batch`` pays per image. ``max rel`` is
``max|tasdc - torch| / max|torch|`` of the layer.

Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_depthwise.py
[--model mobilenetv2-1.25-224] [--batch 8] [--threads 1] [--repeat 7] [--clock cpu|wall]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def depthwise_shapes(model: str, batch: int) -> Counter[tuple[Any, ...]]:
    """(input shape, stride, padding, kernel size) of each depthwise convolution of ``model``, with counts."""
    from bench_end_to_end import imagenet_net

    net = imagenet_net(model).eval()
    found: Counter[tuple[Any, ...]] = Counter()

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _: Any) -> None:
        if isinstance(module, torch.nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels == module.out_channels:
            found[(tuple(inputs[0].shape), module.stride, module.padding, module.kernel_size)] += 1

    for module in net.modules():
        module.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.randn(batch, 3, 224, 224))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2-1.25-224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    import numba

    from tasdc.runtime.cpu import dense

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    now: Callable[[], float] = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"{args.model}, batch {args.batch}, threads {args.threads}, clock {args.clock}, "
          f"load {os.getloadavg()[0]:.2f}")
    header = f"{'input':<22} {'k':>3} {'s':>2} {'n':>2} {'torch us':>9} {'tasdc us':>9} {'torch/tasdc':>11} {'max rel':>8}"
    print(header)
    print("-" * len(header))
    totals = [0.0, 0.0]
    for (shape, stride, padding, kernel), count in depthwise_shapes(args.model, args.batch).items():
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((shape[1], *kernel), dtype=np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w[:, None])
        want = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, groups=shape[1]).numpy()
        out = np.empty_like(want)
        sides = [lambda: torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, groups=shape[1]),
                 lambda: dense.depthwise_conv2d(x, w, stride, padding, out=out)]
        times: list[list[float]] = [[], []]
        for side in sides:
            side()
        for round_ in range(args.repeat):
            for k in (round_ % 2, 1 - round_ % 2):
                start = now()
                sides[k]()
                times[k].append(now() - start)
        t_torch, t_tasdc = (statistics.median(t) for t in times)
        totals[0] += count * t_torch
        totals[1] += count * t_tasdc
        rel = float(np.abs(out - want).max() / max(np.abs(want).max(), 1e-30))
        print(f"{str(shape):<22} {kernel[0]:>3} {stride[0]:>2} {count:>2} {t_torch * 1e6:>9.0f} {t_tasdc * 1e6:>9.0f} "
              f"{t_torch / t_tasdc:>11.2f} {rel:>8.1e}")
    print(f"{'total (x count)':<31} {totals[0] * 1e6:>9.0f} {totals[1] * 1e6:>9.0f} {totals[0] / totals[1]:>11.2f}")


if __name__ == "__main__":
    main()
