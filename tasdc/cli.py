"""``tasdc``: the command-line front door.

Commands:

* ``tasdc compile MODEL [-o OUT.mlir] [--config 2:4+1:4] [--json R.json]`` —
  import a ``.pt2`` / ``.mlir`` model, run the TASD pipeline, write the MLIR
  and print the per-layer report.

User errors print one line (``tasdc: error: …``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Sequence

from tasdc.errors import EXIT_USER_ERROR, TasdcError


def _add_compile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="import a model, decompose its weights, write MLIR and print a report")
    p.add_argument("model", type=Path, help="a torch.export archive (.pt2) or linalg-on-tensors MLIR (.mlir)")
    p.add_argument("-o", "--output", type=Path, help="where to write the compiled MLIR")
    p.add_argument("--config", default="dense", help="TASD series for every weight, e.g. 2:4+1:4 (default: dense)")
    p.add_argument("--min-size", type=int, default=0, help="weights with fewer elements stay dense")
    p.add_argument("--pipeline", help="run this pass pipeline instead of the default TASD pipeline")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--save-temps", type=Path, help="write every intermediate module to this folder")
    p.set_defaults(func=cmd_compile)


def cmd_compile(args: argparse.Namespace) -> int:
    from tasdc.compiler import CompileOptions, compile_model, write_atomically, write_json
    from tasdc.decompose import ConfigError, parse_config

    try:
        parse_config(args.config)
    except ConfigError as error:
        raise TasdcError(f"--config: {error}") from None
    options = CompileOptions(config=args.config, min_size=args.min_size, pipeline=args.pipeline, save_temps=args.save_temps)
    result = compile_model(args.model, options=options)
    if args.output:
        write_atomically(args.output, result.mlir())
    if args.json:
        write_json(args.json, {**result.report.to_json(), "timings_s": result.timings})
    print(f"tasdc compile {args.model}  config={args.config}  "
          f"(import {result.timings['import']:.2f}s, tasd {result.timings['tasd']:.2f}s)")
    print(result.report.table())
    if args.output:
        print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tasdc",
        description="Compile unstructured-sparse or dense DNNs to structured N:M sparse series (TASD).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_compile(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TasdcError as error:
        print(f"tasdc: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
