"""Pass pipelines that mix tasdc's Python passes with upstream MLIR passes.

A pipeline string is a comma-separated list, e.g.
``tasd-decompose-weights{config=2:4+1:4},canonicalize,func.func(cse)``.
Names in tasdc's registry become Python passes (options in braces, MLIR
style: ``name{key=value key2=value}``); everything else must parse as an
upstream pass pipeline. Consecutive upstream entries run in one
``PassManager``.

When a step fails, the module it was given is saved and the error names a
``tasdc-opt`` command that reproduces the failure.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable, Union

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from tasdc.diagnostics import capture, record_mlir_error
from tasdc.errors import PipelineError, TasdcError
from tasdc.module import verify
from tasdc.passes import ModulePass, get_all_passes


@dataclasses.dataclass(frozen=True)
class UpstreamPasses:
    """A run of upstream MLIR passes, as one textual pipeline."""

    text: str

    def describe(self) -> str:
        return self.text


Step = Union[ModulePass, UpstreamPasses]


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside of ``()``, ``{}`` and ``[]``."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '{ch}' in pass pipeline '{text}'")
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth:
        raise PipelineError(f"unbalanced brackets in pass pipeline '{text}'")
    parts.append("".join(current).strip())
    return parts


def _parse_options(pass_name: str, body: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in body.split():
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise PipelineError(f"malformed option '{item}' for pass '{pass_name}' (expected key=value)")
        options[key] = value
    return options


def _check_upstream(text: str, context: ir.Context) -> None:
    with context, capture(context) as log:
        try:
            PassManager.parse(f"builtin.module({text})")
        except (ir.MLIRError, ValueError) as error:
            detail = log.errors[0].message if log.errors else str(error).splitlines()[0]
            raise PipelineError(f"unknown pass or bad pipeline '{text}': {detail}") from None


def parse_pipeline(text: str, context: ir.Context) -> list[Step]:
    """Parse a pipeline string into steps; unknown passes and bad options raise."""
    text = text.strip()
    if text.startswith("builtin.module(") and text.endswith(")"):
        text = text[len("builtin.module(") : -1]
    registry = get_all_passes()
    steps: list[Step] = []
    upstream: list[str] = []
    for entry in split_top_level(text) if text else []:
        if not entry:
            raise PipelineError(f"empty entry in pass pipeline '{text}'")
        name, brace, rest = entry.partition("{")
        name = name.strip()
        if name in registry:
            if brace and not rest.endswith("}"):
                raise PipelineError(f"malformed options for pass '{name}': '{entry}'")
            options = _parse_options(name, rest[:-1]) if brace else {}
            if upstream:
                steps.append(UpstreamPasses(",".join(upstream)))
                upstream = []
            steps.append(registry[name]().from_options(options))
        else:
            _check_upstream(entry, context)
            upstream.append(entry)
    if upstream:
        steps.append(UpstreamPasses(",".join(upstream)))
    return steps


def _reproducer(module_op: ir.Operation, step: Step) -> str:
    handle = tempfile.NamedTemporaryFile("w", suffix=".mlir", prefix="tasdc-repro-", delete=False)
    with handle:
        module_op.print(file=handle, enable_debug_info=True)
    return f"tasdc-opt {handle.name} -p '{step.describe()}'"


def run_step(module: ir.Module, step: Step) -> None:
    """Run one step on ``module`` in place."""
    if isinstance(step, UpstreamPasses):
        with module.context, capture(module.context) as log:
            pm = PassManager.parse(f"builtin.module({step.text})")
            try:
                pm.run(module.operation)
            except ir.MLIRError as error:
                record_mlir_error(error)
                detail = log.errors[0].format() if log.errors else str(error).splitlines()[0]
                raise PipelineError(f"pass pipeline '{step.text}' failed: {detail}") from None
    else:
        with module.context, ir.Location.unknown():
            step.run(module)


def run_pipeline(
    module: ir.Module,
    steps: list[Step],
    *,
    after_each: Callable[[Step, ir.Module], None] | None = None,
    verify_each: bool = True,
) -> None:
    """Run ``steps`` in order, verifying after each; failures carry a reproducer."""
    for step in steps:
        # Passes rewrite in place, so keep the input for a reproducer (a clone
        # shares the uniqued weight attributes; it is cheap).
        snapshot = module.operation.clone()
        try:
            run_step(module, step)
            if verify_each:
                verify(module, after=step.describe())
        except TasdcError as error:
            raise type(error)(f"{error} (reproduce with: {_reproducer(snapshot, step)})") from None
        finally:
            snapshot.erase()
        if after_each is not None:
            after_each(step, module)


def save_temps(directory: Path) -> Callable[[Step, ir.Module], None]:
    """An ``after_each`` hook writing every intermediate module to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    counter = [0]

    def hook(step: Step, module: ir.Module) -> None:
        counter[0] += 1
        name = step.describe().split("{")[0].replace("/", "_")[:60]
        (directory / f"{counter[0]:02d}-{name}.mlir").write_text(str(module))

    return hook
