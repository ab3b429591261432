"""The bounded fuzz run: mutated MLIR through every command, no crash.

``tools/fuzz.py`` with a fixed seed mutates the lit inputs and two compiled
example models (line drops/duplicates, numbers, shapes, op names,
truncation, random bytes, blob headers and lengths) and runs ``tasdc-opt``,
``tasdc compile/simulate/run`` on each in a forked worker. Every case must
end as exit 0 (sane output), exit 2 with one ``error:`` line, or exit 1 with
diagnostics: no traceback, signal, timeout or garbage. The case count is
fixed (not a time budget) so the run is the same on any machine; it takes
about a minute on an idle 2-core machine. The long run is
``tools/fuzz.py --cases 10000 --models examples/out``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.fuzz
def test_bounded_fuzz_run_has_no_offenders(example_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fuzz.py"), "--cases", "200", "--seed", "7", "--no-cli",
         "--models", str(example_dir), "--out", str(tmp_path / "offenders"), "--timeout", "300"],
        capture_output=True, text=True,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "200 cases" in proc.stdout
    counts = {line[:24].strip(): int(line[24:]) for line in proc.stdout.splitlines()[2:] if line[24:].strip().isdigit()}
    assert counts["exit 2 + one line"] > 0 and counts["exit 0"] > 0, "the mutants must reach both outcomes"
