"""The base of every tasdc pass and the parser of its options.

A pass is a frozen dataclass: ``name`` is its kebab-case pipeline name, its
fields are its options (typed; the option ``min-size`` is the field
``min_size``) and :meth:`ModulePass.run` rewrites a module in place. Options
parse from the pipeline text ``name{key=value key2=v1,v2}``.

:meth:`ModulePass.as_pass` wraps a pass for a native MLIR ``PassManager``
(``pm.add(DecomposeWeights(config="2:4").as_pass(), name=..., argument=...)``
or ``pm.add(*p.as_pass_args())``), so the pass can run between upstream
passes with MLIR's own timing, IR printing and verification.
"""

from __future__ import annotations

import abc
import dataclasses
import typing
from typing import Any, Callable, ClassVar

from torch_mlir import ir

from tasdc.errors import PipelineError, TasdcError


class ModuleView:
    """What a pass uses of an ``ir.Module``, built on the module's operation.

    A native ``PassManager`` hands a Python pass the ``builtin.module``
    operation, and the bindings cannot wrap an operation back into an
    ``ir.Module``; passes only read ``operation``, ``body`` and ``context``.
    """

    def __init__(self, operation: ir.Operation) -> None:
        self.operation = operation

    @property
    def body(self) -> ir.Block:
        return self.operation.regions[0].blocks[0]

    @property
    def context(self) -> ir.Context:
        return self.operation.context

    def __str__(self) -> str:
        return str(self.operation)


@dataclasses.dataclass(frozen=True)
class ModulePass(abc.ABC):
    """A Python pass over a whole ``builtin.module``."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def run(self, module: ir.Module) -> None:
        """Rewrite ``module`` in place; user errors raise :class:`TasdcError`."""

    @classmethod
    def options(cls) -> dict[str, dataclasses.Field[Any]]:
        """Option name (kebab-case) -> dataclass field."""
        return {f.name.replace("_", "-"): f for f in dataclasses.fields(cls)}

    @classmethod
    def from_options(cls, raw: dict[str, str]) -> "ModulePass":
        """Build the pass from textual options, with one-line errors."""
        known = cls.options()
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, text in raw.items():
            if key not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise PipelineError(f"pass '{cls.name}' has no option '{key}' (options: {listed})")
            field = known[key]
            values[field.name] = _convert(cls.name, key, text, hints[field.name])
        try:
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise PipelineError(f"pass '{cls.name}': {error}") from None

    def as_pass(self) -> Callable[[ir.Operation, Any], None]:
        """This pass as a callable for ``PassManager.add(callable, name=…, argument=…)``.

        The callable takes ``(op, pass_)``, where ``op`` is the
        ``builtin.module`` the PassManager runs on. A user error
        (:class:`TasdcError`) becomes an error diagnostic on the module's
        location and ``pass_.signal_pass_failure()``, so ``PassManager.run``
        raises ``MLIRError`` carrying the message; anything else is a bug and
        propagates. Add it to a module-level PassManager without ``op_name``
        (a mismatched ``op_name`` aborts LLVM).
        """

        def run(op: ir.Operation, pass_: Any) -> None:
            operation = op.operation if hasattr(op, "operation") else op
            if operation.name != "builtin.module":
                operation.location.emit_error(f"{self.name} runs on 'builtin.module', not '{operation.name}'")
                pass_.signal_pass_failure()
                return
            try:
                with operation.context, ir.Location.unknown():
                    self.run(ModuleView(operation))  # type: ignore[arg-type]
            except TasdcError as error:
                operation.location.emit_error(f"{self.name}: {error}")
                pass_.signal_pass_failure()

        run.__name__ = self.name.replace("-", "_")
        run.__doc__ = f"{self.describe()} as a native MLIR pass."
        return run

    def as_pass_args(self) -> tuple[Callable[[ir.Operation, Any], None], str, str, str]:
        """``(callable, name, argument, description)`` for ``PassManager.add(*…)``."""
        doc = (type(self).__doc__ or "").strip().splitlines()
        return self.as_pass(), type(self).__name__, self.name, doc[0] if doc else ""

    def describe(self) -> str:
        """The pass as pipeline text, e.g. ``tasd-x{config=2:4 min-size=0}``."""
        opts = " ".join(
            f"{f.name.replace('_', '-')}={_render(getattr(self, f.name))}" for f in dataclasses.fields(self)
        )
        return f"{self.name}{{{opts}}}" if opts else self.name


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_render(v) for v in value)
    return str(value)


def _convert(pass_name: str, key: str, text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if text.lower() in ("true", "1", ""):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin in (tuple, list):
            (inner, *_) = typing.get_args(hint)
            items = [_convert(pass_name, key, part, inner) for part in text.split(",") if part]
            return tuple(items) if origin is tuple else items
    except ValueError:
        kind = getattr(hint, "__name__", str(hint))
        raise PipelineError(f"option '{key}' of pass '{pass_name}' expects {kind}, got '{text}'") from None
    raise PipelineError(f"option '{key}' of pass '{pass_name}' has unsupported type {hint}")


def apply_transform_script(module: ir.Module, text: str, pass_name: str) -> None:
    """Parse ``text`` (a module holding ``@__transform_main``) and apply it to ``module`` with
    the transform interpreter; a failure is a :class:`PipelineError` naming ``pass_name`` and
    the first diagnostics."""
    from torch_mlir.dialects.transform import interpreter

    from tasdc.diagnostics import capture, record_mlir_error

    with capture(module.context) as log:
        try:
            script = ir.Module.parse(text, module.context)
            interpreter.apply_named_sequence(module.operation, script.body.operations[0], script.operation)
        except (ir.MLIRError, ValueError) as error:
            # The interpreter raises ValueError and reports through the diagnostic
            # handler; the parser raises MLIRError.
            if isinstance(error, ir.MLIRError):
                record_mlir_error(error)
            detail = "; ".join(d.format() for d in log.errors[:3]) if log.errors else str(error).splitlines()[0]
            raise PipelineError(f"{pass_name} failed: {detail}") from None


def remove_attribute(module: ir.Module, name: str) -> None:
    """Delete the discardable attribute ``name`` from every op of ``module`` (a tag a pass set)."""

    def untag(op: ir.Operation) -> ir.WalkResult:
        if name in op.attributes:
            del op.attributes[name]
        return ir.WalkResult.ADVANCE

    module.operation.walk(untag)
