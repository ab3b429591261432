"""Diagnostics: MLIR's own plus the remarks that Python passes emit.

MLIR's Python bindings can emit errors on a location but not remarks or
warnings, so passes report those through :func:`remark` / :func:`warning`,
which feed the same :class:`DiagnosticLog` as MLIR's engine. Drivers print the
log as ``file:line:col: severity: message`` and ``--verify-diagnostics``
checks it.
"""

from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import dataclass, field
from typing import Iterator

from torch_mlir import ir

_LOC_RE = re.compile(r'loc\("(?P<file>[^"]*)":(?P<line>\d+):(?P<col>\d+)')

_SEVERITY = {
    ir.DiagnosticSeverity.ERROR: "error",
    ir.DiagnosticSeverity.WARNING: "warning",
    ir.DiagnosticSeverity.REMARK: "remark",
    ir.DiagnosticSeverity.NOTE: "note",
}


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic with a resolved source position (line 0 when unknown)."""

    severity: str
    message: str
    file: str = ""
    line: int = 0
    col: int = 0

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: " if self.line else ""
        return f"{where}{self.severity}: {self.message}"


def resolve_location(location: ir.Location) -> tuple[str, int, int]:
    """File, line and column of the first file location inside ``location``."""
    match = _LOC_RE.search(str(location))
    if not match:
        return "", 0, 0
    return match["file"], int(match["line"]), int(match["col"])


def _make(severity: str, location: ir.Location, message: str) -> Diagnostic:
    file, line, col = resolve_location(location)
    return Diagnostic(severity, " ".join(message.split()), file, line, col)


@dataclass
class DiagnosticLog:
    """Collects diagnostics; the active log is the innermost :func:`capture`."""

    entries: list[Diagnostic] = field(default_factory=list)
    parent: "DiagnosticLog | None" = None

    def add(self, severity: str, location: ir.Location, message: str) -> None:
        self.append(_make(severity, location, message))

    def append(self, diagnostic: Diagnostic) -> None:
        """Record ``diagnostic`` here and in every enclosing log."""
        self.entries.append(diagnostic)
        if self.parent is not None:
            self.parent.append(diagnostic)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.entries if d.severity == "error"]


_ACTIVE: list[DiagnosticLog] = []


@contextlib.contextmanager
def capture(context: ir.Context) -> Iterator[DiagnosticLog]:
    """Route MLIR's diagnostics and the passes' remarks in ``context`` to a log."""
    log = DiagnosticLog(parent=_ACTIVE[-1] if _ACTIVE else None)

    def handler(diagnostic: ir.Diagnostic) -> bool:
        log.add(_SEVERITY.get(diagnostic.severity, "error"), diagnostic.location, diagnostic.message)
        for note in diagnostic.notes:
            log.add("note", note.location, note.message)
        return True

    attached = context.attach_diagnostic_handler(handler)
    _ACTIVE.append(log)
    try:
        yield log
    finally:
        _ACTIVE.pop()
        attached.detach()


def _emit(severity: str, location: ir.Location, message: str) -> None:
    if _ACTIVE:
        _ACTIVE[-1].add(severity, location, message)
    else:
        print(_make(severity, location, message).format(), file=sys.stderr)


def record_mlir_error(error: "ir.MLIRError") -> None:
    """Add the diagnostics carried by an ``MLIRError`` to the active log."""
    if not _ACTIVE:
        return
    for diag in getattr(error, "error_diagnostics", []):
        _ACTIVE[-1].add(_SEVERITY.get(diag.severity, "error"), diag.location, diag.message)
        for note in diag.notes:
            _ACTIVE[-1].add("note", note.location, note.message)


def remark(location: ir.Location, message: str) -> None:
    """Report a remark (e.g. why a pass skipped an op) at ``location``."""
    _emit("remark", location, message)


def warning(location: ir.Location, message: str) -> None:
    """Report a warning at ``location``."""
    _emit("warning", location, message)
