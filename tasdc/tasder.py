"""TASDER: cost-model-driven selection of TASD series per layer, checked by running the model.

:func:`tasder_compile` is the search driver behind ``tasdc compile --target T
--quality Q``:

1. import the model once and run ``tasd-sparsity-analysis`` on it;
2. compile a copy with ``tasd-select`` (the global greedy allocation over the
   target's native series, see :mod:`tasdc.passes.select_series`) followed by
   ``tasd-decompose-weights``;
3. *measure* the quality by running the selection on the CPU runtime on the
   calibration inputs and on the evaluation inputs. The measured form is the
   model with every selected weight replaced in place by the exact sum of
   its series' terms (``tasd-approximate-weights``): the dense model's ops, so
   with weights bound at load time every probe shares the dense reference's
   compiled object (JIT -O2, once); the series form computes the same sums in
   another order. The chosen selection is compiled as series at the end.
   Inputs are batched to the model's exported batch size
   (a partial last batch is zero-padded and the padded rows dropped), against
   the dense model (the same module compiled without decomposition):

   * ``accuracy`` (the default when the files have ``labels``): top-1
     accuracy relative to the dense model's, ``accuracy / dense accuracy``
     (the bound is ``accuracy >= Q · dense accuracy``);
   * ``agreement`` (default for classifier logits: a 2-D output with more
     than one column produced by a final linear layer): top-1 agreement with
     the dense model;
   * ``cosine`` (default otherwise for outputs of rank >= 2: embeddings,
     hidden states, pooled or normalised outputs): mean cosine similarity of
     the output vectors (last axis) with the dense ones;
   * ``relerr``: ``1 − ‖y − y_dense‖ / ‖y_dense‖`` (default for rank-1 or
     single-column outputs).

   The metric is computed on the model's first output, or on the one
   ``metric_output=`` names (an index, ``output<i>``, or a key of the
   program's output such as ``pooler_output``); ``metric=`` chooses one
   explicitly and the report names the metric, the output and why.
   The bound holds when the metric is ``>= quality`` (minus 1e-6 for float
   reordering) on *every* measured set (calibration and evaluation). A probe
   runs the evaluation set first, its samples in order of the dense model's
   top-1 margin (smallest first, for the top-1 metrics), and stops as soon as
   the remaining samples could no longer lift the metric to the bound
   (:meth:`TasderSession.measure`);
4. move along the selection's greedy path until the measured bound holds.

The search (steps 2-4)
======================
Every error budget selects a prefix of one budget-independent greedy path
(see the pass), so the driver searches over *path positions* (how many
greedy steps are kept). A fixed ladder of budget levels — ``dense`` (no
step), ``0`` (lossless steps only), ``1e-4·2^k`` (k = 0..16) and ``∞`` (the
whole path) — maps to a few "rungs" of that path. The search starts at the
rung of the largest level not above the pass's predicted budget
``B(q) = 1/q² − 1``:

* bound missed → *back off*: step down the rungs, re-measuring, until the
  bound holds (``dense`` always holds: it is the reference). Stepping down
  the path undoes the latest greedy moves first — the moves that bought the
  least objective per unit of error, i.e. the most erroneous per unit of
  cost saved;
* bound met and ``relax`` on (default) → climb the rungs while the measured
  bound keeps holding: the budget rule is a conservative prediction (for a
  classifier a 14 % output perturbation rarely flips a top-1 decision).
  Not at ``quality=1.0``: that bound asks for a model exact on every input
  (lossless weight series only), which no measurement on finite inputs can
  show;
* then *refine*: between the last rung that held and the rung above it that
  failed, add one greedy step at a time while the bound holds.

Positions are measured once (the same position is the same model), and
measurements are cached per model by the per-layer series, so targets and
objectives that agree share them. The candidate positions (rungs, then
single steps between two rungs) do not depend on ``quality`` and the search
stops at the first failure going up / first success going down, so a looser
bound can only end at the same or a later position of the same path, i.e.
never at a costlier model (as long as ``max_probes`` measurements suffice).

With no calibration data the pass uses weight-space proxies (relative
Frobenius error) and the report says so; with neither calibration nor
evaluation inputs nothing is run and the pass's predicted budget is used as
is (``quality.measured = False``).

:class:`TasderSession` keeps the imported model, the dense reference outputs
and the measurements, for several searches on one model (benchmarks).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch_mlir import ir

from tasdc.compiler import CompileResult
from tasdc.diagnostics import capture
from tasdc.errors import TasdcError
from tasdc.importer import ImportedModel, import_model
from tasdc.module import verify
from tasdc.passes.approximate_weights import ApproximateWeights
from tasdc.passes.decompose_activations import DecomposeActivations
from tasdc.passes.decompose_weights import DecomposeWeights
from tasdc.allocation import budget_for_quality
from tasdc.calibration import calibration_outputs, input_batches, load_input_set, module_digest
from tasdc.errors import SelectionError
from tasdc.passes.select_series import SelectSeries, check_options, read_selection
from tasdc.passes.sparsity_analysis import SparsityAnalysis
from tasdc.pipeline import run_pipeline
from tasdc.progress import progress as _progress
from tasdc.report import collect_report

__all__ = ["TasderResult", "TasderSession", "tasder_compile", "LADDER", "QualityReport", "LayerChoice", "Probe"]

#: Budget levels of the search (None = every layer dense). Independent of the quality bound.
LADDER: tuple[float | None, ...] = (None, 0.0) + tuple(1e-4 * 2.0 ** k for k in range(17)) + (math.inf,)
QUALITY_TOLERANCE = 1e-6
_INF_BUDGET = 1e30


@dataclasses.dataclass
class QualityReport:
    """Measured quality of a compiled model on one input set."""

    dataset: str            # "calibration" | "eval"
    metric: str             # "top-1 agreement" | "cosine similarity" | "1 - relative error"
    value: float
    samples: int
    accuracy: float | None = None
    dense_accuracy: float | None = None
    #: False when the run stopped early because the bound could no longer be met:
    #: ``value`` (and ``accuracy``) are then the best the remaining samples could give (an upper bound).
    complete: bool = True

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Probe:
    """One point of the search: a budget level, what it selected and how it measured."""

    level: str
    budget: float
    steps: int
    quality: dict[str, float]
    passed: bool | None
    measured: bool          # False when the same selection was measured before (cache)
    seconds: float
    predicted: float | None = None   # quality the budget rule predicts: 1/sqrt(1 + Σ e²)
    banned: list[str] = dataclasses.field(default_factory=list)   # moves demoted when probed (bisect)
    cost: dict[str, float] = dataclasses.field(default_factory=dict)  # model totals of this selection (tasd-select)
    complete: bool = True   # False: stopped once the bound was out of reach (quality = the best still reachable)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LayerChoice:
    """The series chosen for one layer and why."""

    layer: str
    op: str
    gemm: list[int]
    chosen: str
    why: str
    metric: str
    error: float
    rel_error: float | None   # weight-space proxies: None for an activation series (TASD-A)
    l1_dropped: float | None
    output_error: float | None
    lossless: bool
    cost: dict[str, float]
    dense_cost: dict[str, float]
    candidates: list[dict[str, Any]]
    initial: str            # what the pass's predicted budget chose (before back-off / relaxation)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TasderResult:
    """The outcome of :func:`tasder_compile`."""

    compile: CompileResult
    source: str
    target: str
    objective: str
    quality_bound: float
    max_terms: int
    error_source: str
    quality_metric: str
    metric_why: str
    measured: dict[str, QualityReport]
    layers: list[LayerChoice]
    totals: dict[str, dict[str, float]]
    reduction: dict[str, float]
    probes: list[Probe]
    backed_off: list[str]
    relaxed: list[str]
    error_used: float       # Σ e² of the chosen selection (the budget it needed)
    predicted_budget: float
    timings: dict[str, float]
    notes: list[str]

    @property
    def meets_bound(self) -> bool | None:
        if not self.measured:
            return None
        return all(q.value >= self.quality_bound - QUALITY_TOLERANCE for q in self.measured.values())

    @property
    def configs(self) -> dict[str, str]:
        """Layer -> chosen series."""
        return {layer.layer: layer.chosen for layer in self.layers}

    def mlir(self) -> str:
        return self.compile.mlir()

    def __call__(self, *inputs: Any) -> Any:
        return self.compile(*inputs)

    # -- reports -----------------------------------------------------------
    def table(self) -> str:
        lines = [
            f"tasder {self.source}: target {self.target}, objective {self.objective}, "
            f"quality >= {self.quality_bound:g} ({self.quality_metric} vs the dense model), max {self.max_terms} terms",
            f"quality metric: {self.quality_metric}" + (f" ({self.metric_why})" if self.metric_why else ""),
            f"layer errors: {self.error_source}",
        ]
        header = (f"{'layer':<16} {'gemm MxKxN':<18} {'series':<10} {'error':>7} {'rel.err':>7} "
                  f"{'lat.cyc':>9} {'dense':>9} {'energy uJ':>9} {'dense':>9}  why")
        lines += [header, "-" * len(header)]
        for row in self.layers:
            g = row.gemm
            gemm = "x".join(str(v) for v in g[1:]) if len(g) == 4 else "-"
            if len(g) == 4 and g[0] > 1:
                gemm = f"{g[0]}*{gemm}"
            lines.append(
                f"{row.layer:<16} {gemm:<18} {row.chosen:<10} {row.error:>7.4f} "
                f"{'-' if row.rel_error is None else format(row.rel_error, '.4f'):>7} "
                f"{row.cost.get('latency_cycles', 0):>9.0f} {row.dense_cost.get('latency_cycles', 0):>9.0f} "
                f"{row.cost.get('energy_j', 0) * 1e6:>9.3f} {row.dense_cost.get('energy_j', 0) * 1e6:>9.3f}  {row.why}"
            )
        sel, den = self.totals.get("selected", {}), self.totals.get("dense", {})
        if sel and den:
            lines.append(f"model on {self.target} (all contractions; vs the dense model on the same target):")
            for key, label, scale, unit in (("latency_cycles", "latency", 1.0, "cycles"),
                                            ("energy_j", "energy", 1e6, "uJ"),
                                            ("edp", "EDP", 1e12, "uJ*us"),
                                            ("macs", "MACs issued", 1e-6, "M")):
                lines.append(f"  {label:<12} {den[key] * scale:>14.4g} -> {sel[key] * scale:>14.4g} {unit:<7} "
                             f"({-self.reduction[key]:+.1%})")
        if self.measured:
            for q in self.measured.values():
                extra = ""
                if q.accuracy is not None:
                    extra = f", accuracy {q.accuracy:.4f} (dense {q.dense_accuracy:.4f})"
                lines.append(f"measured on {q.dataset} ({q.samples} samples, CPU runtime): {q.metric} "
                             f"{q.value:.4f}{extra}")
            lines.append(f"bound {'met' if self.meets_bound else 'MISSED'}: {self.quality_metric} >= {self.quality_bound:g}")
        else:
            lines.append("quality not measured (no calibration or evaluation inputs): the selection relies on the "
                         f"predicted budget {self.predicted_budget:.4g} only")
        if self.probes:
            shown = ", ".join(
                f"{p.level}:{'' if p.predicted is None else f'({p.predicted:.4f})'}"
                f"{'' if p.complete else '<='}{'/'.join(f'{v:.4f}' for v in p.quality.values()) or '-'}"
                f"{'' if p.passed is None else ('+' if p.passed else 'x')}" for p in self.probes)
            lines.append(f"search (position: (predicted) measured quality per set, + met / x missed; <= stopped "
                         f"once out of reach): {shown}")
        if self.backed_off:
            lines.append(f"backed off (measured bound missed at the predicted budget): {', '.join(self.backed_off)}")
        if self.relaxed:
            lines.append(f"relaxed (measured quality had room): {', '.join(self.relaxed)}")
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "objective": self.objective,
            "quality_bound": self.quality_bound,
            "max_terms": self.max_terms,
            "error_source": self.error_source,
            "quality_metric": self.quality_metric,
            "metric_why": self.metric_why,
            "meets_bound": self.meets_bound,
            "measured": {k: v.to_json() for k, v in self.measured.items()},
            "layers": [layer.to_json() for layer in self.layers],
            "totals": self.totals,
            "reduction": self.reduction,
            "error_used": self.error_used,
            "predicted_budget": self.predicted_budget,
            "probes": [p.to_json() for p in self.probes],
            "backed_off": self.backed_off,
            "relaxed": self.relaxed,
            "timings_s": self.timings,
            "notes": self.notes,
            "report": self.compile.report.to_json(),
        }


def _level_name(level: float | None) -> str:
    if level is None:
        return "dense"
    if level == 0.0:
        return "0"
    if math.isinf(level):
        return "inf"
    return f"{level:.4g}"


METRICS = ("accuracy", "agreement", "cosine", "relerr")
_METRIC_NAMES = {"accuracy": "accuracy / dense accuracy", "agreement": "top-1 agreement",
                 "cosine": "cosine similarity", "relerr": "1 - relative error"}


def _final_linear(module: ir.Module, index: int = 0) -> bool:
    """Whether the entry's result ``index`` comes from a contraction (through bias adds and reshapes only)."""
    from tasdc.importer import entry_function

    entry = entry_function(module)
    if entry is None:
        return False
    ret = list(entry.regions[0].blocks[0].operations)[-1]
    if len(ret.operands) <= index:
        return False
    value = ret.operands[index]
    for _ in range(16):
        owner = value.owner
        if not isinstance(owner, ir.OpView):
            return False
        name = owner.name
        if name in ("linalg.matmul", "linalg.batch_matmul", "tasd.series", "linalg.conv_2d_nchw_fchw"):
            return True
        if name in ("tensor.expand_shape", "tensor.collapse_shape", "arith.addf"):
            value = owner.operands[0]
            continue
        if name == "linalg.generic":
            body = [op.name for op in owner.regions[0].blocks[0].operations]
            if body != ["arith.addf", "linalg.yield"]:
                return False  # an activation, normalisation or pooling: not raw logits
            value = owner.operands[0]
            continue
        return False
    return False


def choose_metric(output: np.ndarray, has_labels: bool, final_linear: bool, requested: str | None,
                  label: str = "the model's first output") -> tuple[str, str]:
    """(metric, why) by the documented rule (see the module docstring); ``label`` names the output in errors."""
    if requested is not None:
        if requested not in METRICS:
            raise SelectionError(f"unknown metric '{requested}'; expected one of {', '.join(METRICS)}")
        if requested == "accuracy" and not has_labels:
            raise SelectionError("metric 'accuracy' needs 'labels' in the calibration / evaluation files")
        if requested in ("accuracy", "agreement") and not (output.ndim == 2 and output.shape[1] > 1):
            raise SelectionError(f"metric '{requested}' needs a 2-D output of class scores; {label} "
                                 f"has shape {list(output.shape)}")
        return requested, "requested"
    if output.ndim == 2 and output.shape[1] > 1 and has_labels:
        return "accuracy", "the files have labels (accuracy relative to the dense model's)"
    if output.ndim == 2 and output.shape[1] > 1 and final_linear:
        return "agreement", f"classifier logits: a [N, {output.shape[1]}] output of a final linear layer"
    if output.ndim >= 2 and output.shape[-1] > 1:
        return "cosine", (f"vectors: a {list(output.shape[1:])} output per sample "
                          + ("(rank >= 3)" if output.ndim >= 3 else "not produced by a final linear layer"))
    return "relerr", f"a scalar-per-sample output {list(output.shape)}"


#: Discardable attributes the CPU lowering reads (kept by :func:`_code_only`).
_LOWERING_ATTRS = ("tasd.layer",)


def _code_only(module: ir.Module) -> ir.Module:
    """A copy of ``module`` without the selection's and the analysis' discardable
    ``tasd.*`` attributes (``tasd.select``, ``tasd.config``, ``tasd.stats``,
    ``tasd.selection``, …): reports, not code. The CPU runtime's compile cache
    keys on the module it lowers, so without them every selection that
    differs only in weight values (tasd-approximate-weights) hits the dense
    model's compiled object."""
    from tasdc.module import clone_module

    copy = clone_module(module)

    def strip(op: Any) -> Any:
        names = [getattr(a, "name", a) for a in op.attributes]
        for name in names:
            if name.startswith("tasd.") and name not in _LOWERING_ATTRS:
                del op.attributes[name]
        return ir.WalkResult.ADVANCE

    copy.operation.walk(strip)
    return copy


def _cosines(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Cosine similarity of every output vector (last axis) with the dense one (1 when both are zero)."""
    a = out.reshape(-1, out.shape[-1]).astype(np.float64)
    b = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na > 0) & (nb > 0)
    return np.where(both, np.einsum("ij,ij->i", a, b) / np.where(both, na * nb, 1.0),
                    np.where((na == 0) & (nb == 0), 1.0, 0.0))


def resolve_output(wanted: str | int | None, names: Sequence[str]) -> tuple[int, str]:
    """``(index, label)`` of the output the metric is computed on.

    ``wanted``: ``None`` (the first output; label ``""``), an index (``1`` or
    ``"1"``), ``output<i>``, or one of ``names`` (the program's output keys).
    The label reads "output 1 'pooler_output'" for the report.
    """
    if wanted is None:
        return 0, ""
    text = str(wanted).strip()
    index: int | None = None
    if text in names:
        index = list(names).index(text)
    elif text.lstrip("-").isdigit():
        index = int(text)
    elif text.startswith("output") and text[6:].isdigit():
        index = int(text[6:])
    if index is None or not 0 <= index < len(names):
        listed = ", ".join(f"{i} '{n}'" for i, n in enumerate(names)) or "none"
        raise SelectionError(f"metric output '{text}' is not an output of the model (outputs: {listed})")
    return index, f"output {index} '{names[index]}'"


class TasderSession:
    """One imported model, its dense reference and cached measurements."""

    def __init__(self, source: Any, example_inputs: Sequence[Any] | None = None, *,
                 calib: Path | str | None = None, eval: Path | str | None = None,  # noqa: A002
                 progress: bool = True, jit_opt_level: int = 2, metric: str | None = None,
                 metric_output: str | int | None = None) -> None:
        self.progress = progress
        # LLVM -O2 for the measurement JIT: the probes run the dense model's code
        # (tasd-approximate-weights), so one JIT serves the reference and every
        # weight-only probe (the compile cache), and -O0 code ran a 224x224
        # MobileNetV2 batch 3-5x slower (13 s vs 2.6-4.8 s, load 5).
        self.jit_opt_level = jit_opt_level
        self._jit: tuple[int, CompileResult, Any] | None = None
        self.timings: dict[str, float] = {}
        start = time.perf_counter()
        self.calib = str(calib) if calib is not None else None
        if metric is not None and metric not in METRICS:
            raise SelectionError(f"unknown metric '{metric}'; expected one of {', '.join(METRICS)}")
        self.requested_metric = metric
        self.metric_why = ""
        self.model = import_model(source, example_inputs)
        verify(self.model.module, after="import")
        from tasdc.importer import entry_arguments, output_names

        self.arg_types = [(tuple(shape), dtype) for shape, dtype in entry_arguments(self.model.module)]
        self.input_names = list(self.model.input_names) or [f"arg{i}" for i in range(len(self.arg_types))]
        self.sets: dict[str, tuple[list[np.ndarray], np.ndarray | None]] = {}
        for name, path in (("calibration", calib), ("eval", eval)):
            if path is not None:
                self.sets[name] = load_input_set(path, self.input_names, self.arg_types)
        self.output_index, self.output_label = resolve_output(metric_output, output_names(self.model))
        self._final_linear = _final_linear(self.model.module, self.output_index)
        with capture(self.model.context):
            run_pipeline(self.model.module, [SparsityAnalysis()])
        self.source = self.model.source
        #: module_digest of the imported module: every selection runs on an unchanged copy of it
        self.text_digest = module_digest(self.model.module) if self.calib else ""
        self.timings["import"] = time.perf_counter() - start
        self._reference: dict[str, np.ndarray] | None = None
        self._metric: str | None = None
        self._batch: int | None = None
        self._measurements: dict[tuple[str, ...], dict[str, QualityReport]] = {}
        self._orders: dict[str, np.ndarray] = {}
        self._ordered: dict[str, tuple[list[np.ndarray], np.ndarray, np.ndarray | None]] = {}

    # -- modules -----------------------------------------------------------
    def _clone(self) -> ImportedModel:
        base = self.model.module
        with base.context, ir.Location.unknown(base.context):
            clone = ir.Module.create()
            for op in base.body.operations:
                op.operation.clone(ip=ir.InsertionPoint(clone.body))
            for named in base.operation.attributes:
                clone.operation.attributes[named.name] = named.attr
        return ImportedModel(module=clone, source=self.model.source, program=self.model.program,
                             example_inputs=self.model.example_inputs, input_names=self.model.input_names)

    def compile_with(self, steps: list[Any], label: str) -> CompileResult:
        """A copy of the imported model through ``steps`` (pass objects), as a CompileResult."""
        model = self._clone()
        start = time.perf_counter()
        with capture(model.context):
            run_pipeline(model.module, steps)
        timings = {"import": self.timings["import"], "tasd": time.perf_counter() - start}
        report = collect_report(model.module, source=model.source, config=label)
        return CompileResult(model=model, report=report, timings=timings)

    # -- measuring ---------------------------------------------------------
    def _executable(self, result: CompileResult) -> Any:
        """The CPU-runtime executable of ``result``, JIT-compiled at ``jit_opt_level``."""
        from tasdc.runtime.cpu.executor import compile_for_cpu

        key = id(result)
        if self._jit is None or self._jit[0] != key:
            self._jit = (key, result, compile_for_cpu(_code_only(result.module), opt_level=self.jit_opt_level))
        return self._jit[2]

    def _batches(self, result: CompileResult, inputs: list[np.ndarray], desc: str) -> Any:
        """The measured output (the first, or ``metric_output``), batch by batch, on the samples of ``inputs``."""
        executable = self._executable(result)
        batches = input_batches(inputs, self.arg_types)
        iterator = _progress(batches, desc=desc, unit="batch") if self.progress else batches
        for chunk, real in iterator:
            out = self._trim(executable(*chunk), real)
            if out is not None:
                yield out

    def _trim(self, out: Any, real: int) -> np.ndarray | None:
        """The measured output of one batch's results ``out`` without its padded rows
        (None: a partial batch whose padded rows cannot be told apart, dropped)."""
        batch = self.arg_types[0][0][0] if self.arg_types and self.arg_types[0][0] else 1
        self._batch = batch
        if isinstance(out, tuple):
            out = out[self.output_index]
        if real < batch:
            if out.shape[0] != batch:
                return None
            out = out[:real]
        return out

    def _run(self, result: CompileResult, inputs: list[np.ndarray], desc: str) -> np.ndarray:
        """The measured output on every sample of ``inputs`` (one array per model input)."""
        return np.concatenate(list(self._batches(result, inputs, desc)), axis=0)

    def _order(self, name: str, reference: np.ndarray, samples: int) -> np.ndarray:
        """The order a measurement visits the samples of set ``name`` in: for top-1
        metrics the smallest dense top-1 margin first (the predictions a
        perturbation flips first), so that a probe that misses the bound stops
        after few batches; identity otherwise (or when outputs are not per sample)."""
        if name not in self._orders:
            order = np.arange(samples)
            if (self._metric in (_METRIC_NAMES["accuracy"], _METRIC_NAMES["agreement"])
                    and reference.ndim == 2 and reference.shape[0] == samples and reference.shape[1] > 1):
                top2 = np.sort(reference, axis=1)[:, -2:]
                order = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")
            self._orders[name] = order
        return self._orders[name]

    def reference(self) -> dict[str, np.ndarray]:
        """Dense-model outputs on every input set (computed once). The calibration
        set's come from tasd-select's calibration run when it ran in this process
        (the instrumented dense model returns the model's outputs too), so run a
        selection first (:meth:`compile` does) and the dense model runs the
        evaluation set only."""
        if self._reference is None:
            start = time.perf_counter()
            self._reference = {}
            dense: CompileResult | None = None
            for name, (x, _) in self.sets.items():
                kept = calibration_outputs(self.text_digest, self.calib) if name == "calibration" and self.calib else None
                if kept is not None and len(kept) == len(input_batches(x, self.arg_types)):
                    # the calibration run of tasd-select ran the dense model on this set already
                    outs = [self._trim(out, real)
                            for out, (_, real) in zip(kept, input_batches(x, self.arg_types))]
                    self._reference[name] = np.concatenate([o for o in outs if o is not None], axis=0)
                    continue
                dense = dense or self.compile_with([], "dense")
                self._reference[name] = self._run(dense, x, f"tasder dense {name}")
            first = next(iter(self._reference.values()), None)
            if first is None:
                self._metric = "none"
            else:
                has_labels = all(y is not None for _, y in self.sets.values())
                key, self.metric_why = choose_metric(first, has_labels, self._final_linear, self.requested_metric,
                                                     self.output_label or "the model's first output")
                if self.output_label:
                    self.metric_why = f"{self.metric_why}; on {self.output_label}"
                self._metric = _METRIC_NAMES[key]
            self.timings["reference"] = time.perf_counter() - start
        return self._reference

    @property
    def metric(self) -> str:
        self.reference()
        assert self._metric is not None
        return self._metric

    def measure(self, result: CompileResult, key: tuple[str, ...] | None = None,
                bound: float | None = None) -> tuple[dict[str, QualityReport], bool]:
        """Quality of ``result`` on every input set; ``(reports, cached)``.

        With ``bound``, the run stops as soon as the bound can no longer be met
        on a set (the rest of its samples at their best could not lift the
        metric to ``bound``): the evaluation set first, its samples in
        :meth:`_order`, and the other sets are then not run. Such reports are
        marked ``complete=False`` and carry the best value still reachable
        when the run stopped (an upper bound, below ``bound``)."""
        if key is not None and key in self._measurements:
            cached = self._measurements[key]
            if all(q.complete for q in cached.values()) or (
                    bound is not None and any(not q.complete and q.value < bound - QUALITY_TOLERANCE
                                              for q in cached.values())):
                return cached, True
        reference = self.reference()
        reports = {}
        if key is not None and key and all(c == "dense" for c in key):
            # Every layer dense: this is the reference model itself, nothing to run.
            for name, (x, y) in self.sets.items():
                ref = reference[name]
                acc = dense_acc = None
                if y is not None and ref.ndim == 2 and ref.shape[1] > 1:
                    acc = dense_acc = float((ref.argmax(axis=1) == y[:ref.shape[0]]).mean())
                reports[name] = QualityReport(name, self._metric or "", 1.0, ref.shape[0], acc, dense_acc)
            self._measurements[key] = reports
            return reports, True
        for name in sorted(self.sets, key=lambda n: n != "eval"):
            x, y = self.sets[name]
            report = self._measure_set(result, name, x, y, reference[name], bound)
            reports[name] = report
            if not report.complete:
                break
        if key is not None:
            self._measurements[key] = reports
        return reports, False

    def _measure_set(self, result: CompileResult, name: str, x: list[np.ndarray], y: np.ndarray | None,
                     reference: np.ndarray, bound: float | None) -> QualityReport:
        n_ref = reference.shape[0]
        inputs, ref_all, labels = x, reference, y
        if n_ref == x[0].shape[0]:   # one output row per sample: visit them fragile first
            if name not in self._ordered:
                order = self._order(name, reference, n_ref)
                self._ordered[name] = ([a[order] for a in x], reference[order], None if y is None else y[order])
            inputs, ref_all, labels = self._ordered[name]
        metric = self._metric
        is_acc, is_agree = metric == _METRIC_NAMES["accuracy"], metric == "top-1 agreement"
        dense_acc_all = None
        if is_acc:
            assert labels is not None
            dense_acc_all = float((ref_all.argmax(axis=1) == labels[:n_ref]).mean())
        ref_norm2 = float(np.sum(np.square(ref_all.astype(np.float64))))
        outs: list[np.ndarray] = []
        seen = 0
        score = 0.0       # correct / agreeing predictions, or the sum of cosines, or the squared error
        complete = True
        upper = math.inf
        for out in self._batches(result, inputs, f"tasder measure {name}"):
            rows = min(out.shape[0], n_ref - seen)
            out, ref = out[:rows], ref_all[seen:seen + rows]
            outs.append(out)
            if is_acc:
                score += float((out.argmax(axis=1) == labels[seen:seen + rows]).sum())
            elif is_agree:
                score += float((out.argmax(axis=1) == ref.argmax(axis=1)).sum())
            elif metric == "cosine similarity":
                score += float(_cosines(out, ref).sum())
            else:
                score += float(np.sum(np.square((out - ref).astype(np.float64))))
            seen += rows
            if bound is None or seen >= n_ref:
                continue
            # The best the whole set can still give: every remaining sample perfect.
            if is_acc:
                upper = ((score + n_ref - seen) / n_ref) / dense_acc_all if dense_acc_all else 1.0
            elif is_agree or metric == "cosine similarity":
                upper = (score + n_ref - seen) / n_ref
            else:
                upper = 1.0 - (math.sqrt(score / ref_norm2) if ref_norm2 > 0 else 0.0)
            if upper < bound - QUALITY_TOLERANCE:
                complete = False
                break
        out = np.concatenate(outs, axis=0)
        n = out.shape[0]
        ref_n = ref_all[:n]
        acc = dense_acc = None
        if not complete:
            value = upper
            if is_acc:
                acc, dense_acc = (score + n_ref - seen) / n_ref, dense_acc_all
        elif is_acc:
            acc = float((out.argmax(axis=1) == labels[:n]).mean())
            dense_acc = float((ref_n.argmax(axis=1) == labels[:n]).mean())
            value = acc / dense_acc if dense_acc > 0 else (1.0 if acc >= dense_acc else 0.0)
        elif is_agree:
            pred, dpred = out.argmax(axis=1), ref_n.argmax(axis=1)
            value = float((pred == dpred).mean())
            if labels is not None:
                acc = float((pred == labels[:n]).mean())
                dense_acc = float((dpred == labels[:n]).mean())
        elif metric == "cosine similarity":
            value = float(_cosines(out, ref_n).mean())
        else:
            den = float(np.linalg.norm(ref_n.astype(np.float64)))
            num = float(np.linalg.norm((out - ref_n).astype(np.float64)))
            value = 1.0 - (num / den if den > 0 else (0.0 if num == 0 else math.inf))
        return QualityReport(name, metric or "", value, n, acc, dense_acc, complete)

    # -- the search --------------------------------------------------------
    def compile(self, target: str, objective: str = "edp", quality: float = 0.99, max_terms: int = 2, *,
                relax: bool = True, max_probes: int = 10, search: str = "ladder") -> "TasderResult":
        """Search the series per layer for ``target`` (see module docstring).

        ``search="ladder"``: the budget ladder with back-off / relaxation /
        refinement above; ``search="bisect"``: bisection on the greedy path
        with demotion of the moves that break the measured bound
        (:mod:`tasdc.path_search`)."""
        check_options(target, objective, quality, max_terms)
        if search not in ("ladder", "bisect"):
            raise SelectionError(f"search must be 'ladder' or 'bisect', got '{search}'")
        if isinstance(max_probes, bool) or not isinstance(max_probes, int) or max_probes < 1:
            raise SelectionError(f"max_probes must be a positive integer, got '{max_probes}'")
        start_all = time.perf_counter()
        timings = {"import": self.timings["import"]}
        notes: list[str] = []
        predicted = budget_for_quality(quality)
        measuring = bool(self.sets)

        def select(level: float | None, exact: float | None = None, steps: int = -1, ban: str = "",
                   decompose: bool = True, approximate: bool = False) -> CompileResult:
            """Compile at a budget level (None: all dense), an exact budget, or a path prefix of ``steps``.
            ``approximate``: the form the probes run (the selected weights approximated in place,
            tasd-approximate-weights: the dense model's code); else decomposed into series (``decompose``)."""
            budget = exact if exact is not None else (0.0 if level is None else
                                                      (_INF_BUDGET if math.isinf(level) else level))
            if level is None and exact is None:
                steps = 0
            passes = [SelectSeries(target=target, objective=objective, quality=quality, max_terms=max_terms,
                                   calib=self.calib or "", budget=budget, max_steps=steps,
                                   input_names=",".join(self.input_names), ban=ban,
                                   calib_digest=self.text_digest if self.calib else ""),
                      DecomposeActivations(config="dense")]
            if approximate:
                passes.append(ApproximateWeights())
            elif decompose:
                passes.append(DecomposeWeights())
            t = time.perf_counter()
            result = self.compile_with(passes, f"tasder:{target}")
            timings["select+decompose"] = timings.get("select+decompose", 0.0) + time.perf_counter() - t
            return result

        def configs_of(result: CompileResult) -> tuple[str, ...]:
            return tuple(row.stats["select"]["chosen"] for row in result.report.layers if "select" in row.stats)

        probes: list[Probe] = []
        if measuring and search == "bisect":
            result, reports, initial, chosen_level = self._bisect(select, configs_of, quality, max_probes,
                                                                  probes, timings, notes)
        elif not measuring:
            result = select(None, exact=predicted)
            chosen_level: float = predicted
            initial = configs_of(result)
            reports: dict[str, QualityReport] = {}
            notes.append("no calibration or evaluation inputs: quality not measured")
        else:
            levels = list(LADDER)
            numeric = [-1.0 if lv is None else lv for lv in levels]
            s = max(i for i, v in enumerate(numeric) if v <= predicted)
            first = select(levels[s], decompose=False)   # the calibration run first: it gives the calibration reference
            if self._reference is None:
                self.reference()
                timings["reference"] = self.timings["reference"]
            summary = read_selection(first.module)
            used = list(summary.get("path_used", []))

            def position(i: int) -> int:
                lv = levels[i]
                if lv is None:
                    return 0
                if lv == 0.0:  # what a zero budget keeps (it also stops at the first activation move)
                    return int(summary.get("path_exact_steps", 0))
                return sum(1 for u in used if u <= lv + 1e-12 * max(1.0, lv if math.isfinite(lv) else 1.0))

            # Distinct path positions reached by the ladder, ascending, with the level naming each.
            ladder: dict[int, str] = {}
            for i in range(len(levels)):
                ladder.setdefault(position(i), _level_name(levels[i]))
            rungs = sorted(ladder)
            cache: dict[int, tuple[CompileResult, dict[str, QualityReport], bool]] = {}
            measured_count = [0]

            def probe(pos: int) -> bool:
                if pos in cache:
                    return cache[pos][2]
                t = time.perf_counter()
                result = select(math.inf, steps=pos, approximate=True)
                key = configs_of(result)
                reps, was_cached = self.measure(result, key, quality)
                if not was_cached:
                    measured_count[0] += 1
                ok = all(q.value >= quality - QUALITY_TOLERANCE for q in reps.values())
                cache[pos] = (result, reps, ok)
                dt = time.perf_counter() - t
                timings["measure"] = timings.get("measure", 0.0) + dt
                probes.append(Probe(ladder.get(pos, f"step {pos}"), used[pos - 1] if pos else 0.0, pos,
                                    {k: q.value for k, q in reps.items()}, ok, not was_cached, dt,
                                    cost=dict(read_selection(result.module).get("totals", {}).get("selected", {})),
                                    complete=all(q.complete for q in reps.values())))
                return ok

            initial = configs_of(first)
            start = position(s)
            k = rungs.index(start)
            best: int | None = None
            fail: int | None = None
            if probe(start):
                best = start
                if relax and quality < 1.0:  # 1.0 = exact on every input: no measurement can show it
                    k += 1
                    while k < len(rungs) and measured_count[0] < max_probes:
                        if not probe(rungs[k]):
                            fail = rungs[k]
                            break
                        best = rungs[k]
                        k += 1
            else:
                fail = start
                for k in range(k - 1, -1, -1):
                    if probe(rungs[k]):
                        best = rungs[k]
                        break
                    fail = rungs[k]
            assert best is not None, "the dense level always meets the bound"
            # Refine between the last passing rung and the failing one above it, one path step at a time.
            if fail is not None:
                for pos in range(best + 1, fail):
                    if measured_count[0] >= max_probes:
                        break
                    if not probe(pos):
                        break
                    best = pos
            if measured_count[0] >= max_probes:
                notes.append(f"search stopped after {max_probes} measured configurations (max_probes)")
            _, reports, _ = cache[best]
            result = select(math.inf, steps=best)      # the chosen selection as series
            chosen_level = used[best - 1] if best else 0.0
        timings["total"] = time.perf_counter() - start_all + self.timings["import"]
        return self._result(result, target, objective, quality, max_terms, reports, probes, initial,
                            chosen_level, predicted, timings, notes)

    def _bisect(self, select: Any, configs_of: Any, quality: float, max_probes: int, probes: list[Probe],
                timings: dict[str, float], notes: list[str]) -> tuple[CompileResult, dict[str, QualityReport],
                                                                    tuple[str, ...], float]:
        """The bisection-with-demotion search (:mod:`tasdc.path_search`) over compiled, measured prefixes."""
        from tasdc.path_search import PathMove, bisect_with_demotion, predicted_quality

        def ban_text(bans: frozenset[tuple[str, str]]) -> str:
            # an activation series "A 2:8" is written A2:8: the option separates moves by spaces
            return " ".join(sorted(f"{layer}@{series.replace(' ', '')}" for layer, series in bans))

        paths: dict[frozenset[tuple[str, str]], list[PathMove]] = {}
        compiled: dict[tuple[frozenset[tuple[str, str]], int], tuple[CompileResult, dict[str, QualityReport], bool]] = {}

        layers: list[str] = []     # the selection's layers in report order

        def path_of(bans: frozenset[tuple[str, str]]) -> list[PathMove]:
            if bans not in paths:
                none = select(math.inf, steps=0, ban=ban_text(bans), decompose=False)
                summary = read_selection(none.module)
                paths[bans] = [PathMove(str(layer), str(series), float(used)) for (layer, series), used
                               in zip(summary.get("path_moves", []), summary.get("path_used", []))]
                layers[:] = [row.layer for row in none.report.layers if "select" in row.stats]
            return paths[bans]

        def probe(steps: int, bans: frozenset[tuple[str, str]]) -> tuple[bool, bool]:
            t = time.perf_counter()
            result = select(math.inf, steps=steps, ban=ban_text(bans), approximate=True)
            reps, cached = self.measure(result, configs_of(result), quality)
            ok = all(q.value >= quality - QUALITY_TOLERANCE for q in reps.values())
            compiled[(bans, steps)] = (result, reps, ok)
            dt = time.perf_counter() - t
            timings["measure"] = timings.get("measure", 0.0) + dt
            used = path_of(bans)[steps - 1].used if steps else 0.0
            probes.append(Probe(f"step {steps}", used, steps, {k: q.value for k, q in reps.items()}, ok,
                                not cached, dt, predicted_quality(used), sorted(ban_text(bans).split()),
                                dict(read_selection(result.module).get("totals", {}).get("selected", {})),
                                all(q.complete for q in reps.values())))
            return ok, not cached

        dense_path = path_of(frozenset())   # the calibration run first: it gives the calibration reference
        if self._reference is None:
            self.reference()
            timings["reference"] = self.timings["reference"]
        initial = _cut(dense_path, layers, budget_for_quality(quality))
        outcome = bisect_with_demotion(path_of, probe, max_probes)
        bans = frozenset(tuple(b.split("@", 1)) for b in outcome.bans)  # type: ignore[misc]
        key = (bans, outcome.steps)
        if key not in compiled:   # steps 0 (all dense) is never probed: it is the reference
            probe(outcome.steps, bans)
        _, reports, _ = compiled[key]
        result = select(math.inf, steps=outcome.steps, ban=ban_text(bans))   # the chosen selection as series
        if outcome.bans:
            notes.append("moves demoted after breaking the measured bound: " + ", ".join(outcome.bans))
        if outcome.exhausted:
            notes.append(f"search stopped after {max_probes} measured configurations (max_probes)")
        notes.append(f"bisection on the greedy path: {outcome.steps} of {len(outcome.path)} moves kept "
                     f"(path of {len(dense_path)} moves before demotions)")
        level = outcome.path[outcome.steps - 1].used if outcome.steps else 0.0
        return result, reports, initial, level

    def _result(self, result: CompileResult, target: str, objective: str, quality: float, max_terms: int,
                reports: dict[str, QualityReport], probes: list[Probe], initial: tuple[str, ...],
                level: float, predicted: float, timings: dict[str, float], notes: list[str]) -> "TasderResult":
        summary = read_selection(result.module)
        rows = [row for row in result.report.layers if "select" in row.stats]
        layers = []
        backed, relaxed = [], []
        for k, row in enumerate(rows):
            sel = row.stats["select"]
            cands = sel["candidates"]
            chosen = next(c for c in cands if c["series"] == sel["chosen"])
            dense = cands[0]
            first = initial[k] if k < len(initial) else sel["chosen"]
            dens = {c["series"]: c["macs"] for c in cands}
            if first != sel["chosen"]:
                entry = f"{row.layer} {first} -> {sel['chosen']}"
                (backed if dens.get(sel["chosen"], 0) > dens.get(first, 0) else relaxed).append(entry)
            layers.append(LayerChoice(
                layer=row.layer, op=row.op, gemm=list(row.stats.get("gemm", [])), chosen=sel["chosen"],
                why=sel["why"], metric=sel["metric"], error=float(sel["error"]),
                rel_error=float(chosen["rel_error"]) if "rel_error" in chosen else None,  # none for activation series
                l1_dropped=float(chosen["l1_dropped"]) if "l1_dropped" in chosen else None,
                output_error=chosen.get("output_error"), lossless=bool(chosen["lossless"]),
                cost={k2: float(chosen[k2]) for k2 in ("latency_cycles", "energy_j", "edp", "macs")},
                dense_cost={k2: float(dense[k2]) for k2 in ("latency_cycles", "energy_j", "edp", "macs")},
                candidates=cands, initial=first))
        totals = summary.get("totals", {})
        reduction = {}
        if totals:
            for key in ("latency_cycles", "energy_j", "edp", "macs"):
                d = totals["dense"][key]
                reduction[key] = 1.0 - totals["selected"][key] / d if d else 0.0
        calib_used = bool(summary.get("calibration"))
        error_source = summary.get("metric", "")
        if not calib_used:
            error_source = "weight-space proxies (relative Frobenius error; no calibration data)"
        else:
            error_source = (f"layer-output relative error on {summary['calibration'].get('samples', 0)} calibration "
                            f"inputs ({summary['calibration'].get('path', '')})")
        metric = self._metric if reports else "not measured"
        return TasderResult(
            compile=result, source=self.source, target=summary.get("target", target), objective=objective,
            quality_bound=float(quality), max_terms=max_terms, error_source=error_source,
            quality_metric=metric or "not measured", metric_why=self.metric_why if reports else "", measured=reports, layers=layers, totals=totals,
            reduction=reduction, probes=probes, backed_off=backed, relaxed=relaxed, error_used=level,
            predicted_budget=predicted, timings=timings, notes=notes)


def _cut(path: Sequence[Any], layers: Sequence[str], budget: float) -> tuple[str, ...]:
    """Per layer (in ``layers``' order) the series the greedy ``path`` (PathMoves) gives
    at ``budget``: the longest prefix within it, stopping at the first activation move
    when the budget is zero (:func:`tasdc.allocation.cut_path`'s rule, without a selection)."""
    chosen = {layer: "dense" for layer in layers}
    tol = 1e-12 * max(1.0, budget)
    for move in path:
        if move.used > budget + tol or (move.series.startswith("A ") and budget <= tol):
            break
        chosen[move.layer] = move.series
    return tuple(chosen[layer] for layer in layers)


def tasder_compile(source: Any, *, target: str, objective: str = "edp", quality: float = 0.99, max_terms: int = 2,
                   calib: Path | str | None = None, eval: Path | str | None = None,  # noqa: A002
                   progress: bool = True, example_inputs: Sequence[Any] | None = None,
                   relax: bool = True, max_probes: int = 10, metric: str | None = None,
                   metric_output: str | int | None = None, search: str = "ladder") -> TasderResult:
    """Compile ``source`` with per-layer TASD series chosen for ``target``.

    ``source``: a ``.pt2`` / ``.mlir`` path or a ``torch.nn.Module`` (with
    ``example_inputs``). ``calib``: ``.npz`` with one array per model input
    by name (``x`` or an ``.npy`` for a single-input model) plus optional
    ``labels``, used to measure layer-output errors and checked against the
    bound; ``eval``: held-out inputs of the same form on which the bound is
    also checked. ``metric``: accuracy | agreement | cosine | relerr (default:
    the rule in the module docstring), computed on output ``metric_output``
    (index or name; default: the first). ``search``: ``"ladder"`` (the budget
    ladder above, under which a looser bound never gives a costlier model;
    the default of the Python API, the sweep and the torch.compile backend)
    or ``"bisect"`` (bisection on the greedy path with demotion of failing
    moves, :mod:`tasdc.path_search`; what ``tasdc compile`` runs by
    default). Invalid targets, objectives or quality values raise one-line
    :class:`~tasdc.errors.TasdcError`.
    """
    check_options(target, objective, quality, max_terms)
    session = TasderSession(source, example_inputs, calib=calib, eval=eval, progress=progress, metric=metric,
                            metric_output=metric_output)
    return session.compile(target, objective, quality, max_terms, relax=relax, max_probes=max_probes, search=search)
