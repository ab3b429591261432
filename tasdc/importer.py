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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch_mlir import ir

from tasdc.errors import InputError, UnsafeModelError
from tasdc.module import new_context, parse_module

# Dialects that may appear in an imported linalg-on-tensors module.
LINALG_ON_TENSORS_DIALECTS = frozenset(
    {"builtin", "func", "linalg", "tensor", "arith", "math", "cf", "tasd", "ml_program", "scf", "bufferization", "affine"}
)


@dataclass
class ImportedModel:
    """An imported model: the MLIR module and, for PyTorch sources, the program."""

    module: ir.Module
    source: str
    program: Any = None  # torch.export.ExportedProgram when imported from PyTorch
    example_inputs: tuple[Any, ...] = field(default_factory=tuple)

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
    try:
        with weights_only_loading():
            return torch.export.load(str(path))
    except UnsafeModelError as error:
        raise UnsafeModelError(f"{path}: {error}") from None
    except Exception as error:  # torch raises many kinds for corrupt archives
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: cannot load torch.export archive: {first}") from None


def _import_program(program: Any, source: str, example_inputs: tuple[Any, ...] = ()) -> ImportedModel:
    from torch_mlir import fx
    from torch_mlir.extras.fx_importer import FxImporter

    context = new_context()
    try:
        module = fx.export_and_import(
            program, output_type="linalg-on-tensors", fx_importer=FxImporter(context=context)
        )
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{source}: torch-mlir cannot lower the model to linalg-on-tensors: {first}") from None
    if not example_inputs:
        example_inputs = tuple(getattr(program, "example_inputs", ((), {}))[0] or ())
    return ImportedModel(module=module, source=source, program=program, example_inputs=example_inputs)


def check_linalg_on_tensors(module: ir.Module, source: str) -> None:
    """Refuse modules with ops outside linalg-on-tensors (e.g. leftover torch ops)."""
    from tasdc.diagnostics import resolve_location

    bad: list[ir.OpView] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name.split(".")[0] not in LINALG_ON_TENSORS_DIALECTS:
            bad.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if bad:
        _, line, col = resolve_location(bad[0].location)
        raise InputError(
            f"{source}:{line}:{col}: '{bad[0].name}' is not linalg-on-tensors; "
            "import the model with torch-mlir's linalg-on-tensors output"
        )


def import_module(model: Any, example_inputs: Sequence[Any]) -> ImportedModel:
    """Import a ``torch.nn.Module`` called on ``example_inputs``."""
    import torch

    model.eval()
    args = tuple(example_inputs)
    try:
        program = torch.export.export(model, args)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{type(model).__name__}: torch.export failed: {first}") from None
    return _import_program(program, type(model).__name__, args)


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
    return ImportedModel(module=module, source=str(path))


def import_model(source: Any, example_inputs: Sequence[Any] | None = None) -> ImportedModel:
    """Import a ``torch.nn.Module`` (with ``example_inputs``), a ``.pt2`` or a ``.mlir`` file."""
    if isinstance(source, (str, Path)):
        if example_inputs is not None:
            raise InputError("example_inputs are only used with a torch.nn.Module")
        return import_file(source)
    import torch

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
