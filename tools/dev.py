#!/usr/bin/env python3
"""Set up the project's virtual environment and run the main job or the tests.

    python3 tools/dev.py demo   # set up, build the examples, compile one, print its report
    python3 tools/dev.py test   # set up, then pytest (BLAS tests under both OpenBLAS kernels) and lit
                                # (installs Debian's chromium for the HTML report test when missing)

Needs only Python 3.11 and pip. The environment lives in ``.venv`` at the
repository root; setup is skipped when ``pyproject.toml`` has not changed
since the last install.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".tasdc-installed"


def run(*cmd: str | Path, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)


def setup() -> None:
    start = time.perf_counter()
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"tasdc needs Python 3.11 (torch-mlir 20261001 wheels), this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and (BIN / "tasdc").exists():
        return
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    pip = [BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # torch first and pinned: the CPU build that lies on these machines.
    run(*pip, "torch==2.13.0")
    run(*pip, "-e", ".[test]")
    # Compile the CPU runtime's Numba kernels into Numba's disk cache now, so
    # the first `tasdc run` does not pay ~20 s of Numba compilation.
    run(BIN / "python", "-m", "tasdc.runtime.cpu.warm")
    STAMP.write_text(digest)
    print(f"setup done in {time.perf_counter() - start:.0f}s", flush=True)


def demo() -> None:
    out = ROOT / "examples" / "out"
    if not (out / "cnn.pt2").exists():
        run(BIN / "python", ROOT / "examples" / "build_models.py", "--out", out)
    run(BIN / "tasdc", "compile", out / "cnn.pt2", "--config", "2:4+1:4", "--target", "vegeta", "-o", out / "cnn-2of4+1of4.mlir")


def run_streaming(*cmd: str | Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``cmd`` printing its output as it comes; return status and output."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return proc.wait(), "".join(lines)


def _count(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0


def other_blas_env(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """``env`` switched to the other OpenBLAS kernel, and its name.

    numpy's OpenBLAS picks its kernel per CPU (SkylakeX on AVX-512, Haswell
    on AVX2) unless ``OPENBLAS_CORETYPE`` forces one. The suite must hold
    under both, so the BLAS-sensitive tests (marker ``blas``) run twice: as
    the environment says, and with the core type forced the other way
    (unset when it was set: the CPU's own kernel; Haswell otherwise, which
    every x86-64 CPU with AVX2 runs).
    """
    if env.get("OPENBLAS_CORETYPE"):
        other = {k: v for k, v in env.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        return other, "OPENBLAS_CORETYPE unset (the CPU's own kernel)"
    return {**env, "OPENBLAS_CORETYPE": "Haswell"}, "OPENBLAS_CORETYPE=Haswell"


def ensure_chromium() -> None:
    """Debian's headless Chromium for the HTML report test; installed when missing (as root)."""
    import shutil

    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print("chromium is missing and cannot be installed here (needs root and apt-get): "
              "the HTML rendering test will be skipped", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("apt-get", "update", "-q", env=env, stdout=subprocess.DEVNULL)
        run("apt-get", "install", "-y", "-q", "chromium", env=env, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError as error:
        print(f"installing chromium failed ({error}): the HTML rendering test will be skipped", flush=True)


def test() -> None:
    ensure_chromium()
    env = {**os.environ, "TASDC_NO_PROGRESS": "1"}
    start = time.perf_counter()
    pytest = (BIN / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    py_status, py_out = run_streaming(*pytest, env=env)
    blas_env, blas_name = other_blas_env(env)
    print(f"BLAS-sensitive tests again, {blas_name}:", flush=True)
    blas_status, blas_out = run_streaming(*pytest, "-m", "blas", env=blas_env)
    lit_status, lit_out = run_streaming(BIN / "lit", "-sv", ROOT / "test", env=env)
    outs = (py_out, blas_out)
    passed = sum(_count(r"(\d+) passed", o) for o in outs) + _count(r"Passed\s*:\s*(\d+)", lit_out)
    failed = sum(_count(r"(\d+) failed", o) + _count(r"(\d+) error", o) for o in outs) + _count(
        r"Failed\s*:\s*(\d+)", lit_out
    )
    if (py_status or blas_status or lit_status) and not failed:
        failed = 1  # a runner failed without a count (e.g. a collection error)
    print(f"pytest exit {py_status}, pytest -m blas ({blas_name}) exit {blas_status}, lit exit {lit_status}, "
          f"{time.perf_counter() - start:.0f}s")
    print(f"tests: {passed} passed, {failed} failed", flush=True)
    if py_status or blas_status or lit_status:
        sys.exit(1)


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in ("demo", "test", "setup"):
        sys.exit(__doc__)
    setup()
    {"demo": demo, "test": test, "setup": lambda: None}[sys.argv[1]]()


if __name__ == "__main__":
    main()
