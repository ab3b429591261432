"""``tasdc``: the command-line front door.

Commands:

* ``tasdc compile MODEL [-o OUT.mlir] [--config 2:4+1:4] [--json R.json]`` —
  import a ``.pt2`` / ``.mlir`` model, run the TASD pipeline, write the MLIR
  and print the per-layer report.
* ``tasdc simulate MODEL --target stc [--config 2:4] [--json R.json]`` —
  per-layer cycles, energy and EDP on a simulated accelerator next to the
  dense baseline; ``--input`` also runs the model for real outputs.
* ``tasdc run MODEL --input x.npy [--config …] [-o y.npy]`` — compile, JIT
  for the CPU (Numba N:M kernels) and run; save the output or print a summary.
  The machine code is kept in an on-disk compile cache (``--no-cache`` skips it).
* ``tasdc cache dir|clear`` — print the compile cache's folder / empty it.
* ``tasdc sweep SPEC.toml --out RESULTS`` — a grid of TASDER compiles on Dask
  (see :mod:`tasdc.sweep`); ``tasdc sweep --show RESULTS [--json]``.
* ``tasdc report REPORT.json -o report.html`` — a JSON report as one
  self-contained HTML page with plots (``--html`` on compile/simulate does
  the same directly).

MODEL is a ``.pt2``, a linalg-on-tensors ``.mlir`` or an ``.onnx`` file.

User errors print one line (``tasdc: error: …``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from tasdc.errors import ArgumentParser, TasdcError, run_guarded


def _add_compile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="import a model, decompose its weights, write MLIR and print a report")
    p.add_argument("model", type=Path, help="a torch.export archive (.pt2) or linalg-on-tensors MLIR (.mlir)")
    p.add_argument("-o", "--output", type=Path, help="where to write the compiled MLIR")
    p.add_argument("--config", default="dense", help="TASD series for every weight, e.g. 2:4+1:4 (default: dense)")
    p.add_argument("--min-size", type=int, default=0, help="weights with fewer elements stay dense")
    p.add_argument("--act-config", default="dense", help="TASD-A: series for the activation operand of every weight contraction, decomposed at run time (default: dense)")
    p.add_argument("--pipeline", help="run this pass pipeline instead of the default TASD pipeline")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--save-temps", type=Path, help="write every intermediate module to this folder")
    p.add_argument("--target", help="plan for a simulated accelerator (dense, stc, vegeta, ttc-m8 or a .toml) and print its report")
    p.add_argument("--mode", choices=("map", "refuse"), default="map", help="non-native patterns: run as the next denser native one (map) or fail (refuse)")
    p.add_argument("--quality", type=float, help="TASDER: choose each layer's series for --target so the model keeps this quality (e.g. 0.99)")
    p.add_argument("--objective", help="TASDER objective: edp (default), latency or energy")
    p.add_argument("--max-terms", type=int, default=2, help="TASDER: at most this many terms per series")
    p.add_argument("--calib", type=Path, help="TASDER: calibration inputs (.npz: one array per model input by name, "
                   "optional labels; .npy for one input) for layer-output errors")
    p.add_argument("--eval", type=Path, help="TASDER: evaluation inputs on which quality is measured by running the model")
    p.add_argument("--metric", choices=("accuracy", "agreement", "cosine", "relerr"),
                   help="TASDER quality metric (default: accuracy with labels, agreement for classifier logits, else cosine)")
    p.add_argument("--metric-output", metavar="NAME|INDEX",
                   help="TASDER: the model output the metric is computed on (index, output<i> or the program's output "
                        "name, e.g. pooler_output; default: the first)")
    p.add_argument("--search", choices=("bisect", "ladder"),
                   help="TASDER measured search (with --calib/--eval): bisection on the greedy path with demotion of "
                   "moves that break the bound (default), or the budget ladder (a looser bound never costs more)")
    p.add_argument("--max-probes", type=int, help="TASDER: at most this many measured configurations (default 10)")
    _add_html_flag(p)
    p.set_defaults(func=cmd_compile)


def cmd_tasder(args: argparse.Namespace) -> int:
    """``tasdc compile --target T --quality Q``: the cost-driven per-layer search."""
    from tasdc.compiler import write_atomically, write_json
    from tasdc.tasder import tasder_compile

    if not args.target:
        raise TasdcError("--quality needs --target: the series are chosen for a target's native patterns")
    if args.config != "dense":
        raise TasdcError("--config and --quality exclude each other: with --quality the series are chosen per layer")
    if args.pipeline:
        raise TasdcError("--pipeline and --quality exclude each other")
    if args.act_config != "dense":
        raise TasdcError("--act-config and --quality exclude each other: with --quality the series are chosen per layer")
    _check_target(args.target)
    if args.max_probes is not None and args.max_probes < 1:
        raise TasdcError(f"--max-probes must be a positive integer, got {args.max_probes}")
    for flag, path in (("--calib", args.calib), ("--eval", args.eval)):
        if path is not None and not path.is_file():
            raise TasdcError(f"{flag} {path}: no such file")
    result = tasder_compile(
        args.model, target=args.target, objective=args.objective or "edp", quality=args.quality,
        max_terms=args.max_terms, calib=args.calib, eval=args.eval, progress=True, metric=args.metric,
        metric_output=args.metric_output,
        search=args.search or "bisect", max_probes=10 if args.max_probes is None else args.max_probes,
    )
    if args.output:
        write_atomically(args.output, result.mlir())
    data = result.to_json()
    data.pop("timings_s", None)  # wall-clock: the file stays the same for the same input (printed below instead)
    if args.json:
        write_json(args.json, data)
    _write_html(args, data)
    print(result.table())
    if args.output:
        print(f"wrote {args.output}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from tasdc.compiler import CompileOptions, compile_model, write_atomically, write_json

    _check_outputs(args)
    args.config = _normalise_config(args.config)
    tasder_flags = (args.objective, args.metric, args.metric_output, args.search, args.max_probes)
    if args.quality is not None or any(flag is not None for flag in tasder_flags):
        if args.quality is None:
            raise TasdcError("--objective, --metric, --metric-output, --search and --max-probes need --quality "
                             "(and --target)")
        return cmd_tasder(args)

    _check_act_config(args)
    pipeline = args.pipeline
    if args.target:
        _check_target(args.target)
        base = pipeline if pipeline is not None else CompileOptions(config=args.config, min_size=args.min_size, act_config=args.act_config).tasd_pipeline()
        pipeline = f"{base},tasd-plan-accel{{target={args.target} mode={args.mode}}}"
    options = CompileOptions(config=args.config, min_size=args.min_size, act_config=args.act_config,
                             pipeline=pipeline, save_temps=args.save_temps)
    result = compile_model(args.model, options=options)
    simulation = None
    if args.target:
        from tasdc.runtime.accel.simulator import simulate_module

        _check_has_layers(result)
        simulation = simulate_module(result.module, args.target, mode=args.mode)
        simulation.source, simulation.config = result.model.source, args.config
    if args.output:
        write_atomically(args.output, result.mlir())
    if args.json or args.html:
        data = result.report.to_json()  # no wall-clock timings: the same input gives the same file
        if simulation is not None:
            import json

            data["simulation"] = json.loads(simulation.to_json())
        if args.json:
            write_json(args.json, data)
        _write_html(args, data)
    act = f"  act-config={args.act_config}" if args.act_config != "dense" else ""
    print(f"tasdc compile {args.model}  config={args.config}{act}  "
          f"(import {result.timings['import']:.2f}s, tasd {result.timings['tasd']:.2f}s)")
    print(result.report.table())
    if simulation is not None:
        print()
        print(simulation.table())
    if args.output:
        print(f"wrote {args.output}")
    return 0


def _normalise_config(text: str) -> str:
    """The series config as tasdc spells it (``'  2:4 '`` → ``2:4``), or a one-line error."""
    from tasdc.decompose import ConfigError, parse_config

    try:
        return str(parse_config(text))
    except ConfigError as error:
        raise TasdcError(f"--config: {error}") from None


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse output paths that cannot be written before any work is done."""
    for flag in ("output", "json"):
        path = getattr(args, flag, None)
        if path is not None:
            name = "-o" if flag == "output" else "--json"
            if path.is_dir():
                raise TasdcError(f"{name} {path}: is a directory, expected a file path")
            if not path.parent.exists():
                raise TasdcError(f"{name} {path}: output directory does not exist ({path.parent})")
    temps = getattr(args, "save_temps", None)
    if temps is not None and temps.exists() and not temps.is_dir():
        raise TasdcError(f"--save-temps {temps}: exists and is not a directory")


def _check_has_layers(result: Any) -> None:
    """Refuse to simulate a model without one contraction layer (the report would be all zeros and inf)."""
    if not result.report.layers:
        raise TasdcError(f"{result.model.source}: no contraction layer (matmul, batch_matmul, conv2d) to simulate")


def _check_act_config(args: argparse.Namespace) -> None:
    from tasdc.decompose import ConfigError, parse_config

    try:
        parse_config(args.act_config)
    except ConfigError as error:
        raise TasdcError(f"--act-config: {error}") from None


def _check_target(target: str) -> None:
    """Fail early, with one line, on a target that does not load."""
    from tasdc.runtime.accel.hardware import load_hardware

    if any(ch.isspace() for ch in target):
        raise TasdcError(f"--target '{target}': paths with spaces are not supported")
    load_hardware(target)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="compile a model and simulate it on a structured-sparse accelerator")
    p.add_argument("model", type=Path, help="a .pt2 or linalg-on-tensors .mlir model")
    p.add_argument("--target", required=True, help="dense, stc, vegeta, ttc-m8, or a hardware .toml file")
    p.add_argument("--config", default="dense", help="TASD series for every weight (default: dense)")
    p.add_argument("--act-config", default="dense", help="TASD-A: series for the activation operand of every weight contraction, decomposed at run time (default: dense)")
    p.add_argument("--mode", choices=("map", "refuse"), default="map", help="non-native patterns: map to a denser native one, or refuse")
    p.add_argument("--json", type=Path, help="write the report as JSON (schema: tasdc/runtime/accel/simulator.py)")
    p.add_argument("--input", type=Path, help="also run the model on these inputs (.npy/.npz) and report real outputs")
    p.add_argument("-o", "--output", type=Path, help="with --input: save the outputs (.npy)")
    _add_html_flag(p)
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from tasdc.compiler import CompileOptions, compile_model, write_atomically
    from tasdc.runtime.accel.simulator import simulate_module

    args.config = _normalise_config(args.config)
    _check_act_config(args)
    _check_target(args.target)
    _check_outputs(args)
    if args.output and not args.input:
        raise TasdcError("-o needs --input: only a run produces outputs")
    source, inputs = _load_inputs(args.model, args.input) if args.input else (args.model, None)
    result = compile_model(source, options=CompileOptions(config=args.config, act_config=args.act_config))
    _check_has_layers(result)
    report = simulate_module(result.module, args.target, mode=args.mode)
    report.source, report.config = result.model.source, args.config
    if args.act_config != "dense":
        report.config = f"{args.config}, activations {args.act_config} (TASD-A)"
    if args.json:
        write_atomically(args.json, report.to_json() + "\n")
    if args.html:
        import json

        _write_html(args, {**result.report.to_json(), "simulation": json.loads(report.to_json())})
    print(report.table())
    if inputs is not None:
        # Numerics are real: the same compiled module on the CPU runtime.
        outputs = _outputs(result(*inputs))
        for output in outputs:
            flat = output.reshape(-1)
            print(f"outputs (CPU runtime): shape {list(output.shape)}  min {flat.min():.6g}  max {flat.max():.6g}  mean {flat.mean():.6g}")
        if args.output:
            import io

            buffer = io.BytesIO()
            np.save(buffer, outputs[0])
            write_bytes_atomically(args.output, buffer.getvalue())
            print(f"wrote {args.output}")
    return 0


def write_bytes_atomically(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise TasdcError(f"{path}: is a directory, expected an output file path")
    if not path.parent.exists():
        raise TasdcError(f"{path.parent}: output directory does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="compile a model and run it on the CPU runtime (Numba N:M kernels)")
    p.add_argument("model", type=Path, help="a .pt2 or linalg-on-tensors .mlir model")
    p.add_argument("--input", type=Path, required=True,
                   help="inputs: .npy (one input) or .npz with one array per model input, by name (arg0, arg1, … for .mlir)")
    p.add_argument("--config", default="dense", help="TASD series for every weight (default: dense)")
    p.add_argument("--act-config", default="dense", help="TASD-A: series for the activation operand of every weight contraction, decomposed at run time (default: dense)")
    p.add_argument("-o", "--output", type=Path, help="save outputs: .npy, or .npz with key 'output' (output0, output1, … for several)")
    p.add_argument("--repeat", type=int, default=1, help="run this many times and report the median latency")
    p.add_argument("--no-cache", action="store_true", help="JIT from scratch: neither read nor write the compile cache")
    p.set_defaults(func=cmd_run)


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="the CPU runtime's on-disk compile cache: where it is, clear it")
    p.add_argument("action", choices=("dir", "clear"), help="dir: print its folder; clear: delete its entries")
    p.set_defaults(func=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from tasdc.runtime.cpu import object_cache as cache

    if args.action == "dir":
        print(cache.cache_dir())
    else:
        removed = cache.clear()
        print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'} from {cache.cache_dir()}")
    return 0


def _load_inputs(model: Path, path: Path) -> tuple[Any, list[Any]]:
    """(what to compile, the inputs in the model's order), checked before any compile or JIT.

    An ``.npz`` is matched to the model's input names (``tasdc.importer.bind_inputs``);
    an ``.npy`` or ``arg0``, ``arg1``, … are positional.
    """
    from tasdc.arrays import read_arrays
    from tasdc.importer import bind_inputs, file_inputs

    arrays = read_arrays(path)
    specs, source = file_inputs(model)
    return source, bind_inputs(arrays, specs, str(path))


def _compile_for_run(args: argparse.Namespace) -> tuple[Any, dict[str, float]]:
    """The compiled module of ``tasdc run`` and the checked inputs (``.module``, ``.inputs``), and the timings.

    The module comes from the module cache (tasdc/module_cache.py) when this
    model file was compiled with these options before (``--no-cache``: never).
    """
    import time
    from types import SimpleNamespace

    from tasdc import module_cache
    from tasdc.arrays import read_arrays
    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.importer import bind_inputs, file_inputs
    from tasdc.module import new_context

    key = None
    if not args.no_cache and module_cache.cacheable(args.model):
        start = time.perf_counter()
        key = module_cache.cache_key(args.model, module_cache.describe_options(config=args.config, act_config=args.act_config))
        cached = module_cache.load(key, new_context())
        if cached is not None:
            inputs = bind_inputs(read_arrays(args.input), cached.inputs, str(args.input))
            return SimpleNamespace(module=cached.module, inputs=inputs), {"cache": time.perf_counter() - start}
    arrays = read_arrays(args.input)
    specs, source = file_inputs(args.model)
    inputs = bind_inputs(arrays, specs, str(args.input))
    result = compile_model(source, options=CompileOptions(config=args.config, act_config=args.act_config))
    if key is not None:
        module_cache.store(key, result.module, specs)
    return SimpleNamespace(module=result.module, inputs=inputs), result.timings


def _outputs(output: Any) -> list[Any]:
    return list(output) if isinstance(output, tuple) else [output]


def cmd_run(args: argparse.Namespace) -> int:
    import statistics
    import time

    import numpy as np

    from tasdc.runtime.cpu.executor import compile_for_cpu

    args.config = _normalise_config(args.config)
    _check_act_config(args)
    if args.repeat < 1:
        raise TasdcError(f"--repeat must be >= 1, got {args.repeat}")
    _check_outputs(args)
    if args.output and args.output.suffix not in (".npy", ".npz"):
        raise TasdcError(f"{args.output}: output must end in .npy or .npz")
    compiled, timings = _compile_for_run(args)
    inputs = compiled.inputs
    start = time.perf_counter()
    executable = compile_for_cpu(compiled.module, cache=not args.no_cache)
    jit_seconds = time.perf_counter() - start
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        output = executable(*inputs)
        times.append(time.perf_counter() - start)
    outputs = _outputs(output)
    if args.output:
        import io

        if args.output.suffix == ".npy" and len(outputs) > 1:
            raise TasdcError(f"{args.output}: the model has {len(outputs)} outputs; save them to an .npz")
        buffer = io.BytesIO()
        if args.output.suffix == ".npz":
            named = {"output": outputs[0]} if len(outputs) == 1 else {f"output{i}": o for i, o in enumerate(outputs)}
            np.savez(buffer, **named)
        else:
            np.save(buffer, outputs[0])
        write_bytes_atomically(args.output, buffer.getvalue())
        print(f"wrote {args.output}  " + ", ".join(f"shape {list(o.shape)} {o.dtype}" for o in outputs))
    else:
        for output in outputs:
            flat = output.reshape(-1).astype(np.float64)
            print(f"output shape {list(output.shape)} {output.dtype}  min {flat.min():.6g}  max {flat.max():.6g}  mean {flat.mean():.6g}")
            print(f"first values: {np.array2string(flat[:8], precision=5)}")
    label = args.config if args.model.suffix != ".mlir" or args.config != "dense" else "as compiled"
    if args.act_config != "dense":
        label += f", activations {args.act_config}"
    print(f"config {label}: compile {sum(timings.values()):.2f}s{' (from the compile cache)' if 'cache' in timings else ''}, "
          f"JIT {jit_seconds:.2f}s{' (from the compile cache)' if executable.cache_hit else ''}, "
          f"run median {statistics.median(times) * 1e3:.3f} ms over {args.repeat}")
    return 0


def _add_html_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", type=Path, help="also write the report as one self-contained HTML page with plots")


def _write_html(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """``--html PATH``: the report ``data`` as a page (tasdc/html_report.py)."""
    if getattr(args, "html", None) is None:
        return
    from tasdc.compiler import write_atomically
    from tasdc.html_report import render_html

    write_atomically(args.html, render_html(data))
    print(f"wrote {args.html}")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render a JSON report (compile, simulate or TASDER) as a self-contained HTML page")
    p.add_argument("report", type=Path, help="a JSON report written by tasdc compile/simulate --json")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the HTML page")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """``tasdc report REPORT.json -o report.html``."""
    from tasdc.compiler import write_atomically
    from tasdc.html_report import render_file
    from tasdc.module import read_text_file

    write_atomically(args.output, render_file(str(args.report), read_text_file(args.report)))
    print(f"wrote {args.output}")
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of TASDER compiles (models x targets x bounds) on Dask; resumable")
    p.add_argument("spec", nargs="?", type=Path, help="the sweep spec (.toml; see tasdc/sweep/spec.py)")
    p.add_argument("--out", type=Path, help="the results file (SQLite); finished cells in it are skipped")
    p.add_argument("--show", type=Path, metavar="RESULTS", help="print the cells of a results file and the Pareto fronts")
    p.add_argument("--json", action="store_true", help="with --show: print the cells as JSON")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, help="local cluster: worker processes (default: the number of cores)")
    p.add_argument("--cache", type=Path, help="results file holding the decomposition / statistics cache (default: --out)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor fill the cache")
    p.add_argument("--limit", type=int, help="run at most this many unfinished cells now")
    p.add_argument("--retry-failed", action="store_true", help="also rerun the cells that failed before")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """``tasdc sweep``: run a spec into a results file, or show one."""
    from tasdc.sweep import Store, load_spec

    if args.show is not None:
        if args.spec is not None or args.out is not None:
            raise TasdcError("--show takes only a results file (no spec, no --out)")
        from tasdc.sweep import show

        cells = Store(args.show, create=False).cells()
        print(show.to_json(cells) if args.json else show.table(cells))
        return 0
    if args.spec is None or args.out is None:
        raise TasdcError("sweep needs SPEC.toml and --out RESULTS (or --show RESULTS)")
    if args.json:
        raise TasdcError("--json goes with --show")
    for flag, value in (("--workers", args.workers), ("--limit", args.limit)):
        if value is not None and value < (1 if flag == "--workers" else 0):
            raise TasdcError(f"{flag} must be >= {1 if flag == '--workers' else 0}, got {value}")
    if args.scheduler and args.workers:
        raise TasdcError("--workers sizes the local cluster; it does not go with --scheduler")
    spec = load_spec(args.spec)
    Store(args.out).close()  # fail early on a bad results file
    from tasdc.sweep.run import run_sweep

    try:
        summary = run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers, cache=args.cache,
                            use_cache=not args.no_cache, limit=args.limit, retry_failed=args.retry_failed)
    except KeyboardInterrupt:
        print(f"tasdc: interrupted; finished cells are in {args.out}, rerun the same command to finish", file=sys.stderr)
        return 130
    print(f"sweep {args.spec}: {summary.total} cells: {summary.skipped} already in {args.out}, ran {summary.ran} "
          f"({summary.failed} failed) on {summary.workers} workers in {summary.seconds:.1f}s"
          + (f"; {summary.remaining} left (--limit)" if summary.remaining else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tasdc",
        description="Compile unstructured-sparse or dense DNNs to structured N:M sparse series (TASD).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_compile(sub)
    _add_run(sub)
    _add_simulate(sub)
    _add_cache(sub)
    _add_report(sub)
    _add_sweep(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    args = build_parser().parse_args(argv)
    return run_guarded("tasdc", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
