"""Contexts, parsing and verification on torch-mlir's bundled MLIR."""

from __future__ import annotations

from pathlib import Path

from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d

from tasdc.diagnostics import capture, record_mlir_error, resolve_location
from tasdc.dialects.tasd import load_into
from tasdc.errors import InputError, IRVerificationError


def new_context() -> ir.Context:
    """A context with the upstream, torch and TASD dialects available."""
    context = ir.Context()
    torch_d.register_dialect(context)
    load_into(context)
    return context


def _first_error(error: ir.MLIRError, default_file: str) -> str:
    diagnostics = list(getattr(error, "error_diagnostics", []))
    if not diagnostics:
        return str(error).splitlines()[-1]
    diag = diagnostics[0]
    file, line, col = resolve_location(diag.location)
    file = file if file and file != "-" else default_file
    return f"{file}:{line}:{col}: {diag.message}" if line else diag.message


def parse_module(text: str, context: ir.Context, filename: str = "<stdin>") -> ir.Module:
    """Parse MLIR text; a parse or verification error becomes an :class:`InputError`."""
    with context, capture(context):
        try:
            return ir.Module.parse(text)
        except ir.MLIRError as error:
            record_mlir_error(error)
            raise InputError(f"cannot parse {filename}: {_first_error(error, filename)}") from None


def read_text_file(path: str | Path) -> str:
    """The text of an MLIR file, with file-level errors as :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an MLIR file")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (cannot decode as UTF-8)") from None


def clone_module(module: ir.Module) -> ir.Module:
    """A deep copy of ``module`` in the same context, without printing it.

    The weight attributes are uniqued in the context, so the copy shares
    them; printing and re-parsing would serialise every weight as hex.
    """
    copy = module.operation.clone()
    result = ir.Module.create(loc=module.operation.location)
    for name in [getattr(a, "name", a) for a in module.operation.attributes]:
        result.operation.attributes[name] = module.operation.attributes[name]
    with ir.InsertionPoint(result.body):
        for op in list(copy.regions[0].blocks[0].operations):
            op.operation.detach_from_parent()
            ir.InsertionPoint.current.insert(op.operation)
    copy.operation.erase()
    return result


def ops_named(module: ir.Module, name: str) -> list[ir.OpView]:
    """Every op called ``name`` in ``module``, in program order."""
    found: list[ir.OpView] = []

    def visit(operation: ir.Operation) -> ir.WalkResult:
        if operation.name == name:
            found.append(operation.opview)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def verify(module: ir.Module, after: str = "") -> None:
    """Verify ``module``; failure raises :class:`IRVerificationError` with the first error."""
    with module.context, capture(module.context) as log:
        try:
            ok = module.operation.verify()
        except ir.MLIRError as error:
            record_mlir_error(error)
            first = log.errors[0].format() if log.errors else _first_error(error, "<module>")
            raise IRVerificationError(f"verification failed{' after ' + after if after else ''}: {first}") from None
    if not ok or log.errors:
        first = log.errors[0].format() if log.errors else "unknown error"
        raise IRVerificationError(f"verification failed{' after ' + after if after else ''}: {first}")
