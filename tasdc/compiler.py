"""The compiler as a short list of stages, and its options in one place.

``compile_model`` runs, top to bottom:

1. ``import``  — PyTorch module / ``.pt2`` / ``.mlir`` to linalg-on-tensors;
2. ``tasd``    — the TASD pipeline built from :class:`CompileOptions`
   (``tasd-split-grouped-convs`` when a series ``config`` is given,
   ``tasd-sparsity-analysis``, then ``tasd-decompose-activations`` when an
   activation series ``act_config`` is given (TASD-A), then
   ``tasd-decompose-weights`` when a series ``config`` is given), or the
   user's own ``pipeline`` string;
3. ``verify``  — after every pass (a failure carries a ``tasdc-opt``
   reproducer).

``save_temps`` writes the module after every stage and pass to a folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from torch_mlir import ir

from tasdc.diagnostics import capture
from tasdc.errors import TasdcError
from tasdc.importer import ImportedModel, import_model
from tasdc.module import verify
from tasdc.pipeline import Step, parse_pipeline, run_pipeline, save_temps, split_top_level
from tasdc.progress import StageBar
from tasdc.report import CompileReport, collect_report

if TYPE_CHECKING:
    from tasdc.runtime.cpu.executor import CpuExecutable


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    """Every option of a compile, with its default."""

    config: str = "dense"  # TASD series applied to every qualifying weight, e.g. "2:4+1:4"
    min_size: int = 0  # weights with fewer elements stay dense
    act_config: str = "dense"  # TASD-A series for the activation operand of every weight contraction
    pipeline: str | None = None  # replaces the default TASD pipeline when given
    save_temps: Path | None = None  # folder for every intermediate module

    def tasd_pipeline(self) -> str:
        """The pipeline string that the options stand for."""
        if self.pipeline is not None:
            return self.pipeline
        # Grouped convolutions become one convolution per group only when weights are decomposed:
        # dense, the runtime's grouped entry is faster than the groups one by one.
        steps = ["tasd-split-grouped-convs", "tasd-sparsity-analysis"] if self.config != "dense" else ["tasd-sparsity-analysis"]
        if self.act_config != "dense":
            steps.append(f"tasd-decompose-activations{{config={self.act_config}}}")
        if self.config != "dense":
            steps.append(f"tasd-decompose-weights{{config={self.config} min-size={self.min_size}}}")
        return ",".join(steps)


@dataclasses.dataclass
class CompileResult:
    """The compiled module, its report and how long each stage took."""

    model: ImportedModel
    report: CompileReport
    timings: dict[str, float]
    _executables: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def module(self) -> ir.Module:
        return self.model.module

    def mlir(self) -> str:
        return str(self.model.module)

    def cpu(self, expand: bool = False, cache: bool = True) -> "CpuExecutable":
        """The module JIT-compiled for the CPU (Numba N:M kernels for the series).

        With ``expand`` the series are first expanded back to dense linalg on
        their approximated weights (``tasd-expand-to-linalg``): the reference
        path, same numbers, no N:M kernels. ``cache`` reads and writes the
        on-disk compile cache (:mod:`tasdc.runtime.cpu.object_cache`).
        """
        from tasdc.runtime.cpu.executor import compile_for_cpu

        key = "expanded" if expand else "kernels"
        if key not in self._executables:
            module = self.model.module
            if expand:
                from tasdc.module import clone_module

                module = clone_module(module)
                run_pipeline(module, parse_pipeline("tasd-expand-to-linalg", module.context))
            self._executables[key] = compile_for_cpu(module, cache=cache)
        return self._executables[key]

    def __call__(self, *inputs: Any) -> Any:
        """Run the compiled model on the CPU runtime; returns a numpy array."""
        return self.cpu()(*inputs)


def compile_model(
    source: Any,
    example_inputs: Sequence[Any] | None = None,
    options: CompileOptions = CompileOptions(),
) -> CompileResult:
    """Import ``source`` and run the TASD pipeline on it."""
    timings: dict[str, float] = {}
    bar = StageBar(total=1 + len(split_top_level(options.tasd_pipeline())), desc="tasdc compile")
    try:
        bar.stage("import")
        start = time.perf_counter()
        model = import_model(source, example_inputs)
        verify(model.module, after="import")
        timings["import"] = time.perf_counter() - start
        bar.done()
        save = save_temps(Path(options.save_temps)) if options.save_temps is not None else None
        if options.save_temps is not None:
            (Path(options.save_temps) / "00-import.mlir").write_text(str(model.module))

        def after_each(step: Step, module: ir.Module) -> None:
            bar.done()
            if save is not None:
                save(step, module)

        start = time.perf_counter()
        steps = parse_pipeline(options.tasd_pipeline(), model.context)
        # Remarks (skipped layers) reach the user through the report instead.
        with capture(model.context):
            run_pipeline(model.module, steps, after_each=after_each)
        timings["tasd"] = time.perf_counter() - start
    finally:
        bar.close()
    report = collect_report(model.module, source=model.source, config=options.config)
    return CompileResult(model=model, report=report, timings=timings)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, so no half-written output remains."""
    path = Path(path)
    if path.is_dir():
        raise TasdcError(f"{path}: is a directory, expected an output file path")
    if not path.parent.exists():
        raise TasdcError(f"{path.parent}: output directory does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
