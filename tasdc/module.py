"""Contexts, parsing and verification on torch-mlir's bundled MLIR."""

from __future__ import annotations

import re
import weakref
from pathlib import Path

from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d

from tasdc.diagnostics import capture, record_mlir_error, resolve_location
from tasdc.dialects.tasd import STATS_ATTR, VerifyError, load_into, verify_stats
from tasdc.elements import MAX_BLOB_ALIGNMENT, BlobInfo, blobs_unchecked, check_resource_blobs
from tasdc.errors import InputError, IRVerificationError


def new_context() -> ir.Context:
    """A context with the upstream, torch and TASD dialects available."""
    context = ir.Context()
    torch_d.register_dialect(context)
    _load_tm_tensor(context)
    load_into(context)
    return context


def _load_tm_tensor(context: ir.Context) -> None:
    """Load torch-mlir's TMTensor dialect (``tm_tensor.scan`` for ``cumsum``, ``scatter``, …),
    which its linalg-on-tensors output may hold, so such a module (a saved compile, a
    ``tasdc-opt`` reproducer) parses again. ``register_dialect`` does not register it;
    running its bufferization pass on an empty module loads it as that pass's dialect."""
    from torch_mlir.passmanager import PassManager

    with context, ir.Location.unknown():
        PassManager.parse("builtin.module(func.func(tm-tensor-bufferize))").run(ir.Module.create().operation)


def _first_error(error: ir.MLIRError, default_file: str) -> str:
    diagnostics = list(getattr(error, "error_diagnostics", []))
    if not diagnostics:
        return str(error).splitlines()[-1]
    diag = diagnostics[0]
    file, line, col = resolve_location(diag.location)
    file = file if file and file != "-" else default_file
    return f"{file}:{line}:{col}: {diag.message}" if line else diag.message


# One entry of a ``{-# dialect_resources: {dialect: {key: "0x…"}} #-}`` section.
# The look-behind keeps the scan linear: a key starts only after a non-key
# character, so a malformed blob is not re-tried from each of its hex digits.
_BLOB_ENTRY = re.compile(r'(?<![\w.$\-"])(?P<key>[A-Za-z_][\w.$\-]*|"[^"\n]*")\s*:\s*"0x(?P<hex>[0-9A-Fa-f]*)"')


def scan_resource_blobs(text: str, filename: str) -> dict[str, BlobInfo]:
    """The header and size of every hex resource blob in MLIR ``text``.

    This reads text that MLIR will parse, which the project otherwise leaves
    to MLIR, for two reasons that the bindings leave no other way around:
    MLIR's parser allocates every blob with the alignment in its 4-byte
    header and a header of 0 (or an absurd one) aborts the whole process
    (``LLVM ERROR: out of memory``) *during* ``Module.parse``, so the header
    must be checked before MLIR sees the text; and neither the C API nor the
    Python bindings tell a blob's size or whether it exists at all
    (``mlirDense*ResourceElementsAttrGetValue`` indexes it unchecked). Only
    the blob entries are read: a key, a colon and a ``"0x…"`` hex string,
    the one form MLIR prints and accepts for them.
    """
    blobs: dict[str, BlobInfo] = {}
    line, last = 1, 0
    for match in _BLOB_ENTRY.finditer(text):
        line += text.count("\n", last, match.start())
        last = match.start()
        if "//" in text[text.rfind("\n", 0, match.start()) + 1 : match.start()]:
            continue  # in a comment (e.g. a FileCheck line)
        key, digits = match["key"].strip('"'), match["hex"]
        if len(digits) < 8 or len(digits) % 2:
            continue  # MLIR's parser reports these itself
        alignment = int.from_bytes(bytes.fromhex(digits[:8]), "little")
        if alignment == 0 or alignment & (alignment - 1) or alignment > MAX_BLOB_ALIGNMENT:
            raise InputError(
                f"{filename}:{line}: resource blob '{key}' has alignment header {alignment}; "
                f"expected a power of two up to {MAX_BLOB_ALIGNMENT}"
            )
        if key in blobs:  # MLIR would silently keep the last one
            raise InputError(f"{filename}:{line}: resource blob '{key}' is defined twice (first on line {blobs[key].line})")
        blobs[key] = BlobInfo(alignment=alignment, nbytes=len(digits) // 2 - 4, line=line)
    return blobs


# The custom assembly of these linalg ops spells one i64 array as ``keyword = [..]``.
_ARRAY_OPS = re.compile(r'(?<![\w."$])linalg\.(?P<op>transpose|broadcast|reduce)(?![\w.$])')
_ARRAY_KEYWORD = re.compile(r"(?<![\w.$%])(?P<key>permutation|dimensions)\s*=\s*")


def check_linalg_arrays(text: str, filename: str, context: ir.Context) -> None:
    """Refuse a malformed ``permutation``/``dimensions`` array of a custom-form
    ``linalg.transpose``, ``linalg.broadcast`` or ``linalg.reduce``.

    Upstream MLIR's parser of these three ops (``parseDenseI64ArrayAttr`` in
    ``LinalgOps.cpp``) ignores a failed array parse and goes on with a null
    attribute, so ``permutation = [nan, 0]`` (or ``[x]``, ``[1.5]``, an
    out-of-range integer, a missing ``]``) crashes the whole process with a
    SIGSEGV inside ``Module.parse`` (found by ``tools/fuzz.py``). The check
    finds the ``keyword = [`` … ``]`` text after each such op and has MLIR
    itself parse the elements as ``array<i64: …>``; valid arrays pass
    unchanged, so MLIR still parses (and reports on) everything else.
    """
    checked: set[int] = set()
    for op in _ARRAY_OPS.finditer(text):
        line_start = text.rfind("\n", 0, op.start()) + 1
        if "//" in text[line_start : op.start()]:
            continue  # in a comment (e.g. a FileCheck line)
        keyword = _ARRAY_KEYWORD.search(text, op.end())
        if keyword is None or keyword.start() in checked:
            continue  # a missing keyword is MLIR's own (clean) parse error
        checked.add(keyword.start())
        start = keyword.end()
        close = text.find("]", start)
        problem = ""
        if not text.startswith("[", start):
            problem = "expected '['"
        elif close < 0:
            problem = "missing ']'"
        else:
            inner = text[start + 1 : close]
            with context, capture(context):
                try:
                    ir.Attribute.parse(f"array<i64: {inner}>" if inner.strip() else "array<i64>")
                except ir.MLIRError as error:
                    diagnostics = list(getattr(error, "error_diagnostics", []))
                    problem = diagnostics[0].message if diagnostics else "expected integers"
        if problem:
            line = text.count("\n", 0, start) + 1
            col = start - (text.rfind("\n", 0, start) + 1) + 1
            raise InputError(
                f"cannot parse {filename}: {filename}:{line}:{col}: malformed '{keyword['key']}' of "
                f"linalg.{op['op']}: {problem}; write a list of integers such as [1, 0]"
            )


# Contexts that parse_module has parsed resource blobs into (MLIR renames a
# key that a context already holds, see check_resource_blobs).
_HOLDS_PARSED_BLOBS: "weakref.WeakSet[ir.Context]" = weakref.WeakSet()


def parse_module(text: str, context: ir.Context, filename: str = "<stdin>") -> ir.Module:
    """Parse MLIR text; a parse error or a bad resource blob becomes an :class:`InputError`.

    Every ``dense_resource`` weight is checked against its blob (present,
    exactly elements × element size bytes, sane alignment) before anything
    reads it: MLIR verifies while it parses, so the verifiers skip blob
    contents then, and the module is verified again once the blobs passed.
    """
    blobs = scan_resource_blobs(text, filename)
    check_linalg_arrays(text, filename, context)
    if not text.endswith("\n"):
        # MLIR's parser crashes (SIGSEGV, found by tools/fuzz.py) on a string
        # left open at the very end of the buffer after a large resource blob
        # (a truncated file); before a newline it reports the open string.
        text += "\n"
    with context, capture(context), blobs_unchecked():
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as error:
            record_mlir_error(error)
            raise InputError(f"cannot parse {filename}: {_first_error(error, filename)}") from None
    reparsed = context in _HOLDS_PARSED_BLOBS
    if blobs:
        _HOLDS_PARSED_BLOBS.add(context)
    with context:
        check_resource_blobs(module, blobs, filename, reparsed=reparsed)
        _check_stats(module, filename)
    if blobs:
        _verify_parsed(module, filename)
    return module


def _check_stats(module: ir.Module, filename: str) -> None:
    """Refuse a ``tasd.stats`` record whose series does not parse, on ops the
    TASD verifiers do not see (the ``linalg`` contractions the analysis
    annotates); see :func:`tasdc.dialects.tasd.verify_stats`."""

    problems: list[str] = []

    def visit(operation: ir.Operation) -> ir.WalkResult:
        if STATS_ATTR in operation.attributes:
            try:
                verify_stats(operation.opview)
            except VerifyError as error:
                file, line, col = resolve_location(operation.location)
                where = f"{file if file not in ('', '-') else filename}:{line}:{col}: " if line else ""
                problems.append(f"cannot parse {filename}: {where}'{operation.name}' op {error}")
                return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if problems:
        raise InputError(problems[0])


def _verify_parsed(module: ir.Module, filename: str) -> None:
    """Verify a freshly parsed module; errors read like parse errors."""
    with module.context, capture(module.context) as log:
        try:
            ok = module.operation.verify()
        except ir.MLIRError as error:
            record_mlir_error(error)
            raise InputError(f"cannot parse {filename}: {_first_error(error, filename)}") from None
    if not ok or log.errors:
        first = log.errors[0]
        where = f"{first.file if first.file not in ('', '-') else filename}:{first.line}:{first.col}: " if first.line else ""
        raise InputError(f"cannot parse {filename}: {where}{first.message}")


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


def ops_named(module: ir.Module, *names: str) -> list[ir.OpView]:
    """Every op called one of ``names`` in ``module``, in program order."""
    found: list[ir.OpView] = []

    def visit(operation: ir.Operation) -> ir.WalkResult:
        if operation.name in names:
            found.append(operation.opview)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def window_pair(op: ir.OpView, name: str) -> list[int]:
    """A 2-D convolution's ``strides`` / ``dilations`` attribute (default ``[1, 1]``)."""
    if name not in op.attributes:
        return [1, 1]
    return [int(v) for v in ir.DenseIntElementsAttr(op.attributes[name])]


def constant_int(value: ir.Value) -> int | None:
    """The integer of an ``arith.constant`` of integer or index type, else ``None``."""
    owner = value.owner
    if not isinstance(owner, ir.OpView) or owner.name != "arith.constant":
        return None
    attr = owner.attributes["value"]
    return ir.IntegerAttr(attr).value if isinstance(attr, ir.IntegerAttr) else None


def fill_value(value: ir.Value, through_reshapes: bool = False) -> float | None:
    """The float constant ``value`` is a ``linalg.fill`` of (``None`` when it
    is not one); with ``through_reshapes``, also through
    ``tensor.collapse_shape``/``expand_shape`` of such a fill."""
    owner = value.owner
    while through_reshapes and isinstance(owner, ir.OpView) and owner.name in ("tensor.collapse_shape", "tensor.expand_shape"):
        owner = owner.operands[0].owner
    if not isinstance(owner, ir.OpView) or owner.name != "linalg.fill":
        return None
    scalar = owner.operands[0].owner
    if not isinstance(scalar, ir.OpView) or scalar.name != "arith.constant":
        return None
    attr = scalar.attributes["value"]
    return ir.FloatAttr(attr).value if isinstance(attr, ir.FloatAttr) else None


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
