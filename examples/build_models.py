"""Build, briefly train and export the three example models to ``.pt2``.

The models learn scikit-learn's ``load_digits`` (8×8 handwritten digits, ships
with the package, no download):

* ``mlp``  — 64 → 256 → 128 → 10 with ReLU;
* ``cnn``  — two 3×3 convolutions with BatchNorm and ReLU, then a linear head;
* ``transformer`` — the 8 image rows as 8 tokens, a 2-layer pre-norm encoder
  (d=64, 4 heads, FFN 256) written with plain layers, mean-pooled, linear head.

Each is written as ``OUT/<name>.pt2`` (``torch.export.save``) together with
``OUT/<name>-calib.npz`` / ``OUT/<name>-eval.npz`` (inputs ``x`` and labels
``y``) for calibration and evaluation. Run: ``python examples/build_models.py
[--out examples/out] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MODELS = ("mlp", "cnn", "transformer")


class MLP(nn.Module):
    """A three-layer perceptron on flattened 8×8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU blocks on 1×8×8 digits and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


class EncoderLayer(nn.Module):
    """Pre-norm multi-head self-attention and feed-forward block."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ffn)
        self.ff2 = nn.Linear(ffn, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // h)
        attn = torch.matmul(torch.softmax(scores, dim=-1), v)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.ff2(F.gelu(self.ff1(self.norm2(x))))


class TinyTransformer(nn.Module):
    """Rows of an 8×8 digit as 8 tokens through a 2-layer encoder."""

    def __init__(self, d: int = 64, heads: int = 4, ffn: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(1, 8, d) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.reshape(x.shape[0], 8, 8)) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=1))


def build(name: str) -> nn.Module:
    """A fresh, untrained model by name."""
    return {"mlp": MLP, "cnn": SmallCNN, "transformer": TinyTransformer}[name]()


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test split of ``load_digits`` as float32 N×1×8×8 in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return x[:split], y[:split], x[split:], y[split:]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> None:
    """A few epochs of Adam; deterministic for a given seed."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model.eval(), (example,))
    torch.export.save(program, str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="batch size of the exported models")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = digits()
    for name in args.models.split(","):
        start = time.perf_counter()
        torch.manual_seed(0)
        model = build(name)
        train(model, xtr, ytr, args.epochs)
        export(model, torch.from_numpy(xte[: args.batch]), args.out / f"{name}.pt2")
        # Calibration from the training split, evaluation from the test split,
        # both in batches of the exported size.
        n_cal = (len(xtr) // args.batch // 4) * args.batch
        n_eval = (len(xte) // args.batch) * args.batch
        np.savez(args.out / f"{name}-calib.npz", x=xtr[:n_cal], y=ytr[:n_cal])
        np.savez(args.out / f"{name}-eval.npz", x=xte[:n_eval], y=yte[:n_eval])
        print(
            f"{name:12s} test accuracy {accuracy(model, xte, yte):.3f}  "
            f"-> {args.out / (name + '.pt2')}  ({time.perf_counter() - start:.1f}s)"
        )


if __name__ == "__main__":
    main()
