"""``tasd-cpu-tile-batch`` through ``compile_for_cpu``: a CNN whose convolutions run one image
at a time computes what it computes on the whole batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasdc import zoo
from tasdc.compiler import CompileOptions, compile_model
from tasdc.errors import PipelineError
from tasdc.runtime.cpu.executor import compile_for_cpu

#: Thresholds of 1 byte: every run of per-image ops of the small model is tiled.
TILED = "tasd-cpu-to-llvm{tile-min-bytes=1 tile-trigger-bytes=1}"
WHOLE = "tasd-cpu-to-llvm{tile-batch=false}"


def _mobilenet(batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = zoo.MobileNetV2().eval()  # inverted residuals: 1x1 expand, depthwise, 1x1 project (+ shortcut)
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, x


def _calls(exe) -> list[int]:
    return [k.entry.calls if k.entry is not None else k.calls for k in exe.kernels]


@pytest.mark.parametrize("config", ["1:8", "2:4"])
def test_per_image_nm_convolutions_give_the_same_bits(config: str) -> None:
    """N:M kernels sum each output over its slots in one order whatever the batch, and the
    depthwise entry between them is a loop per image, so the tiled model's output is
    bit-identical to the whole-batch one; every convolution kernel is then called once per
    image (3 calls per run instead of 1)."""
    model, x = _mobilenet(3)
    result = compile_model(model, (x,), CompileOptions(config=config))
    tiled = compile_for_cpu(result.module, cache=False, lowering=TILED)
    whole = compile_for_cpu(result.module, cache=False, lowering=WHOLE)
    before_t, before_w = _calls(tiled), _calls(whole)
    got, ref = tiled(x.numpy()), whole(x.numpy())
    per_run_t = [a - b for a, b in zip(_calls(tiled), before_t)]
    per_run_w = [a - b for a, b in zip(_calls(whole), before_w)]
    convs = [i for i, k in enumerate(tiled.kernels) if k.info.get("kind") == "conv2d"]
    assert len(convs) >= 5
    assert all(per_run_w[i] == 1 for i in convs)
    assert all(per_run_t[i] == 3 for i in convs)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_bad_thresholds_are_option_errors() -> None:
    model, x = _mobilenet(2)
    result = compile_model(model, (x,), CompileOptions(config="2:4"))
    with pytest.raises(PipelineError, match="trigger-bytes must be >= min-bytes"):
        compile_for_cpu(result.module, cache=False, lowering="tasd-cpu-to-llvm{tile-min-bytes=64 tile-trigger-bytes=8}")
