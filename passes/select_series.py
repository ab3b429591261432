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
For every layer and candidate the pass always records two weight-space
proxies, the relative Frobenius error ``‖W − Ŵ‖/‖W‖`` and the L1 mass
dropped ``Σ|W − Ŵ| / Σ|W|`` (``Ŵ`` = the sum of the series' terms). With
``calib=PATH`` (an ``.npz`` with the model input ``x``, or an ``.npy``) it
also measures the *layer-output* relative error ``‖X(W − Ŵ)‖/‖XW‖`` of the
contraction on the calibration inputs (bias excluded; ``X`` = the layer's
actual input activations, im2col patches for a convolution).

How the activations are obtained: the module itself is evaluated, not the
PyTorch program. A clone of the module has every candidate's run-time operand
flattened and packed (``tensor.collapse_shape`` + ``tensor.insert_slice``)
into one result vector; that dense clone is JIT-compiled by the CPU runtime
(:func:`tasdc.runtime.cpu.executor.compile_for_cpu`) and run on the
calibration inputs in batches of the function's batch size (a trailing partial
batch is padded with zeros and its padded rows dropped). This works for every
source (``.pt2``, ``nn.Module``, ``.mlir``), and the layers are by
construction exactly the ops being decomposed (no name matching between a
torch module tree and the IR). Per layer only ``XᵀX`` (K x K, float64) is
kept, or the rows of ``X`` themselves while there are fewer rows than K;
``‖XΔ‖² = Σ (XᵀX Δ) ∘ Δ``. Statistics are cached per process (keyed by the
module text and the calibration file), so repeated selections on the same
model are cheap, and in the active :mod:`tasdc.cache` when there is one
(keyed by digests of the module text and the calibration file's bytes).

The error that drives the decision (``metric``): the layer-output relative
error when calibration statistics exist for the layer, else the relative
Frobenius error (which equals the output error for white inputs). Exactly
lossless series have error 0 by definition (no float noise from ``XᵀX``).

Quality bound → error budget
============================
Model-level error ``D = Σ_layers e_l²`` with ``e_l`` the layer's metric.
Reading: each layer perturbs its output by a relative ``e_l``; independent
perturbations propagated with unit relative gain add in quadrature, so the
model output's relative error is predicted as ``ε̂ = sqrt(D)``, and an output
perturbed by a random direction of relative size ``ε̂`` keeps a cosine
similarity ``1/sqrt(1 + ε̂²)`` with the dense output. Requiring that predicted
cosine similarity to be at least ``quality`` gives the budget

    D ≤ B(quality) = 1/quality² − 1      (≈ 2·(1 − quality); 0 at quality 1.0)

so ``quality=0.99`` allows ``ε̂ ≈ 0.142`` (e.g. 0.08 per layer over three
layers), and ``quality=1.0`` allows only exactly lossless series. This is a
*prediction*; ``tasdc.tasder`` measures the real quality by running the
compiled model and moves along the same path (below) until the measured bound
holds. ``budget=B`` (B ≥ 0) overrides ``B(quality)``.

Allocation rule (global, deterministic)
=======================================
1. *Greedy path* (independent of the budget). Start with every layer dense.
   Repeatedly consider every move "layer l → candidate c" that strictly lowers
   the model objective (computed exactly from the model totals after the
   move: EDP = total energy x total latency, latency = total cycles, energy =
   total joules, fixed layers included). If some such move adds no error
   (``Δ(e²) ≤ 0``: lossless, or more accurate and cheaper), take the one with
   the largest saving; otherwise take the one with the largest *saving per
   unit of added error* ``ΔObjective / Δ(e²)``. Ties go to the lower layer
   index, then to the candidate order (dense, then ascending density, fewer
   terms, text). Stop when no move lowers the objective. Each step strictly
   lowers the objective, so the path ends; for additive objectives the
   steepest move from the current point is exactly the next vertex of the
   layer's lower convex hull of (error, cost), i.e. this is the classic
   multiple-choice-knapsack greedy.
2. *Budget cut.* Take the longest prefix of the path whose accumulated ``D``
   stays ``≤ budget`` (``max-steps`` ≥ 0 additionally caps the number of
   steps; ``max-steps=0`` keeps every layer dense). Because every budget
   selects a prefix of the same path, a looser bound never gives a costlier
   model, and stepping back along the path (what the driver's back-off does)
   undoes first the moves that bought the least objective per unit of error.

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
import hashlib
import itertools
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from torch_mlir import ir

from tasdc import cache as _cache
from tasdc.activation_stats import ActivationSeries, ActivationStats
from tasdc.contractions import CONTRACTION_NAMES, Candidate, b_source_elems, scan
from tasdc.decompose import Pattern, SeriesConfig, decompose, l1_dropped, relative_error
from tasdc.diagnostics import remark
from tasdc.arrays import read_arrays
from tasdc.errors import TasdcError
from tasdc.passes.base import ModulePass
from tasdc.passes.decompose_weights import folded_activation
from tasdc.progress import progress
from tasdc.report import LAYER_ATTR, annotate, from_attr, read_stats, to_attr
from tasdc.runtime.accel.costmodel import LayerShapes, evaluate
from tasdc.runtime.accel.hardware import Hardware, load_hardware

CONFIG_ATTR = "tasd.config"
ACT_CONFIG_ATTR = "tasd.act_config"  # read by tasd-decompose-activations
SELECT_ATTR = "tasd.select"
SUMMARY_ATTR = "tasd.selection"

#: objective option -> how the model total is formed from (energy J, latency s, latency cycles)
OBJECTIVES = ("edp", "latency", "energy")
MAX_TERMS_LIMIT = 4
BUDGET_RULE = "sum over layers of e^2 <= 1/quality^2 - 1 (predicted output cosine similarity >= quality)"


class SelectionError(TasdcError, ValueError):
    """An invalid option or unusable calibration data for ``tasd-select`` (one line)."""


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------


def budget_for_quality(quality: float) -> float:
    """Error budget ``B(q) = 1/q² − 1`` on ``Σ e_l²`` (see module docstring);
    infinite when ``q²`` underflows (any series meets such a bound)."""
    try:
        return 1.0 / (quality * quality) - 1.0
    except (ZeroDivisionError, OverflowError):
        return math.inf


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
# weight-space errors
# --------------------------------------------------------------------------

_CACHE_LIMIT = 200_000
_weight_cache: dict[tuple, tuple[float, float, bool]] = {}
_output_cache: dict[tuple, float] = {}


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8), digest_size=16).hexdigest()


def _sorted_block_stats(w: np.ndarray, axis: int, m: int) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """Column sums of the ascending per-block squares and magnitudes, the
    largest non-zero count of a block, and the totals."""
    moved = np.moveaxis(w, axis, -1)
    k = moved.shape[-1]
    kp = -(-k // m) * m
    rows = moved.reshape(-1, k)
    if kp != k:
        padded = np.zeros((rows.shape[0], kp), dtype=w.dtype)
        padded[:, :k] = rows
        rows = padded
    s = np.abs(rows.reshape(-1, m))
    s.sort(axis=1)  # ascending magnitudes per block (in place: ``s`` is a fresh array)
    col_abs = s.sum(axis=0, dtype=np.float64)
    col_sq = np.einsum("ij,ij->j", s, s, dtype=np.float64)
    # sorted ascending: the largest non-zero count is m minus the first column holding a non-zero
    nonzero_cols = np.flatnonzero(s.max(axis=0) > 0) if s.size else np.zeros(0, dtype=np.intp)
    max_nnz = int(m - nonzero_cols[0]) if nonzero_cols.size else 0
    return col_sq, col_abs, max_nnz, float(col_sq.sum()), float(col_abs.sum())


def weight_errors(w: np.ndarray, axis: int, configs: Sequence[SeriesConfig], digest: str | None = None
                  ) -> list[tuple[float, float, bool]]:
    """``(relative Frobenius error, L1 dropped, lossless)`` of each config.

    Equal-M series come from one sort per block size (a series with equal M
    keeps the top ΣN magnitudes of every block, so the dropped mass is that
    of the M − ΣN smallest); mixed-M series are decomposed.
    """
    out: list[tuple[float, float, bool] | None] = [None] * len(configs)
    todo = []
    for j, config in enumerate(configs):
        key = (digest, axis, str(config)) if digest else None
        if key is not None and key in _weight_cache:
            out[j] = _weight_cache[key]
        elif config.is_dense:
            out[j] = (0.0, 0.0, True)
        else:
            todo.append(j)
    stats: dict[int, tuple] = {}
    for j in todo:
        config = configs[j]
        if config.same_m:
            m = config.m
            if m not in stats:
                stats[m] = _sorted_block_stats(w, axis, m)
            col_sq, col_abs, max_nnz, tot_sq, tot_abs = stats[m]
            drop = max(m - config.max_nnz_per_block, 0)
            lossless = max_nnz <= config.max_nnz_per_block
            if lossless or tot_sq == 0.0:
                value = (0.0, 0.0, True)
            else:
                value = (math.sqrt(float(col_sq[:drop].sum()) / tot_sq), float(col_abs[:drop].sum()) / tot_abs, False)
        else:
            result = decompose(w, config, axis)
            exact = result.is_exact
            value = (0.0, 0.0, True) if exact else (relative_error(w, result.approximation),
                                                    l1_dropped(w, result.approximation), False)
        out[j] = value
        if digest:
            if len(_weight_cache) > _CACHE_LIMIT:
                _weight_cache.clear()
            _weight_cache[(digest, axis, str(config))] = value
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------
# calibration: layer inputs from the module itself
# --------------------------------------------------------------------------


@dataclasses.dataclass
class _Probe:
    """How to turn one layer's flattened run-time operand into GEMM rows."""

    layer: str
    kind: str
    sparse_operand: int
    shape: tuple[int, ...]
    offset: int
    size: int
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)


class _Gram:
    """Per GEMM batch: rows of X [S, K] while S < K, then XᵀX (float64)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows: list[np.ndarray] = []
        self.count = 0
        self.gram: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        self.count += x.shape[0]
        if self.gram is None and self.count <= self.k:
            self.rows.append(np.array(x, dtype=np.float32))
            return
        if self.gram is None:
            self.gram = np.zeros((self.k, self.k), dtype=np.float64)
            for r in self.rows:
                r64 = r.astype(np.float64)
                self.gram += r64.T @ r64
            self.rows = []
        x64 = x.astype(np.float64)
        self.gram += x64.T @ x64

    def energy(self, d: np.ndarray) -> float:
        """``‖X D‖_F²`` for ``D`` of shape [K, out]."""
        d64 = d.astype(np.float64)
        if self.gram is not None:
            return float(np.einsum("ij,ij->", self.gram @ d64, d64))
        total = 0.0
        for r in self.rows:
            p = r.astype(np.float64) @ d64
            total += float(np.einsum("ij,ij->", p, p))
        return total


@dataclasses.dataclass
class CalibrationStats:
    """Per layer name: one :class:`_Gram` per GEMM batch element."""

    path: str
    samples: int
    batches: int
    batch_size: int
    layers: dict[str, list[_Gram]]
    key: str
    activations: ActivationStats | None = None  # TASD-A statistics of the same inputs (when asked for)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The statistics as named arrays (for :mod:`tasdc.cache`)."""
        out = {"meta": np.array([self.samples, self.batches, self.batch_size], dtype=np.int64)}
        for layer, grams in self.layers.items():
            for i, g in enumerate(grams):
                if g.gram is not None:
                    out[f"{layer}|{i}|gram|{g.count}"] = g.gram
                else:
                    out[f"{layer}|{i}|rows|{g.count}"] = (np.concatenate(g.rows) if g.rows
                                                         else np.zeros((0, g.k), dtype=np.float32))
        return out

    @classmethod
    def from_arrays(cls, path: str, arrays: dict[str, np.ndarray], key: str) -> "CalibrationStats":
        samples, batches, batch_size = (int(v) for v in arrays["meta"])
        layers: dict[str, list[_Gram]] = {}
        for name, value in arrays.items():
            if name == "meta":
                continue
            layer, index, kind, count = name.rsplit("|", 3)
            grams = layers.setdefault(layer, [])
            while len(grams) <= int(index):
                grams.append(_Gram(0))
            g = grams[int(index)] = _Gram(value.shape[1])
            g.count = int(count)
            if kind == "gram":
                g.gram = value
            elif value.shape[0]:
                g.rows = [value]
        return cls(path, samples, batches, batch_size, layers, key)


_calib_cache: dict[tuple, CalibrationStats] = {}


def load_calibration_inputs(path: str | Path) -> np.ndarray:
    """The single model input of a calibration / evaluation file: ``x`` of an
    ``.npz`` (or its only array), or an ``.npy`` array."""
    path = Path(path)
    arrays = read_arrays(path, what="calibration")
    if "" in arrays:
        x = arrays[""]
    elif "x" in arrays:
        x = arrays["x"]
    elif len(arrays) == 1:
        (x,) = arrays.values()
    else:
        raise SelectionError(f"{path}: expected an array named 'x' (found {', '.join(arrays) or 'none'})")
    if x.dtype.kind not in "fiub" or x.ndim < 1 or x.shape[0] < 1:
        raise SelectionError(f"{path}: 'x' must be a non-empty numeric array, got {x.dtype} {list(x.shape)}")
    return x


#: Keys of a calibration / evaluation file that hold labels, not model inputs ("y": older files).
LABEL_KEYS = ("labels", "y")


def load_input_set(path: str | Path, names: Sequence[str],
                   arg_types: Sequence[tuple[tuple[int, ...], Any]]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """(one array per model input, samples first; labels or None) of a calibration / evaluation file.

    An ``.npz`` holds one array per model input, by the input's name
    (``names``: the program's argument names, ``arg0``, … for MLIR), plus
    optional ``labels``; a single-input model also takes ``x`` (and ``y``
    labels) or an ``.npy``. Every array has the samples on axis 0 (as many in
    each) and the model's per-sample shape after it.
    """
    from tasdc.importer import InputError, InputSpec, bind_inputs

    path = Path(path)
    arrays = read_arrays(path, what="calibration")
    labels = None
    for key in LABEL_KEYS:
        if key in arrays and not (key in names):
            labels = np.asarray(arrays.pop(key))
            break
    specs = [InputSpec(n, (-1,) + tuple(shape[1:]), dtype) for n, (shape, dtype) in zip(names, arg_types)]
    try:
        inputs = bind_inputs(arrays, specs, str(path))
    except InputError as error:
        raise SelectionError(str(error)) from None
    counts = {a.shape[0] for a in inputs}
    if len(counts) != 1 or 0 in counts:
        raise SelectionError(f"{path}: every input needs the same number of samples (> 0); found "
                             + ", ".join(f"{n}: {a.shape[0]}" for n, a in zip(names, inputs)))
    if labels is not None and labels.shape[:1] != inputs[0].shape[:1]:
        raise SelectionError(f"{path}: 'labels' has {labels.shape[0] if labels.ndim else 0} entries for "
                             f"{inputs[0].shape[0]} samples")
    return inputs, labels


def input_batches(inputs: Sequence[np.ndarray], arg_types: Sequence[tuple[tuple[int, ...], Any]]
                  ) -> list[tuple[list[np.ndarray], int]]:
    """Model-sized batches of ``inputs`` (samples first): (arrays, real samples); a short last batch is zero-padded."""
    batch = arg_types[0][0][0] if arg_types and arg_types[0][0] else 1
    n = inputs[0].shape[0]
    out = []
    for start in range(0, n, batch):
        chunk = []
        real = min(batch, n - start)
        for array, (shape, dtype) in zip(inputs, arg_types):
            part = array[start:start + batch].astype(dtype, copy=False)
            if real < batch:
                part = np.concatenate([part, np.zeros((batch - real,) + part.shape[1:], dtype=part.dtype)])
            chunk.append(part)
        out.append((chunk, real))
    return out


def _function_of(op: ir.OpView) -> ir.OpView | None:
    parent = op.operation.parent
    if parent is None or parent.name != "func.func":
        return None
    return parent.opview


def _instrument(module: ir.Module) -> tuple[ir.Module, str, list[_Probe]]:
    """A clone of ``module`` whose function returns every candidate's run-time
    operand, flattened and packed into one f32 vector."""
    from torch_mlir.dialects import func as func_d
    from torch_mlir.dialects import tensor as tensor_d

    context = module.context
    with context, ir.Location.unknown(context):
        clone = ir.Module.create()
        for op in module.body.operations:
            op.operation.clone(ip=ir.InsertionPoint(clone.body))
        found = scan(clone)
        if not found.candidates:
            return clone, "", []
        functions = {}
        for cand in found.candidates:
            fn = _function_of(cand.op)
            if fn is None:
                raise SelectionError(f"calibration: layer {cand.layer} is not at the top level of a function")
            functions[ir.StringAttr(fn.attributes["sym_name"]).value] = fn
        if len(functions) != 1:
            raise SelectionError(f"calibration: the layers are spread over several functions ({', '.join(sorted(functions))})")
        (name, fn), = functions.items()
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        block = fn.regions[0].blocks[0]
        ret = list(block.operations)[-1]
        probes: list[_Probe] = []
        values = []
        offset = 0
        for cand in found.candidates:
            value = cand.op.operands[1 - cand.sparse_operand]
            vtype = ir.RankedTensorType(value.type)
            if not vtype.has_static_shape or not isinstance(vtype.element_type, ir.F32Type):
                raise SelectionError(f"calibration: layer {cand.layer} has a dynamically shaped or non-f32 input")
            if cand.fold_batch:  # the layer sees the batch folded (as the tasd.matmul terms will)
                with ir.InsertionPoint(ret), ret.location:
                    value = folded_activation(cand, value)
                vtype = ir.RankedTensorType(value.type)
            shape = tuple(vtype.shape)
            size = int(np.prod(shape))
            probe = _Probe(cand.layer, cand.kind, cand.sparse_operand, shape, offset, size)
            if cand.kind == "conv2d":
                _, _, kh, kw = ir.RankedTensorType(cand.op.operands[1].type).shape
                probe.kernel = (kh, kw)
                probe.strides = tuple(_i64s(cand.op, "strides"))  # type: ignore[assignment]
                probe.dilations = tuple(_i64s(cand.op, "dilations"))  # type: ignore[assignment]
            probes.append(probe)
            values.append((value, shape, size))
            offset += size
        ip = ir.InsertionPoint(ret)
        f32 = ir.F32Type.get()
        # One spare element: a single slice covering the whole result would fold
        # into returning a view of the function argument, which the CPU
        # lowering cannot return.
        acc = tensor_d.EmptyOp([offset + 1], f32, ip=ip).result
        for (value, shape, size), probe in zip(values, probes):
            flat = value
            if len(shape) != 1:
                assoc = ir.ArrayAttr.get([ir.ArrayAttr.get(
                    [ir.IntegerAttr.get(ir.IntegerType.get_signless(64), i) for i in range(len(shape))])])
                flat = tensor_d.CollapseShapeOp(ir.RankedTensorType.get([size], f32), value, assoc, ip=ip).result
            acc = tensor_d.InsertSliceOp(flat, acc, [], [], [], [probe.offset], [size], [1], ip=ip).result
        func_d.ReturnOp([acc], ip=ip)
        ret.erase()
        fn.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs), [acc.type]))
        for other in list(clone.body.operations):
            if other.operation.name == "func.func" and ir.StringAttr(other.attributes["sym_name"]).value != name:
                pass  # other functions stay (they may be callees)
    return clone, name, probes


def _i64s(op: ir.OpView, name: str) -> list[int]:
    if name not in op.attributes:
        return [1, 1]
    attr = op.attributes[name]
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    return [int(v) for v in np.array(ir.DenseIntElementsAttr(attr))]


def _gemm_rows(probe: _Probe, x: np.ndarray) -> list[np.ndarray]:
    """The layer input as rows ``[S, K]`` (one array per GEMM batch element)."""
    if probe.kind == "conv2d":
        from tasdc.runtime.cpu.kernels import im2col

        cols, _, _ = im2col(np.ascontiguousarray(x, dtype=np.float32), probe.kernel[0], probe.kernel[1],
                            probe.strides, 0, probe.dilations)
        return [cols]
    if probe.kind == "matmul":
        return [x if probe.sparse_operand == 1 else x.T]
    return [x[b] if probe.sparse_operand == 1 else x[b].T for b in range(x.shape[0])]


def collect_calibration(module: ir.Module, path: str, *, rows_of: dict[str, int] | None = None,
                        input_names: Sequence[str] = (), act_series: Sequence[SeriesConfig] = ()) -> CalibrationStats:
    """Run the instrumented dense clone on the calibration inputs (cached).
    With ``act_series`` the same run also fills :class:`ActivationStats`."""
    resolved = os.path.realpath(path)
    try:
        st = os.stat(resolved)
    except OSError:
        raise SelectionError(f"{path}: no such calibration file") from None
    text_digest = hashlib.blake2b(str(module).encode(), digest_size=16).hexdigest()
    key = (resolved, st.st_mtime_ns, st.st_size, text_digest, tuple(str(a) for a in act_series))
    if key in _calib_cache:
        return _calib_cache[key]
    persistent_key = f"{text_digest}/{_cache.file_digest(resolved)}" if _cache.active() is not None else ""
    found = _cache.lookup("calibration", persistent_key) if persistent_key and not act_series else None
    if found is not None:
        stats = CalibrationStats.from_arrays(path, found, f"{resolved}:{st.st_mtime_ns}:{text_digest}")
        _calib_cache.clear()
        _calib_cache[key] = stats
        return stats
    clone, entry, probes = _instrument(module)
    stats = CalibrationStats(path, 0, 0, 0, {}, f"{resolved}:{st.st_mtime_ns}:{text_digest}")
    if not probes:
        return stats
    from tasdc.runtime.cpu.executor import compile_for_cpu

    executable = compile_for_cpu(clone, entry=entry, opt_level=0)  # -O0: far quicker to JIT, as fast to run here
    arg_types = executable.arg_types
    names = list(input_names) if len(input_names) == len(arg_types) else [f"arg{i}" for i in range(len(arg_types))]
    inputs, _ = load_input_set(path, names, arg_types)
    batch = arg_types[0][0][0] if arg_types and arg_types[0][0] else 1
    n = inputs[0].shape[0]
    accumulators: dict[str, list[_Gram]] = {}
    act = ActivationStats(act_series, _Gram) if act_series else None
    batches = input_batches(inputs, arg_types)
    starts = list(range(len(batches)))
    for chunk, real in progress(batches, desc="tasd-select calibration", unit="batch"):
        flat = executable(*chunk)
        for probe in probes:
            x = flat[probe.offset:probe.offset + probe.size].reshape(probe.shape)
            if real < batch:
                x = _drop_padding(probe, x, real, batch)
                if x is None:
                    continue
            rows = _gemm_rows(probe, x)
            if act is not None:
                act.add(probe.layer, probe.kind, probe.sparse_operand, x, lambda a, p=probe: _gemm_rows(p, a))
            grams = accumulators.get(probe.layer)
            if grams is None:
                grams = accumulators[probe.layer] = [_Gram(r.shape[1]) for r in rows]
            for g, r in zip(grams, rows):
                g.add(r)
    stats = CalibrationStats(path, n, len(starts), batch, accumulators, stats.key, act)
    if persistent_key and act is None:  # the persistent cache holds the weight statistics only
        _cache.store("calibration", persistent_key, stats.to_arrays())
    _calib_cache.clear()  # keep one model's statistics at a time
    _calib_cache[key] = stats
    return stats


def _drop_padding(probe: _Probe, x: np.ndarray, real: int, batch: int) -> np.ndarray | None:
    """Remove the rows that come from zero-padded samples when the model's
    batch dimension is visible in the layer input; else skip the batch."""
    if probe.kind == "conv2d" and x.shape[0] == batch:
        return x[:real]
    if probe.kind == "matmul" and probe.sparse_operand == 1 and x.shape[0] % batch == 0:
        per = x.shape[0] // batch
        return x[: real * per]
    if probe.kind == "batch_matmul" and x.shape[0] == batch:
        return None  # per-sample weights cannot be sliced consistently; skip the partial batch
    if probe.kind == "matmul" and probe.sparse_operand == 0 and x.shape[1] % batch == 0:
        per = x.shape[1] // batch
        return x[:, : real * per]
    return None


def weight_k_major(a: np.ndarray, axis: int, kind: str) -> list[np.ndarray]:
    """A weight (or weight residual) as ``[K, out]`` matrices, one per GEMM batch element."""
    if kind == "batch_matmul":
        sub = axis - 1
        return [np.moveaxis(a[b], sub, 0).reshape(a.shape[axis], -1) for b in range(a.shape[0])]
    return [np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)]


def output_energy(grams: list[_Gram], w: np.ndarray, axis: int, kind: str) -> float:
    """``‖X W‖²`` of a layer on the calibration inputs."""
    return sum(g.energy(d) for g, d in zip(grams, weight_k_major(w, axis, kind)))


def output_errors(grams: list[_Gram], w: np.ndarray, axis: int, kind: str, configs: Sequence[SeriesConfig],
                  lossless: Sequence[bool], cache_key: tuple | None = None) -> list[float] | None:
    """Relative layer-output error ``‖X(W − Ŵ)‖/‖XW‖`` of each config (None if
    the layer output is identically zero on the calibration data)."""

    def k_major(a: np.ndarray) -> list[np.ndarray]:
        return weight_k_major(a, axis, kind)

    ref = sum(g.energy(d) for g, d in zip(grams, k_major(w)))
    if not ref > 0.0:
        return None
    out = []
    for config, exact in zip(configs, lossless):
        if config.is_dense or exact:
            out.append(0.0)
            continue
        key = cache_key + (str(config),) if cache_key else None
        if key is not None and key in _output_cache:
            out.append(_output_cache[key])
            continue
        residual = decompose(w, config, axis).residual
        err = sum(g.energy(d) for g, d in zip(grams, k_major(residual)))
        value = math.sqrt(max(err, 0.0) / ref)
        if key is not None:
            if len(_output_cache) > _CACHE_LIMIT:
                _output_cache.clear()
            _output_cache[key] = value
        out.append(value)
    return out


# --------------------------------------------------------------------------
# the allocation
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Move:
    """One step of the greedy path."""

    step: int
    layer: int
    src: int
    dst: int
    saving: float          # objective before - after (model total)
    added: float           # added error contribution Δ(e²)
    objective: float       # model objective after the step
    used: float            # accumulated D after the step


@dataclasses.dataclass
class Problem:
    """Per-layer costs [L, C] and error contributions ``e²`` [L, C]."""

    objective: str
    energy: np.ndarray
    latency_s: np.ndarray
    latency_cycles: np.ndarray
    err2: np.ndarray
    valid: np.ndarray
    fixed_energy: float = 0.0
    fixed_latency_s: float = 0.0
    fixed_latency_cycles: float = 0.0

    def total(self, e: np.ndarray | float, ts: np.ndarray | float, tc: np.ndarray | float) -> Any:
        if self.objective == "edp":
            return e * ts
        if self.objective == "latency":
            return tc
        return e

    def totals_of(self, choice: np.ndarray) -> tuple[float, float, float]:
        rows = np.arange(len(choice))
        return (self.fixed_energy + float(self.energy[rows, choice].sum()),
                self.fixed_latency_s + float(self.latency_s[rows, choice].sum()),
                self.fixed_latency_cycles + float(self.latency_cycles[rows, choice].sum()))


def greedy_path(problem: Problem) -> list[Move]:
    """The budget-independent greedy path (rule 1 of the module docstring)."""
    n_layers, n_configs = problem.err2.shape
    if n_layers == 0:
        return []
    cur = np.zeros(n_layers, dtype=np.int64)
    rows = np.arange(n_layers)
    e_tot, ts_tot, tc_tot = problem.totals_of(cur)
    obj = float(problem.total(e_tot, ts_tot, tc_tot))
    used = 0.0
    path: list[Move] = []
    for step in range(n_layers * n_configs * 4 + 1):
        de = problem.energy - problem.energy[rows, cur][:, None]
        dts = problem.latency_s - problem.latency_s[rows, cur][:, None]
        dtc = problem.latency_cycles - problem.latency_cycles[rows, cur][:, None]
        new = problem.total(e_tot + de, ts_tot + dts, tc_tot + dtc)
        saving = obj - new
        added = problem.err2 - problem.err2[rows, cur][:, None]
        ok = problem.valid & (saving > 1e-12 * abs(obj))
        if not ok.any():
            break
        free = ok & (added <= 0.0)
        if free.any():
            score = np.where(free, saving, -np.inf)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                score = np.where(ok, saving / added, -np.inf)
        flat = int(np.argmax(score))  # first maximum: lowest layer, then candidate order
        layer, dst = divmod(flat, n_configs)
        src = int(cur[layer])
        cur[layer] = dst
        e_tot += float(de[layer, dst])
        ts_tot += float(dts[layer, dst])
        tc_tot += float(dtc[layer, dst])
        obj_new = float(problem.total(e_tot, ts_tot, tc_tot))
        used += float(added[layer, dst])
        path.append(Move(step, layer, src, dst, obj - obj_new, float(added[layer, dst]), obj_new, used))
        obj = obj_new
    return path


def cut_path(path: Sequence[Move], n_layers: int, budget: float, max_steps: int = -1) -> tuple[np.ndarray, int]:
    """Per-layer choice after the longest prefix within ``budget`` (and
    ``max_steps`` when ≥ 0); returns (choice, steps taken)."""
    choice = np.zeros(n_layers, dtype=np.int64)
    taken = 0
    tol = 1e-12 * max(1.0, budget)
    for move in path:
        if max_steps >= 0 and taken >= max_steps:
            break
        if move.used > budget + tol:
            break
        choice[move.layer] = move.dst
        taken += 1
    return choice, taken


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
    if "indexing_maps" in op.attributes:
        from tasdc.contractions import _DEFAULT_MAPS

        if str(op.attributes["indexing_maps"]) != _DEFAULT_MAPS[kind]:
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
    series; the module summary lists the path's moves, ``path_moves``),
    ``activations`` (default true: on a target with
    TASD extraction units and with ``calib``, every layer may instead take a
    series on its *activation* operand, TASD-A, written as
    ``tasd.act_config`` for ``tasd-decompose-activations``; see below).

    Activation series (TASD-A) share the allocation with weight series: the
    options of a layer are ``dense``, the weight series and the same series
    on the activation side (``A 2:8``; a target has one structured operand,
    so a layer takes one side). An activation option is costed with the
    activation as the structured operand (``tasd_a``: extraction work
    included) and its error is the layer-output error ``‖(X − X̂)W‖/‖XW‖``
    on the calibration inputs (:mod:`tasdc.activation_stats`: the run-time
    decomposition ``X̂`` of each layer's real input; 0 when the input's
    block-nnz histogram shows the series is lossless on that data). Without
    calibration data, and at ``quality=1`` (exact on every
    input, which only a weight series can promise), there are no activation
    options.
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

    def banned(self) -> set[tuple[str, str]]:
        """The ``ban`` option as ``{(layer, series)}``."""
        out = set()
        for item in self.ban.split():
            layer, sep, series = item.partition("@")
            if not sep or not layer or not series:
                raise SelectionError(f"ban: '{item}' is not layer@series (e.g. conv2d_0@2:4)")
            out.add((layer, series))
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
        # An activation series is exact only on the inputs seen: quality 1.0 (exact on every input) admits none.
        if self.activations and self.calib and hw.extraction is not None and self.quality < 1.0:
            act_configs = [ActivationSeries(c.terms) for c in weight_configs[1:]]
        calib = (collect_calibration(module, self.calib, input_names=names, act_series=act_configs)
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
            digest = _digest(w)
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
                    reference = output_energy(calib.layers[cand.layer], w, cand.axis, cand.kind)
                    act_errs = calib.activations.output_errors(
                        cand.layer, weight_k_major(w, cand.axis, cand.kind), reference, act_configs)
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
        )
        bans = self.banned()
        if bans:
            labels = [str(c) for c in configs]
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
            if pending is not None:
                used = path[taken - 1].used if taken else 0.0
                return (f"left dense: nothing fits the error budget: the next greedy step would make it "
                        f"{configs[pending.dst]} (saves {pending.saving / dense_obj:.2%} of the model {obj}, "
                        f"adds e^2={_fmt(pending.added)}, budget left {_fmt(max(budget - used, 0.0))})")
            return (f"left dense: no native series lowers the model {obj} on '{hw.name}' "
                    f"(cheapest series {self._best_series(problem, i, configs)})")
        config = configs[j]
        if err[i, j] == 0.0:
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
        if pending is not None:
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
    "SelectionError",
    "budget_for_quality",
    "check_options",
    "native_series",
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
    "read_selection",
    "CONFIG_ATTR",
    "SELECT_ATTR",
    "SUMMARY_ATTR",
    "OBJECTIVES",
]
