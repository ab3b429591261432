"""Models that *compute* in float16 / bfloat16 (not half weights through ``arith.extf``).

u is the unit roundoff of the half type: 2^-11 for f16, 2^-8 for bf16.

* ``.mlir`` matmul + bias + ReLU written in the half type, against float64
  numpy on the same (half) values. The JIT code rounds every product and sum
  to the half type (LLVM promotes each half op to f32 and rounds back); the
  N:M kernels accumulate in f32 and round once. Both are inside the
  recursive-summation bound |ŷ − y| ≤ γ_{K+1} (|x|·|W| + |b|), γ_n = n·u / (1 − n·u)
  (Higham, Accuracy and Stability of Numerical Algorithms, §3.1), with K + 1
  rounded additions per output (the bias add included); ReLU is exact.
* A torch model with LayerNorm, tanh-GELU, ``pow(h, 3.0)`` (math.fpowi in the
  half type), softmax, tanh and exp, converted with ``.to(dtype)``, against
  the same module in float64 on the same half weights and inputs. About
  seven stages each round once to the half type at O(1) scale (LayerNorm
  normalises, the rest is 1-Lipschitz or close to it here), so the error is
  a few u·max|y|: tolerance ``8 u·max|y|`` per output (observed ≤ 2.1 u·max|y|
  over three seeds; torch's own half run: ≤ 1.7).
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from tasdc.compiler import CompileOptions, compile_model

K, N, ROWS = 32, 16, 6
UNIT = {"f16": 2.0 ** -11, "bf16": 2.0 ** -8}
NUMPY = {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}
TORCH = {"f16": torch.float16, "bf16": torch.bfloat16}


def _hex(array: np.ndarray) -> str:
    return "0x04000000" + array.tobytes().hex().upper()


def _linear_relu(t: str, w: np.ndarray, b: np.ndarray) -> str:
    return f"""#map = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d1)>
func.func @main(%x: tensor<{ROWS}x{K}x{t}>) -> tensor<{ROWS}x{N}x{t}> {{
  %w = arith.constant dense_resource<w> : tensor<{K}x{N}x{t}>
  %b = arith.constant dense_resource<b> : tensor<{N}x{t}>
  %z = arith.constant 0.0 : {t}
  %e = tensor.empty() : tensor<{ROWS}x{N}x{t}>
  %i = linalg.fill ins(%z : {t}) outs(%e : tensor<{ROWS}x{N}x{t}>) -> tensor<{ROWS}x{N}x{t}>
  %y = linalg.matmul ins(%x, %w : tensor<{ROWS}x{K}x{t}>, tensor<{K}x{N}x{t}>) outs(%i : tensor<{ROWS}x{N}x{t}>) -> tensor<{ROWS}x{N}x{t}>
  %r = linalg.generic {{indexing_maps = [#map, #row, #map], iterator_types = ["parallel", "parallel"]}}
      ins(%y, %b : tensor<{ROWS}x{N}x{t}>, tensor<{N}x{t}>) outs(%e : tensor<{ROWS}x{N}x{t}>) {{
  ^bb0(%a: {t}, %c: {t}, %o: {t}):
    %s = arith.addf %a, %c : {t}
    %m = arith.maximumf %s, %z : {t}
    linalg.yield %m : {t}
  }} -> tensor<{ROWS}x{N}x{t}>
  return %r : tensor<{ROWS}x{N}x{t}>
}}
{{-#
  dialect_resources: {{ builtin: {{ w: "{_hex(w)}", b: "{_hex(b)}" }} }}
#-}}
"""


@pytest.mark.parametrize("t", ["f16", "bf16"])
def test_half_compute_matches_float64_within_summation_bound(tmp_path: Path, t: str) -> None:
    rng = np.random.default_rng(1)
    dtype = NUMPY[t]
    w = rng.standard_normal((K, N)).astype(dtype)
    b = rng.standard_normal(N).astype(dtype)
    x = rng.standard_normal((ROWS, K)).astype(dtype)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    want = np.maximum(x64 @ w64 + b64, 0)
    n = (K + 1) * UNIT[t]
    bound = n / (1 - n) * (np.abs(x64) @ np.abs(w64) + np.abs(b64))
    path = tmp_path / "half.mlir"
    path.write_text(_linear_relu(t, w, b))
    for config in ("dense", "2:4+2:4"):
        result = compile_model(path, options=CompileOptions(config=config))
        got = result(x)
        assert got.dtype == dtype
        error = np.abs(got.astype(np.float64) - want)
        assert (error <= bound).all(), (config, float((error / bound).max()))
    # A contraction computed in the half type keeps its semantics: it stays dense and the report says why
    # (the N:M kernels accumulate in f32; half *weights* widened by arith.extf are decomposed, test_zoo.py).
    (row,) = result.report.layers
    assert row.op != "tasd.series" and "only contractions computed in f32 are decomposed" in row.stats["skipped"]
    # The CLI, from an .npy (np.save writes bfloat16 as 2-byte void; tasdc reads it back as bfloat16).
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", str(path), "--input", str(tmp_path / "x.npy"), "--config", "2:4+2:4", "-o", str(tmp_path / "y.npy"))
    assert proc.returncode == 0, proc.stderr
    cli_out = np.load(tmp_path / "y.npy").view(dtype)
    np.testing.assert_array_equal(cli_out, got)  # the same compiled code on the same input


class _HalfBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.ln, self.l2 = nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = nn.functional.gelu(self.ln(self.l1(x)), approximate="tanh")
        h = h + 0.1 * torch.pow(h, 3.0)
        y = self.l2(h)
        return torch.softmax(y, -1), torch.tanh(y), torch.exp(y / 4).sum(-1)


@pytest.mark.parametrize("t", ["f16", "bf16"])
def test_half_torch_model_matches_float64(t: str) -> None:
    torch.manual_seed(0)
    model = _HalfBlock().to(TORCH[t]).eval()
    x = torch.randn(4, 16).to(TORCH[t])
    result = compile_model(torch.export.export(model, (x,)), options=CompileOptions(config="2:4+2:4"))
    got = result(x.float().numpy().astype(NUMPY[t]))
    with torch.no_grad():
        want = [y.numpy() for y in model.double()(x.double())]
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert g.dtype == NUMPY[t]
        error = np.abs(g.astype(np.float64) - w).max()
        assert error <= 8 * UNIT[t] * np.abs(w).max(), (t, error / (UNIT[t] * np.abs(w).max()))
