"""Shared fixtures: the example models, built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("mlp", "cnn", "transformer")

os.environ.setdefault("TASDC_NO_PROGRESS", "1")


@pytest.fixture(scope="session", autouse=True)
def compile_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test (and the CLIs it starts) uses a fresh compile cache, never the user's."""
    folder = tmp_path_factory.mktemp("tasdc-cache")
    os.environ["TASDC_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/build_models.py run into a temporary folder (2 epochs: quick)."""
    out = tmp_path_factory.mktemp("examples")
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "build_models.py"), "--out", str(out), "--epochs", "2"],
        check=True,
        capture_output=True,
    )
    return out


def run_cli(*args: str, tool: str = "tasdc") -> subprocess.CompletedProcess[str]:
    """Run a console script of the project's environment."""
    exe = Path(sys.executable).parent / tool
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env={**os.environ, "TASDC_NO_PROGRESS": "1"})
