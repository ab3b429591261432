"""A ResNet/MobileNet-style block on the CPU runtime against torch in float64:
BatchNorm folded into the convolutions (``tasd-cpu-fold-batch-norm``), zero
padding read through by the conv entries (``tasd-cpu-dense-to-library-calls``),
ReLU6, a residual add, max and global average pooling.

Tolerance: an error bound propagated layer by layer, not a fixed epsilon. A
convolution output is a sum of K products in float32 (any order: OpenBLAS
picks the order per CPU kernel), so with ``u = 2⁻²⁴`` its error is at most
``γ·(|W'| ⋆ |h|)`` with ``γ = (K + 3)·u`` (the sum, the folded filter's own
roundings ``W' = fl(W·fl(s))`` and the bias add) plus ``|W'| ⋆ E`` for an error
``E`` already in its input ``h``; ReLU, ReLU6 and max pooling do not grow an
error, an addition adds the two bounds (+ one rounding), an average adds at most
``(n + 1)·u`` of its inputs' magnitude. The test allows twice the bound. It
holds for every summation order, CPU and thread count; a wrong padding offset
or an unfolded scale gives errors the size of the activations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tasdc.compiler import CompileOptions, compile_model
from tasdc.module import clone_module, ops_named
from tasdc.passes.fold_batch_norm import FoldBatchNorm

U = 2.0 ** -24


def _bn(channels: int, seed: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    g = torch.Generator().manual_seed(seed)
    bn.running_mean.copy_(torch.rand(channels, generator=g) * 2 - 1)
    bn.running_var.copy_(torch.rand(channels, generator=g) * 2 + 0.25)
    bn.weight.data.copy_(torch.rand(channels, generator=g) * 2 - 0.5)  # some negative scales
    bn.bias.data.copy_(torch.rand(channels, generator=g) - 0.5)
    return bn


class Block(nn.Module):
    """stem conv 3×3 (padding 1) + BN + ReLU6 → depthwise 3×3 stride 2 (padding 1) + BN +
    ReLU → 1×1 conv + BN, plus a 1×1 strided shortcut with a bias → ReLU → max pool 3/2/1
    → global average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = _bn(8, 1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
        self.bn2 = _bn(8, 2)
        self.pw = nn.Conv2d(8, 16, 1, bias=False)
        self.bn3 = _bn(16, 3)
        self.short = nn.Conv2d(3, 16, 1, stride=2, bias=True)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.bn1(self.stem(x)))
        h = F.relu(self.bn2(self.dw(h)))
        h = F.relu(self.bn3(self.pw(h)) + self.short(x))
        return F.adaptive_avg_pool2d(self.pool(h), 1)


def _folded(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    return w, bn.bias.double() - bn.running_mean.double() * scale


def _conv_bound(h: torch.Tensor, err: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    k = w.shape[1] * w.shape[2] * w.shape[3]
    kw = dict(stride=conv.stride, padding=conv.padding, groups=conv.groups)
    magnitude = F.conv2d(h.abs() + err, w.abs(), **kw) + bias.abs().reshape(1, -1, 1, 1)
    return F.conv2d(err, w.abs(), **kw) + (k + 3) * U * magnitude


def _reference_and_bound(block: Block, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The block in float64 (BatchNorm as torch computes it) and the error bound of its float32 run."""
    b = block.double()
    x = x.double()
    zero = torch.zeros_like(x)
    w1, t1 = _folded(b.bn1, b.stem)
    h1 = F.relu6(b.bn1(b.stem(x)))
    e1 = _conv_bound(x, zero, w1, t1, b.stem)
    w2, t2 = _folded(b.bn2, b.dw)
    h2 = F.relu(b.bn2(b.dw(h1)))
    e2 = _conv_bound(h1, e1, w2, t2, b.dw)
    w3, t3 = _folded(b.bn3, b.pw)
    a3, s3 = b.bn3(b.pw(h2)), b.short(x)
    e3 = _conv_bound(h2, e2, w3, t3, b.pw) + _conv_bound(x, zero, b.short.weight, b.short.bias, b.short)
    e3 = e3 + U * (a3 + s3).abs()
    h3 = F.relu(a3 + s3)
    pooled, e4 = b.pool(h3), b.pool(e3)  # max pooling: an error of a pooled value is one of its inputs'
    n = pooled.shape[2] * pooled.shape[3]
    y = F.adaptive_avg_pool2d(pooled, 1)
    ey = F.adaptive_avg_pool2d(e4, 1) + (n + 1) * U * F.adaptive_avg_pool2d(pooled.abs(), 1)
    return y.detach().numpy(), ey.detach().numpy()


def test_block_matches_torch_float64_within_propagated_bound() -> None:
    torch.manual_seed(0)
    block = Block().eval()
    x = torch.randn(2, 3, 20, 21, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        result = compile_model(block, (x,), CompileOptions(config="dense"))
        # every BatchNorm is folded: no 1/sqrt(var + eps) left once the pass ran
        probe = clone_module(result.module)
        assert ops_named(probe, "math.sqrt")
        FoldBatchNorm().run(probe)
        assert not ops_named(probe, "math.sqrt")
        got = result.cpu(cache=False)(x.numpy())
        exact, bound = _reference_and_bound(block, x)
    err = np.abs(got.astype(np.float64) - exact)
    assert got.shape == exact.shape
    assert np.all(err <= 2 * bound), f"max excess {np.max(err - 2 * bound)} (max err {err.max()}, bound {bound.max()})"
