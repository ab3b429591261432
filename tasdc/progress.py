"""Progress bars on a terminal, silence in pipes and CI."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Bars show only when stderr is a terminal and TASDC_NO_PROGRESS is unset."""
    return sys.stderr.isatty() and not os.environ.get("TASDC_NO_PROGRESS")


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a tqdm bar on stderr when :func:`enabled`."""
    if not enabled():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit=unit, total=total, leave=False, file=sys.stderr)


class StageBar:
    """A bar over the stages of a compile (import, then each pass) on a terminal.

    Import and some passes give no finer progress; a stage bar at least shows
    where a long compile is. A no-op when :func:`enabled` is false.
    """

    def __init__(self, total: int, desc: str) -> None:
        self._bar = None
        if enabled():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="stage", leave=False, file=sys.stderr)

    def stage(self, name: str) -> None:
        """Announce the stage that starts now."""
        if self._bar is not None:
            self._bar.set_postfix_str(name[:40])

    def done(self) -> None:
        """Mark the current stage finished."""
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
