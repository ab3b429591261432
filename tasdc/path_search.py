"""Measured search along TASDER's greedy path: bisection on the prefix, demotion of failing moves.

``tasd-select`` orders every per-layer move (layer ``l`` from series ``a`` to
series ``b``) on one budget-independent greedy path, best objective saving
per unit of *predicted* error first; a selection is a prefix of that path.
The prediction (layer-output errors added in quadrature, ``Σ e² ≤ 1/q² − 1``)
is conservative on most layers and wrong on a few, so the prefix length is
chosen by measurement, and a move whose measured effect breaks the bound is
taken off the path instead of ending the search:

1. ``lo`` = the longest prefix known to meet the bound (0: all dense, the
   reference, always meets it). Probe the whole remaining path; if it meets
   the bound, stop there.
2. Otherwise bisect on the prefix length between ``lo`` (meets) and ``hi``
   (misses): each probe compiles the prefix and runs the evaluation inputs.
   Bisection assumes that a longer prefix never measures better; where that
   does not hold it still ends on a prefix that was *measured* to pass.
3. The move right after the longest passing prefix is the one that breaks
   the bound: *demote* it (ban that ``layer@series``; the layer may still
   take another series later on the path), recompute the path and continue
   from the longest prefix the new path shares with the old one (those
   selections were measured already).
4. After a demotion the search sits at the bound, where the next move
   breaks it more often than not: probe ``lo + 1`` first (a failure demotes
   that move at the cost of one probe, where a bisection from the whole
   path costs ``log2`` of its length), and only when it passes the whole
   remaining path, then bisect as in 2.
5. Stop when the path is used up or after ``max_probes`` measured probes.

Every probe records the path position, the bans in force, the predicted
quality ``1/sqrt(1 + Σ e²)`` (the inverse of the budget rule) and the
measured values, so predicted and measured quality can be compared per probe.

This module is pure search logic over two callbacks (``path_of(bans)`` and
``probe(steps, bans)``); :class:`tasdc.tasder.TasderSession` supplies them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

__all__ = ["PathMove", "SearchOutcome", "predicted_quality", "bisect_with_demotion"]


@dataclasses.dataclass(frozen=True)
class PathMove:
    """One greedy move: ``layer`` becomes ``series``; ``used`` = predicted Σ e² after it."""

    layer: str
    series: str
    used: float


@dataclasses.dataclass
class SearchOutcome:
    """Where the search ended: ``steps`` moves of ``path`` under ``bans``."""

    steps: int
    path: list[PathMove]
    bans: list[str]                 # "layer@series", in the order they were demoted
    probes: int                     # measured probes (cache hits not counted)
    exhausted: bool                 # stopped by max_probes


def predicted_quality(used: float) -> float:
    """The quality the budget rule predicts for a selection with Σ e² = ``used``."""
    return 1.0 / math.sqrt(1.0 + max(used, 0.0))


def _common_prefix(a: Sequence[PathMove], b: Sequence[PathMove]) -> int:
    n = 0
    for x, y in zip(a, b):
        if (x.layer, x.series) != (y.layer, y.series):
            break
        n += 1
    return n


def bisect_with_demotion(path_of: Callable[[frozenset[tuple[str, str]]], list[PathMove]],
                         probe: Callable[[int, frozenset[tuple[str, str]]], tuple[bool, bool]],
                         max_probes: int) -> SearchOutcome:
    """Run the search (see the module docstring).

    ``path_of(bans)``: the greedy path with the banned ``(layer, series)``
    moves removed. ``probe(steps, bans)``: measure the prefix of ``steps``
    moves of that path; returns ``(meets_bound, was_measured)`` where
    ``was_measured`` is False for a cached selection (it does not count
    against ``max_probes``).
    """
    bans: frozenset[tuple[str, str]] = frozenset()
    order: list[str] = []
    path = path_of(bans)
    lo = 0
    used = 0

    def run(steps: int) -> bool:
        nonlocal used
        ok, measured = probe(steps, bans)
        used += int(measured)
        return ok

    demoted = False
    while used < max_probes and lo < len(path):
        hi = len(path)
        if demoted and hi > lo + 1:          # at the bound: the next move first (step 4)
            if not run(lo + 1):
                hi = lo + 1
            else:
                lo += 1
        if hi == len(path) and used < max_probes:
            if run(hi):
                lo = hi
                break
        elif hi == len(path):
            break
        while hi - lo > 1 and used < max_probes:
            mid = (lo + hi) // 2
            if run(mid):
                lo = mid
            else:
                hi = mid
        if hi - lo > 1:
            break                       # out of probes inside a bisection
        bad = path[lo]
        demoted = True
        bans = bans | {(bad.layer, bad.series)}
        order.append(f"{bad.layer}@{bad.series}")
        new = path_of(bans)
        lo = min(lo, _common_prefix(path, new))
        path = new
    return SearchOutcome(steps=lo, path=path, bans=order, probes=used, exhausted=used >= max_probes)
