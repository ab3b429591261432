"""An optional, persistent cache of decompositions and calibration statistics.

Compiling the same weights twice (another target, another quality bound,
another sweep) repeats work whose result depends only on the data: the TASD
decomposition of a weight for a series, and the per-layer statistics of a
model on a calibration file. When a cache is *active* (:func:`using`), the
library consults it at two points and fills it on a miss:

* :func:`tasdc.decompose.decompose` — kind ``"decomposition"``, key
  ``digest(weight bytes, dtype, shape) / axis / series``; the entry is every
  term's ``values`` and ``indices`` (the residual is recomputed exactly:
  terms have disjoint support, so ``w − Σ termᵢ`` is ``x − x`` or ``x − 0``
  at every position);
* :func:`tasdc.calibration.collect_calibration` — kind
  ``"calibration"``, key ``digest(module text) / digest(calibration file
  bytes)``; the entry is every layer's rows or ``XᵀX``.

With no active cache (the default) nothing changes. A cache is anything with
``get(kind, key) -> dict[str, ndarray] | None`` and ``put(kind, key,
arrays)``; :class:`tasdc.sweep.store.Store` is the SQLite one ``tasdc sweep``
uses. Hit and miss counts per kind are kept in :data:`COUNTS` (reset with
:func:`reset_counts`) so callers can report what the cache saved.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from typing import Iterator, Protocol

import numpy as np


class ArrayCache(Protocol):
    """Named numpy arrays by (kind, key)."""

    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None: ...

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> None: ...


_active: ArrayCache | None = None
#: ``"<kind> hit"`` / ``"<kind> miss"`` -> count since the last :func:`reset_counts`.
COUNTS: Counter[str] = Counter()


def active() -> ArrayCache | None:
    """The cache in use, or None."""
    return _active


@contextlib.contextmanager
def using(cache: ArrayCache | None) -> Iterator[None]:
    """Make ``cache`` the active cache inside the ``with`` block."""
    global _active
    previous, _active = _active, cache
    try:
        yield
    finally:
        _active = previous


def reset_counts() -> None:
    COUNTS.clear()


def lookup(kind: str, key: str) -> dict[str, np.ndarray] | None:
    """The active cache's entry (None without a cache or on a miss); counts it."""
    if _active is None:
        return None
    found = _active.get(kind, key)
    COUNTS[f"{kind} {'hit' if found is not None else 'miss'}"] += 1
    return found


def store(kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Put an entry into the active cache (no-op without one)."""
    if _active is not None:
        _active.put(kind, key, arrays)


def array_digest(array: np.ndarray) -> str:
    """A digest of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    return h.hexdigest()


def file_digest(path: str) -> str:
    """A digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
