"""``tasdc sweep`` on the QoR-like grid: 1 vs 2 workers, the cache, interruption, and row checks.

Runs ``benchmarks/sweep/qor_grid.toml`` (3 example models x stc / vegeta /
ttc-m8 x quality 0.99 / 0.95, calibration and evaluation inputs) through the
``tasdc sweep`` command line, every run into a fresh results file:

1. ``--workers 1`` (cold: nothing cached);
2. ``--workers 2`` (cold);
3. ``--workers 2`` with ``--cache`` = run 2's file (the cache's effect on a
   second sweep over the same models: imports repeat, decompositions,
   calibration statistics and measurements come from the cache);
4. run 2's command again (every cell already stored);
5. ``--interrupt K``: a cold ``--workers 2`` sweep sent SIGINT once K cells
   are stored, then rerun: the rerun must run exactly the missing cells;
6. ``--check``: every row of run 2 against a single
   ``tasdc compile --target --quality --calib --eval --json`` of the same
   cell (per-layer series and EDP reduction must be equal).

One run (2026-12-03, 2 cores shared with other jobs, load average 11-14
throughout, so absolute times are ~3-6x an idle machine's): cold 1 worker
215 s, cold 2 workers 156 s (1.38x), 2 workers with the cache 76 s (2.05x
faster than cold; every decomposition, calibration, reference and
measurement a cache hit, rows equal), all-stored rerun 1.3 s; interrupted
after 5 cells, the rerun ran the 13 missing ones; 18 of 18 rows equal
single ``tasdc compile`` runs.

Prints wall times with the machine load (``os.getloadavg``) before and
after each run. Run: ``.venv/bin/python benchmarks/sweep/bench_sweep.py
[--interrupt 5] [--check]`` (about 10-20 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).resolve().parent / "qor_grid.toml"
BIN = Path(sys.executable).parent


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def sweep(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "tasdc"), "sweep", *args], capture_output=True, text=True,
                          env={**os.environ, "TASDC_NO_PROGRESS": "1"})
    if done.returncode:
        sys.exit(f"tasdc sweep {' '.join(args)} failed: {done.stderr.strip()}")
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]


def cells(path: Path) -> list[dict]:
    """The stored cells, read by ``tasdc sweep --show --json`` in its own process."""
    done = subprocess.run([str(BIN / "tasdc"), "sweep", "--show", str(path), "--json"], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr.strip())
    return json.loads(done.stdout)


def stored(path: Path) -> list[dict]:
    """Every column of the stored cells (in this process, once nothing writes)."""
    from tasdc.sweep import Store

    return Store(path, create=False).cells()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interrupt", type=int, default=0, help="also interrupt a sweep after K cells and rerun it")
    parser.add_argument("--check", action="store_true", help="compare every row with a single tasdc compile")
    parser.add_argument("--out", type=Path, help="keep the results files here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="skip the timed runs: --interrupt / --check on --out's files")
    args = parser.parse_args()
    if not (ROOT / "examples/out/transformer.pt2").exists():
        subprocess.run([sys.executable, str(ROOT / "examples/build_models.py"), "--out", str(ROOT / "examples/out")],
                       check=True)
    folder = args.out or Path(tempfile.mkdtemp(prefix="tasdc-sweep-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []

    def timed(label: str, *extra: str, out: str) -> float:
        before = load()
        seconds, summary = sweep(str(SPEC), "--out", str(folder / out), *extra)
        rows.append((label, seconds, before, load(), summary))
        print(f"{label:<44} {seconds:>7.1f} s   load {before} -> {load()}   {summary}", flush=True)
        return seconds

    if args.reuse:
        return extra_checks(args, folder)
    one = timed("cold, 1 worker", "--workers", "1", out="w1.db")
    two = timed("cold, 2 workers", "--workers", "2", out="w2.db")
    warm = timed("2 workers, cache = the cold 2-worker run", "--workers", "2", "--cache", str(folder / "w2.db"),
                 out="w2-cached.db")
    timed("rerun of the cold 2-worker run (all stored)", "--workers", "2", out="w2.db")
    print(f"speed-up 2 vs 1 worker: {one / two:.2f}x; second sweep with the cache: {two / warm:.2f}x faster")
    for name in ("w1.db", "w2.db", "w2-cached.db"):
        got = stored(folder / name)
        per_cell = sorted(c["seconds"] for c in got)
        misses = {}
        for c in got:
            for k, v in (c["cache"] or {}).items():
                misses[k] = misses.get(k, 0) + v
        print(f"  {name}: {len(got)} cells, {sum(c['status'] == 'ok' for c in got)} ok, cell seconds median "
              f"{per_cell[len(per_cell) // 2]:.1f} (sum {sum(per_cell):.0f}); cache lookups {dict(sorted(misses.items()))}")
    same = [(a["key"], a["configs"], a["edp_reduction"]) for a in stored(folder / "w2.db")]
    cached = {c["key"]: (c["key"], c["configs"], c["edp_reduction"]) for c in stored(folder / "w2-cached.db")}
    print(f"  cached run rows equal the cold run's: {all(cached[k] == (k, c, e) for k, c, e in same)}")
    extra_checks(args, folder)


def extra_checks(args: argparse.Namespace, folder: Path) -> None:
    """``--interrupt`` and ``--check`` (on the results of the cold 2-worker run in ``folder``)."""

    if args.interrupt:
        out = folder / "interrupted.db"
        for leftover in (out, out.with_name(out.name + "-wal"), out.with_name(out.name + "-shm")):
            leftover.unlink(missing_ok=True)
        cached = ["--cache", str(folder / "w2.db")]  # quicker cells; resuming does not depend on it
        proc = subprocess.Popen([str(BIN / "tasdc"), "sweep", str(SPEC), "--out", str(out), "--workers", "2", *cached],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TASDC_NO_PROGRESS": "1"},
                                # a background shell starts us with SIGINT ignored; the sweep must see Ctrl-C
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        while proc.poll() is None:
            time.sleep(1.0)
            if out.exists():
                try:
                    count = len(cells(out))
                except RuntimeError:  # the file is being created
                    continue
                if count >= args.interrupt:
                    proc.send_signal(signal.SIGINT)
                    break
        _, err = proc.communicate(timeout=120)
        before = len(cells(out))
        seconds, summary = sweep(str(SPEC), "--out", str(out), "--workers", "2", *cached)
        print(f"interrupted after {before} stored cells (exit {proc.returncode}: {err.strip().splitlines()[-1]}); "
              f"rerun {seconds:.1f} s: {summary}; now {len(cells(out))} cells")

    if args.check:
        from concurrent.futures import ThreadPoolExecutor

        def compile_cell(c: dict) -> dict:
            base = ROOT / "examples/out" / c["model"]
            with tempfile.NamedTemporaryFile(suffix=".json") as report:
                subprocess.run([str(BIN / "tasdc"), "compile", f"{base}.pt2", "--target", c["target"], "--quality",
                                str(c["quality"]), "--objective", c["objective"], "--calib", f"{base}-calib.npz",
                                "--eval", f"{base}-eval.npz", "--json", report.name],
                               check=True, capture_output=True, env={**os.environ, "TASDC_NO_PROGRESS": "1"})
                return json.loads(Path(report.name).read_text())

        bad = 0
        got = stored(folder / "w2.db")
        with ThreadPoolExecutor(2) as pool:  # two single compiles at a time (2 cores)
            singles = list(pool.map(compile_cell, got))
        for c, single in zip(got, singles):
            configs = {layer["layer"]: layer["chosen"] for layer in single["layers"]}
            ok = configs == c["configs"] and single["reduction"]["edp"] == c["edp_reduction"]
            bad += not ok
            print(f"  check {c['model']:<12} {c['target']:<7} {c['quality']:<5} "
                  f"{'equal' if ok else 'DIFFERENT'}: EDP {-c['edp_reduction']:+.2%} vs {-single['reduction']['edp']:+.2%}",
                  flush=True)
        print(f"rows equal to single tasdc compile runs: {len(got) - bad} of {len(got)}")
    print(f"results files in {folder}")


if __name__ == "__main__":
    main()
