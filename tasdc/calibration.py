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
run fills :class:`tasdc.activation_stats.ActivationStats`.

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
import os
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


class Gram:
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
    """Per layer name: one :class:`Gram` per GEMM batch element."""

    path: str
    samples: int
    batches: int
    batch_size: int
    layers: dict[str, list[Gram]]
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
                probe.strides = tuple(conv_attr(cand.op, "strides"))  # type: ignore[assignment]
                probe.dilations = tuple(conv_attr(cand.op, "dilations"))  # type: ignore[assignment]
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

    # -O2: -O0 JITs 2-4x faster but its code ran convolutions 3-6x slower (ResNet on digits, MobileNetV2).
    executable = compile_for_cpu(clone, entry=entry, opt_level=2)
    arg_types = executable.arg_types
    names = list(input_names) if len(input_names) == len(arg_types) else [f"arg{i}" for i in range(len(arg_types))]
    inputs, _ = load_input_set(path, names, arg_types)
    batch = arg_types[0][0][0] if arg_types and arg_types[0][0] else 1
    n = inputs[0].shape[0]
    accumulators: dict[str, list[Gram]] = {}
    act = ActivationStats(act_series, Gram) if act_series else None
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
                grams = accumulators[probe.layer] = [Gram(r.shape[1]) for r in rows]
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


__all__ = ["CalibrationStats", "Gram", "LABEL_KEYS", "collect_calibration", "input_batches",
           "load_calibration_inputs", "load_input_set"]
