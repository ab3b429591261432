"""Same input, same output: two runs of the tools write identical files.

Each run is a fresh process with its own ``PYTHONHASHSEED``, working folder
and ``TMPDIR``, so anything that leaks a hash seed, a timestamp, a temporary
path or a dict order into an output file shows up as a byte difference:
``tasdc compile`` (the ``.mlir``, the ``--json`` report and the ``--html``
page, whose SVG plots once carried a date and random element ids, the JSON
once carried wall-clock timings) and ``tasdc-opt`` on the result (its output
and a pass's JSON).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _run(tool: str, args: list[str], cwd: Path, hash_seed: str) -> subprocess.CompletedProcess[bytes]:
    (cwd / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TASDC_NO_PROGRESS": "1", "PYTHONHASHSEED": hash_seed, "TMPDIR": str(cwd / "tmp")}
    proc = subprocess.run([str(Path(sys.executable).parent / tool), *args], cwd=cwd, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc


def test_compile_twice_gives_identical_files(example_dir: Path, tmp_path: Path) -> None:
    model = str(example_dir / "mlp.pt2")
    outputs: list[dict[str, bytes]] = []
    for run, hash_seed in (("a", "1"), ("b", "2")):
        cwd = tmp_path / run
        _run("tasdc", ["compile", model, "--config", "2:4+1:4", "--target", "vegeta", "-o", "out.mlir",
                       "--json", "out.json", "--html", "out.html"], cwd, hash_seed)
        opt = _run("tasdc-opt", ["out.mlir", "-p", "tasd-expand-to-linalg,canonicalize,tasd-sparsity-analysis{json=stats.json}"],
                   cwd, hash_seed)
        files = {name: (cwd / name).read_bytes() for name in ("out.mlir", "out.json", "out.html", "stats.json")}
        files["tasdc-opt stdout"] = opt.stdout
        outputs.append(files)
    first, second = outputs
    assert b'"tasd.series"' in first["out.mlir"] and b"<svg" in first["out.html"] and b"linalg.matmul" in first["tasdc-opt stdout"]
    for name in first:
        assert first[name] == second[name], f"{name} differs between two runs of the same input"
