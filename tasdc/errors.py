"""User-facing errors.

Every error a user can cause (bad input file, bad option, unsupported model,
invalid IR) is a :class:`TasdcError`. The command-line drivers print its
message as one line and exit with status 2; anything else is a bug in tasdc
and keeps its traceback, except an :class:`InternalError`: a failure tasdc
detects in a component it drives (MLIR's ExecutionEngine, LLVM) on input that
passed every check. It prints one line, ``prog: internal error: …`` with a
request to report it, and exits with status 70 (``EX_SOFTWARE`` of
``sysexits.h``: neither 2, the user's fault, nor 1, a failed
``--verify-diagnostics`` run or a traceback).
"""

from __future__ import annotations

import argparse
from typing import Callable, NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70
#: What an internal error asks the user to do.
REPORT_HINT = "this is a bug in tasdc, not in your input; please report it with the command line and the model"


class TasdcError(Exception):
    """An error caused by the user's input; its message is one line."""

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the cause carried.
        super().__init__(" ".join(str(message).split()))


class InputError(TasdcError):
    """A model or IR file that cannot be read, parsed or imported."""


class UnsafeModelError(InputError):
    """A model file that would run code (pickled objects) when loaded."""


class PipelineError(TasdcError):
    """An unknown pass, a bad pass option or a malformed pipeline string."""


class IRVerificationError(TasdcError):
    """IR that fails verification after a pass or after parsing."""


class SelectionError(TasdcError, ValueError):
    """An invalid option or unusable calibration data for ``tasd-select`` / TASDER (one line)."""


class InternalError(Exception):
    """A failure inside a component tasdc drives (ExecutionEngine, LLVM code
    generation) on input that passed tasdc's checks: a tasdc bug. One line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the drivers' error contract: a bad argument prints one
    line, ``prog: error: …``, and exits with status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {' '.join(message.split())}\n")


def run_guarded(prog: str, command: Callable[[], int]) -> int:
    """Run a CLI command: a :class:`TasdcError` prints ``prog: error: …`` and
    returns 2; an :class:`InternalError` prints ``prog: internal error: …``
    with :data:`REPORT_HINT` and returns 70; a closed pipe (``| head``) ends quietly."""
    import sys

    try:
        return int(command())
    except TasdcError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except InternalError as error:
        print(f"{prog}: internal error: {error} ({REPORT_HINT})", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    except BrokenPipeError:
        sys.stderr.close()
        return 0
