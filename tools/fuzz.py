#!/usr/bin/env python3
"""Fuzz tasdc's command-line tools with mutated MLIR and mutated arguments.

    nice -n 10 .venv/bin/python tools/fuzz.py --cases 10000 --models examples/out --out fuzz-out   # the long run
    .venv/bin/python tools/fuzz.py --cases 300 --seconds 60                  # the bounded run (in the suite)

Seeds are the lit inputs under ``test/`` and, with ``--models DIR``, the
``.pt2`` models of DIR compiled to MLIR (dense and with N:M series). Each
case mutates one seed (line drops and duplicates, numbers, tensor shapes, op
names, truncation, random bytes, blob alignment headers and lengths) or
mutates a command line, then runs ``tasdc-opt`` / ``tasdc compile`` /
``simulate`` / ``run`` on it in a forked worker (the parent imports tasdc once,
so a case costs milliseconds, not an interpreter start) under a time limit.

Outcomes: ``exit 0``, ``exit 2 + one line`` (the contract for bad input),
``exit 1 (diagnostics)``, ``internal error`` (exit 70 and one
``prog: internal error:`` line: handled, but still a compiler bug),
``more lines``, ``traceback``, ``signal``,
``timeout`` and ``garbage`` (exit 0 but ``inf``/``nan`` in the report or an
output of absurd magnitude). Offenders (anything but the first three) are
saved under ``--out`` with their input, arguments and output; the exit
status is 1 when there is any.

Every finished case appends one JSON line (index, outcome, status, what,
command) to ``--out/cases-seed<S>.jsonl``. The cases are a pure function of
the seed and the seed texts, so a long run can be split and continued:
``--shard I/N`` runs the cases whose index is I mod N (shards share one
log and never empty it), ``--resume`` skips the cases already in the log, and the
final table counts every case of the log (all shards so far).
``--table`` prints that table without running anything. The seed texts
are kept in ``--out/seeds-seed<S>/`` and a resumed run reads them from there,
so it continues the same cases after the lit inputs or the compiler changed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOOD = ("exit 0", "exit 2 + one line", "exit 1 (diagnostics)")
OUTCOMES = (*GOOD, "internal error", "more lines", "traceback", "signal", "timeout", "garbage")

PIPELINES = (
    "canonicalize",
    "tasd-sparsity-analysis",
    "tasd-decompose-weights{config=2:4}",
    "tasd-decompose-weights{config=2:4+1:4},tasd-expand-to-linalg",
    "tasd-decompose-weights{config=1:8},tasd-lower-to-runtime-calls",
    "tasd-expand-to-linalg",
    "tasd-lower-to-runtime-calls",
    "tasd-plan-accel{target=vegeta}",
    "tasd-decompose-weights{config=2:4},tasd-plan-accel{target=stc mode=refuse}",
    # Analysis passes on the linalg a decomposition expands to. (A longer tuple changes
    # which pipeline a seed picks: do not --resume a log started before these lines.)
    "tasd-decompose-weights{config=2:4+1:4},tasd-expand-to-linalg,tasd-sparsity-analysis",
    "tasd-decompose-weights{config=2:4},tasd-expand-to-linalg,tasd-plan-accel{target=vegeta}",
)
CONFIGS = ("dense", "2:4", "2:4+1:4", "1:8", "4:8+2:8", "1:2")
OP_NAMES = (
    "tasd.sparse_weight", "tasd.matmul", "tasd.batch_matmul", "tasd.conv2d", "tasd.series",
    "linalg.matmul", "linalg.batch_matmul", "linalg.generic", "arith.constant", "func.return",
)
NUMBERS = ("0", "-1", "1", "2", "3", "4", "7", "8", "255", "256", "65536", "2147483648", "-9223372036854775808",
           "99999999999999999999", "1.0e+300", "nan", "0x7FC00000")
# Command-line cases: (arguments with {model}/{x}/{dir}/{file} placeholders).
CLI_CASES = (
    "compile {model} --config 1:3", "compile {model} --config 3:3", "compile {model} --config 1:1",
    "run {model} --input {x} --config 1:3", "run {model} --input {x} --config 3:3", "simulate {model} --target stc --config 1:1",
    "run {model} --input {empty_npy}", "run {model} --input {empty_npz}", "run {model} --input /dev/null",
    "run {model} --input {huge_npy}", "run {model} --input {nan_npy}", "compile {model} --quality 1e-300 --target vegeta",
    "compile {model} -o {dir}", "compile {model} --save-temps {file}", "compile {model} --quality abc",
    "run {model} --input {x} --repeat abc", "compile {model} --mode bogus", "compile {model} --config '  2:4'",
    "compile /dev/null", "compile {empty_mlir}", "simulate {empty_mlir} --target stc",
    "compile {model} --target {huge_hw}", "compile {model} --target vegeta --quality 0.99 --calib {nan_npz}",
    "compile {model} --target vegeta --quality 0.99 --eval {nan_npz}", "compile {model} --config 2:4+", "compile {model} --config 0:4",
    "compile {model} --min-size -5", "compile {model} --max-terms 0 --quality 0.9 --target vegeta", "run {model} --input {x} --repeat 0",
    "compile {model} --target nowhere.toml", "compile", "bogus-command", "compile {model} --quality nan --target stc",
    "compile {model} --quality 2 --target stc", "run {model} --input {x} -o {dir}", "run {model} --input {x} -o out.txt",
)


@dataclass
class Case:
    """One fuzz case: which tool, its arguments and the mutated input text (if any)."""

    tool: str  # "tasdc" or "tasdc-opt"
    args: list[str]
    text: str | None
    what: str


# --------------------------------------------------------------------------- mutators

def _lines(text: str) -> list[str]:
    return text.split("\n")


def drop_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def duplicate_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines)


def change_number(rng: random.Random, text: str) -> str:
    found = list(re.finditer(r"(?<![\w#%])-?\d+(\.\d+)?(e[+-]?\d+)?(?![\w])", text))
    if not found:
        return text
    m = rng.choice(found)
    return text[: m.start()] + rng.choice(NUMBERS) + text[m.end():]


def change_shape(rng: random.Random, text: str) -> str:
    found = list(re.finditer(r"(?<=[<x])\d+(?=x)", text))
    if not found:
        return text
    m = rng.choice(found)
    return text[: m.start()] + rng.choice(("0", "1", "3", "5", "7", "1000000", "?")) + text[m.end():]


def change_op(rng: random.Random, text: str) -> str:
    found = [m for m in re.finditer(r"\b(tasd|linalg|arith|func|tensor)\.[a-z_0-9]+", text)]
    if not found:
        return text
    m = rng.choice(found)
    return text[: m.start()] + rng.choice(OP_NAMES) + text[m.end():]


def truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text) + 1)]


def random_bytes(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) + 1)
    junk = "".join(chr(rng.randrange(1, 256)) for _ in range(rng.randrange(1, 16)))
    return text[:i] + junk + text[i:]


def _blobs(text: str) -> list[re.Match[str]]:
    return list(re.finditer(r'(?m)^\s*[\w.$-]+: "0x([0-9A-Fa-f]*)"', text))


def blob_header(rng: random.Random, text: str) -> str:
    blobs = _blobs(text)
    if not blobs:
        return change_number(rng, text)
    m = rng.choice(blobs)
    value = rng.choice((0, 1, 2, 3, 8, 64, 4096, 8192, 1 << 20, 1 << 31, 0xFFFFFFFF))
    header = value.to_bytes(4, "little").hex().upper()
    return text[: m.start(1)] + header + text[m.start(1) + 8:]


def blob_length(rng: random.Random, text: str) -> str:
    blobs = _blobs(text)
    if not blobs:
        return truncate(rng, text)
    m = rng.choice(blobs)
    data = m.group(1)
    choice = rng.randrange(4)
    if choice == 0:
        new = data[: 8 + 2 * rng.randrange(max(1, (len(data) - 8) // 2))]  # shorter
    elif choice == 1:
        new = data + "00" * rng.choice((1, 4, 64))  # longer
    elif choice == 2:
        new = data[:8]  # header only
    else:  # drop the whole entry
        return text[: m.start()] + text[m.end():].lstrip(",")
    return text[: m.start(1)] + new + text[m.end(1):]


MUTATORS = (drop_line, duplicate_line, change_number, change_shape, change_op, truncate, random_bytes,
            blob_header, blob_length)


# --------------------------------------------------------------------------- cases

def seed_texts(models: Path | None, work: Path) -> list[tuple[str, str]]:
    """(name, text) of every seed: lit inputs and, with ``models``, compiled examples."""
    seeds = []
    for path in sorted((ROOT / "test").rglob("*.mlir")):
        if "Output" in path.relative_to(ROOT).parts:
            continue  # lit's scratch files: they come and go, and seeds must not (--resume)
        seeds.append((str(path.relative_to(ROOT)), path.read_text()))
    if models is not None:
        tasdc = Path(sys.executable).parent / "tasdc"
        for pt2 in [p for p in sorted(models.glob("*.pt2")) if p.stem in ("mlp", "cnn")]:  # small and quick
            for config in ("dense", "2:4+1:4"):
                out = work / f"{pt2.stem}-{config.replace(':', 'of').replace('+', '_')}.mlir"
                subprocess.run([str(tasdc), "compile", str(pt2), "--config", config, "-o", str(out)],
                               capture_output=True, env={**os.environ, "TASDC_NO_PROGRESS": "1"}, check=True)
                seeds.append((out.name, out.read_text()))
    return seeds


def save_seeds(folder: Path, seeds: list[tuple[str, str]]) -> None:
    """Keep a run's seed texts beside its log, so ``--resume`` regenerates the
    same cases after the lit inputs or the compiler changed."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    manifest = []
    for i, (name, text) in enumerate(seeds):
        file = f"{i:03d}-{name.replace('/', '_')}"
        (folder / file).write_text(text, errors="surrogateescape")
        manifest.append({"name": name, "file": file})
    (folder / "seeds.json").write_text(json.dumps(manifest, indent=1) + "\n")


def load_seeds(folder: Path) -> list[tuple[str, str]]:
    """The seed texts that :func:`save_seeds` kept."""
    return [(e["name"], (folder / e["file"]).read_text(errors="surrogateescape"))
            for e in json.loads((folder / "seeds.json").read_text())]


def make_fixtures(work: Path, model: str | None) -> dict[str, str]:
    """The files the CLI cases name."""
    import numpy as np

    f = {"dir": str(work / "a-directory"), "file": str(work / "a-file"), "empty_npy": str(work / "empty.npy"),
         "empty_npz": str(work / "empty.npz"), "huge_npy": str(work / "huge.npy"), "nan_npy": str(work / "nan.npy"),
         "nan_npz": str(work / "nan.npz"), "empty_mlir": str(work / "empty.mlir"), "huge_hw": str(work / "huge.toml"),
         "x": str(work / "x.npy"), "model": model or str(ROOT / "test" / "Passes" / "decompose-weights.mlir")}
    Path(f["dir"]).mkdir(exist_ok=True)
    Path(f["file"]).write_text("x")
    for name in ("empty_npy", "empty_npz", "empty_mlir"):
        Path(f[name]).write_bytes(b"")
    # A header that claims a 23 TiB array, followed by no data.
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2500000, 2500000), }"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    Path(f["huge_npy"]).write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    np.save(f["nan_npy"], np.full((16, 1, 8, 8), np.nan, np.float32))
    np.savez(f["nan_npz"], x=np.full((16, 1, 8, 8), np.nan, np.float32))
    np.save(f["x"], np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32))
    hw = (ROOT / "runtime" / "accel" / "hardware" / "vegeta.toml").read_text()
    Path(f["huge_hw"]).write_text(re.sub(r"(?m)^rows\s*=.*$", "rows = 1e12", hw))
    return f


def cli_cases(fixtures: dict[str, str]) -> list[Case]:
    import shlex

    return [Case("tasdc", shlex.split(line.format(**fixtures)), None, "cli: " + line) for line in CLI_CASES]


def mutant_case(rng: random.Random, seeds: list[tuple[str, str]], fixtures: dict[str, str]) -> Case:
    name, text = rng.choice(seeds)
    mutators = rng.sample(MUTATORS, rng.choice((1, 1, 2, 3)))
    for mutate in mutators:
        text = mutate(rng, text) if text else text
    what = f"{name} <- {'+'.join(m.__name__ for m in mutators)}"
    roll = rng.random()
    if roll < 0.55:
        args = ["{input}", "-p", rng.choice(PIPELINES)]
        if "// -----" in text:
            args.append("--split-input-file")
        return Case("tasdc-opt", args, text, what)
    if roll < 0.8:
        return Case("tasdc", ["compile", "{input}", "--config", rng.choice(CONFIGS), "-o", "{output}.mlir"], text, what)
    if roll < 0.95:
        return Case("tasdc", ["simulate", "{input}", "--target", rng.choice(("stc", "vegeta", "ttc-m8")),
                              "--config", rng.choice(CONFIGS)], text, what)
    return Case("tasdc", ["run", "{input}", "--input", fixtures["x"], "--config", rng.choice(CONFIGS)], text, what)


# --------------------------------------------------------------------------- running

_GARBAGE = re.compile(r"(?<![\w.])(inf|nan|infx|-inf)(?![\w])|\d\.\d*e\+(1[5-9]|[2-9]\d|\d{3})\b", re.IGNORECASE)


_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)


def _garbage(stdout: str, given: str) -> bool:
    """``inf``/``nan`` or an absurd magnitude in the output that the input did
    not already hold (a pass that prints a mutated constant back is not
    garbage: ``1.0e+300`` is a fine f64, and ``nan`` is a value one can write)."""
    given_values = {abs(float(m)) for m in _FLOAT.findall(given) if "e" in m.lower()}
    given_special = bool(re.search(r"(?<![\w.])(inf|nan)(?![\w])|0x[0-9a-f]{8}", given, re.IGNORECASE))
    for match in _GARBAGE.finditer(stdout):
        token = match.group(0)
        if token.lower().lstrip("-") in ("inf", "nan", "infx"):
            if not given_special:
                return True
        else:
            start = match.start()
            while start > 0 and stdout[start - 1] in "0123456789-":
                start -= 1
            if abs(float(stdout[start:match.end()])) not in given_values:
                return True
    return False


def classify(status: int | None, stdout: str, stderr: str, given: str = "") -> str:
    if status is None:
        return "timeout"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if status < 0:
        return "signal"
    # Remarks and warnings (e.g. of earlier --split-input-file chunks) are diagnostics, not noise.
    lines = [line for line in stderr.splitlines() if line.strip() and not re.search(r": (remark|warning|note): ", line)]
    if status == 0:
        return "garbage" if _garbage(stdout, given) else "exit 0"
    if status == 2 and len(lines) == 1 and ": error: " in lines[0]:
        return "exit 2 + one line"
    if status == 70 and len(lines) == 1 and ": internal error: " in lines[0]:
        return "internal error"
    if status == 1 and lines and all(": error:" in line or "expected" in line for line in lines):
        return "exit 1 (diagnostics)"
    return "more lines"


def _child(case: Case, workdir: Path) -> None:
    """In the forked child: run the tool's main with stdout/stderr to files."""
    out = os.open(workdir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(workdir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(workdir)
    status = 1
    try:
        import resource

        limit = 6 << 30  # no case needs more; a runaway allocation fails instead of swapping the machine
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        if case.tool == "tasdc-opt":
            from tasdc.opt import main
        else:
            from tasdc.cli import main
        status = main(case.args)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int) and exit_.code is not None:
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the point is to see it
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def run_case(case: Case, workdir: Path, timeout: float) -> tuple[str, int | None, str, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    args = list(case.args)
    if case.text is not None:
        (workdir / "input.mlir").write_text(case.text, errors="surrogateescape")
        args = [a.replace("{input}", str(workdir / "input.mlir")).replace("{output}", str(workdir / "output")) for a in args]
    case = Case(case.tool, args, case.text, case.what)
    pid = os.fork()
    if pid == 0:
        _child(case, workdir)
    deadline = time.monotonic() + timeout
    status: int | None = None
    while True:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    stdout = (workdir / "stdout").read_text(errors="replace")
    stderr = (workdir / "stderr").read_text(errors="replace")
    return classify(status, stdout, stderr, case.text or ""), status, stdout, stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="number of mutants (the CLI cases come on top)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0, help="stop starting cases after this many seconds (0: no limit)")
    parser.add_argument("--timeout", type=float, default=120, help="time limit of one case")
    parser.add_argument("--models", type=Path, help="a folder of .pt2 models to compile into seeds")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="where offenders are saved")
    parser.add_argument("--no-cli", action="store_true", help="skip the fixed command-line cases")
    parser.add_argument("--progress", type=int, default=0, help="print the running counts every N cases")
    parser.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                        help="run only the cases whose index is I modulo N (default 0/1: all)")
    parser.add_argument("--resume", action="store_true", help="skip the cases already in the log of this seed")
    parser.add_argument("--table", action="store_true", help="print the table of the log of this seed and stop")
    args = parser.parse_args(argv)
    log_path = args.out / f"cases-seed{args.seed}.jsonl"
    if args.table:
        done = read_log(log_path)
        print_table(Counter(entry["outcome"] for entry in done.values()), len(done), args.seed, log_path)
        return 1 if any(entry["outcome"] not in GOOD for entry in done.values()) else 0

    os.environ["TASDC_NO_PROGRESS"] = "1"
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tasdc-fuzz-"))
    shard, shards = args.shard
    append = args.resume or shards > 1  # shards started side by side share the log
    snapshot = args.out / f"seeds-seed{args.seed}"
    if append and (snapshot / "seeds.json").exists():
        seeds = load_seeds(snapshot)  # the run's own seeds, whatever the repository holds now
    else:
        seeds = seed_texts(args.models, work)
        save_seeds(snapshot, seeds)
    for name, text in seeds:
        if not name.startswith("test/"):  # compiled models: the CLI cases name one as a file
            (work / name).write_text(text)
    model = next((str(work / name) for name, _ in seeds if name.startswith("cnn-dense")), None)
    fixtures = make_fixtures(work, model)
    # Import everything once; every forked case inherits it.
    import tasdc.arrays, tasdc.cli, tasdc.compiler, tasdc.opt, tasdc.passes, tasdc.tasder  # noqa: E401,F401
    import tasdc.runtime.accel.simulator, tasdc.runtime.cpu.executor  # noqa: E401,F401
    from tasdc.passes import get_all_passes

    for load in get_all_passes().values():
        load()
    rng = random.Random(args.seed)
    cases = ([] if args.no_cli else cli_cases(fixtures)) + [mutant_case(rng, seeds, fixtures) for _ in range(args.cases)]
    done = read_log(log_path) if append else {}
    for index, entry in done.items():
        if index >= len(cases) or (entry["what"], _portable(entry["command"])) != (cases[index].what, _portable(
                [cases[index].tool, *cases[index].args])):
            sys.exit(f"fuzz.py: error: {log_path} case {index} ({entry['what']}) is not case {index} of this run; "
                     "the seed, --cases, --no-cli or the seed texts differ")
    if not append:
        log_path.write_text("")
    todo = [i for i in range(len(cases)) if i % shards == shard and i not in done]
    if done:
        print(f"resuming: {len(done)} cases already in {log_path}, {len(todo)} to run", flush=True)
    counts: Counter[str] = Counter()
    offenders = 0
    ran = 0
    for index in todo:
        case = cases[index]
        if args.seconds and time.monotonic() - start > args.seconds:
            break
        began = time.monotonic()
        outcome, status, stdout, stderr = run_case(case, work / f"case{index}", args.timeout)
        counts[outcome] += 1
        ran += 1
        if outcome not in GOOD:
            offenders += 1
            target = args.out / outcome.replace(" ", "_") / f"case{index:05d}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(work / f"case{index}", target)
            (target / "command").write_text(f"{case.tool} {' '.join(case.args)}\n# {case.what}\n# status {status}\n")
            print(f"case {index}: {outcome}: {case.what}: {case.tool} {' '.join(case.args)}", file=sys.stderr)
        shutil.rmtree(work / f"case{index}", ignore_errors=True)
        entry = {"index": index, "outcome": outcome, "status": status, "what": case.what,
                 "command": [case.tool, *case.args], "seconds": round(time.monotonic() - began, 3)}
        with log_path.open("a") as log:  # one short append per case: shards may share the log
            log.write(json.dumps(entry) + "\n")
        if args.progress and ran % args.progress == 0:
            print(f"after {ran} cases ({time.monotonic() - start:.0f}s): "
                  + ", ".join(f"{o} {counts[o]}" for o in OUTCOMES), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - start
    cli = sum(1 for i in todo[:ran] if cases[i].what.startswith("cli: "))
    print(f"{ran} cases ({cli} CLI) in {elapsed:.0f}s, seed {args.seed}, shard {shard}/{shards}")
    logged = read_log(log_path)
    if len(logged) != ran:  # other shards or earlier runs share the log: the table counts them all
        counts = Counter(entry["outcome"] for entry in logged.values())
    print_table(counts, max(ran, len(logged)), args.seed, log_path)
    if offenders:
        print(f"offenders saved under {args.out}")
    return 1 if offenders or any(counts[o] for o in OUTCOMES if o not in GOOD) else 0


def _portable(command: list[str]) -> list[str]:
    """A command with the run's own scratch folder (fixtures such as ``x.npy``) left out."""
    return [re.sub(r"[^\s'\"]*tasdc-fuzz-[^/\s]+", "{work}", arg) for arg in command]


def _shard(text: str) -> tuple[int, int]:
    try:
        shard, shards = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}") from None
    if not 0 <= shard < shards:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return shard, shards


def read_log(path: Path) -> dict[int, dict]:
    """The finished cases of a log, by index (a half-written last line is ignored)."""
    done: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[int(entry["index"])] = entry
    return done


def print_table(counts: Counter[str], total: int, seed: int, log_path: Path) -> None:
    print(f"table of {total} cases, seed {seed} ({log_path})")
    print(f"{'outcome':24} {'cases':>7}")
    for outcome in OUTCOMES:
        print(f"{outcome:24} {counts[outcome]:7d}")


if __name__ == "__main__":
    sys.exit(main())
