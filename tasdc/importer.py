"""The front door: models in, linalg-on-tensors MLIR (in a TASD-ready context) out.

Accepted sources:

* a ``torch.nn.Module`` with example inputs (Python API);
* a ``torch.export`` archive (``.pt2``, written by ``torch.export.save``);
* an ``.mlir`` file in linalg-on-tensors form;
* an ONNX model (``.onnx``, through torch-mlir's ONNX importer: :mod:`tasdc.onnx_import`).

PyTorch sources go through ``torch_mlir.fx.export_and_import(...,
output_type="linalg-on-tensors")``; MLIR files through the bundled parser.

``.pt2`` files are loaded without running code from them. ``torch.export.load``
unpickles some entries with ``weights_only=False`` (tensor subclasses,
constants, example inputs) and others with plain ``pickle.loads``; while tasdc
loads an archive those calls are forced to PyTorch's weights-only unpickler,
and opaque or TorchScript objects are refused, so a crafted file fails with
an :class:`UnsafeModelError` instead of executing its payload.
"""

from __future__ import annotations

import contextlib
import io
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from torch_mlir import ir

from tasdc.diagnostics import capture
from tasdc.errors import InputError, UnsafeModelError
from tasdc.module import new_context, ops_named, parse_module
from tasdc.passes.conv1d_as_conv2d import Conv1dAsConv2d
from tasdc.passes.fold_weight_gathers import FoldWeightGathers
from tasdc.torch_decompositions import decomposition_table

# Dialects that may appear in an imported linalg-on-tensors module.
LINALG_ON_TENSORS_DIALECTS = frozenset(
    {"builtin", "func", "linalg", "tensor", "arith", "math", "cf", "tasd", "ml_program", "scf", "bufferization", "affine",
     "tm_tensor"}  # torch-mlir's TMTensor (cumsum, scatter, sort): part of its linalg-on-tensors output
)


@dataclass
class ImportedModel:
    """An imported model: the MLIR module and, for PyTorch sources, the program."""

    module: ir.Module
    source: str
    program: Any = None  # torch.export.ExportedProgram when imported from PyTorch
    example_inputs: tuple[Any, ...] = field(default_factory=tuple)
    #: The model's run-time inputs in call order (the entry function's
    #: arguments): names from the program's graph signature for PyTorch
    #: sources, ``arg0``, ``arg1``, … for MLIR (whose argument order is the
    #: contract). Shapes and dtypes come from the entry function.
    input_names: tuple[str, ...] = ()

    @property
    def context(self) -> ir.Context:
        return self.module.context


def _refuse_pickle(*_args: Any, **_kwargs: Any) -> Any:
    raise UnsafeModelError("the archive contains pickled Python objects; refusing to unpickle them")


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """Force every unpickling inside ``torch.export.load`` to be weights-only."""
    import torch
    from torch.export.pt2_archive import _package

    original_load = torch.load
    original_pickle = _package.pickle
    original_pickle_load_obj = getattr(torch._C, "_pickle_load_obj", None)

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return original_load(*args, **kwargs)
        except Exception as error:  # torch raises UnpicklingError for unsafe globals
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UnsafeModelError(f"refusing to unpickle an unsafe archive entry: {first}") from None

    class _SafePickle:
        loads = staticmethod(_refuse_pickle)
        load = staticmethod(_refuse_pickle)

    torch.load = safe_load
    _package.pickle = _SafePickle  # type: ignore[assignment]
    if original_pickle_load_obj is not None:
        torch._C._pickle_load_obj = _refuse_pickle
    try:
        yield
    finally:
        torch.load = original_load
        _package.pickle = original_pickle
        if original_pickle_load_obj is not None:
            torch._C._pickle_load_obj = original_pickle_load_obj


def load_exported_program(path: Path) -> Any:
    """Load a ``torch.export`` archive safely; bad files raise :class:`InputError`."""
    import torch

    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a torch.export archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(name.endswith("archive_format") for name in names):
        raise InputError(f"{path}: a zip file but not a torch.export archive (no archive_format entry)")
    _register_output_types(path, names)
    quiet = logging.getLogger("torch.export")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # torch logs a traceback before raising; the one-line error says it
    try:
        with weights_only_loading():
            return torch.export.load(str(path))
    except UnsafeModelError as error:
        raise UnsafeModelError(f"{path}: {error}") from None
    except Exception as error:  # torch raises many kinds for corrupt archives
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: cannot load torch.export archive: {first}") from None
    finally:
        quiet.setLevel(level)


#: Packages whose output containers (pytree nodes) may be registered by importing them.
_OUTPUT_TYPE_PACKAGES = ("transformers.",)


def _register_output_types(path: Path, names: list[str]) -> None:
    """Import the installed module defining the program's output container, if it is an allowed one.

    A Hugging Face model returns a ``ModelOutput`` dataclass, recorded in the
    archive's call signature by its qualified name; ``torch.export.load``
    needs that class registered as a pytree node, which happens when its
    module is imported. Only modules of :data:`_OUTPUT_TYPE_PACKAGES` that are
    installed are imported (never code from the archive).
    """
    import importlib
    import importlib.util
    import re

    wanted: set[str] = set()
    with zipfile.ZipFile(path) as archive:
        for name in names:
            if "/models/" in name and name.endswith(".json"):
                text = archive.read(name).decode("utf-8", errors="replace")
                for match in re.finditer(r'((?:%s)[A-Za-z0-9_.]*[A-Za-z0-9_])\.[A-Za-z0-9_]+' % "|".join(
                        re.escape(p) for p in _OUTPUT_TYPE_PACKAGES), text):
                    wanted.add(match.group(1))
    for module in sorted(wanted):
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None:
            raise InputError(f"{path}: the model's outputs are '{module}' types; install '{top}' to load it")
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise InputError(f"{path}: cannot import '{module}' for the model's output types: {error}") from None


def with_persistent_state(program: Any) -> Any:
    """``program`` with its non-persistent buffers made persistent (a shallow copy).

    Hugging Face models keep ``position_ids`` / ``token_type_ids`` as
    non-persistent buffers: ``torch.export`` stores them among the program's
    *constants*, where torch-mlir's importer does not look for buffers ("Could
    not find state mapping for buffer"). Persistence only decides whether a
    buffer is saved in a ``state_dict``; moving these tensors to the program's
    state dict and flagging them persistent imports the same computation.
    Lifted tensor constants stay where the importer finds them. The caller's
    program is not modified.
    """
    import copy

    from torch.export.graph_signature import InputKind

    specs = program.graph_signature.input_specs
    if not any(s.kind == InputKind.BUFFER and not s.persistent for s in specs):
        return program
    signature = copy.deepcopy(program.graph_signature)
    state = dict(program.state_dict)
    constants = dict(program.constants)
    for spec in signature.input_specs:
        if spec.kind == InputKind.BUFFER and not spec.persistent:
            if spec.target not in constants:
                raise InputError(f"non-persistent buffer '{spec.target}' has no value in the exported program")
            state[spec.target] = constants.pop(spec.target)
            spec.persistent = True
    clone = copy.copy(program)
    clone._graph_signature = signature
    clone._state_dict = state
    clone._constants = constants
    return clone


def program_input_names(program: Any) -> tuple[str, ...]:
    """Names of the program's tensor user inputs, in the order of the imported function's arguments."""
    from torch.export.graph_signature import InputKind, TensorArgument

    return tuple(
        spec.arg.name
        for spec in program.graph_signature.input_specs
        if spec.kind == InputKind.USER_INPUT and isinstance(spec.arg, TensorArgument)
    )


def _program_example_inputs(program: Any) -> tuple[Any, ...]:
    """The program's example inputs flattened in user-input order (positional, then keyword)."""
    import torch

    stored = getattr(program, "example_inputs", None)
    if not stored:
        return ()
    args, kwargs = stored
    flat = list(args or ()) + [kwargs[k] for k in (kwargs or {})]
    return tuple(t for t in flat if isinstance(t, torch.Tensor))


@dataclass(frozen=True)
class InputSpec:
    """One run-time input of a model: its name, shape (``-1``: dynamic) and numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: Any

    def describe(self) -> str:
        dims = "x".join("?" if d < 0 else str(d) for d in self.shape)
        return f"{self.name}[{dims}]:{self.dtype}"


def program_inputs(program: Any) -> list[InputSpec]:
    """The tensor user inputs of an ExportedProgram (names, shapes, dtypes), without importing it."""
    import numpy as np
    import torch

    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in program_input_names(program):
        val = nodes[name].meta.get("val") if name in nodes else None
        shape: tuple[int, ...] = ()
        dtype: Any = np.dtype(object)
        if isinstance(val, torch.Tensor):
            shape = tuple(d if isinstance(d, int) else -1 for d in val.shape)
            dtype = torch.empty((), dtype=val.dtype).numpy().dtype if val.dtype != torch.bfloat16 else _bf16()
        specs.append(InputSpec(name, shape, dtype))
    return specs


def _bf16() -> Any:
    import ml_dtypes
    import numpy as np

    return np.dtype(ml_dtypes.bfloat16)


def module_inputs(model: "ImportedModel") -> list[InputSpec]:
    """The run-time inputs of an imported model, named as recorded (``arg<i>`` for MLIR)."""
    args = entry_arguments(model.module)
    names = model.input_names if len(model.input_names) == len(args) else tuple(f"arg{i}" for i in range(len(args)))
    return [InputSpec(n, tuple(shape), dtype) for n, (shape, dtype) in zip(names, args)]


def bind_inputs(arrays: dict[str, Any], specs: Sequence[InputSpec], where: str,
                extra: Sequence[str] = ()) -> list[Any]:
    """Match the arrays of an input file to the model's inputs; one-line :class:`InputError` otherwise.

    ``arrays`` is what :func:`tasdc.arrays.read_arrays` returns (``{"": a}``
    for an ``.npy``). Names are matched exactly (keys in ``extra``, such as
    ``labels``, are set aside); an ``.npy``, an ``.npz`` with ``arg0``,
    ``arg1``, … or a single array for a single-input model are taken in
    order. Shapes must match (dynamic dimensions match anything) and dtypes
    must be castable within their kind (float to float, int to int); a
    2-byte void array (how ``np.save`` stores ml_dtypes' bfloat16) is read
    as bfloat16 for a bfloat16 input.
    """
    import numpy as np

    keys = [k for k in arrays if k not in extra]
    expected = [s.name for s in specs]
    positional = [f"arg{i}" for i in range(len(specs))]
    if set(keys) == set(expected):
        ordered = [arrays[name] for name in expected]
    elif keys == [""] or set(keys) == set(positional) or (len(keys) == 1 and len(specs) == 1):
        ordered = [arrays[k] for k in (positional if set(keys) == set(positional) else keys)]
    else:
        found = ", ".join(k or "<unnamed .npy>" for k in keys) or "nothing"
        raise InputError(f"{where}: inputs do not match the model: expected {', '.join(expected) or 'no inputs'}; "
                         f"found {found}")
    if len(ordered) != len(specs):
        raise InputError(f"{where}: the model takes {len(specs)} inputs ({', '.join(s.describe() for s in specs)}), "
                         f"the file has {len(ordered)}")
    out = []
    for spec, array in zip(specs, ordered):
        array = np.asarray(array)
        shape_ok = len(array.shape) == len(spec.shape) and all(
            want < 0 or want == got for want, got in zip(spec.shape, array.shape))
        if not shape_ok:
            raise InputError(f"{where}: input '{spec.name}' has shape {list(array.shape)}, the model takes "
                             f"{list(spec.shape)}")
        if array.dtype == np.dtype("V2") and spec.dtype == _bf16():
            array = array.view(spec.dtype)  # np.save writes bfloat16 (ml_dtypes) as 2-byte void
        if spec.dtype != np.dtype(object) and array.dtype != spec.dtype:
            if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
                raise InputError(f"{where}: input '{spec.name}' has dtype {array.dtype}, the model takes {spec.dtype}")
            array = array.astype(spec.dtype)
        out.append(array)
    return out


def _first_sentence(error: Exception) -> str:
    """The first line of ``error``, continued while it ends with ':' (e.g.
    "… requires the ml_dtypes package, please run:" + "pip install ml_dtypes")."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    text = lines[0]
    for line in lines[1:3]:
        if not text.endswith(":"):
            break
        text += " " + line
    return text


def _literal_hooks() -> Any:
    """torch-mlir importer hooks that materialise a weight literal from the tensor's
    own bytes: the importer's default path reads it as ``tensor.tolist()`` (a
    Python float per element; 12 s of a 31 s import of a 5 M-parameter CNN).
    Same blob name, type and bytes as the default; anything else (fake or
    one-element tensors, dtypes without a numpy twin) takes the default path."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor
    from torch_mlir.extras import fx_importer as fxi

    class LiteralHooks(fxi.FxImporterHooks):
        def resolve_literal(self, gni: Any, literal: Any, info: Any) -> Any:
            npy_dtype = fxi.TORCH_DTYPE_TO_NPY_TYPE.get(getattr(literal, "dtype", None))
            if (not isinstance(literal, torch.Tensor) or isinstance(literal, FakeTensor) or npy_dtype is None
                    or literal.numel() <= 1 or literal.is_meta or literal.device.type != "cpu"):
                return None
            cc = gni._cc
            mapping = cc._py_attr_tracker.track(literal)
            if mapping.is_empty:
                data = literal.detach().contiguous()
                # A copy: the blob must not change when the model's parameters
                # do (readers of the module view blobs without copying).
                if data.dtype == torch.bfloat16:
                    array = data.view(torch.int16).numpy().view(npy_dtype).copy()
                else:
                    array = data.numpy().astype(npy_dtype, copy=True)
                shape_desc = "_".join(str(d) for d in literal.shape)
                mapping.value = ir.DenseResourceElementsAttr.get_from_buffer(
                    array, f"torch_tensor_{shape_desc}_{literal.dtype}", fxi.create_mlir_tensor_type(literal))
            return ir.Operation.create(name="torch.vtensor.literal", results=[cc.tensor_to_vtensor_type(literal)],
                                       attributes={"value": mapping.value}).result

    return LiteralHooks()


def state_in_lists_copied(program: Any) -> None:
    """Give every parameter, buffer or lifted constant that an op takes inside a list
    (``x[:, idx]``'s ``aten.index.Tensor`` indices, ``torch.cat([param, x])``) a copy of its
    own (``aten.clone``) that the list holds instead, in ``program``'s graph (modified).

    torch-mlir's frozen import puts the state tensors themselves where their placeholders
    were used; a list holding a tensor next to graph values then fails ("Heterogeneous lists
    are not supported", e.g. Swin's relative-position index). A tensor operand of its own is
    imported as a literal, so the list holds the copy's value like any other.
    """
    import torch

    signature = program.graph_signature
    state = {*signature.inputs_to_parameters, *signature.inputs_to_buffers,
             *getattr(signature, "inputs_to_lifted_tensor_constants", {})}
    graph = program.graph
    copies: dict[Any, Any] = {}

    def copied(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(copied(v) for v in value)
        if getattr(value, "op", None) != "placeholder" or value.name not in state:
            return value
        if value not in copies:
            with graph.inserting_after(value):
                copy = graph.call_function(torch.ops.aten.clone.default, (value,))
            copy.meta["val"] = value.meta.get("val")
            copies[value] = copy
        return copies[value]

    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        args = tuple(copied(a) if isinstance(a, (list, tuple)) else a for a in node.args)
        kwargs = {k: copied(v) if isinstance(v, (list, tuple)) else v for k, v in node.kwargs.items()}
        if args != node.args or kwargs != node.kwargs:
            node.args, node.kwargs = args, kwargs


def _frozen_importer(context: ir.Context) -> Any:
    """torch-mlir's ``FxImporter`` with tasdc's literal hooks, whose frozen import first gives
    state used inside lists a copy of its own (:func:`state_in_lists_copied`)."""
    from torch_mlir.extras.fx_importer import FxImporter

    class FrozenImporter(FxImporter):
        def import_frozen_program(self, prog: Any, *args: Any, **kwargs: Any) -> Any:
            state_in_lists_copied(prog)  # ``prog`` is torch-mlir's decomposed copy of the program
            return super().import_frozen_program(prog, *args, **kwargs)

    return FrozenImporter(context=context, hooks=_literal_hooks())


def _torch_operator_names(program: Any) -> list[str]:
    """The ops of ``program`` that torch-mlir imports as generic ``torch.operator`` (aten ops
    its torch dialect does not define, e.g. ``torch.aten.lgamma``), by the ``name`` attribute
    of a raw import; empty if that import fails too."""
    from torch_mlir import fx

    context = new_context()
    with capture(context):
        try:
            raw = fx.export_and_import(with_persistent_state(program), output_type="raw",
                                       fx_importer=_frozen_importer(context), decomposition_table=decomposition_table())
        except Exception:
            return []
        names = (ir.StringAttr(op.attributes["name"]).value for op in ops_named(raw, "torch.operator"))
        return sorted(set(names))


def _import_program(program: Any, source: str, example_inputs: tuple[Any, ...] = ()) -> ImportedModel:
    from torch_mlir import fx

    context = new_context()
    with capture(context) as log:  # MLIR's diagnostics into the error message, not onto stderr
        try:
            module = fx.export_and_import(
                with_persistent_state(program), output_type="linalg-on-tensors",
                fx_importer=_frozen_importer(context), decomposition_table=decomposition_table()
            )
        except InputError:
            raise
        except Exception as error:
            detail = _first_sentence(error)
            if log.errors:  # the op torch-mlir could not lower, and where the model computes it
                first = log.errors[0]
                detail = first.message.split(": %")[0].split(': "')[0].strip()
                if "'torch.operator'" in detail:  # an aten op the torch dialect does not define
                    unknown = _torch_operator_names(program)
                    if unknown:
                        detail = f"no lowering for {', '.join(unknown)}"
                if first.file:
                    detail += f" (at {first.file}:{first.line})"
            raise InputError(f"{source}: torch-mlir cannot lower the model to linalg-on-tensors: {detail}") from None
    canonicalize_imported(module)
    if not example_inputs:
        example_inputs = _program_example_inputs(program)
    names = program_input_names(program)
    if len(names) != len(entry_arguments(module)):
        names = tuple(f"arg{i}" for i in range(len(entry_arguments(module))))
    return ImportedModel(module=module, source=source, program=program, example_inputs=example_inputs,
                         input_names=names)


def canonicalize_imported(module: ir.Module, torch_mlir_output: bool = True) -> None:
    """What every imported module goes through before the TASD passes: its 1-D convolutions
    made 2-D (``tasd-conv1d-as-conv2d``, so ``nn.Conv1d`` weights are decomposed), its
    weights gathered from constants (a transposed convolution's flipped filter) folded into
    constants (``tasd-fold-weight-gathers``); and, for what torch-mlir just produced (from
    torch or ONNX, not a ``.mlir`` file, whose constants are the user's), its GELU-tanh
    constant fixed (:func:`fix_gelu_tanh_constant`)."""
    if torch_mlir_output:
        fix_gelu_tanh_constant(module)
    Conv1dAsConv2d().run(module)
    FoldWeightGathers().run(module)


#: torch-mlir's lowering of ``gelu(x, approximate="tanh")`` computes
#: ``0.5 x (1 + tanh(c (x + 0.044715 x^3)))`` with ``c = 0.7977240352174656``;
#: the formula's (and PyTorch's) ``c`` is ``sqrt(2 / pi) = 0.7978845608028654``:
#: 2e-4 relative off, up to 4e-5 relative error in every GELU-tanh output
#: (``nn.GELU(approximate="tanh")``, transformers' ``gelu_pytorch_tanh``).
TORCH_MLIR_GELU_TANH_BETA = 0.7977240352174656
GELU_TANH_BETA = 0.7978845608028654  # math.sqrt(2 / math.pi)


def fix_gelu_tanh_constant(module: ir.Module) -> int:
    """Replace torch-mlir's wrong GELU-tanh constant (see ``TORCH_MLIR_GELU_TANH_BETA``) by
    ``sqrt(2/pi)`` where it is what it is: a float constant of that value (in its own
    type) whose every use is an ``arith.mulf`` that feeds a ``math.tanh``. Returns how many."""
    import numpy as np

    def rounded(value: float, t: ir.Type) -> float | None:
        for cls, dtype in ((ir.F32Type, np.float32), (ir.F64Type, np.float64), (ir.F16Type, np.float16)):
            if isinstance(t, cls):
                return float(dtype(value))
        return None

    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "arith.constant" and isinstance(op.attributes["value"], ir.FloatAttr):
            attr = ir.FloatAttr(op.attributes["value"])
            if rounded(TORCH_MLIR_GELU_TANH_BETA, attr.type) == attr.value != rounded(GELU_TANH_BETA, attr.type):
                found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    fixed = 0
    for op in found:
        users = [use.owner for use in op.results[0].uses]
        users = [u.operation if isinstance(u, ir.OpView) else u for u in users]
        if users and all(u.name == "arith.mulf" and any(
                (t.owner.operation if isinstance(t.owner, ir.OpView) else t.owner).name == "math.tanh"
                for t in u.results[0].uses) for u in users):
            attr = ir.FloatAttr(op.attributes["value"])
            with op.context, ir.Location.unknown():
                op.attributes["value"] = ir.FloatAttr.get(attr.type, GELU_TANH_BETA)
            fixed += 1
    return fixed


def entry_function(module: ir.Module) -> ir.OpView | None:
    """The module's entry: its first public ``func.func`` with a body."""
    for op in module.body.operations:
        if op.operation.name != "func.func" or len(op.regions[0].blocks) == 0:
            continue
        if "sym_visibility" in op.attributes and ir.StringAttr(op.attributes["sym_visibility"]).value == "private":
            continue
        return op
    return None


def output_names(model: "ImportedModel") -> tuple[str, ...]:
    """Names of the entry function's results: the keys of the program's output
    (a dict or a ``transformers`` output class such as ``last_hidden_state``,
    ``pooler_output``) when it is a flat keyed container of tensors with one
    result each, else ``output0``, ``output1``, … (how ``tasdc run`` saves them)."""
    entry = entry_function(model.module)
    count = len(ir.FunctionType(ir.TypeAttr(entry.attributes["function_type"]).value).results) if entry else 0
    default = tuple(f"output{i}" for i in range(count))
    spec = getattr(getattr(model.program, "call_spec", None), "out_spec", None)
    keys = getattr(spec, "context", None)
    if (spec is None or not isinstance(keys, (list, tuple)) or len(keys) != count
            or getattr(spec, "num_leaves", -1) != count or not all(isinstance(k, str) for k in keys)):
        return default
    return tuple(keys)


def entry_arguments(module: ir.Module) -> list[tuple[list[int], Any]]:
    """``(shape, numpy dtype)`` of each argument of the entry function (``-1`` for a dynamic size)."""
    import numpy as np

    from tasdc.elements import element_dtype

    entry = entry_function(module)
    if entry is None:
        return []
    out: list[tuple[list[int], Any]] = []
    for t in ir.FunctionType(ir.TypeAttr(entry.attributes["function_type"]).value).inputs:
        if isinstance(t, ir.RankedTensorType):
            shape = [-1 if ir.ShapedType.is_dynamic_size(d) else d for d in t.shape]
            try:
                dtype = element_dtype(t.element_type)
            except TypeError:
                dtype = np.dtype(object)
            out.append((shape, dtype))
        else:
            out.append(([], np.dtype(object)))
    return out


def _refuse_first(module: ir.Module, source: str, is_bad: Callable[[ir.Operation], bool], why: str) -> None:
    """Raise ``InputError`` at the first op (walk order) for which ``is_bad`` holds: ``source:line:col: 'op' why``."""
    from tasdc.diagnostics import resolve_location

    bad: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if is_bad(op):
            bad.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if bad:
        _, line, col = resolve_location(bad[0].location)
        raise InputError(f"{source}:{line}:{col}: '{bad[0].name}' {why}")


def check_linalg_on_tensors(module: ir.Module, source: str) -> None:
    """Refuse modules with ops outside linalg-on-tensors (e.g. leftover torch ops)."""
    _refuse_first(module, source, lambda op: op.name.split(".")[0] not in LINALG_ON_TENSORS_DIALECTS,
                  "is not linalg-on-tensors; import the model with torch-mlir's linalg-on-tensors output")


def _reads_empty_output(op: ir.Operation) -> bool:
    """A linalg op whose body reads an output operand made by ``tensor.empty``."""
    if not op.name.startswith("linalg.") or not len(op.regions) or "operandSegmentSizes" not in op.attributes:
        return False
    segments = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))
    blocks = op.regions[0].blocks
    if len(segments) != 2 or not len(blocks):
        return False
    ins, outs = segments
    arguments = list(blocks[0].arguments)
    if len(arguments) != ins + outs:
        return False
    for index in range(outs):
        owner = op.operands[ins + index].owner
        if isinstance(owner, ir.OpView):
            owner = owner.operation
        if isinstance(owner, ir.Operation) and owner.name == "tensor.empty" and list(arguments[ins + index].uses):
            return True
    return False


def check_initialized_outputs(module: ir.Module, source: str) -> None:
    """Refuse a linalg op that reads an output operand made by ``tensor.empty``.

    A ``tensor.empty`` has no defined contents. An op whose body reads its
    output (every contraction accumulates into it: ``linalg.matmul`` into
    ``tensor.empty`` instead of a ``linalg.fill`` of zeros) computes from
    whatever memory the buffer gets: different garbage on every run, in any
    element type. Writing into a ``tensor.empty`` (a body that ignores its
    output argument) is fine.
    """
    _refuse_first(module, source, _reads_empty_output,
                  "reads its output operand, a tensor.empty (uninitialized values); "
                  "initialize it first (e.g. linalg.fill with 0 for a sum)")


def import_module(model: Any, example_inputs: Sequence[Any]) -> ImportedModel:
    """Import a ``torch.nn.Module`` called on ``example_inputs``.

    A Hugging Face model whose config asks for a KV cache (``use_cache``: the
    decoders — Llama, Qwen2, Mistral, GPT-2 — by default) is exported with
    ``use_cache = False`` (restored afterwards): the cache is an output for a
    generation loop, a ``DynamicCache`` object ``torch.export`` cannot return,
    and the hidden states do not depend on it.

    A Hugging Face model with SDPA attention that torch cannot lower (GPT-2:
    torch's decomposition of the exported program fails with "Cannot view a
    tensor with shape ... and strides ..." before torch-mlir sees it) is
    exported once more with its eager attention (``set_attn_implementation``,
    the same arithmetic written out), then set back to SDPA.
    """
    model.eval()
    args = tuple(example_inputs)
    config = getattr(model, "config", None)
    cached = getattr(config, "use_cache", None) is True
    try:
        if cached:
            config.use_cache = False
        try:
            return _import_program(_export(model, args), type(model).__name__, args)
        except InputError:
            if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
                raise
        model.set_attn_implementation("eager")
        try:
            return _import_program(_export(model, args), type(model).__name__, args)
        finally:
            model.set_attn_implementation("sdpa")
    finally:
        if cached:
            config.use_cache = True


def _export(model: Any, args: tuple[Any, ...]) -> Any:
    """``torch.export.export(model, args)``; a failure is the user's input error."""
    import torch

    try:
        return torch.export.export(model, args)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{type(model).__name__}: torch.export failed: {first}") from None


def file_inputs(path: str | Path) -> tuple[list[InputSpec], Any]:
    """A model file's inputs, read as cheaply as possible, and what to import next.

    For a ``.pt2`` the program's signature is read without lowering it (the
    returned ExportedProgram is then imported by :func:`import_model`); an
    ``.mlir`` is parsed (its entry function's argument order is the contract)
    and the returned :class:`ImportedModel` is reused.
    """
    path = Path(path)
    if path.exists() and path.is_file() and path.open("rb").read(2) == b"PK":
        program = load_exported_program(path)
        return program_inputs(program), (program, str(path))
    model = import_file(path)
    return module_inputs(model), model


def import_file(path: str | Path) -> ImportedModel:
    """Import a ``.pt2`` or ``.mlir`` file, sniffing the content, not only the suffix."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .pt2 or .mlir file")
    if path.suffix.lower() == ".onnx":  # an ONNX protobuf (tasdc/onnx_import.py)
        from tasdc.onnx_import import import_onnx

        module, proto = import_onnx(path, new_context())
        canonicalize_imported(module)  # torch-mlir's GELU decomposition serves ONNX's Gelu too
        check_linalg_on_tensors(module, str(path))
        return ImportedModel(module=module, source=str(path), program=proto)  # proto owns the weight bytes
    head = path.open("rb").read(4)
    if head.startswith(b"PK"):
        return _import_program(load_exported_program(path), str(path))
    if path.suffix == ".pt2":
        raise InputError(f"{path}: not a torch.export archive (not a zip file)")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: unrecognised model file (neither a .pt2 archive nor MLIR text)") from None
    if "\x00" in text:
        raise InputError(f"{path}: unrecognised model file (binary data)")
    context = new_context()
    module = parse_module(text, context, str(path))
    check_linalg_on_tensors(module, str(path))
    check_initialized_outputs(module, str(path))
    if not any(op.operation.name == "func.func" for op in module.body.operations):
        raise InputError(f"{path}: the module has no function to compile (empty or not a model)")
    canonicalize_imported(module, torch_mlir_output=False)
    names = tuple(f"arg{i}" for i in range(len(entry_arguments(module))))
    return ImportedModel(module=module, source=str(path), input_names=names)


def import_model(source: Any, example_inputs: Sequence[Any] | None = None) -> ImportedModel:
    """Import a ``torch.nn.Module`` (with ``example_inputs``), a ``.pt2`` or a ``.mlir`` file."""
    if isinstance(source, ImportedModel):
        return source
    if isinstance(source, (str, Path)):
        if example_inputs is not None:
            raise InputError("example_inputs are only used with a torch.nn.Module")
        return import_file(source)
    import torch

    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], torch.export.ExportedProgram):
        return _import_program(source[0], str(source[1]))  # (program, its file) from file_inputs
    if isinstance(source, torch.export.ExportedProgram):
        return _import_program(source, "ExportedProgram")
    if isinstance(source, torch.nn.Module):
        if example_inputs is None:
            raise InputError(f"{type(source).__name__}: example_inputs are required to import a torch.nn.Module")
        return import_module(source, example_inputs)
    raise InputError(f"cannot import a {type(source).__name__}; expected a torch.nn.Module, .pt2 or .mlir")


def module_text(module: ir.Module) -> str:
    """The module as text (with its resource blobs)."""
    buffer = io.StringIO()
    module.operation.print(file=buffer)
    return buffer.getvalue()
