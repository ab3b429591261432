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


def test_a_run_splits_into_shards_and_resumes(tmp_path: Path) -> None:
    """Two shards share one log; the table counts both; a resumed run finds
    nothing left to do; a log of other cases (another seed's) is refused."""
    def fuzz(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz.py"), "--cases", "6", "--seed", "3", "--no-cli",
                               "--out", str(tmp_path), *args], capture_output=True, text=True)

    first = fuzz("--shard", "0/2")  # shards append to the log: started side by side, neither empties it
    assert "3 cases (0 CLI)" in first.stdout and "table of 3 cases" in first.stdout, first.stdout + first.stderr
    second = fuzz("--shard", "1/2", "--resume")
    assert "table of 6 cases" in second.stdout, second.stdout + second.stderr
    log = (tmp_path / "cases-seed3.jsonl").read_text().splitlines()
    assert sorted(int(line.split(",")[0].split(":")[1]) for line in log) == list(range(6))
    assert (tmp_path / "seeds-seed3" / "seeds.json").exists()  # the seeds a resumed run reads
    again = fuzz("--resume")
    assert "resuming: 6 cases" in again.stdout and "0 cases (0 CLI)" in again.stdout, again.stdout
    table = fuzz("--table")
    assert "table of 6 cases" in table.stdout and table.returncode == second.returncode
    (tmp_path / "cases-seed3.jsonl").write_text(log[0].replace('"what": "', '"what": "other ') + "\n")
    refused = fuzz("--resume")
    assert refused.returncode != 0 and "is not case 0 of this run" in refused.stderr, refused.stderr


def test_an_internal_error_line_is_its_own_outcome() -> None:
    """Exit 70 with one ``internal error`` line is handled (no traceback) but
    still a compiler bug: counted apart from the good outcomes; anything
    else with status 70 stays ``more lines``."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import fuzz
    finally:
        sys.path.remove(str(ROOT / "tools"))
    line = "tasdc: internal error: LLVM failed (please report this)\n"
    assert fuzz.classify(70, "", line) == "internal error"
    assert "internal error" not in fuzz.GOOD
    assert fuzz.classify(70, "", line + "extra\n") == "more lines"
    assert fuzz.classify(2, "", "tasdc: error: bad input\n") == "exit 2 + one line"


def test_a_printed_back_input_constant_is_not_garbage() -> None:
    """A mutated constant that the pass prints back (1e300 is a valid f64) is
    not garbage; the same magnitude or a nan that the input did not hold is."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import fuzz
    finally:
        sys.path.remove(str(ROOT / "tools"))
    given = "%c = arith.constant dense<[1.0e+300, 2.0]> : tensor<2xf64>"
    echoed = "%c = arith.constant dense<[1.000000e+300, 2.000000e+00]> : tensor<2xf64>"
    assert fuzz.classify(0, echoed, "", given) == "exit 0"
    assert fuzz.classify(0, "edp 3.000000e+300", "", given) == "garbage"
    assert fuzz.classify(0, "edp 11.5e+20", "", "x = 1.5e+20") == "garbage"
    assert fuzz.classify(0, "cycles nan", "", given) == "garbage"
    assert fuzz.classify(0, "dense<nan>", "", "dense<nan>") == "exit 0"
