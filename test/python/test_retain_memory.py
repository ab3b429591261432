"""``runtime/cpu/memory.py``: the compiled code's large per-call buffers are reused.

A module whose call allocates a 64 MB temporary (a library matmul's output,
above glibc's largest dynamic mmap threshold, 32 MB) is run in a fresh
process with and without ``TASDC_RETAIN_MEMORY=0``; minor page faults per
call are counted with ``getrusage`` after warm-up calls. Without retention
every call maps the buffer again (64 MB / 4 KB = 16,384 faults, fewer with
transparent huge pages); with it the buffer comes back from the heap. The
counts depend on the C library, not on the CPU, load or timing: the test
asks for a tenfold difference and skips where ``mallopt`` is missing.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, numpy as np
from tasdc.module import new_context, parse_module
from tasdc.runtime.cpu.executor import compile_for_cpu
text = '''
func.func @main(%a: tensor<4096x64xf32>, %b: tensor<64x4096xf32>) -> tensor<4096xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4096x4096xf32>
  %i = linalg.fill ins(%z : f32) outs(%e : tensor<4096x4096xf32>) -> tensor<4096x4096xf32>
  %y = linalg.matmul ins(%a, %b : tensor<4096x64xf32>, tensor<64x4096xf32>) outs(%i : tensor<4096x4096xf32>) -> tensor<4096x4096xf32>
  %e2 = tensor.empty() : tensor<4096xf32>
  %f = linalg.fill ins(%z : f32) outs(%e2 : tensor<4096xf32>) -> tensor<4096xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>],
                       iterator_types = ["parallel", "reduction"]} ins(%y : tensor<4096x4096xf32>) outs(%f : tensor<4096xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.addf %in, %out : f32
    linalg.yield %r : f32
  } -> tensor<4096xf32>
  return %s : tensor<4096xf32>
}'''
exe = compile_for_cpu(parse_module(text, new_context()), cache=False)
a = np.ones((4096, 64), np.float32); b = np.ones((64, 4096), np.float32)
for _ in range(3):
    out = exe(a, b)
assert float(out[0]) == 64.0 * 4096
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    exe(a, b)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4))
"""


def _faults_per_call(retain: bool) -> float:
    env = dict(os.environ, TASDC_RETAIN_MEMORY="1" if retain else "0", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallopt"), reason="needs glibc's mallopt")
def test_large_temporaries_do_not_fault_on_every_call() -> None:
    kept = _faults_per_call(retain=True)
    mapped = _faults_per_call(retain=False)
    assert mapped > 1000, f"the module no longer maps a large buffer per call ({mapped} faults): the test needs a larger one"
    assert kept * 10 < mapped, f"{kept} faults per call with retention, {mapped} without"
