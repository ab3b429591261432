"""``tasdc-opt``: an mlir-opt-style driver over tasdc's and upstream passes.

Reads MLIR from a file or stdin, runs ``-p/--pass-pipeline`` and writes the
result to stdout or ``-o``. ``--split-input-file`` processes chunks separated
by ``// -----`` independently (each in a fresh context).

``--verify-diagnostics`` follows mlir-opt's convention: a comment
``// expected-error {{text}}`` (also ``-warning``, ``-remark``, ``-note``)
expects a diagnostic containing ``text`` on the same line; ``@+N``/``@-N``
shift the line, ``@N`` names it, ``@above``/``@below`` mean -1/+1. Every
expected diagnostic must appear and every error, warning or remark must be
expected; the exit status is 1 otherwise, 0 when all match.

User errors (missing file, parse failure, unknown pass, bad option) print one
line and exit with status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from torch_mlir import ir

from tasdc.diagnostics import Diagnostic, capture
from tasdc.errors import ArgumentParser, TasdcError, run_guarded
from tasdc.module import new_context, parse_module, read_text_file
from tasdc.pipeline import Step, parse_pipeline, run_pipeline

SPLIT_MARKER = re.compile(r"^// -----\s*$", re.MULTILINE)
EXPECTED = re.compile(
    r"expected-(?P<severity>error|warning|remark|note)\s*(?:@(?P<where>[+-]\d+|\d+|above|below))?\s*\{\{(?P<text>.*?)\}\}"
)


@dataclass
class Chunk:
    """One piece of the input and the line it starts on (1-based)."""

    text: str
    first_line: int


def split_input(text: str, split: bool) -> list[Chunk]:
    if not split:
        return [Chunk(text, 1)]
    chunks, start, line = [], 0, 1
    for match in SPLIT_MARKER.finditer(text):
        chunks.append(Chunk(text[start : match.start()], line))
        line += text[start : match.end()].count("\n") + 1
        start = match.end() + 1
    chunks.append(Chunk(text[start:], line))
    return chunks


@dataclass(frozen=True)
class Expectation:
    severity: str
    line: int
    text: str


def expectations(chunk: Chunk) -> list[Expectation]:
    found = []
    for offset, line_text in enumerate(chunk.text.splitlines()):
        line = chunk.first_line + offset
        for match in EXPECTED.finditer(line_text):
            where = match["where"]
            target = line
            if where == "above":
                target = line - 1
            elif where == "below":
                target = line + 1
            elif where and where[0] in "+-":
                target = line + int(where)
            elif where:
                target = int(where)
            found.append(Expectation(match["severity"], target, match["text"]))
    return found


def check_diagnostics(expected: list[Expectation], seen: list[Diagnostic], filename: str) -> list[str]:
    """Mismatches between expected and emitted diagnostics (empty when all match)."""
    problems: list[str] = []
    unmatched = list(seen)
    for exp in expected:
        hit = next(
            (d for d in unmatched if d.severity == exp.severity and d.line == exp.line and exp.text in d.message),
            None,
        )
        if hit is None:
            problems.append(f"{filename}:{exp.line}: expected {exp.severity} '{exp.text}' was not produced")
        else:
            unmatched.remove(hit)
    for diag in unmatched:
        if diag.severity != "note":
            problems.append(f"{filename}:{diag.line}:{diag.col}: unexpected {diag.severity}: {diag.message}")
    return problems


def _with_file(diag: Diagnostic, filename: str) -> Diagnostic:
    if diag.file in ("", "-"):
        return Diagnostic(diag.severity, diag.message, filename, diag.line, diag.col)
    return diag


def process_chunk(
    chunk: Chunk, pipeline: str, filename: str, verify_diagnostics: bool, print_after_all: bool
) -> tuple[str | None, list[Diagnostic]]:
    """Parse and transform one chunk; returns its output text (None on error) and diagnostics."""
    context = new_context()
    # Pad so that line numbers in diagnostics are those of the whole file.
    padded = "\n" * (chunk.first_line - 1) + chunk.text
    with capture(context) as log:
        try:
            steps: list[Step] = parse_pipeline(pipeline, context)
            module = parse_module(padded, context, filename)

            def after_each(step: Step, mod: ir.Module) -> None:
                if print_after_all:
                    print(f"// -----// IR Dump After {step.describe()} //----- //", file=sys.stderr)
                    print(mod, file=sys.stderr)

            run_pipeline(module, steps, after_each=after_each)
            output: str | None = str(module)
        except TasdcError as error:
            if not verify_diagnostics:
                raise
            output = None
            if not log.errors:
                log.append(Diagnostic("error", str(error)))
    return output, [_with_file(d, filename) for d in log.entries]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="tasdc-opt", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default="-", help="input .mlir file ('-' for stdin)")
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    parser.add_argument("-p", "--pass-pipeline", default="", help="comma-separated passes, e.g. 'tasd-decompose-weights{config=2:4},canonicalize'")
    parser.add_argument("--split-input-file", action="store_true", help="process '// -----'-separated chunks independently")
    parser.add_argument("--verify-diagnostics", action="store_true", help="check expected-error/remark comments (mlir-opt convention)")
    parser.add_argument("--list-passes", action="store_true", help="list tasdc's passes and their options, then exit")
    parser.add_argument("--mlir-print-ir-after-all", action="store_true", help="print the IR after every step to stderr")
    return parser


def list_passes() -> str:
    from tasdc.passes import get_all_passes

    lines = []
    for name, load in get_all_passes().items():
        cls = load()
        first_paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
        doc = " ".join(first_paragraph.split())
        lines.append(f"  {name}: {doc}")
        for option, field in cls.options().items():
            default = field.default if field.default is not field.default_factory else field.default_factory()  # type: ignore[misc]
            lines.append(f"      {option}={default}")
    lines.append("Any upstream MLIR pass (e.g. canonicalize, cse, func.func(...)) may be mixed in.")
    return "tasdc passes:\n" + "\n".join(lines)


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_passes:
        print(list_passes())
        return 0
    if args.input == "-":
        text, filename = sys.stdin.read(), "<stdin>"
    else:
        text, filename = read_text_file(args.input), str(args.input)
    outputs: list[str] = []
    problems: list[str] = []
    for chunk in split_input(text, args.split_input_file):
        output, diagnostics = process_chunk(
            chunk, args.pass_pipeline, filename, args.verify_diagnostics, args.mlir_print_ir_after_all
        )
        if args.verify_diagnostics:
            problems += check_diagnostics(expectations(chunk), diagnostics, filename)
        else:
            for diag in diagnostics:
                print(diag.format(), file=sys.stderr)
        if output is not None:
            outputs.append(output)
    result = "// -----\n".join(outputs)
    if args.output:
        Path(args.output).write_text(result)
    else:
        sys.stdout.write(result)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded("tasdc-opt", lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
