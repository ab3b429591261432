"""``tasdc simulate``: compile a model and run it on the simulated accelerator.

:func:`simulate_model` imports and compiles a model with a TASD series
(:func:`tasdc.compiler.compile_model`), plans it for a target
(``tasd-plan-accel``), lowers the plan to a tile-level program
(:mod:`tasdc.runtime.accel.program`) and executes it
(:mod:`tasdc.runtime.accel.simulator`), next to the same layers run dense on
the ``dense`` target. The result is a
:class:`~tasdc.runtime.accel.simulator.SimReport`: ``table()`` for people,
``to_json()`` for tools (schema in the simulator's docstring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasdc.compiler import CompileOptions, compile_model, write_atomically
from tasdc.runtime.accel.simulator import SimReport, simulate_module

__all__ = ["simulate_model", "SimReport"]


def simulate_model(
    source: Any,
    target: str,
    config: str = "dense",
    mode: str = "map",
    json_path: str | Path | None = None,
    *,
    baseline: str | None = "dense",
    example_inputs: Any = None,
    min_size: int = 0,
) -> SimReport:
    """Compile ``source`` with ``config`` and simulate it on ``target``.

    ``source``: a ``.pt2``/``.mlir`` path or a ``torch.nn.Module`` (with
    ``example_inputs``). ``target``: a shipped target name (``dense``, ``stc``,
    ``vegeta``, ``ttc-m8``) or a path to a hardware ``.toml``. ``mode``:
    ``map`` runs non-native patterns as the next denser native one (reported),
    ``refuse`` makes them a :class:`~tasdc.errors.TasdcError`. With
    ``json_path`` the report is also written there as JSON. User errors (bad
    model, config, target or pattern) raise :class:`~tasdc.errors.TasdcError`.
    """
    result = compile_model(source, example_inputs, CompileOptions(config=config, min_size=min_size))
    report = simulate_module(result.module, target, mode=mode, baseline=baseline)
    report.source = result.model.source
    report.config = config
    if json_path is not None:
        write_atomically(Path(json_path), report.to_json() + "\n")
    return report
