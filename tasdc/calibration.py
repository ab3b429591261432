"""Calibration for ``tasd-select``: each candidate layer's real input on calibration data.

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
kept, or the rows of ``X`` themselves while there are fewer rows than K
(:class:`Gram`), so that ``‖XΔ‖² = Σ (XᵀX Δ) ∘ Δ`` for any weight change
``Δ`` (:mod:`tasdc.layer_errors`). With activation series asked for, the same
run fills :class:`tasdc.activation_stats.ActivationStats`. The same run also
keeps the model's own outputs on the calibration inputs
(:attr:`CalibrationStats.outputs`): TASDER's dense reference of the
calibration set, so the dense model does not run that set again.

Sampling. A layer's statistics use about :data:`SAMPLE_ROWS` of its GEMM
rows (a convolution's output positions, a linear layer's tokens), drawn
uniformly without replacement, the same fraction from every batch
(proportional stratified sampling, seeded by layer name and batch: the same
rows on every run). Every error the selection reads is a ratio of two sums
over the same rows, ``‖XΔ‖² / ‖XW‖² = Σ_r ‖x_r Δ‖² / Σ_r ‖x_r W‖²``; over a
uniform sample both sums are unbiased estimates of the full sums up to the
same factor, so the ratio estimates the error of the whole calibration set
with a relative standard error of ``e²`` of about ``cv · √((1 − f) / n)``
for ``n`` sampled rows out of ``N`` (``f = n / N``), where ``cv`` is the
coefficient of variation of the per-row ratio residuals ``N · (‖x_r Δ‖²/‖XΔ‖²
− ‖x_r W‖²/‖XW‖²)`` (first-order expansion of the ratio estimator; the
standard error of ``e`` is half that of ``e²``). Measured on MobileNetV2 at
width 1.25, 224² (``benchmarks/qor/compact_cnn.py``, VEGETA's series): ``cv``
is at most 0.51 over the layers (median 0.18), so ``n = 16384`` puts one
standard error of ``e`` at 0.2 % or less; the errors differed from the
full-data ones by at most 0.3 %, by 1.9 % for TASD-A residuals on ttc-m8, and
the greedy path kept the same moves (a few neighbours swapped places).
Layers with at most that many rows (all of them on small inputs) are
exact. Convolution rows are gathered as patches at the sampled positions
(no full im2col). Products are formed in float32 per batch and accumulated in
float64.

Statistics are cached per process (keyed by the module text and the
calibration file), so repeated selections on the same model are cheap, and in
the active :mod:`tasdc.cache` when there is one (keyed by digests of the
module text and the calibration file's bytes).

Calibration and evaluation files (:func:`load_input_set`): an ``.npz`` with
one array per model input by name, samples first, plus optional labels; a
single-input model also takes ``x`` or an ``.npy``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch_mlir import ir

from tasdc import cache as _cache
from tasdc.activation_stats import ActivationStats
from tasdc.arrays import read_arrays
from tasdc.contractions import conv_attr, scan
from tasdc.decompose import SeriesConfig
from tasdc.errors import SelectionError
from tasdc.passes.decompose_weights import folded_activation
from tasdc.progress import progress


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
    weight: np.ndarray | None = None   # the contraction's weight (reduction axis ``axis``)
    axis: int = 0

    def rows_per_element(self, x: np.ndarray) -> int:
        """GEMM rows of one batch element of the layer input ``x``."""
        if self.kind == "conv2d":
            (oh, ow) = _conv_out(self, x.shape)
            return x.shape[0] * oh * ow
        if self.kind == "matmul":
            return x.shape[0] if self.sparse_operand == 1 else x.shape[1]
        return x.shape[1] if self.sparse_operand == 1 else x.shape[2]


#: About this many GEMM rows per layer enter its statistics (a uniform sample over
#: all calibration batches when there are more, the same fraction of every batch,
#: rounded up); 0 keeps every row.
SAMPLE_ROWS = 16384


def _conv_out(probe: _Probe, shape: tuple[int, ...]) -> tuple[int, int]:
    (kh, kw), (sh, sw), (dh, dw) = probe.kernel, probe.strides, probe.dilations
    return (shape[2] - dh * (kh - 1) - 1) // sh + 1, (shape[3] - dw * (kw - 1) - 1) // sw + 1


def _syrk(x: np.ndarray) -> np.ndarray:
    """``xᵀx`` of float32 rows as float64 (the product in float32: BLAS syrk)."""
    x32 = np.asarray(x, dtype=np.float32)
    return (x32.T @ x32).astype(np.float64)


class Gram:
    """Per GEMM batch: rows of X [S, K] while S < K, then XᵀX (float64; each
    batch's product formed in float32)."""

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
                self.gram += _syrk(r)
            self.rows = []
        self.gram += _syrk(x)

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
    """Per layer name: one :class:`Gram` per GEMM batch element."""

    path: str
    samples: int
    batches: int
    batch_size: int
    layers: dict[str, list[Gram]]
    key: str
    activations: ActivationStats | None = None  # TASD-A statistics of the same inputs (when asked for)
    #: The model's outputs on the calibration inputs, one list per batch (what the
    #: dense model returns, padded rows included); None when not kept.
    outputs: list[tuple[np.ndarray, ...]] | None = None

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
        layers: dict[str, list[Gram]] = {}
        for name, value in arrays.items():
            if name == "meta":
                continue
            layer, index, kind, count = name.rsplit("|", 3)
            grams = layers.setdefault(layer, [])
            while len(grams) <= int(index):
                grams.append(Gram(0))
            g = grams[int(index)] = Gram(value.shape[1])
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


@dataclasses.dataclass
class _Output:
    """Where one of the model's own results sits in the instrumented result vector."""

    shape: tuple[int, ...]
    offset: int
    size: int


def _instrument(module: ir.Module, with_weights: bool = False
                ) -> tuple[ir.Module, str, list[_Probe], list[_Output] | None]:
    """A clone of ``module`` whose function returns every candidate's run-time
    operand and then the function's own results, flattened and packed into one
    f32 vector (the results only when they all are static f32 tensors; else
    ``None`` for them)."""
    from torch_mlir.dialects import func as func_d
    from torch_mlir.dialects import tensor as tensor_d

    context = module.context
    with context, ir.Location.unknown(context):
        clone = ir.Module.create()
        for op in module.body.operations:
            op.operation.clone(ip=ir.InsertionPoint(clone.body))
        found = scan(clone)
        if not found.candidates:
            return clone, "", [], None
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
            probe = _Probe(cand.layer, cand.kind, cand.sparse_operand, shape, offset, size, axis=cand.axis)
            if with_weights:
                probe.weight = cand.weight
            if cand.kind == "conv2d":
                _, _, kh, kw = ir.RankedTensorType(cand.op.operands[1].type).shape
                probe.kernel = (kh, kw)
                probe.strides = tuple(conv_attr(cand.op, "strides"))  # type: ignore[assignment]
                probe.dilations = tuple(conv_attr(cand.op, "dilations"))  # type: ignore[assignment]
            probes.append(probe)
            values.append((value, shape, size))
            offset += size
        outputs: list[_Output] | None = []
        for result in ret.operands:
            rtype = result.type
            if not (isinstance(rtype, ir.RankedTensorType) or ir.RankedTensorType.isinstance(rtype)):
                outputs = None
                break
            rtype = ir.RankedTensorType(rtype)
            if not rtype.has_static_shape or not isinstance(rtype.element_type, ir.F32Type):
                outputs = None
                break
            size = int(np.prod(rtype.shape))
            outputs.append(_Output(tuple(rtype.shape), offset, size))
            values.append((result, tuple(rtype.shape), size))
            offset += size
        if outputs is None:
            values = values[:len(probes)]
            offset = sum(size for _, _, size in values)
        ip = ir.InsertionPoint(ret)
        f32 = ir.F32Type.get()
        # One spare element: a single slice covering the whole result would fold
        # into returning a view of the function argument, which the CPU
        # lowering cannot return.
        acc = tensor_d.EmptyOp([offset + 1], f32, ip=ip).result
        at = 0
        for value, shape, size in values:
            flat = value
            if len(shape) != 1:
                assoc = ir.ArrayAttr.get([ir.ArrayAttr.get(
                    [ir.IntegerAttr.get(ir.IntegerType.get_signless(64), i) for i in range(len(shape))])])
                flat = tensor_d.CollapseShapeOp(ir.RankedTensorType.get([size], f32), value, assoc, ip=ip).result
            acc = tensor_d.InsertSliceOp(flat, acc, [], [], [], [at], [size], [1], ip=ip).result
            at += size
        func_d.ReturnOp([acc], ip=ip)
        ret.erase()
        fn.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs), [acc.type]))
    return clone, name, probes, outputs


def _gemm_rows(probe: _Probe, x: np.ndarray, take: np.ndarray | None = None) -> list[np.ndarray]:
    """The layer input as rows ``[S, K]`` (one array per GEMM batch element);
    with ``take``, only those rows (ascending indices into every element's rows)."""
    if probe.kind == "conv2d":
        if take is None and probe.kernel == (1, 1) and probe.strides == (1, 1):
            # a 1x1 convolution's rows are the input's pixels: one transposing copy (im2col's layout)
            return [np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(x.shape[1], -1).T]
        if take is None:
            from tasdc.runtime.cpu.kernels import im2col

            cols, _, _ = im2col(np.ascontiguousarray(x, dtype=np.float32), probe.kernel[0], probe.kernel[1],
                                probe.strides, 0, probe.dilations)
            return [cols]
        (kh, kw), (sh, sw), (dh, dw) = probe.kernel, probe.strides, probe.dilations
        oh, ow = _conv_out(probe, x.shape)
        n, pos = np.divmod(take, oh * ow)
        oi, wi = np.divmod(pos, ow)
        hh = oi[:, None] * sh + np.arange(kh) * dh
        ww = wi[:, None] * sw + np.arange(kw) * dw
        patches = x[n[:, None, None], :, hh[:, :, None], ww[:, None, :]]     # [rows, kh, kw, C]
        return [np.ascontiguousarray(patches.transpose(0, 3, 1, 2)).reshape(len(take), -1)]  # columns (c, kh, kw)
    if probe.kind == "matmul":
        rows = x if probe.sparse_operand == 1 else x.T
        return [rows if take is None else rows[take]]
    out = []
    for b in range(x.shape[0]):
        rows = x[b] if probe.sparse_operand == 1 else x[b].T
        out.append(rows if take is None else rows[take])
    return out


def _sample(layer: str, batch: int, rows: int, keep: float) -> np.ndarray | None:
    """Ascending indices of ``ceil(keep · rows)`` of ``rows`` rows, uniform without
    replacement, seeded by the layer's name and the batch (None: every row)."""
    if keep >= 1.0:
        return None
    count = min(rows, max(1, math.ceil(keep * rows)))
    rng = np.random.default_rng([zlib.crc32(layer.encode()), batch])
    return np.sort(rng.choice(rows, size=count, replace=False))


def collect_calibration(module: ir.Module, path: str, *, input_names: Sequence[str] = (),
                        act_series: Sequence[SeriesConfig] = (), sample_rows: int | None = None,
                        digest: str = "") -> CalibrationStats:
    """Run the instrumented dense clone on the calibration inputs (cached).
    With ``act_series`` the same run also fills :class:`ActivationStats`.
    ``sample_rows``: rows per layer kept (default :data:`SAMPLE_ROWS`; 0: all).
    ``digest``: :func:`module_digest` of ``module`` when the caller knows it
    (printing a large module to compute it takes a fraction of a second)."""
    sample_rows = SAMPLE_ROWS if sample_rows is None else int(sample_rows)
    resolved = os.path.realpath(path)
    try:
        st = os.stat(resolved)
    except OSError:
        raise SelectionError(f"{path}: no such calibration file") from None
    text_digest = digest or module_digest(module)
    key = (resolved, st.st_mtime_ns, st.st_size, text_digest, tuple(str(a) for a in act_series), sample_rows)
    if key in _calib_cache:
        return _calib_cache[key]
    persistent_key = (f"{text_digest}/{_cache.file_digest(resolved)}/rows={sample_rows}"
                      if _cache.active() is not None else "")
    found = _cache.lookup("calibration", persistent_key) if persistent_key and not act_series else None
    if found is not None:
        stats = CalibrationStats.from_arrays(path, found, f"{resolved}:{st.st_mtime_ns}:{text_digest}")
        _remember(key, stats)
        return stats
    clone, entry, probes, out_specs = _instrument(module, with_weights=bool(act_series))
    stats = CalibrationStats(path, 0, 0, 0, {}, f"{resolved}:{st.st_mtime_ns}:{text_digest}")
    if not probes:
        return stats
    from tasdc.layer_errors import weight_k_major
    from tasdc.runtime.cpu.executor import compile_for_cpu

    # -O2: -O0 JITs 2-4x faster but its code ran convolutions 3-6x slower (ResNet on digits, MobileNetV2).
    executable = compile_for_cpu(clone, entry=entry, opt_level=2)
    arg_types = executable.arg_types
    names = list(input_names) if len(input_names) == len(arg_types) else [f"arg{i}" for i in range(len(arg_types))]
    inputs, _ = load_input_set(path, names, arg_types)
    batch = arg_types[0][0][0] if arg_types and arg_types[0][0] else 1
    n = inputs[0].shape[0]
    accumulators: dict[str, list[Gram]] = {}
    act = ActivationStats(act_series) if act_series else None
    weights = {p.layer: weight_k_major(p.weight, p.axis, p.kind) for p in probes if act is not None}
    batches = input_batches(inputs, arg_types)
    keep: dict[str, float] = {}
    outputs: list[tuple[np.ndarray, ...]] | None = [] if out_specs is not None else None
    for index, (chunk, real) in enumerate(progress(batches, desc="tasd-select calibration", unit="batch")):
        flat = executable(*chunk)
        with single_threaded_blas():
            _account(probes, flat, real, batch, index, len(batches), sample_rows, keep, act, weights, accumulators)
        if outputs is not None and out_specs is not None:
            outputs.append(tuple(flat[o.offset:o.offset + o.size].reshape(o.shape).copy() for o in out_specs))
    stats = CalibrationStats(path, n, len(batches), batch, accumulators, stats.key, act, outputs)
    if persistent_key and act is None:  # the persistent cache holds the weight statistics only
        _cache.store("calibration", persistent_key, stats.to_arrays())
    _remember(key, stats)
    return stats


def single_threaded_blas() -> Any:
    """numpy's BLAS on one thread (a context): the statistics' products are small
    and many, and on a shared machine a second BLAS thread that is not scheduled
    stalls every call (measured 13.6 vs 67 GMAC/s on ``xᵀx`` of 1568 x 720 at
    load 4 on 2 cores)."""
    global _blas_controller
    if _blas_controller is None:   # finding the loaded libraries takes milliseconds: once
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


_blas_controller: Any = None


def _account(probes: list[_Probe], flat: np.ndarray, real: int, batch: int, index: int, batches: int,
             sample_rows: int, keep: dict[str, float], act: ActivationStats | None,
             weights: dict[str, list[np.ndarray]], accumulators: dict[str, list[Gram]]) -> None:
    """Add one calibration batch (the instrumented run's result vector ``flat``) to the statistics."""
    for probe in probes:
        x = flat[probe.offset:probe.offset + probe.size].reshape(probe.shape)
        if real < batch:
            x = _drop_padding(probe, x, real, batch)
            if x is None:
                continue
        rows_here = probe.rows_per_element(x)
        if probe.layer not in keep:  # the same fraction of every batch (proportional allocation)
            keep[probe.layer] = sample_rows / (rows_here * batches) if sample_rows else 1.0
        take = _sample(probe.layer, index, rows_here, keep[probe.layer])
        rows = _gemm_rows(probe, x, take)
        if act is not None:
            act.add(probe.layer, probe.kind, probe.sparse_operand, x, rows,
                    probe.kernel[0] * probe.kernel[1], weights[probe.layer])
        grams = accumulators.get(probe.layer)
        if grams is None:
            grams = accumulators[probe.layer] = [Gram(r.shape[1]) for r in rows]
        for g, r in zip(grams, rows):
            g.add(r)


def _remember(key: tuple, stats: CalibrationStats) -> None:
    """Keep one model's statistics at a time (the newest)."""
    _calib_cache.clear()
    _calib_cache[key] = stats


def module_digest(module: ir.Module) -> str:
    """A digest of the module's text (weights included): what calibration statistics are keyed by."""
    text = module.operation.get_asm(binary=True, assume_verified=True)
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def calibration_outputs(digest: str, path: str) -> list[tuple[np.ndarray, ...]] | None:
    """The model's outputs per batch from the newest calibration run in this process
    of the module whose :func:`module_digest` is ``digest`` on ``path`` (None when
    there was none or it kept no outputs)."""
    if not _calib_cache:
        return None
    ((resolved, mtime, size, kept_digest, *_), stats), = _calib_cache.items()
    try:
        st = os.stat(os.path.realpath(path))
    except OSError:
        return None
    if (os.path.realpath(path), st.st_mtime_ns, st.st_size) != (resolved, mtime, size):
        return None
    if stats.outputs is None or digest != kept_digest:
        return None
    return stats.outputs


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


__all__ = ["CalibrationStats", "Gram", "LABEL_KEYS", "SAMPLE_ROWS", "calibration_outputs", "collect_calibration",
           "input_batches", "load_calibration_inputs", "load_input_set", "module_digest"]
