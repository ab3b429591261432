"""Run a compiled module on the CPU: MLIR's JIT plus Numba N:M kernels.

:class:`CpuExecutable` takes a module after the TASD pipeline and

1. runs ``tasd-lower-to-runtime-calls``: every ``tasd.series`` becomes a
   call to ``@tasd_kernel_k(%dense, %out)`` whose declaration carries the
   compressed weights;
2. packs each kernel's weights for :mod:`tasdc.runtime.cpu.kernels` (once;
   the packed arrays are cached on disk, :mod:`tasdc.runtime.cpu.kernel_cache`);
3. folds inference BatchNorm into dense convolutions (``tasd-cpu-fold-batch-norm``),
   folds weight broadcasts over a batch (``tasd-cpu-fold-batch-broadcasts``)
   and turns large constants into arguments (``tasd-cpu-bind-constants``):
   their values are read from the module once, here, and passed on every
   call, so the machine code holds no weights;
4. looks the module up in the on-disk compile cache
   (:mod:`tasdc.runtime.cpu.object_cache`) and links the cached machine code; or
   runs ``tasd-cpu-to-llvm``, builds an ``ExecutionEngine`` and stores its
   object file in the cache;
5. binds one entry point per kernel (``_mlir_ciface_tasd_kernel_k``)
   before the code is linked.

Everything that is not a TASD series (elementwise ops, softmax, layer norm,
padding, dense contractions of activations) is MLIR's own generated code.

Kernel callbacks: every series (``tasd.matmul`` and ``tasd.batch_matmul``
with the weight on either side, ``tasd.conv2d``) is served by the kernels'
C entries (Numba ``cfunc`` functions, no Python on the call path). A kind
without a C entry would go through a ctypes callback that views the memref
descriptors as numpy arrays and calls the same Numba kernel (about 10 µs of
Python per call). Errors are recorded, never raised into C;
:meth:`CpuExecutable.__call__` raises them afterwards as
:class:`KernelError`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.execution_engine import ExecutionEngine

from tasdc.elements import element_dtype, read_elements
from tasdc.errors import InternalError, TasdcError
from tasdc.module import clone_module
from tasdc.pipeline import parse_pipeline, run_pipeline
from tasdc.passes.bind_constants import BindConstants, bound_values
from tasdc.passes.fold_batch_broadcasts import FoldBatchBroadcasts
from tasdc.passes.fold_batch_norm import FoldBatchNorm
from tasdc.passes.fuse_kernel_epilogues import EPILOGUE_ATTR, RESIDUAL_ATTR, FuseKernelEpilogues
from tasdc.passes.tap_major_filters import TapMajorFilters
from tasdc.passes.tile_batch import BATCH_OPERANDS_ATTR, batch_operands
from tasdc.report import from_attr
from tasdc.runtime.cpu.act_kernels import collect_act_kernels
from tasdc.runtime.cpu import kernel_cache, object_cache
from tasdc.runtime.cpu.dense import library_address, library_symbols
from tasdc.runtime.cpu.memory import retain_freed_memory
from tasdc.runtime.cpu.kernels import Epilogue, KernelError, PackedSeries, conv2d_series, make_cfunc_entry, make_conv_cfunc_entry, pack_series, pack_term, series_matmul

_LIBC = ctypes.CDLL(None)
_LIBC.free.argtypes = [ctypes.c_void_p]
_LIBC.free.restype = None

KERNEL_ATTR = "tasd.kernel"
WEIGHTS_ATTR = "tasd.weights"


class RuntimeInputError(TasdcError):
    """Inputs that do not match the compiled function's signature."""


@functools.lru_cache(maxsize=None)
def _descriptor_class(rank: int) -> type[ctypes.Structure]:
    fields = [
        ("allocated", ctypes.c_void_p),
        ("aligned", ctypes.c_void_p),
        ("offset", ctypes.c_int64),
    ]
    if rank:
        fields += [("shape", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
    return type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})


def _view(desc: ctypes.Structure, dtype: np.dtype = np.dtype(np.float32), writable: bool = False) -> np.ndarray:
    """A numpy view (no copy) of the memref described by ``desc``."""
    rank = len(desc.shape) if hasattr(desc, "shape") else 0
    shape = tuple(desc.shape) if rank else ()
    strides = tuple(desc.strides) if rank else ()
    if any(s < 0 for s in strides) or any(d < 0 for d in shape):
        raise KernelError(f"unsupported memref layout: shape {shape}, strides {strides}")
    extent = 1 + sum((d - 1) * s for d, s in zip(shape, strides)) if all(shape) else 0
    itemsize = dtype.itemsize
    buffer = (ctypes.c_char * (max(extent, 1) * itemsize)).from_address(desc.aligned + itemsize * desc.offset)
    flat = np.frombuffer(buffer, dtype=dtype)
    return np.lib.stride_tricks.as_strided(flat, shape=shape, strides=tuple(itemsize * s for s in strides), writeable=writable)


def _copy_out(desc: ctypes.Structure, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new array holding the memref described by ``desc`` (of ``shape``): one
    ``memmove`` when it is contiguous in row-major order (a few µs less per call
    than a strided view's copy, which matters for small models), else a copy of
    :func:`_view`."""
    rank = len(shape)
    dims = tuple(desc.shape) if rank else ()
    strides = tuple(desc.strides) if rank else ()
    expected, step = [], 1
    for d in reversed(dims):
        expected.append(step)
        step *= d
    if dims == tuple(shape) and strides == tuple(reversed(expected)):
        out = np.empty(shape, dtype)
        if out.nbytes:
            ctypes.memmove(out.ctypes.data, desc.aligned + dtype.itemsize * desc.offset, out.nbytes)
        return out
    return np.array(_view(desc, dtype), copy=True)


@functools.lru_cache(maxsize=None)
def _results_class(ranks: tuple[int, ...]) -> type[ctypes.Structure]:
    """The C struct of several memref descriptors an entry with several results returns.

    Built once per signature: a ctypes type is a cyclic object, and one made per
    call is garbage only the cyclic collector frees (measured: 10 calls left 7
    unreachable objects before, none after)."""
    fields = [(f"r{i}", _descriptor_class(rank)) for i, rank in enumerate(ranks)]
    return type("Results", (ctypes.Structure,), {"_fields_": fields})


@functools.lru_cache(maxsize=None)
def _pointer_array_class(length: int) -> type[ctypes.Array]:
    """``ctypes.c_void_p * length``, built once per length (see :func:`_results_class`)."""
    return ctypes.c_void_p * length


def _descriptor_of(array: np.ndarray) -> ctypes.Structure:
    """A memref descriptor over a C-contiguous numpy array (no copy)."""
    desc = _descriptor_class(array.ndim)()
    desc.allocated = desc.aligned = array.ctypes.data
    desc.offset = 0
    if array.ndim:
        desc.shape[:] = array.shape
        desc.strides[:] = [s // array.itemsize for s in array.strides]
    return desc


def view_memref(address: int, rank: int, writable: bool) -> np.ndarray:
    """A numpy view (no copy) of the f32 memref whose descriptor is at ``address``."""
    return _view(_descriptor_class(rank).from_address(address), np.dtype(np.float32), writable)


@dataclass
class Kernel:
    """One lowered series: its metadata, packed weights and callback."""

    name: str
    info: dict[str, Any]
    packed: list[PackedSeries]  # one per batch for batch_matmul, else one
    callback: Any = None
    entry: Any = None
    error: BaseException | None = None
    calls: int = 0
    seconds: float = 0.0
    #: the fused epilogue (``tasd-cpu-fuse-kernel-epilogues``), applied by the entry to every output
    epilogue: Epilogue | None = None
    #: the call passes a residual (a conv2d's third operand) added before the epilogue's clamp
    residual: bool = False

    @property
    def layer(self) -> str:
        return str(self.info.get("layer", self.name))

    def run(self, x: np.ndarray, y: np.ndarray) -> None:
        """``y = series(x)`` on numpy views."""
        kind, which = self.info["kind"], self.info["sparse_operand"]
        if list(x.shape) != self.info["dense_shape"] or list(y.shape) != self.info["result_shape"]:
            raise KernelError(
                f"{self.layer}: got operand {list(x.shape)} -> {list(y.shape)}, "
                f"compiled for {self.info['dense_shape']} -> {self.info['result_shape']}"
            )
        if kind == "matmul":
            if which == 1:
                series_matmul(x, self.packed[0], out=y)
            else:  # Y = W X  <=>  Yᵀ = Xᵀ Wᵀ
                series_matmul(x.T, self.packed[0], out=y.T)
        elif kind == "batch_matmul":
            for b, packed in enumerate(self.packed):
                if which == 1:
                    series_matmul(x[b], packed, out=y[b])
                else:
                    series_matmul(x[b].T, packed, out=y[b].T)
        elif kind == "conv2d":
            kh, kw = self.info["kernel_size"]
            conv2d_series(x, self.packed[0], kh, kw, stride=tuple(self.info["strides"]),
                          padding=tuple(self.info.get("padding", (0, 0, 0, 0))),
                          dilation=tuple(self.info["dilations"]), out=y)
        else:  # pragma: no cover - the lowering only emits the kinds above
            raise KernelError(f"{self.layer}: unknown kernel kind {kind}")
        if self.epilogue is not None:  # the entries apply it per block; this path after the whole product
            channels = self.packed[0].out_features
            e = self.epilogue.array(channels)
            shape = (1, channels) + (1,) * (y.ndim - 2)
            y[...] = np.minimum(np.maximum(y * e[:channels].reshape(shape) + e[channels:2 * channels].reshape(shape), e[-2]), e[-1])


def _epilogue(attr: ir.Attribute) -> Epilogue:
    """The :class:`Epilogue` of a kernel declaration's ``tasd.epilogue`` (f32 ``[scale, shift, lo, hi]``)."""
    values = read_elements(attr)
    channels = (values.size - 2) // 2
    return Epilogue(values[:channels], values[channels:2 * channels], float(values[-2]), float(values[-1]))


def _pack(name: str, info: dict[str, Any], weights: list[np.ndarray]) -> list[PackedSeries]:
    terms = info["terms"]
    if len(weights) != 2 * len(terms):
        raise KernelError(f"{name}: expected {2 * len(terms)} weight arrays, got {len(weights)}")
    if info["kind"] == "batch_matmul":
        batch = terms[0]["dense_shape"][0]
        packed = []
        for b in range(batch):
            packed.append(pack_series([
                pack_term(weights[2 * i][b], weights[2 * i + 1][b], t["n"], t["m"], t["axis"] - 1,
                          t["dense_shape"][1:], t["padding"], term_index=i)
                for i, t in enumerate(terms)
            ]))
        return packed
    return [pack_series([
        pack_term(weights[2 * i], weights[2 * i + 1], t["n"], t["m"], t["axis"], t["dense_shape"], t["padding"], term_index=i)
        for i, t in enumerate(terms)
    ], conv=info["kind"] == "conv2d")]


def _make_callback(kernel: Kernel, in_rank: int, out_rank: int) -> Any:
    prototype = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)

    def callback(x_address: int, y_address: int) -> None:
        start = time.perf_counter()
        try:
            kernel.run(view_memref(x_address, in_rank, False), view_memref(y_address, out_rank, True))
        except BaseException as error:  # noqa: BLE001 - must not escape into C
            if kernel.error is None:
                kernel.error = error
        kernel.calls += 1
        kernel.seconds += time.perf_counter() - start

    return prototype(callback)


@dataclass
class CpuExecutable:
    """A module compiled for the CPU; call it with numpy arrays."""

    kernels: list[Kernel]
    engine: Any  # MLIR's ExecutionEngine, or a cache.LoadedObject
    entry: str
    arg_types: list[tuple[tuple[int, ...], np.dtype]]
    result_type: tuple[tuple[int, ...], np.dtype]
    compile_seconds: float
    _keep: list[Any] = field(default_factory=list)
    _function: Any = None
    cache_hit: bool = False  # the machine code came from the compile cache
    timings: dict[str, float] = field(default_factory=dict)  # seconds per compile step
    #: Every result of the entry; a call returns a tuple when there are several
    #: (the C interface then returns a struct of memref descriptors).
    result_types: list[tuple[tuple[int, ...], np.dtype]] = field(default_factory=list)
    #: Values of the entry's bound arguments (``tasd-cpu-bind-constants``),
    #: passed after the inputs on every call; the code only reads them.
    bound: list[np.ndarray] = field(default_factory=list)
    _bound_descriptors: list[ctypes.Structure] | None = None
    _bound_pointers: list[Any] = field(default_factory=list)  # a pointer to each bound descriptor, kept alive
    _bound_addresses: list[int] = field(default_factory=list)
    #: The packed N:M kernels came from the kernel cache (:mod:`tasdc.runtime.cpu.kernel_cache`).
    kernel_cache_hit: bool = False

    def __call__(self, *inputs: Any) -> np.ndarray:
        arrays = self._check_inputs(inputs)
        for kernel in self.kernels:
            kernel.error = None
            if kernel.entry is not None:
                kernel.entry.reset_status()
        result_types = self.result_types or [self.result_type]
        if self._function is None:  # look the entry up once, not per call
            self._function = self.engine.lookup(self.entry)
        if len(result_types) == 1:
            result = _descriptor_class(len(result_types[0][0]))()
            parts = [result]
        else:
            result = _results_class(tuple(len(shape) for shape, _ in result_types))()
            parts = [getattr(result, f"r{i}") for i in range(len(result_types))]
        if self._bound_descriptors is None:
            # Built once: the bound arrays never change, and a model has dozens
            # (the executor's own work was ~80 µs a call on the example transformer).
            self._bound_descriptors = [_descriptor_of(a) for a in self.bound]
            # The C interface takes, per argument, the address of a pointer to its descriptor.
            self._bound_pointers = [ctypes.pointer(d) for d in self._bound_descriptors]
            self._bound_addresses = [ctypes.addressof(p) for p in self._bound_pointers]
        pointers = [ctypes.pointer(result)] + [ctypes.pointer(_descriptor_of(a)) for a in arrays]
        packed = _pointer_array_class(len(pointers) + len(self._bound_addresses))()
        packed[:len(pointers)] = [ctypes.addressof(p) for p in pointers]
        packed[len(pointers):] = self._bound_addresses
        before = [self._calls(kernel) for kernel in self.kernels]
        self._function(packed)
        for kernel, calls in zip(self.kernels, before):
            if kernel.entry is not None:
                kernel.entry.check_status()
            if kernel.error is not None:
                error = kernel.error
                kernel.error = None
                raise KernelError(f"kernel for {kernel.layer} failed: {error}") from error
            # Series calls are straight-line code in the entry function: a
            # kernel that did not count its call did not run (e.g. its
            # parameter block is corrupted and it could not even record that).
            if self._calls(kernel) == calls:
                raise KernelError(f"kernel for {kernel.layer} did not run to completion; its output is undefined")
        # Copy every result out before freeing any: two results may share a buffer.
        outputs = [_copy_out(part, shape, dtype) for part, (shape, dtype) in zip(parts, result_types)]
        freed: set[int] = set()
        for part in parts:
            # The buffer-deallocation pipeline hands ownership of returned
            # buffers to the caller (a returned constant is cloned first), and
            # the LLVM lowering allocates with malloc: free it here (once,
            # should two results share a buffer).
            if part.allocated and part.allocated not in freed:
                freed.add(part.allocated)
                _LIBC.free(ctypes.c_void_p(part.allocated))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    @staticmethod
    def _calls(kernel: Kernel) -> int:
        return kernel.entry.calls if kernel.entry is not None else kernel.calls

    def _check_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        if len(inputs) != len(self.arg_types):
            raise RuntimeInputError(f"{self.entry} takes {len(self.arg_types)} inputs, got {len(inputs)}")
        arrays = []
        for i, (value, (shape, dtype)) in enumerate(zip(inputs, self.arg_types)):
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            if tuple(array.shape) != shape:
                raise RuntimeInputError(f"input #{i} has shape {list(array.shape)}, expected {list(shape)}")
            if array.dtype != dtype:
                if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                    raise RuntimeInputError(f"input #{i} has dtype {array.dtype}, expected {dtype}")
                array = array.astype(dtype)
            arrays.append(np.ascontiguousarray(array))
        return arrays


def _signature(module: ir.Module, entry: str) -> tuple[list[tuple[tuple[int, ...], np.dtype]], tuple[tuple[int, ...], np.dtype]]:
    for op in module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
            def describe(t: ir.Type) -> tuple[tuple[int, ...], np.dtype]:
                if not isinstance(t, ir.RankedTensorType) or not t.has_static_shape:
                    raise TasdcError(f"@{entry}: only statically shaped tensor arguments and results are supported, got {t}")
                rt = ir.RankedTensorType(t)
                return tuple(rt.shape), element_dtype(rt.element_type)
            results = [describe(t) for t in ftype.results]
            if not results:
                raise TasdcError(f"@{entry}: the function has no result")
            return [describe(t) for t in ftype.inputs], results
    raise TasdcError(f"no function @{entry} in the module")


def _declared_functions(module: ir.Module) -> list[str]:
    """Functions the lowered (LLVM dialect) module calls but does not define."""
    names = []
    for op in module.body.operations:
        if op.operation.name == "llvm.func" and not op.regions[0].blocks:
            names.append(ir.StringAttr(op.attributes["sym_name"]).value)
    return names


def _check_externals(externals: list[str], kernels: list[Kernel]) -> None:
    """Every function the lowered code calls but does not define must be a
    kernel of this executable, a dense library entry (runtime/cpu/dense.py)
    or a C library function of this process; else
    the model calls something that exists nowhere (a user error, reported
    before LLVM fails on it)."""
    provided = {k.name for k in kernels} | {f"_mlir_ciface_{k.name}" for k in kernels}
    provided |= {f"_mlir_ciface_{name}" for name in library_symbols(externals)}
    for name in externals:
        if name in provided:
            continue
        try:
            getattr(_LIBC, name)
        except AttributeError:
            raise TasdcError(f"the model calls @{name}, which is neither defined in the module "
                             "nor a tasdc runtime kernel nor a C library function") from None


def _run_llvm(what: str, action: Callable[[], Any]) -> Any:
    """``action()`` (ExecutionEngine creation, code generation); a failure in
    it is an :class:`InternalError` naming ``what`` and LLVM's first message.

    LLVM reports JIT errors (e.g. "Symbols not found") on the process's
    standard error, not in the exception: file descriptor 2 is redirected
    to a temporary file meanwhile, so the user sees one line. Whatever LLVM
    wrote without failing is passed on to standard error afterwards.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    failure: BaseException | None = None
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            result = action()
        except (RuntimeError, ir.MLIRError) as error:
            failure = error
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if failure is not None:
        lines = [line.strip() for line in text.splitlines() if line.strip()] or str(failure).splitlines() or [type(failure).__name__]
        raise InternalError(f"{what} failed in LLVM: {lines[0]}") from failure
    if text:
        sys.stderr.write(text)
    return result


def _bind_kernels(kernels: list[Kernel]) -> list[Any]:
    """Create every kernel's entry point (C function pointer); returns them to keep alive."""
    keep: list[Any] = []
    for kernel in kernels:
        in_rank, out_rank = len(kernel.info["dense_shape"]), len(kernel.info["result_shape"])
        if kernel.info["kind"] in ("matmul", "batch_matmul"):
            packed = kernel.packed[0] if kernel.info["kind"] == "matmul" else kernel.packed
            kernel.entry = make_cfunc_entry(packed, name=kernel.layer, transpose=kernel.info.get("sparse_operand") == 0,
                                            epilogue=kernel.epilogue)
            callback = kernel.entry.ctypes
        elif kernel.info["kind"] == "conv2d":
            kh, kw = kernel.info["kernel_size"]
            kernel.entry = make_conv_cfunc_entry(kernel.packed[0], kh, kw, tuple(kernel.info["strides"]),
                                                 tuple(kernel.info["dilations"]),
                                                 padding=tuple(kernel.info.get("padding", (0, 0, 0, 0))),
                                                 name=kernel.layer, epilogue=kernel.epilogue, residual=kernel.residual)
            callback = kernel.entry.ctypes
        else:
            callback = _make_callback(kernel, in_rank, out_rank)
        kernel.callback = callback
        keep.append(callback)
    return keep


def _symbol_table(kernels: list[Kernel], externals: list[str]) -> list[tuple[str, int]] | None:
    """Addresses for every external symbol of a cached object (kernels, libc, libm), or
    ``None`` if one cannot be found in this process (then the object is not loaded)."""
    by_name = {f"_mlir_ciface_{k.name}": ctypes.cast(k.callback, ctypes.c_void_p).value for k in kernels}
    by_name.update({f"_mlir_ciface_{n}": library_address(f) for n, f in library_symbols(externals).items()})
    table = []
    for name in externals:
        address = by_name.get(name)
        if address is None:
            try:
                address = ctypes.cast(getattr(_LIBC, name), ctypes.c_void_p).value
            except AttributeError:
                return None
        table.append((name, int(address)))
    return table


def _packed_kernels(sources: list[tuple[str, dict[str, Any], list[np.ndarray]]], cache: bool) -> tuple[list[list[PackedSeries]], bool]:
    """Every kernel's packed series, from the kernel cache when it holds them
    (then ``True``), else packed here (and stored when ``cache``)."""
    if not sources:
        return [], False
    key = kernel_cache.cache_key([(info, weights) for _, info, weights in sources]) if cache else None
    if key is not None:
        expected = [(_batch(info), _packed_shape(info)) for _, info, _ in sources]
        packed = kernel_cache.load(key, expected)
        if packed is not None:
            return packed, True
    packed = [_pack(name, info, weights) for name, info, weights in sources]
    if key is not None:
        kernel_cache.store(key, packed)
    return packed, False


def _batch(info: dict[str, Any]) -> int:
    return int(info["terms"][0]["dense_shape"][0]) if info["kind"] == "batch_matmul" else 1


def _packed_shape(info: dict[str, Any]) -> tuple[int, int]:
    """``(out_features, in_features)`` of a kernel's packed series (the ``[O, K]`` orientation of its terms)."""
    term = info["terms"][0]
    shape = [int(d) for d in term["dense_shape"]][-2:]
    axis = int(term["axis"]) - (1 if info["kind"] == "batch_matmul" else 0)
    return shape[1 - axis], shape[axis]


def compile_for_cpu(
    module: ir.Module,
    entry: str = "main",
    opt_level: int = 3,
    cache: bool = True,
    lowering: str = "tasd-cpu-to-llvm",
    bind_constants: bool = True,
    fuse_epilogues: bool = True,
    fuse_residuals: bool = True,
) -> CpuExecutable:
    """Lower a (TASD-decomposed) linalg-on-tensors module and JIT it.

    With ``cache`` the machine code is looked up in the on-disk compile cache
    (:mod:`tasdc.runtime.cpu.object_cache`) first and stored there after a JIT; the
    packed N:M kernels likewise (:mod:`tasdc.runtime.cpu.kernel_cache`, keyed by
    their weights). ``lowering`` is the
    pipeline from linalg to the LLVM dialect. With ``bind_constants`` (the
    default) large constants are not compiled into the code but passed to it
    as arguments (``tasd-cpu-bind-constants``), read from the module once here.
    With ``fuse_epilogues`` (the default) the per-channel affine maps and clamps
    after N:M kernel calls run inside the kernels (``tasd-cpu-fuse-kernel-epilogues``),
    and a dense convolution's bias and clamps inside its library call (the
    ``epilogues`` option of ``tasd-cpu-to-llvm``); with ``fuse_residuals`` too
    (the default) a residual added after an N:M convolution's map, before its
    clamp, goes into the call as well (the pass's ``residual`` option).
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    if not fuse_epilogues and lowering == "tasd-cpu-to-llvm":
        lowering = "tasd-cpu-to-llvm{epilogues=false}"
    retain_freed_memory()  # the code's per-call buffers are reused, not faulted in again (runtime/cpu/memory.py)
    # Lowering is destructive: work on a copy in the same context.
    work = clone_module(module)
    arg_types, result_types = _signature(work, entry)
    # TASD-A contractions first: a weight series whose dense operand is decomposed at run time is theirs.
    run_pipeline(work, parse_pipeline("tasd-lower-activations-to-calls,tasd-lower-to-runtime-calls", work.context))
    FoldBatchNorm().run(work)  # BatchNorm into the dense conv weights, before they are bound
    if fuse_epilogues:
        FuseKernelEpilogues(residual=fuse_residuals).run(work)  # a kernel call's BatchNorm / bias / ReLU into the call
    sources: list[tuple[str, dict[str, Any], list[np.ndarray]]] = []
    epilogues: list[Epilogue | None] = []
    residuals: list[bool] = []
    for op in work.body.operations:
        if op.operation.name == "func.func" and KERNEL_ATTR in op.attributes:
            name = ir.StringAttr(op.attributes["sym_name"]).value
            info = from_attr(op.attributes[KERNEL_ATTR])
            sources.append((name, info, [read_elements(a, copy=False) for a in ir.ArrayAttr(op.attributes[WEIGHTS_ATTR])]))
            epilogues.append(_epilogue(op.attributes[EPILOGUE_ATTR]) if EPILOGUE_ATTR in op.attributes else None)
            residuals.append(RESIDUAL_ATTR in op.attributes)
            positions = batch_operands(op)  # a convolution: tasd-cpu-tile-batch may call it per image
            if positions is not None:
                op.attributes[BATCH_OPERANDS_ATTR] = ir.DenseI64ArrayAttr.get(positions, context=work.context)
            # The weights now live in the packed kernels; drop them from the IR.
            for attr in (KERNEL_ATTR, WEIGHTS_ATTR, EPILOGUE_ATTR, RESIDUAL_ATTR, "tasd.stats"):
                if attr in op.attributes:
                    del op.attributes[attr]
    packed, kernels_hit = _packed_kernels(sources, cache)
    kernels: list[Kernel] = [Kernel(name, info, p, epilogue=e, residual=r)
                             for (name, info, _), p, e, r in zip(sources, packed, epilogues, residuals)]
    del sources, packed
    kernels += collect_act_kernels(work)  # type: ignore[arg-type] # same run/error/calls interface
    keep = _bind_kernels(kernels)
    timings["kernels"] = time.perf_counter() - start
    step = time.perf_counter()
    # Large constants (dense weights, biases) become arguments: the machine code
    # holds no weights, and the cache key below covers the code only.
    if bind_constants:
        FoldBatchBroadcasts().run(work)  # first: a weight's transpose then has one user and folds too
        if "library=false" not in lowering.replace(" ", ""):
            TapMajorFilters().run(work)  # implicit-GEMM filters bound as [KH, KW, F, C] (passes/tap_major_filters.py)
        BindConstants(entry=entry).run(work)
    bound = bound_values(work, entry)
    timings["weights"] = time.perf_counter() - step
    step = time.perf_counter()
    key = object_cache.cache_key(work, f"entry={entry} opt_level={opt_level} lowering={lowering}") if cache else None
    engine: Any = None
    function: Any = None
    hit = False
    cached = object_cache.load_object(key) if key is not None else None
    if cached is not None:
        externals, payload = cached
        symbols = _symbol_table(kernels, externals)
        if symbols is not None:
            try:
                engine = object_cache.LoadedObject(payload, symbols)
                function, hit = engine.lookup(entry), True
            except (RuntimeError, OSError):  # an unusable entry costs a JIT, never the run
                engine = None
    timings["cache"] = time.perf_counter() - step
    if engine is None:
        step = time.perf_counter()
        run_pipeline(work, parse_pipeline(lowering, work.context), verify_each=False)
        externals = _declared_functions(work)
        timings["lowering"] = time.perf_counter() - step
        _check_externals(externals, kernels)
        step = time.perf_counter()
        library = library_symbols(externals)  # dense contractions (runtime/cpu/dense.py)

        def jit() -> tuple[Any, Any]:
            engine = ExecutionEngine(work, opt_level=opt_level)
            for kernel in kernels:
                engine.register_runtime(kernel.name, kernel.callback)
            for name, function in library.items():
                engine.register_runtime(name, function)
            # The engine generates machine code lazily, at the first lookup: do it
            # now so that compile time is paid (and reported) here, not by the first call.
            return engine, engine.lookup(entry)

        engine, function = _run_llvm(f"JIT compilation of @{entry}", jit)
        timings["llvm"] = time.perf_counter() - step
        if key is not None:
            object_cache.store_engine(key, engine, externals)
    executable = CpuExecutable(kernels, engine, entry, arg_types, result_types[0], 0.0, keep, function, hit, timings,
                               result_types=result_types, bound=bound, kernel_cache_hit=kernels_hit)
    executable.compile_seconds = time.perf_counter() - start
    return executable
