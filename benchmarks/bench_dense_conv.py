"""Dense convolutions alone: torch eager vs ``tasd_dense_conv2d`` by im2col and by implicit GEMM.

Every distinct (non-depthwise) convolution of the ImageNet-sized CNNs of
``bench_end_to_end.py`` (``resnet18-224``, ``resnet50-224``,
``mobilenetv2-224``: the zoo's definitions, batch 8 × 3 × 224², found with
forward hooks), run without bias through ``torch.nn.functional.conv2d`` and
through ``runtime/cpu/dense.py``'s ``conv2d`` with the method forced to
im2col, to the implicit GEMM with one GEMM per tap, to the implicit GEMM
with the column taps stacked, and chosen per shape (what the entry does);
the implicit GEMMs get their filter in the layout a compiled model binds
(``tasd-cpu-tap-major-filters``), im2col the plain one.
Every round calls each side once, in a rotating order (a call right after
another one pays for the caches the other filled); times are medians per
call, then summed over the layers (× how often the shape occurs in the
model). One thread on each side unless ``--threads``. ``max rel`` is the
largest ``|implicit - im2col| / max|im2col|`` of the layer (both implicit variants).

Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_dense_conv.py [--models resnet18-224]
[--repeat 7] [--clock cpu|wall] [--threads 1]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_end_to_end import IMAGENET, imagenet_net, medians_interleaved  # noqa: E402

from tasdc.passes.tap_major_filters import LAYOUTS  # noqa: E402

Shape = tuple[int, int, int, int, int, int, int, int, int]  # N, C, H, W, F, K, stride, padding, groups


def conv_shapes(name: str) -> dict[Shape, int]:
    """The model's non-depthwise convolutions (``Shape`` -> how many times it occurs)."""
    _, batch, side = IMAGENET[name]
    net = imagenet_net(name)
    found: dict[Shape, int] = {}

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _: Any) -> None:
        assert isinstance(module, torch.nn.Conv2d)
        if module.groups > 1 and module.groups == module.in_channels:
            return  # depthwise: tasd_dense_depthwise_conv2d
        if module.kernel_size[0] != module.kernel_size[1] or module.dilation != (1, 1):
            raise ValueError(f"unexpected convolution {module}")
        n, c, h, w = inputs[0].shape
        key = (n, c, h, w, module.out_channels, module.kernel_size[0], module.stride[0], module.padding[0], module.groups)
        found[key] = found.get(key, 0) + 1

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net.eval()(torch.zeros(batch, 3, side, side))
    for h in handles:
        h.remove()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18-224,resnet50-224,mobilenetv2-224")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be >= 1")
    import numba

    from tasdc.runtime.cpu import dense

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    print(f"load {open('/proc/loadavg').read().split()[:3]}  threads {args.threads}  clock {args.clock}  repeat {args.repeat}")
    for name in args.models.split(","):
        shapes = conv_shapes(name)
        print(f"\n{name}: ms per call (median), torch/x = speed relative to torch")
        print(f"{'N C H W -> F KxK/s p g':32} {'n':>2} {'torch':>7} {'im2col':>7} {'per tap':>7} {'stacked':>7} "
              f"{'wino':>7} {'auto':>7} {'t/im2col':>8} {'t/tap':>6} {'t/stack':>7} {'t/wino':>6} {'t/auto':>6} {'max rel':>8}")
        totals = np.zeros(6)
        rng = np.random.default_rng(0)
        for (n, c, h, w, f, k, s, p, g), count in shapes.items():
            x = rng.standard_normal((n, c, h, w)).astype(np.float32)
            wt = (rng.standard_normal((f, c // g, k, k)) / np.sqrt(c // g * k * k)).astype(np.float32)
            xt, wtt = torch.from_numpy(x), torch.from_numpy(wt)
            outs = [np.empty(0, np.float32)] * 5
            oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            auto = int(dense.conv_method(c // g, k, k, s, s, 1, 1, n * ((oh + 1) // 2) * ((ow + 1) // 2)))

            def ours(method: int, slot: int) -> Callable[[], Any]:
                # the filter as a compiled model binds it (tasd-cpu-tap-major-filters)
                chosen = auto if method == dense.AUTO else method
                filt = wt
                if chosen in LAYOUTS and g == 1:
                    forward, backward = LAYOUTS[chosen]
                    filt = np.ascontiguousarray(wt.transpose(forward)).transpose(backward)

                def run() -> None:
                    outs[slot] = dense.conv2d(x, filt, (s, s), (p, p), (1, 1), g, method)
                return run

            with torch.no_grad():
                fns = [lambda: torch.nn.functional.conv2d(xt, wtt, stride=s, padding=p, groups=g),
                       ours(dense.IM2COL, 0), ours(dense.IMPLICIT, 1), ours(dense.STACKED, 2), ours(dense.WINOGRAD, 3),
                       ours(dense.AUTO, 4)]
                t = np.array(medians_interleaved(fns, args.repeat, args.clock)) * 1e3
            totals += t * count
            ref = max(np.abs(outs[0]).max(), 1e-30)
            rel = float(max(np.abs(o - outs[0]).max() for o in outs[1:]) / ref)
            label = f"{n} {c} {h} {w} -> {f} {k}x{k}/{s} p{p} g{g}"
            print(f"{label:32} {count:>2} {t[0]:7.2f} {t[1]:7.2f} {t[2]:7.2f} {t[3]:7.2f} {t[4]:7.2f} {t[5]:7.2f} "
                  f"{t[0] / t[1]:8.2f} {t[0] / t[2]:6.2f} {t[0] / t[3]:7.2f} {t[0] / t[4]:6.2f} {t[0] / t[5]:6.2f} {rel:8.1e}")
        print(f"{'total (x count)':35} {totals[0]:7.1f} {totals[1]:7.1f} {totals[2]:7.1f} {totals[3]:7.1f} {totals[4]:7.1f} "
              f"{totals[5]:7.1f} {totals[0] / totals[1]:8.2f} {totals[0] / totals[2]:6.2f} {totals[0] / totals[3]:7.2f} "
              f"{totals[0] / totals[4]:6.2f} {totals[0] / totals[5]:6.2f}")
    print(f"\nload {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
