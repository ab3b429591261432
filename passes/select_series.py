"""``tasd-select``: choose a TASD series per layer under a model-level quality bound (TASDER).

For every contraction with a constant weight (the candidates of
:mod:`tasdc.contractions`), this pass picks the series that the following
``tasd-decompose-weights`` applies, by writing the string attribute
``tasd.config`` on the linalg op. The choice is *global*: the whole model must
stay inside one error budget derived from ``quality``, and within it the
model's total ``objective`` (EDP, latency or energy on ``target``, from the
analytical cost model) is minimised.

Candidates
==========
Per layer: ``dense`` plus every series of 1..``max-terms`` terms drawn from the
target's *native* sparse patterns (``hw.sparsity``; ``N == M`` entries are
dense and never a term), terms in non-increasing density. Redundant series are
dropped: with equal M a series equals the single top-(ΣN):M projection, so of
the series with the same M and ΣN only the one with the fewest terms is kept
(``2:4`` over ``1:4+1:4``: same approximation, fewer dense-B re-reads), and a
series whose prefix already keeps a whole block (ΣN ≥ M) gets no further
terms. Shipped targets: ``dense`` → dense only; ``stc`` → 2:4, 2:4+2:4;
``vegeta`` → 1:4, 2:4, 2:4+1:4, 2:4+2:4; ``ttc-m8`` → 1:8, 2:8, 4:8, 2:8+1:8,
4:8+1:8, 4:8+2:8, 4:8+4:8 (at ``max-terms=2``). All layers x all candidates
are costed by ONE vectorised :func:`tasdc.runtime.accel.costmodel.evaluate`
call (``mode="refuse"``: every term is native, nothing is mapped). The
activation x activation contractions that cannot be decomposed are costed
dense in the same call and count in the model totals (they matter for EDP,
a product of totals).

Errors
======
Per layer and candidate: the weight-space proxies (relative Frobenius error,
L1 mass dropped) and, with ``calib=PATH``, the layer-output relative error
``‖X(W − Ŵ)‖/‖XW‖`` on the calibration inputs; the output error drives the
decision when it exists (:mod:`tasdc.layer_errors`). The layer inputs come
from running an instrumented dense clone of the module on the calibration
inputs (:mod:`tasdc.calibration`).

Allocation
==========
The model-level error ``D = Σ_layers e_l²`` must stay within the budget
``B(quality) = 1/quality² − 1`` (``budget=B`` overrides it); the layers'
series are one prefix of a budget-independent global greedy path, best
objective saving per unit of added error first (:mod:`tasdc.allocation`
states the rule and why a looser bound never gives a costlier model).

Output
======
Each candidate op gets ``tasd.config`` (the chosen series, ``"dense"`` when
left dense) and ``tasd.select``: ``target``, ``objective``, ``metric``,
``chosen``, ``why`` (one sentence: lossless / the greedy step and its saving
per error / the reason it stays dense), ``error`` (the metric of the chosen
series), ``step`` (path step that set it, -1 if none) and ``candidates``: for
each series its per-layer ``latency_cycles``, ``energy_j``, ``edp``, ``macs``,
``rel_error``, ``l1_dropped``, ``output_error`` (with calibration) and
``lossless``. The same dictionary is merged into ``tasd.stats["select"]`` so
it survives decomposition (the series op inherits ``tasd.stats``). The
module gets ``tasd.selection``: budget, rule, metric, calibration, path
length, steps taken, the next step not taken, and model totals (latency,
energy, EDP, MACs issued) of the selection and of the all-dense model on the
same target.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch_mlir import ir

from tasdc.activation_stats import ActivationSeries
from tasdc.allocation import BUDGET_RULE, Move, Problem, budget_for_quality, cut_path, greedy_path
from tasdc.calibration import (
    CalibrationStats,
    collect_calibration,
    input_batches,
    load_calibration_inputs,
    load_input_set,
)
from tasdc.contractions import CONTRACTION_NAMES, Candidate, b_source_elems, has_default_maps, scan
from tasdc.decompose import Pattern, SeriesConfig
from tasdc.diagnostics import remark
from tasdc.errors import SelectionError
from tasdc.layer_errors import array_digest, output_errors, weight_errors
from tasdc.passes.base import ModulePass
from tasdc.progress import progress
from tasdc.report import annotate, from_attr, to_attr
from tasdc.runtime.accel.costmodel import LayerShapes, evaluate
from tasdc.runtime.accel.hardware import Hardware, load_hardware

CONFIG_ATTR = "tasd.config"
ACT_CONFIG_ATTR = "tasd.act_config"  # read by tasd-decompose-activations
SELECT_ATTR = "tasd.select"
SUMMARY_ATTR = "tasd.selection"

#: objective option -> how the model total is formed from (energy J, latency s, latency cycles)
OBJECTIVES = ("edp", "latency", "energy")
MAX_TERMS_LIMIT = 4


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------


def check_options(target: str, objective: str, quality: float, max_terms: int) -> Hardware:
    """Validate the selection options (one-line :class:`SelectionError` /
    ``HardwareError``) and return the loaded target."""
    if objective not in OBJECTIVES:
        raise SelectionError(f"objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not math.isfinite(quality) \
            or not 0.0 < quality <= 1.0:
        raise SelectionError(f"quality must be a number in (0, 1], got '{quality}'")
    if not math.isfinite(budget_for_quality(quality)):
        raise SelectionError(f"quality {quality:g} is too small: its error budget 1/q² - 1 is not finite")
    if isinstance(max_terms, bool) or not isinstance(max_terms, int) or not 1 <= max_terms <= MAX_TERMS_LIMIT:
        raise SelectionError(f"max-terms must be an integer in [1, {MAX_TERMS_LIMIT}], got '{max_terms}'")
    if not isinstance(target, str) or not target.strip():
        raise SelectionError("target must name a shipped target (dense, stc, vegeta, ttc-m8) or a .toml file")
    return load_hardware(target)


# --------------------------------------------------------------------------
# candidate series
# --------------------------------------------------------------------------


def native_series(hw: Hardware, max_terms: int) -> list[SeriesConfig]:
    """``dense`` followed by the non-redundant series of the target's native
    sparse patterns (see module docstring), ascending density."""
    patterns = sorted({Pattern(p.n, p.m) for p in hw.sparsity.sparse_patterns},
                      key=lambda p: (-p.fraction, p.m, p.n))
    found: dict[Any, SeriesConfig] = {}
    series_list = []
    for k in range(1, max_terms + 1):
        for combo in itertools.product(patterns, repeat=k):
            if any(combo[i].fraction < combo[i + 1].fraction for i in range(k - 1)):
                continue
            config = SeriesConfig(combo)
            if config.same_m and k > 1 and sum(t.n for t in combo[:-1]) >= config.m:
                continue  # a prefix already keeps whole blocks
            series_list.append(config)
    series_list.sort(key=lambda c: (len(c.terms), c.fraction, str(c)))
    for config in series_list:
        key = ("m", config.m, config.max_nnz_per_block) if config.same_m else ("mixed", str(config))
        found.setdefault(key, config)
    out = sorted(found.values(), key=lambda c: (c.fraction, len(c.terms), str(c)))
    return [SeriesConfig(())] + out


# --------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------


def _shape(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def _fixed_gemm(op: ir.OpView) -> tuple[int, int, int, int] | None:
    """GEMM of a contraction that stays dense (run-time x run-time, depthwise / grouped conv), or None."""
    from tasdc.contractions import grouped_conv_gemm  # noqa: PLC0415

    grouped = grouped_conv_gemm(op)
    if grouped is not None:
        return grouped
    kind = CONTRACTION_NAMES.get(op.name)
    if kind is None:
        return None
    values = [*op.operands, *op.results]
    if not all(isinstance(v.type, ir.RankedTensorType) and ir.RankedTensorType(v.type).has_static_shape for v in values):
        return None
    if kind == "conv2d":
        n, c, _, _ = _shape(op.operands[0])
        f, _, kh, kw = _shape(op.operands[1])
        _, _, oh, ow = _shape(op.results[0])
        return (1, f, c * kh * kw, n * oh * ow)
    if not has_default_maps(op, kind):
        return None
    lhs, rhs = _shape(op.operands[0]), _shape(op.operands[1])
    batch = lhs[0] if kind == "batch_matmul" else 1
    return (batch, lhs[-2], lhs[-1], rhs[-1])


def _with_activation_options(hw: Hardware, table: Any, cands: list[Candidate], act_configs: list[SeriesConfig]) -> Any:
    """``table`` (weight options, all layers then fixed layers) widened by the
    activation options of the candidate layers: each costed with the layer's
    activation as the structured operand A (GEMM ``[b, N, K, M]``, ``tasd_a``).
    Fixed layers repeat their dense cost in the new columns."""
    import types

    gemms = [(c.gemm[0], c.gemm[3], c.gemm[2], c.gemm[1]) for c in cands]
    shapes = LayerShapes.from_arrays([g[1] for g in gemms], [g[2] for g in gemms], [g[3] for g in gemms],
                                     [g[0] for g in gemms], [True] * len(gemms))
    act = evaluate(hw, shapes, [SeriesConfig(c.terms) for c in act_configs], mode="refuse")
    n_l = len(cands)
    arrays = {}
    for key, values in table.arrays.items():
        if not isinstance(values, np.ndarray) or values.ndim != 2 or key not in act.arrays:
            continue
        extra = np.repeat(values[:, :1], len(act_configs), axis=1).astype(np.result_type(values, act.arrays[key]))
        extra[:n_l] = act.arrays[key]
        arrays[key] = np.concatenate([values, extra], axis=1)
    return types.SimpleNamespace(arrays=arrays)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@dataclasses.dataclass(frozen=True)
class SelectSeries(ModulePass):
    """Choose, per layer, a TASD series of the target's native patterns so that
    the whole model meets ``quality`` at minimum total ``objective``.

    See the module docstring of :mod:`tasdc.passes.select_series` for the
    candidates, the error metrics, the calibration route, the budget rule
    ``Σ e_l² ≤ 1/quality² − 1`` and the global greedy allocation. Writes
    ``tasd.config`` and ``tasd.select`` on every candidate op (and
    ``tasd.selection`` on the module); ``tasd-decompose-weights`` applies it.
    Options: ``target`` (shipped name or .toml), ``objective``
    (edp | latency | energy), ``quality`` in (0, 1], ``max-terms`` (1..4),
    ``calib`` (.npz/.npy of model inputs, optional; one array per input,
    named as in ``input-names``), ``budget`` (≥ 0
    overrides the quality-derived budget), ``max-steps`` (≥ 0 caps the greedy
    path, 0 = all dense), ``ban`` (space-separated ``layer@series`` moves
    taken off the path, e.g. ``conv2d_0@2:4``: the measured search demotes
    moves that broke the measured bound; the layer may still take its other
    series; an activation series is written without its space,
    ``conv2d_0@A2:8``; the module summary lists the path's moves, ``path_moves``),
    ``activations`` (default true: on a target with
    TASD extraction units and with ``calib``, every layer may instead take a
    series on its *activation* operand, TASD-A, written as
    ``tasd.act_config`` for ``tasd-decompose-activations``; see below),
    ``calib-digest`` (the module's :func:`tasdc.calibration.module_digest`
    when the caller knows it, the key of the cached calibration statistics;
    TASDER passes its imported module's, of which every selection is an
    unchanged copy; empty: computed).

    Activation series (TASD-A) share the allocation with weight series: the
    options of a layer are ``dense``, the weight series and the same series
    on the activation side (``A 2:8``; a target has one structured operand,
    so a layer takes one side). An activation option is costed with the
    activation as the structured operand (``tasd_a``: extraction work
    included) and its error is the layer-output error ``‖(X − X̂)W‖/‖XW‖``
    on the calibration inputs (:mod:`tasdc.activation_stats`: the run-time
    decomposition ``X̂`` of each layer's real input; 0 when the input's
    block-nnz histogram shows the series is lossless on that data). Without
    calibration data there are no activation options. The options, and so the
    greedy path, do not depend on ``quality``: an activation series is never
    promised exact (its error is measured on the calibration inputs only), so
    a zero budget (``quality=1``: exact on every input) stops the path at its
    first activation move (:mod:`tasdc.allocation`).
    """

    name: ClassVar[str] = "tasd-select"
    target: str = "vegeta"
    objective: str = "edp"
    quality: float = 0.99
    max_terms: int = 2
    calib: str = ""
    budget: float = -1.0
    max_steps: int = -1
    input_names: str = ""  # the model's input names, comma-separated (calibration .npz keys)
    activations: bool = True
    ban: str = ""
    calib_digest: str = ""  # tasdc.calibration.module_digest of the module, when the caller knows it

    def banned(self) -> set[tuple[str, str]]:
        """The ``ban`` option as ``{(layer, series)}``."""
        out = set()
        for item in self.ban.split():
            layer, sep, series = item.partition("@")
            if not sep or not layer or not series:
                raise SelectionError(f"ban: '{item}' is not layer@series (e.g. conv2d_0@2:4)")
            out.add((layer, series.replace(" ", "")))
        return out

    def __post_init__(self) -> None:
        check_options(self.target, self.objective, self.quality, self.max_terms)
        if not math.isfinite(self.budget):
            raise SelectionError(f"budget must be a finite number (< 0: derived from quality), got '{self.budget}'")
        if self.max_steps < -1:
            raise SelectionError(f"max-steps must be >= -1, got {self.max_steps}")
        self.banned()
        if self.calib:
            path = Path(self.calib)
            if not path.exists():
                raise SelectionError(f"calib: {self.calib}: no such file")
            if path.is_dir():
                raise SelectionError(f"calib: {self.calib}: is a directory, expected a .npz or .npy file")

    @property
    def effective_budget(self) -> float:
        return self.budget if self.budget >= 0 else budget_for_quality(self.quality)

    def run(self, module: ir.Module) -> None:
        hw = load_hardware(self.target)
        weight_configs = native_series(hw, self.max_terms)
        found = scan(module)
        cands = found.candidates
        fixed = []
        fixed_ops = []
        for skipped in found.skipped:
            gemm = _fixed_gemm(skipped.op)
            if gemm is not None:
                fixed.append((skipped.layer, gemm))
                fixed_ops.append((skipped.op, gemm))
        names = [n for n in self.input_names.split(",") if n]
        act_configs: list[SeriesConfig] = []
        # The options do not depend on the bound: quality 1.0 cuts the same path before its first activation move.
        if self.activations and self.calib and hw.extraction is not None:
            act_configs = [ActivationSeries(c.terms) for c in weight_configs[1:]]
        calib = (collect_calibration(module, self.calib, input_names=names, act_series=act_configs,
                                     digest=self.calib_digest)
                 if self.calib and cands else None)
        if calib is None or calib.activations is None:
            act_configs = []
        # One list of options per layer: dense, weight series, activation series.
        configs = weight_configs + act_configs
        n_w = len(weight_configs)

        # -- errors ---------------------------------------------------------
        n_l, n_c = len(cands), len(configs)
        rel = np.zeros((n_l, n_c))
        l1 = np.zeros((n_l, n_c))
        lossless = np.ones((n_l, n_c), dtype=bool)
        out_err = np.full((n_l, n_c), np.nan)
        valid = np.ones((n_l, n_c), dtype=bool)
        metric = ["weight"] * n_l
        notes = [""] * n_l
        for i, cand in enumerate(progress(cands, desc=self.name, unit="layer")):
            w = cand.weight
            if w.size and not (np.isfinite(w.max()) and np.isfinite(w.min())):
                valid[i, 1:] = False
                notes[i] = "the weight contains NaN or Inf"
                continue
            digest = array_digest(w)
            errs = weight_errors(w, cand.axis, weight_configs, digest)
            for j, (r, a, exact) in enumerate(errs):
                rel[i, j], l1[i, j], lossless[i, j] = r, a, exact
            if calib is not None and cand.layer in calib.layers:
                grams = calib.layers[cand.layer]
                outs = output_errors(grams, w, cand.axis, cand.kind, weight_configs, list(lossless[i, :n_w]),
                                     (calib.key, cand.layer, digest))
                if outs is None:
                    notes[i] = "its output is zero on every calibration input: the weight-space error is used"
                else:
                    out_err[i, :n_w] = outs
                    metric[i] = "output"
            if act_configs:
                valid[i, n_w:] = False
                if metric[i] == "output" and calib is not None and calib.activations is not None:
                    act_errs = calib.activations.output_errors(cand.layer, act_configs)
                    channels = _shape(cand.op.operands[0])[1] if cand.kind == "conv2d" else 0
                    for q, e in enumerate(act_errs):
                        # A convolution's input is decomposed along channels; the cost model's blocks run
                        # along the im2col K, which matches only when every M divides the channel count.
                        if channels and any(channels % t.m for t in act_configs[q].terms):
                            continue
                        if e is not None:
                            j = n_w + q
                            out_err[i, j], valid[i, j] = e, True
                            rel[i, j] = l1[i, j] = np.nan  # no weight-space proxy for an activation series
                            lossless[i, j] = e == 0.0
        err = np.where(np.array(metric)[:, None] == "output", np.nan_to_num(out_err), rel)
        err = np.where(lossless, 0.0, err)

        # -- costs: one vectorised call ---------------------------------------
        gemms = [c.gemm for c in cands] + [g for _, g in fixed]
        sources = [b_source_elems(c.op, c.gemm) for c in cands] + [b_source_elems(op, g) for op, g in fixed_ops]
        table = None
        if gemms:
            shapes = LayerShapes.from_arrays([g[1] for g in gemms], [g[2] for g in gemms], [g[3] for g in gemms],
                                             [g[0] for g in gemms], b_source=sources)
            table = evaluate(hw, shapes, weight_configs, mode="refuse")
            if act_configs and n_l:
                table = _with_activation_options(hw, table, cands, act_configs)
        if table is None or n_l == 0:
            self._summary(module, hw, configs, [], [], None, np.zeros(0, dtype=np.int64), 0, calib, fixed, table)
            return
        a = table.arrays
        problem = Problem(
            self.objective,
            a["energy_j"][:n_l], a["latency_s"][:n_l], a["latency_cycles"][:n_l], np.square(err), valid,
            float(a["energy_j"][n_l:, 0].sum()), float(a["latency_s"][n_l:, 0].sum()),
            float(a["latency_cycles"][n_l:, 0].sum()),
            calib_only=np.arange(n_c)[None, :].repeat(n_l, axis=0) >= n_w,
        )
        bans = self.banned()
        if bans:
            labels = [str(c).replace(" ", "") for c in configs]   # "A 2:8" is banned as A2:8
            for i, cand in enumerate(cands):
                for j, label in enumerate(labels):
                    if j and (cand.layer, label) in bans:
                        problem.valid[i, j] = False
        path = greedy_path(problem)
        choice, taken = cut_path(path, n_l, self.effective_budget, self.max_steps)

        # -- annotate --------------------------------------------------------
        last_step = {}
        for move in path[:taken]:
            last_step[move.layer] = move
        pending = {}
        for move in path[taken:]:
            pending.setdefault(move.layer, move)
        e0, ts0, tc0 = problem.totals_of(np.zeros(n_l, dtype=np.int64))
        dense_obj = float(problem.total(e0, ts0, tc0))
        records = []
        for i, cand in enumerate(cands):
            j = int(choice[i])
            candidates = []
            for c, config in enumerate(configs):
                if not valid[i, c] and c >= n_w:
                    continue  # activation option not measured for this layer
                entry = {
                    "series": str(config),
                    "latency_cycles": float(a["latency_cycles"][i, c]),
                    "energy_j": float(a["energy_j"][i, c]),
                    "edp": float(a["edp"][i, c]),
                    "macs": float(a["macs"][i, c]),
                    "lossless": bool(lossless[i, c]),
                    "error": float(err[i, c]),
                }
                if c < n_w:
                    entry.update(rel_error=float(rel[i, c]), l1_dropped=float(l1[i, c]))
                else:
                    entry["side"] = "activation"  # (weight options carry no key: "weight" is the default)
                if metric[i] == "output":
                    entry["output_error"] = float(out_err[i, c]) if not lossless[i, c] else 0.0
                candidates.append(entry)
            why = self._why(hw, configs, problem, path, i, j, last_step.get(i), pending.get(i), dense_obj,
                            err, notes[i], taken, self.effective_budget)
            record = {
                "target": hw.name,
                "objective": self.objective,
                "metric": "layer-output relative error (calibration)" if metric[i] == "output"
                else "relative Frobenius error (weight-space proxy)",
                "chosen": str(configs[j]),
                "why": why,
                "error": float(err[i, j]),
                "step": int(last_step[i].step) if i in last_step else -1,
                "candidates": candidates,
            }
            if j >= n_w:  # TASD-A: the weight stays dense, tasd-decompose-activations applies the series
                record["side"] = "activation"
                cand.op.attributes[CONFIG_ATTR] = ir.StringAttr.get("dense")
                cand.op.attributes[ACT_CONFIG_ATTR] = ir.StringAttr.get(str(SeriesConfig(configs[j].terms)))
            else:
                cand.op.attributes[CONFIG_ATTR] = ir.StringAttr.get(str(configs[j]))
                if ACT_CONFIG_ATTR in cand.op.attributes:
                    del cand.op.attributes[ACT_CONFIG_ATTR]
            if calib is not None and calib.activations is not None and cand.layer in calib.activations.layers:
                record["activation_stats"] = calib.activations.layers[cand.layer].to_json()
            cand.op.attributes[SELECT_ATTR] = to_attr(record)
            annotate(cand.op, cand.layer, {"select": record})
            records.append(record)
            if notes[i]:
                remark(cand.op.location, f"{cand.layer}: {notes[i]}")
        self._summary(module, hw, configs, cands, path, problem, choice, taken, calib, fixed, table)

    # -- explanations ------------------------------------------------------
    def _why(self, hw: Hardware, configs: list[SeriesConfig], problem: Problem, path: list[Move], i: int, j: int,
             last: Move | None, pending: Move | None, dense_obj: float, err: np.ndarray, note: str,
             taken: int, budget: float) -> str:
        obj = self.objective
        if j == 0:
            if len(configs) == 1:
                return f"left dense: target '{hw.name}' runs only dense"
            if note and not problem.valid[i, 1:].any():
                return f"left dense: {note}"
            if pending is not None and budget >= 1e20:
                # The measured search fixed the path length, not the budget.
                return (f"left dense: the measured search stopped the greedy path before the step that would make it "
                        f"{configs[pending.dst]} (saves {pending.saving / dense_obj:.2%} of the model {obj}, "
                        f"adds e^2={_fmt(pending.added)})")
            if pending is not None and pending.calib_only and budget <= 0.0:
                return (f"left dense: the next greedy step would make it {configs[pending.dst]}, an activation "
                        f"series, exact on the calibration inputs at best, and the bound asks for exact on every input")
            if pending is not None:
                used = path[taken - 1].used if taken else 0.0
                return (f"left dense: nothing fits the error budget: the next greedy step would make it "
                        f"{configs[pending.dst]} (saves {pending.saving / dense_obj:.2%} of the model {obj}, "
                        f"adds e^2={_fmt(pending.added)}, budget left {_fmt(max(budget - used, 0.0))})")
            return (f"left dense: no native series lowers the model {obj} on '{hw.name}' "
                    f"(cheapest series {self._best_series(problem, i, configs)})")
        config = configs[j]
        calib_only = problem.calib_only is not None and bool(problem.calib_only[i, j])
        if err[i, j] == 0.0 and calib_only:
            text = (f"lossless on the calibration inputs (block-nnz histogram of the layer's input) and the "
                    f"cheapest such option: free greedy step {last.step if last else '?'} saves "
                    f"{(last.saving if last else 0.0) / dense_obj:.2%} of the model {obj}")
        elif err[i, j] == 0.0:
            nnz = config.max_nnz_per_block
            block = (f"at most {nnz} non-zero{'s' if nnz != 1 else ''} in every {config.m}-block"
                     if config.same_m else "the terms cover every non-zero")
            text = (f"lossless ({block}) and the cheapest such series: free greedy step "
                    f"{last.step if last else '?'} saves "
                    f"{(last.saving if last else 0.0) / dense_obj:.2%} of the model {obj}")
        else:
            assert last is not None
            ratio = last.saving / last.added if last.added > 0 else math.inf
            text = (f"greedy step {last.step}: best {obj} saving per unit error, saves "
                    f"{last.saving / dense_obj:.2%} of the dense model {obj} for e={err[i, j]:.4f} "
                    f"(e^2 {_fmt(last.added)}, ratio {_fmt(ratio / dense_obj)}/unit)")
        if pending is not None and pending.calib_only and budget <= 0.0:
            text += (f"; stopped before {configs[pending.dst]} (an activation series is exact on the calibration "
                     f"inputs only, and the bound asks for exact on every input)")
        elif pending is not None:
            text += f"; stopped before {configs[pending.dst]} (would exceed the error budget)"
        return text

    def _best_series(self, problem: Problem, i: int, configs: list[SeriesConfig]) -> str:
        e0, ts0, tc0 = problem.totals_of(np.zeros(problem.err2.shape[0], dtype=np.int64))
        base = float(problem.total(e0, ts0, tc0))
        best, best_obj = "", math.inf
        for c in range(1, len(configs)):
            value = float(problem.total(e0 - problem.energy[i, 0] + problem.energy[i, c],
                                        ts0 - problem.latency_s[i, 0] + problem.latency_s[i, c],
                                        tc0 - problem.latency_cycles[i, 0] + problem.latency_cycles[i, c]))
            if value < best_obj:
                best, best_obj = str(configs[c]), value
        return f"{best}: {best_obj / base - 1:+.2%}" if best else "none"

    # -- module summary ----------------------------------------------------
    def _summary(self, module: ir.Module, hw: Hardware, configs: list[SeriesConfig], cands: list[Candidate],
                 path: list[Move], problem: Problem | None, choice: np.ndarray, taken: int,
                 calib: CalibrationStats | None, fixed: list, table: Any) -> None:
        n_l = len(cands)
        totals: dict[str, Any] = {}
        if table is not None:
            a = table.arrays
            rows = np.arange(n_l)
            for label, pick in (("selected", choice), ("dense", np.zeros(n_l, dtype=np.int64))):
                t = {}
                for key in ("latency_cycles", "latency_s", "energy_j", "macs", "dense_macs"):
                    t[key] = float(a[key][rows, pick].sum() + a[key][n_l:, 0].sum())
                t["edp"] = t["energy_j"] * t["latency_s"]
                totals[label] = t
        summary: dict[str, Any] = {
            "target": hw.name,
            "objective": self.objective,
            "quality": float(self.quality),
            "budget": float(self.effective_budget),
            "budget_rule": BUDGET_RULE if self.budget < 0 else "explicit budget on sum over layers of e^2",
            "error_used": float(path[taken - 1].used) if taken else 0.0,
            "metric": ("layer-output relative error on calibration inputs" if calib is not None
                       else "relative Frobenius error of the weight (weight-space proxy, no calibration data)"),
            "calibration": ({"path": calib.path, "samples": calib.samples, "batch_size": calib.batch_size}
                            if calib is not None else {}),
            "candidates": [str(c) for c in configs],
            "layers": n_l,
            "fixed_layers": len(fixed),
            "path_steps": len(path),
            "steps_taken": taken,
            "max_steps": int(self.max_steps),
            "path_used": [float(m.used) for m in path],
            "path_moves": [[cands[m.layer].layer, str(configs[m.dst])] for m in path],
            "path_exact_steps": cut_path(path, n_l, 0.0)[1],  # the prefix a zero budget (quality 1.0) keeps
            "totals": totals,
        }
        if self.ban:
            summary["banned"] = sorted(f"{layer}@{series}" for layer, series in self.banned())
        if taken < len(path):
            nxt = path[taken]
            summary["next_step"] = {"layer": cands[nxt.layer].layer, "series": str(configs[nxt.dst]),
                                    "added": float(nxt.added), "used": float(nxt.used)}
        module.operation.attributes[SUMMARY_ATTR] = to_attr(summary)


def read_selection(module: ir.Module) -> dict[str, Any]:
    """The module-level ``tasd.selection`` summary (empty if absent)."""
    if SUMMARY_ATTR in module.operation.attributes:
        return dict(from_attr(module.operation.attributes[SUMMARY_ATTR]))
    return {}


__all__ = [
    "SelectSeries",
    "check_options",
    "native_series",
    "read_selection",
    "CONFIG_ATTR",
    "ACT_CONFIG_ATTR",
    "SELECT_ATTR",
    "SUMMARY_ATTR",
    "OBJECTIVES",
    # the selection's parts, importable from here as before they had modules of their own
    "SelectionError",
    "budget_for_quality",
    "weight_errors",
    "output_errors",
    "collect_calibration",
    "load_calibration_inputs",
    "load_input_set",
    "input_batches",
    "greedy_path",
    "cut_path",
    "Problem",
    "Move",
]
