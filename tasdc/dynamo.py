"""A ``torch.compile`` backend: captured graphs compiled by tasdc, run on the CPU runtime.

::

    import tasdc
    fast = torch.compile(model, backend=tasdc.dynamo_backend(config="2:4"), dynamic=False)
    with torch.no_grad():
        y = fast(x)

``dynamo_backend(target=..., quality=..., calib=...)`` runs TASDER instead
(per-layer series for ``target`` under the quality bound, measured on the
calibration inputs when given).

Each graph TorchDynamo captures is compiled separately (a graph break gives
two graphs). The graph's parameters and buffers are frozen into the compiled
module as constants, the weights the TASD passes decompose (TASD-W decomposes
weights at compile time); the compiled function takes the graph's other
inputs. It is an inference backend: a graph that tasdc cannot take (symbolic
shapes, several outputs, gradients needed, an op torch-mlir cannot lower, …)
runs eagerly instead, with a :class:`TasdcFallbackWarning` saying why. When a
frozen weight changes after compilation (in-place update), that graph also
goes back to eager, with a warning.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


class TasdcFallbackWarning(UserWarning):
    """A captured graph runs in eager mode instead of through tasdc."""


@dataclasses.dataclass
class GraphRecord:
    """What became of one captured graph."""

    index: int
    compiled: bool
    reason: str = ""  # why it fell back to eager ("" when compiled)
    result: Any = None  # CompileResult or TasderResult when compiled


class _Unsupported(Exception):
    """A graph tasdc does not take; the message says why."""


def _is_weight(name: str, value: Any) -> bool:
    import torch

    return isinstance(value, torch.nn.Parameter) or "_parameters_" in name or "_buffers_" in name


def _frozen_module(gm: Any, example_inputs: Sequence[Any]) -> tuple[Any, list[int], list[Any]]:
    """``gm`` with its weight inputs baked in as buffers; returns the module,
    the positions of the run-time inputs and the weights."""
    import torch

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(example_inputs):
        raise _Unsupported(f"{len(placeholders)} placeholders for {len(example_inputs)} example inputs")
    runtime: list[int] = []
    weights: dict[int, Any] = {}
    for i, (node, value) in enumerate(zip(placeholders, example_inputs)):
        if not isinstance(value, torch.Tensor):
            raise _Unsupported(f"input '{node.target}' is a {type(value).__name__}, not a tensor "
                               "(symbolic shapes: use torch.compile(..., dynamic=False))")
        if _is_weight(str(node.target), value):
            weights[i] = value
        else:
            runtime.append(i)
    if not runtime:
        raise _Unsupported("the graph has no run-time inputs")
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights.values()):
        raise _Unsupported("gradients are enabled and the weights require grad; tasdc compiles inference "
                           "graphs (run under torch.no_grad() or torch.inference_mode())")

    class Frozen(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph_module = gm
            for i, w in weights.items():
                self.register_buffer(f"w{i}", w.detach().clone())

        def forward(self, *xs: Any) -> Any:
            args: list[Any] = [None] * len(placeholders)
            for i, x in zip(runtime, xs):
                args[i] = x
            for i in weights:
                args[i] = getattr(self, f"w{i}")
            out = self.graph_module(*args)
            return out[0] if isinstance(out, (tuple, list)) else out

    return Frozen().eval(), runtime, list(weights.values())


class TasdcBackend:
    """The callable handed to ``torch.compile``; ``graphs`` records every captured graph."""

    def __init__(self, config: str = "dense", *, target: str | None = None, quality: float | None = None,
                 calib: str | Path | np.ndarray | None = None, objective: str = "edp", max_terms: int = 2,
                 min_size: int = 0) -> None:
        from tasdc.decompose import parse_config
        from tasdc.errors import TasdcError

        parse_config(config)  # a bad series is the caller's error, now
        if quality is not None and target is None:
            raise TasdcError("quality needs target: TASDER chooses series for a target's native patterns")
        if quality is not None and config != "dense":
            raise TasdcError("config and quality exclude each other: with quality the series are chosen per layer")
        self.config, self.target, self.quality = config, target, quality
        self.calib, self.objective, self.max_terms, self.min_size = calib, objective, max_terms, min_size
        self.graphs: list[GraphRecord] = []
        self._calib_dir: tempfile.TemporaryDirectory[str] | None = None

    def _calib_path(self) -> str | None:
        if self.calib is None or isinstance(self.calib, (str, Path)):
            return None if self.calib is None else str(self.calib)
        if self._calib_dir is None:
            self._calib_dir = tempfile.TemporaryDirectory(prefix="tasdc-calib-")
            np.savez(Path(self._calib_dir.name) / "calib.npz", x=np.asarray(self.calib))
        return str(Path(self._calib_dir.name) / "calib.npz")

    def _compile(self, module: Any, inputs: tuple[Any, ...]) -> Any:
        if self.quality is not None:
            from tasdc.tasder import tasder_compile

            assert self.target is not None
            return tasder_compile(module, target=self.target, objective=self.objective, quality=self.quality,
                                  max_terms=self.max_terms, calib=self._calib_path(), progress=False,
                                  example_inputs=inputs)
        from tasdc.compiler import CompileOptions, compile_model

        pipeline = None
        if self.target is not None:
            pipeline = (CompileOptions(config=self.config, min_size=self.min_size).tasd_pipeline()
                        + f",tasd-plan-accel{{target={self.target}}}")
        return compile_model(module, inputs, CompileOptions(config=self.config, min_size=self.min_size,
                                                            pipeline=pipeline))

    def __call__(self, gm: Any, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        index = len(self.graphs)
        try:
            outputs = [n for n in gm.graph.nodes if n.op == "output"]
            returned = outputs[0].args[0] if outputs else None
            if isinstance(returned, (tuple, list)) and len(returned) != 1:
                raise _Unsupported(f"the graph returns {len(returned)} values; the CPU runtime returns one")
            module, runtime, weights = _frozen_module(gm, example_inputs)
            inputs = tuple(example_inputs[i] for i in runtime)
            result = self._compile(module, inputs)
            executable = (result.compile if hasattr(result, "compile") else result).cpu()
        except Exception as error:  # every reason becomes the warning's text; the graph still runs
            reason = " ".join(str(error).split()) or type(error).__name__
            if not isinstance(error, _Unsupported) and "Error" not in reason:
                reason = f"{type(error).__name__}: {reason}"
            self.graphs.append(GraphRecord(index, False, reason))
            warnings.warn(f"tasdc: graph {index} runs in eager mode: {reason}", TasdcFallbackWarning, stacklevel=2)
            return gm.forward
        self.graphs.append(GraphRecord(index, True, "", result))
        return self._runner(index, gm, runtime, weights, executable)

    def _runner(self, index: int, gm: Any, runtime: list[int], weights: list[Any], executable: Any) -> Callable[..., Any]:
        import torch

        stamps = [(w.data_ptr(), w._version) for w in weights]
        stale = [False]

        def run(*args: Any) -> tuple[Any, ...]:
            if not stale[0] and [(w.data_ptr(), w._version) for w in weights] != stamps:
                stale[0] = True
                self.graphs[index] = GraphRecord(index, False, "a frozen weight changed after compilation")
                warnings.warn(f"tasdc: graph {index} runs in eager mode from now on: a weight it froze at "
                              "compile time was modified", TasdcFallbackWarning, stacklevel=2)
            if stale[0]:
                return gm.forward(*args)
            arrays = [args[i].detach().contiguous().numpy() for i in runtime]
            return (torch.from_numpy(np.asarray(executable(*arrays))),)

        return run


def dynamo_backend(config: str = "dense", *, target: str | None = None, quality: float | None = None,
                   calib: str | Path | np.ndarray | None = None, objective: str = "edp", max_terms: int = 2,
                   min_size: int = 0) -> TasdcBackend:
    """A ``torch.compile`` backend compiling every captured graph with tasdc.

    ``config``: the series for every weight (``"2:4"``, ``"2:4+1:4"``, …).
    ``target`` + ``quality``: TASDER on that target (``objective``,
    ``max_terms``) with ``calib`` (an ``.npz``/``.npy`` path or an array of
    inputs of the captured graph) for measured layer errors and quality;
    ``target`` alone also plans the layers for it. Bad options raise
    :class:`~tasdc.errors.TasdcError` at once; graphs tasdc cannot take run
    eagerly with a :class:`TasdcFallbackWarning`.
    """
    return TasdcBackend(config, target=target, quality=quality, calib=calib, objective=objective,
                        max_terms=max_terms, min_size=min_size)
