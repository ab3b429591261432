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
