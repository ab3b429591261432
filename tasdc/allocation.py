"""The global greedy allocation of ``tasd-select``: one path, cut by the error budget.

The allocation sees a :class:`Problem`: per layer and option (``dense``
first, then the layer's candidate series) its energy, latency and error
contribution ``e²``, plus the layers whose cost is fixed. It is pure
arithmetic on those arrays; the pass builds them (costs from the shared
hardware model, errors from :mod:`tasdc.layer_errors` and
:mod:`tasdc.activation_stats`).

============================
Model-level error ``D = Σ_layers e_l²`` with ``e_l`` the layer's metric.
Reading: each layer perturbs its output by a relative ``e_l``; independent
perturbations propagated with unit relative gain add in quadrature, so the
model output's relative error is predicted as ``ε̂ = sqrt(D)``, and an output
perturbed by a random direction of relative size ``ε̂`` keeps a cosine
similarity ``1/sqrt(1 + ε̂²)`` with the dense output. Requiring that predicted
cosine similarity to be at least ``quality`` gives the budget

    D ≤ B(quality) = 1/quality² − 1      (≈ 2·(1 − quality); 0 at quality 1.0)

so ``quality=0.99`` allows ``ε̂ ≈ 0.142`` (e.g. 0.08 per layer over three
layers), and ``quality=1.0`` allows only series that are exact on every
input: lossless weight series (an activation series measured exact on the
calibration inputs is not: see the budget cut). This is a
*prediction*; ``tasdc.tasder`` measures the real quality by running the
compiled model and moves along the same path (below) until the measured bound
holds. ``budget=B`` (B ≥ 0) overrides ``B(quality)``.

Allocation rule (global, deterministic)
=======================================
1. *Greedy path* (independent of the budget). Start with every layer dense.
   Repeatedly consider every move "layer l → candidate c" that strictly lowers
   the model objective (computed exactly from the model totals after the
   move: EDP = total energy x total latency, latency = total cycles, energy =
   total joules, fixed layers included). If some such move adds no error
   (``Δ(e²) ≤ 0``: lossless, or more accurate and cheaper), take the one with
   the largest saving, first among the moves to options whose error holds on
   every input (weight series), then among the rest (``calib_only``:
   activation series, whose error is known on the calibration inputs only);
   otherwise take the one with the largest *saving per unit of added error*
   ``ΔObjective / Δ(e²)``. Ties go to the lower layer
   index, then to the candidate order (dense, then ascending density, fewer
   terms, text). Stop when no move lowers the objective. Each step strictly
   lowers the objective, so the path ends; for additive objectives the
   steepest move from the current point is exactly the next vertex of the
   layer's lower convex hull of (error, cost), i.e. this is the classic
   multiple-choice-knapsack greedy.
2. *Budget cut.* Take the longest prefix of the path whose accumulated ``D``
   stays ``≤ budget`` (``max-steps`` ≥ 0 additionally caps the number of
   steps; ``max-steps=0`` keeps every layer dense). A budget of 0
   (``quality=1.0``: exact on every input) also stops at the first move to a
   ``calib_only`` option, whatever its measured error: no activation series is
   promised exact. Every bound, 1.0 included, selects a prefix of the *same*
   path (the options do not depend on the bound), so a looser bound never
   gives a costlier model, and stepping back along the path (what the
   driver's back-off does) undoes first the moves that bought the least
   objective per unit of error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

BUDGET_RULE = "sum over layers of e^2 <= 1/quality^2 - 1 (predicted output cosine similarity >= quality)"


def budget_for_quality(quality: float) -> float:
    """Error budget ``B(q) = 1/q² − 1`` on ``Σ e_l²`` (see the module docstring);
    infinite when ``q²`` underflows (any series meets such a bound)."""
    try:
        return 1.0 / (quality * quality) - 1.0
    except (ZeroDivisionError, OverflowError):
        return math.inf


@dataclasses.dataclass(frozen=True)
class Move:
    """One step of the greedy path."""

    step: int
    layer: int
    src: int
    dst: int
    saving: float          # objective before - after (model total)
    added: float           # added error contribution Δ(e²)
    objective: float       # model objective after the step
    used: float            # accumulated D after the step
    calib_only: bool = False  # the new option's error is known on the calibration inputs only


@dataclasses.dataclass
class Problem:
    """Per-layer costs [L, C] and error contributions ``e²`` [L, C]; ``calib_only``
    [L, C] marks the options whose error holds on the calibration inputs only
    (activation series; None: none)."""

    objective: str
    energy: np.ndarray
    latency_s: np.ndarray
    latency_cycles: np.ndarray
    err2: np.ndarray
    valid: np.ndarray
    fixed_energy: float = 0.0
    fixed_latency_s: float = 0.0
    fixed_latency_cycles: float = 0.0
    calib_only: np.ndarray | None = None

    def total(self, e: np.ndarray | float, ts: np.ndarray | float, tc: np.ndarray | float) -> Any:
        if self.objective == "edp":
            return e * ts
        if self.objective == "latency":
            return tc
        return e

    def totals_of(self, choice: np.ndarray) -> tuple[float, float, float]:
        rows = np.arange(len(choice))
        return (self.fixed_energy + float(self.energy[rows, choice].sum()),
                self.fixed_latency_s + float(self.latency_s[rows, choice].sum()),
                self.fixed_latency_cycles + float(self.latency_cycles[rows, choice].sum()))


def greedy_path(problem: Problem) -> list[Move]:
    """The budget-independent greedy path (rule 1 of the module docstring)."""
    n_layers, n_configs = problem.err2.shape
    if n_layers == 0:
        return []
    cur = np.zeros(n_layers, dtype=np.int64)
    rows = np.arange(n_layers)
    e_tot, ts_tot, tc_tot = problem.totals_of(cur)
    obj = float(problem.total(e_tot, ts_tot, tc_tot))
    used = 0.0
    path: list[Move] = []
    for step in range(n_layers * n_configs * 4 + 1):
        de = problem.energy - problem.energy[rows, cur][:, None]
        dts = problem.latency_s - problem.latency_s[rows, cur][:, None]
        dtc = problem.latency_cycles - problem.latency_cycles[rows, cur][:, None]
        new = problem.total(e_tot + de, ts_tot + dts, tc_tot + dtc)
        saving = obj - new
        added = problem.err2 - problem.err2[rows, cur][:, None]
        ok = problem.valid & (saving > 1e-12 * abs(obj))
        if not ok.any():
            break
        free = ok & (added <= 0.0)
        sure = free if problem.calib_only is None else free & ~problem.calib_only
        if sure.any():
            score = np.where(sure, saving, -np.inf)
        elif free.any():
            score = np.where(free, saving, -np.inf)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                score = np.where(ok, saving / added, -np.inf)
        flat = int(np.argmax(score))  # first maximum: lowest layer, then candidate order
        layer, dst = divmod(flat, n_configs)
        src = int(cur[layer])
        cur[layer] = dst
        e_tot += float(de[layer, dst])
        ts_tot += float(dts[layer, dst])
        tc_tot += float(dtc[layer, dst])
        obj_new = float(problem.total(e_tot, ts_tot, tc_tot))
        used += float(added[layer, dst])
        calib_only = bool(problem.calib_only[layer, dst]) if problem.calib_only is not None else False
        path.append(Move(step, layer, src, dst, obj - obj_new, float(added[layer, dst]), obj_new, used, calib_only))
        obj = obj_new
    return path


def cut_path(path: Sequence[Move], n_layers: int, budget: float, max_steps: int = -1) -> tuple[np.ndarray, int]:
    """Per-layer choice after the longest prefix within ``budget`` (and
    ``max_steps`` when ≥ 0; a zero budget also stops at the first
    ``calib_only`` move); returns (choice, steps taken)."""
    choice = np.zeros(n_layers, dtype=np.int64)
    taken = 0
    tol = 1e-12 * max(1.0, budget)
    for move in path:
        if max_steps >= 0 and taken >= max_steps:
            break
        if move.used > budget + tol or (move.calib_only and budget <= tol):
            break
        choice[move.layer] = move.dst
        taken += 1
    return choice, taken


__all__ = ["BUDGET_RULE", "Move", "Problem", "budget_for_quality", "cut_path", "greedy_path"]
