"""Analytical performance / energy model of TASD series on structured-sparse arrays.

One model serves both the TASDER selection pass and the simulator. The core,
:func:`evaluate`, is vectorised over *layers x candidate series* and returns a
struct-of-arrays :class:`CostTable`; :func:`cost_layer` is a thin wrapper over
the same core for one layer and one series (there is no second formula set).

Workload
========
A layer is a GEMM ``C[Mo, No] = A[Mo, K] . B[K, No]`` repeated ``batch`` times
(independent operands per batch element). ``A`` is the structured-sparse
operand: the weight for TASD-W (decomposed offline, stored compressed), or an
activation for TASD-A (``tasd_a=True``: stored dense, decomposed at run time
by the target's TASD extraction units). Convolutions are given as their im2col
GEMM (``Mo`` = output channels, ``K`` = Cin*kh*kw, ``No`` = batch*oh*ow) plus
``b_source`` = the elements of their input (batch*Cin*H*W): a convolution
runs as a convolution, its input read from DRAM once per B pass (a line
buffer of kh rows in the GLB keeps the halo between consecutive column
panels) and the im2col panels formed on chip (see *Memory*). For a GEMM
``b_source`` = K*No.
A *series* ``A ~ A1 + A2 + ...`` runs as ``A1.B + A2.B + ...`` accumulated into
the same C; ``dense`` (no terms) runs A dense.

Pattern handling
================
Dense terms (``N == M``, e.g. ``4:4``) run dense on every target. A sparse
term the target runs natively (``hardware.sparsity.patterns``) runs at that
entry's ``speedup``. Otherwise ``mode="refuse"`` raises
:class:`UnsupportedPatternError`; ``mode="map"`` executes the term as the
native pattern ``N':M'`` that *losslessly contains* it (any N:M tensor is also
N':M'): ``M' | M`` and ``N' >= min(N, M')``, or ``M | M'`` and
``N' >= N*M'/M``. Among those it picks the highest speedup, then the lowest
density, then the smallest M'; if none exists the term runs dense. So
1:4 -> 2:4 on STC (same M, next denser), 1:8 -> 2:4 and 2:8 -> 2:4 on STC
(a 4-block of a 1:8 / 2:8 tensor holds at most 1 / 2 non-zeros), 4:8 -> dense
on STC, 1:4 -> 2:8 and 2:4 -> 4:8 on TTC-M8, anything -> dense on the dense
target. Each term records ``mapped_from`` / ``mapped_to``.

Dataflow (all shipped targets)
==============================
Output-stationary (OS) systolic array of ``R x Cc`` PEs (``array.rows x
array.cols``), ``array.count`` identical copies sharing the buffers. Each PE
owns one element of C and accumulates it in place; A rows enter from the left
edge (one A row per PE row), B columns from the top edge (one per PE column).
This is the reuse the TASD paper describes: B and the partial sums C stay
put while the terms A1, A2, ... stream through, so a series pays the
fill/drain once per output tile and never spills partial sums.

Compute (exactly SCALE-Sim 3's OS timing for dense; validated by
``benchmarks/validate_scalesim.py``)::

    fr = ceil(Mo / R), fc = ceil(No / Cc)            # row / column folds
    folds = batch * fr * fc,  waves = ceil(folds / count)
    per term t executed as n_t:m_t at speedup s_t (dense: n = m = 1, s = 1):
        kpad_t   = ceil(K / m_t) * m_t               # K padded to whole blocks
        kc_t     = ceil(K / m_t) * n_t               # kept A values per row
        stream_t = ceil(kpad_t / s_t)                # = ceil(K/m)*n when s = m/n
    fold_cycles    = sum_t stream_t + (R + Cc - 2)   # skew fill + drain, once per fold
    mac_cycles     = waves * sum_t stream_t
    compute_cycles = waves * fold_cycles

With ``array.fill_drain_overlap`` (double-buffered output registers; off in
SCALE-Sim) consecutive folds pipeline: the skew is paid once per layer and a
fold lasts at least the ``R`` cycles its C needs to drain::

    compute_cycles = waves * max(sum_t stream_t, R) + (R + Cc - 2)

Utilisation on shapes the array does not divide comes from the ceil tiling
(``mapping_efficiency = Mo*No / (fr*R*fc*Cc)``) and from fill/drain
(``mac_utilization = macs / (PEs * compute_cycles)``).

Memory (bytes; ``vb`` = value bytes, ``ob`` = output bytes, ``bits`` =
metadata bits per kept value; per batch element, then times ``batch``)::

    A_on  = Mo * sum_t kc_t * vb        (A as stored on chip: kept values, all terms)
    MD    = Mo * sum_t[sparse] kc_t * bits / 8
            (``sparsity.shared_metadata`` and every sparse term of one M:
             Mo * ceil(K/M) * min(M, sum_t[sparse] N_t * bits) / 8)
    B     = K * No * vb,   C = Mo * No * ob
    B_src = min(B, b_source * vb)      (DRAM bytes of B per pass: a conv's input)
    A_dram (DRAM bytes of A per pass) = A_on + MD (TASD-W) | Mo * K * vb dense (TASD-A)

*DRAM <-> GLB* (GLB = ``size_kib`` of data + ``metadata_size_kib`` of
metadata). C is written once: partial sums never leave the PEs. Long
reductions stream through the GLB in chunks of ``K_CHUNK`` = 256 K-elements
(``A_stream`` = a double-buffered chunk of an A row panel). Passes::

(B_src replaces B in DRAM reads and GLB writes below; the GLB's capacity
rules and its reads of B keep the im2col panel sizes, a conservative bound
for the line buffer of a convolution.)

    if  A_on + 2*B_panel + 2*C_tile <= GLB  and  MD <= GLB_md:   # A resident
        a_dram_passes = 1, b_dram_passes = 1          (B streamed once, panel by panel)
    elif Nc = floor((GLB - A_stream - 2*C_tile) / (K*vb) / Cc) * Cc >= Cc:  # B resident in chunks
        a_dram_passes = ceil(No / Nc), b_dram_passes = 1
    else:                                                        # no reuse beyond a tile
        a_dram_passes = fc, b_dram_passes = fr

(``B_panel = K*min(Cc,No)*vb``, ``C_tile = min(R,Mo)*min(Cc,No)*ob``.) Both
pass counts are non-decreasing in A's footprint, so adding a term never
lowers any cost. TASD-A: the TASD units sit on the DRAM -> GLB path: dense A
is read from DRAM, decomposed, and the terms (values + metadata) are written
to the GLB, once per A pass; the GLB then serves TASD-A and TASD-W alike.

*GLB <-> array.* Every output tile reads its A panel with metadata:
``(A_on + MD) * fc``. B goes GLB -> RF -> top edge: with A resident and one
B column panel (``K*Cc*vb``) fitting the RF, row tiles iterate inside a
column tile and B is read from the GLB once; otherwise once per output tile
(``B * fr``), K-chunked with the terms innermost so that the RF still serves
the per-term re-reads. GLB writes = DRAM fills + C.

*RF -> array.* Each term re-reads the dense B positions of its blocks:
``fr * No * sum_t kpad_t * vb``; RF writes = B read from the GLB.

*Cycles per level* = bytes / bandwidth (DRAM GB/s converted with the clock,
GLB and RF in bytes/cycle, data and metadata share the GLB ports).
Extraction (TASD-A): ``ops = Mo * sum_t[sparse] ceil(K/m_t)`` block selections
per A pass, ``cycles = ceil(ops / units) * cycles_per_block``.

Latency = max(compute, DRAM, GLB, RF, extraction) cycles (double buffering
overlaps all of them); ``bound`` names the maximum (ties go to compute).

Energy (pJ -> J)::

    mac        = macs * mac_pj + (2*macs + B_positions) * pe_register_pj
                 (A in, partial-sum update, every dense B value passing a PE)
    rf         = RF reads * read_pj + RF writes * write_pj
    glb        = GLB data reads/writes * read/write pJ per byte
    dram       = DRAM data bytes * pJ per byte
    metadata   = DRAM metadata bytes * DRAM pJ + GLB metadata reads/writes
                 + one PE metadata-register read per sparse MAC
    extraction = ops * energy_pj_per_block
    energy     = sum; EDP = energy [J] * latency [s]

Not modelled: static / leakage power and clock gating of idle PEs (energy
counts only issued work), the prologue before the first tile (first DRAM
fill) and the epilogue (last write-back) which double buffering cannot hide,
overlap of one fold's drain with the next fold's fill unless the hardware
file sets ``array.fill_drain_overlap`` (SCALE-Sim does not overlap), K-tiling with partial sums spilled to the GLB (DRAM reuse
is limited to one resident operand, as in an OS array that accumulates the
full K in place), a row-chunked A-resident tiling (symmetric to the
B-chunked one, within rounding), DRAM page/bank effects (bandwidth is a constant),
bank conflicts, the area / power overhead of the sparse datapath (muxes,
wider B distribution), value-dependent zero gating (a term always issues
exactly N MACs per block), the layer's non-GEMM work (bias, activation,
requantisation), and inter-layer reuse (each layer starts from DRAM).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence, Union

import numpy as np

from tasdc.errors import TasdcError

from .hardware import Hardware, load_hardware

__all__ = [
    "Pattern",
    "SeriesSpec",
    "UnsupportedPatternError",
    "TermPlan",
    "SeriesPlan",
    "LayerShapes",
    "CostTable",
    "TermCost",
    "LayerCost",
    "BOUNDS",
    "ENERGY_COMPONENTS",
    "parse_series",
    "series_label",
    "resolve_series",
    "evaluate",
    "cost_layer",
]

BOUNDS = ("compute", "dram", "glb", "rf", "extraction")
K_CHUNK = 256  # K elements per streamed GLB chunk (A panels, B panels) when K is long
ENERGY_COMPONENTS = ("mac", "rf", "glb", "dram", "metadata", "extraction")
MODES = ("refuse", "map")


class UnsupportedPatternError(TasdcError, ValueError):
    """A series term (or TASD-A) the target cannot run in the requested mode."""


# --------------------------------------------------------------------------
# Series specs
# --------------------------------------------------------------------------


class Pattern(NamedTuple):
    """An N:M structured-sparsity pattern (at most n non-zeros per m-block)."""

    n: int
    m: int

    @property
    def is_dense(self) -> bool:
        return self.n == self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


SeriesSpec = Union[str, Sequence[Any], Any]
"""``"dense"``, ``"2:4+1:4"``, ``((2, 4), (1, 4))``, ``()`` (dense), or any
object with ``.terms`` whose items have ``.n`` and ``.m`` (e.g.
``tasdc.decompose.SeriesConfig``)."""


def _pattern(n: Any, m: Any, where: str) -> Pattern:
    try:
        ni, mi = int(n), int(m)
    except (TypeError, ValueError):
        raise ValueError(f"invalid N:M pattern {where!r}: N and M must be integers") from None
    if ni != n or mi != m:
        raise ValueError(f"invalid N:M pattern {where!r}: N and M must be integers")
    if ni < 1 or mi < 1:
        raise ValueError(f"invalid N:M pattern {ni}:{mi}: N and M must be >= 1")
    if ni > mi:
        raise ValueError(f"invalid N:M pattern {ni}:{mi}: N > M")
    return Pattern(ni, mi)


def parse_series(spec: SeriesSpec) -> tuple[Pattern, ...]:
    """Normalise a series spec to a tuple of patterns (``()`` = dense)."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("", "dense"):
            return ()
        out = []
        for part in s.split("+"):
            part = part.strip()
            bits = part.split(":")
            if len(bits) != 2 or not bits[0].strip().isdigit() or not bits[1].strip().isdigit():
                raise ValueError(f"invalid series {spec!r}: term {part!r} is not N:M "
                                 "(write e.g. '2:4+1:4' or 'dense')")
            out.append(_pattern(int(bits[0]), int(bits[1]), part))
        return tuple(out)
    terms = getattr(spec, "terms", None)
    if terms is not None and not isinstance(spec, (tuple, list)):
        return tuple(_pattern(t.n, t.m, str(t)) for t in terms)
    if isinstance(spec, (tuple, list)):
        if len(spec) == 2 and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                                  for x in spec):
            return (_pattern(spec[0], spec[1], f"{spec[0]}:{spec[1]}"),)  # a bare (n, m)
        out = []
        for t in spec:
            if hasattr(t, "n") and hasattr(t, "m"):
                out.append(_pattern(t.n, t.m, str(t)))
            elif isinstance(t, str):
                out.extend(parse_series(t))
            else:
                try:
                    n, m = t
                except (TypeError, ValueError):
                    raise ValueError(f"invalid series term {t!r}: expected (n, m)") from None
                out.append(_pattern(n, m, f"{n}:{m}"))
        return tuple(out)
    raise ValueError(f"invalid series spec {spec!r}")


def series_label(terms: Iterable[Pattern]) -> str:
    terms = tuple(terms)
    return "+".join(str(t) for t in terms) if terms else "dense"


# --------------------------------------------------------------------------
# Resolving a series on a target
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TermPlan:
    """How one term runs: ``requested`` (None for a dense layer) as ``executed``
    (None = dense) at ``speedup``."""

    requested: Pattern | None
    executed: Pattern | None
    speedup: float

    @property
    def sparse(self) -> bool:
        return self.executed is not None

    @property
    def mapped(self) -> bool:
        return (self.requested is not None and not self.requested.is_dense
                and self.executed != self.requested)

    @property
    def requested_label(self) -> str:
        return "dense" if self.requested is None else str(self.requested)

    @property
    def executed_label(self) -> str:
        return "dense" if self.executed is None else str(self.executed)


@dataclass(frozen=True)
class SeriesPlan:
    label: str                      # requested series, canonical
    terms: tuple[TermPlan, ...]     # >= 1 (a dense layer is one dense term)

    @property
    def executed_label(self) -> str:
        if all(t.requested is None for t in self.terms):
            return "dense"
        return "+".join(t.executed_label for t in self.terms)

    @property
    def mapped_from(self) -> tuple[str, ...]:
        return tuple(t.requested_label for t in self.terms if t.mapped)

    @property
    def mapped_to(self) -> tuple[str, ...]:
        return tuple(t.executed_label for t in self.terms if t.mapped)

    @property
    def has_sparse(self) -> bool:
        return any(t.sparse for t in self.terms)


def _contains(native_n: int, native_m: int, p: Pattern) -> bool:
    """True if every p-structured tensor is also native_n:native_m structured."""
    if p.m % native_m == 0:
        return native_n >= min(p.n, native_m)
    if native_m % p.m == 0:
        return native_n * p.m >= p.n * native_m
    return False


def _plan_term(hw: Hardware, p: Pattern, mode: str) -> TermPlan:
    if p.is_dense:
        return TermPlan(p, None, 1.0)
    nat = hw.native(p.n, p.m)
    if nat is not None:
        return TermPlan(p, p, nat.speedup)
    if mode == "refuse":
        native = ", ".join(hw.native_pattern_names()) or "none (dense only)"
        raise UnsupportedPatternError(
            f"target {hw.name!r} does not run pattern {p} natively (native sparse patterns: "
            f"{native}); use mode='map' to run it as the next denser native pattern")
    cands = [q for q in hw.sparsity.sparse_patterns if _contains(q.n, q.m, p)]
    if not cands:
        return TermPlan(p, None, 1.0)
    best = min(cands, key=lambda q: (-q.speedup, q.n / q.m, q.m))
    return TermPlan(p, Pattern(best.n, best.m), best.speedup)


@functools.lru_cache(maxsize=4096)
def _resolve_cached(hw: Hardware, terms: tuple[Pattern, ...], mode: str) -> SeriesPlan:
    if not terms:
        return SeriesPlan("dense", (TermPlan(None, None, 1.0),))
    return SeriesPlan(series_label(terms), tuple(_plan_term(hw, p, mode) for p in terms))


def resolve_series(hw: Hardware | str | Path, spec: SeriesSpec, mode: str = "refuse") -> SeriesPlan:
    """Decide how each term of ``spec`` runs on ``hw`` (see module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    hw = load_hardware(hw)
    return _resolve_cached(hw, parse_series(spec), mode)


# --------------------------------------------------------------------------
# Layer shapes
# --------------------------------------------------------------------------


def _as_int_array(x: Any, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 0 and n is not None:
        a = np.full(n, a)
    if a.ndim != 1:
        raise ValueError(f"LayerShapes.{name}: expected a 1-D array")
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise ValueError(f"LayerShapes.{name}: expected integers")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"LayerShapes.{name}: expected integers")
    a = a.astype(np.int64)
    if a.size and a.min() < 1:
        raise ValueError(f"LayerShapes.{name}: every entry must be >= 1")
    return a


@dataclass(frozen=True)
class LayerShapes:
    """A batch of GEMM layers ``C[m, n] = A[m, k] . B[k, n]`` (x ``batch``).

    ``tasd_a[i]`` marks layers whose sparse operand A is an activation
    decomposed at run time (TASD-A) rather than an offline-decomposed weight.
    """

    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    batch: np.ndarray
    tasd_a: np.ndarray
    names: tuple[str, ...] | None = None
    b_source: np.ndarray | None = None   # elements of B's source per batch element (conv: its input)

    @property
    def b_source_elems(self) -> np.ndarray:
        """Elements of B's source tensor per batch element (K*N for a GEMM)."""
        return self.k * self.n if self.b_source is None else self.b_source

    @classmethod
    def from_arrays(cls, m: Any, k: Any, n: Any, batch: Any = 1, tasd_a: Any = False,
                    names: Sequence[str] | None = None, b_source: Any = None) -> "LayerShapes":
        m = _as_int_array(m, "m")
        size = m.shape[0]
        k = _as_int_array(k, "k", size)
        n = _as_int_array(n, "n", size)
        batch = _as_int_array(batch, "batch", size)
        ta = np.asarray(tasd_a)
        if ta.ndim == 0:
            ta = np.full(size, bool(ta))
        ta = ta.astype(bool)
        for nm, a in (("k", k), ("n", n), ("batch", batch), ("tasd_a", ta)):
            if a.shape != (size,):
                raise ValueError(f"LayerShapes.{nm}: length {a.shape[0]} != {size}")
        if names is not None:
            names = tuple(str(x) for x in names)
            if len(names) != size:
                raise ValueError(f"LayerShapes.names: length {len(names)} != {size}")
        src = None
        if b_source is not None:
            src = _as_int_array(b_source, "b_source", size)
            if src.shape != (size,):
                raise ValueError(f"LayerShapes.b_source: length {src.shape[0]} != {size}")
        return cls(m, k, n, batch, ta, names, src)

    @classmethod
    def from_list(cls, shapes: Iterable[Sequence[int]], tasd_a: Any = False,
                  names: Sequence[str] | None = None) -> "LayerShapes":
        """``[(m, k, n), (m, k, n, batch), ...]``."""
        rows = [tuple(s) for s in shapes]
        for s in rows:
            if len(s) not in (3, 4):
                raise ValueError(f"layer shape {s!r}: expected (m, k, n) or (m, k, n, batch)")
        m = [s[0] for s in rows]
        k = [s[1] for s in rows]
        n = [s[2] for s in rows]
        b = [s[3] if len(s) == 4 else 1 for s in rows]
        return cls.from_arrays(np.array(m, dtype=np.int64), k, n, b, tasd_a, names)

    @classmethod
    def single(cls, m: int, k: int, n: int, batch: int = 1, tasd_a: bool = False,
               b_source: int | None = None) -> "LayerShapes":
        return cls.from_arrays(np.array([m]), [k], [n], [batch], [tasd_a],
                               b_source=None if b_source is None else [b_source])

    def __len__(self) -> int:
        return int(self.m.shape[0])

    def __getitem__(self, idx: Any) -> "LayerShapes":
        sel = np.arange(len(self))[idx]
        sel = np.atleast_1d(sel)
        names = None if self.names is None else tuple(self.names[i] for i in sel)
        src = None if self.b_source is None else self.b_source[sel]
        return LayerShapes(self.m[sel], self.k[sel], self.n[sel], self.batch[sel],
                           self.tasd_a[sel], names, src)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

# [n_layers, n_configs] float64 arrays of a CostTable, in LayerCost order.
_SCALAR_FIELDS = (
    "folds", "waves", "mac_cycles", "fill_drain_cycles", "compute_cycles",
    "macs", "dense_macs", "mac_utilization", "mapping_efficiency",
    "dram_bytes", "dram_metadata_bytes", "dram_cycles",
    "glb_bytes", "glb_metadata_bytes", "glb_cycles",
    "rf_bytes", "rf_cycles",
    "extraction_ops", "extraction_cycles",
    "a_dram_passes", "b_dram_passes", "b_in_rf",
    "latency_cycles", "latency_s",
    "energy_mac_j", "energy_rf_j", "energy_glb_j", "energy_dram_j",
    "energy_metadata_j", "energy_extraction_j", "energy_j", "edp",
)


@dataclass(frozen=True)
class TermCost:
    requested: str
    executed: str
    mapped: bool
    speedup: float
    mac_cycles: float
    macs: float


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer under one series on one target (all totals over batch)."""

    target: str
    m: int
    k: int
    n: int
    batch: int
    tasd_a: bool
    series: str                       # requested
    executed: str                     # as run (after mapping)
    mapped_from: tuple[str, ...]
    mapped_to: tuple[str, ...]
    terms: tuple[TermCost, ...]
    bound: str
    folds: float
    waves: float
    mac_cycles: float                 # cycles in which MACs issue (excl. fill/drain)
    fill_drain_cycles: float
    compute_cycles: float
    macs: float                       # MACs issued
    dense_macs: float                 # m*k*n*batch
    mac_utilization: float
    mapping_efficiency: float
    dram_bytes: float
    dram_metadata_bytes: float
    dram_cycles: float
    glb_bytes: float
    glb_metadata_bytes: float
    glb_cycles: float
    rf_bytes: float
    rf_cycles: float
    extraction_ops: float
    extraction_cycles: float
    a_dram_passes: float
    b_dram_passes: float
    b_in_rf: float
    latency_cycles: float
    latency_s: float
    energy_mac_j: float
    energy_rf_j: float
    energy_glb_j: float
    energy_dram_j: float
    energy_metadata_j: float
    energy_extraction_j: float
    energy_j: float
    edp: float

    @property
    def energy(self) -> dict[str, float]:
        """Energy by component (J)."""
        return {c: getattr(self, f"energy_{c}_j") for c in ENERGY_COMPONENTS}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "terms":
                v = [t.__dict__.copy() for t in v]
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        d["energy_by_component_j"] = self.energy
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class CostTable:
    """Struct-of-arrays result of :func:`evaluate`: every cost field is a float64
    array of shape ``[n_layers, n_configs]`` (see ``LayerCost`` for meanings);
    ``term_mac_cycles`` / ``term_macs`` are ``[n_layers, n_configs, max_terms]``."""

    target: str
    layers: LayerShapes
    plans: tuple[SeriesPlan, ...]
    bound_code: np.ndarray            # int8 index into BOUNDS
    term_mac_cycles: np.ndarray
    term_macs: np.ndarray
    arrays: dict[str, np.ndarray] = field(repr=False)

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays")
        if arrays is not None and name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def shape(self) -> tuple[int, int]:
        return self.bound_code.shape  # type: ignore[return-value]

    @property
    def configs(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.plans)

    @property
    def bound(self) -> np.ndarray:
        return np.asarray(BOUNDS, dtype=object)[self.bound_code]

    def energy_by_component(self) -> dict[str, np.ndarray]:
        return {c: self.arrays[f"energy_{c}_j"] for c in ENERGY_COMPONENTS}

    def layer_cost(self, i: int, j: int) -> LayerCost:
        L = self.layers
        plan = self.plans[j]
        terms = tuple(
            TermCost(t.requested_label, t.executed_label, t.mapped, t.speedup,
                     float(self.term_mac_cycles[i, j, q]), float(self.term_macs[i, j, q]))
            for q, t in enumerate(plan.terms))
        vals = {f: float(self.arrays[f][i, j]) for f in _SCALAR_FIELDS}
        return LayerCost(
            target=self.target, m=int(L.m[i]), k=int(L.k[i]), n=int(L.n[i]),
            batch=int(L.batch[i]), tasd_a=bool(L.tasd_a[i]),
            series=plan.label, executed=plan.executed_label,
            mapped_from=plan.mapped_from, mapped_to=plan.mapped_to, terms=terms,
            bound=BOUNDS[int(self.bound_code[i, j])], **vals)

    def best(self, objective: str = "edp") -> np.ndarray:
        """Per layer, the index of the config minimising ``objective``
        (``"edp"``, ``"energy_j"``, ``"latency_cycles"``, ...)."""
        return np.argmin(self.arrays[objective], axis=1)

    def totals(self, choice: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
        """Network totals. ``choice=None``: per config, summed over layers
        (arrays [n_configs]); else ``choice[i]`` is layer i's config index and
        the result is scalars. ``edp`` is total energy x total latency."""
        if choice is None:
            lat = self.arrays["latency_s"].sum(axis=0)
            en = self.arrays["energy_j"].sum(axis=0)
            out: dict[str, Any] = {"latency_cycles": self.arrays["latency_cycles"].sum(axis=0),
                                   "latency_s": lat, "energy_j": en}
            for c in ENERGY_COMPONENTS:
                out[f"energy_{c}_j"] = self.arrays[f"energy_{c}_j"].sum(axis=0)
            out["edp"] = en * lat
            return out
        idx = np.asarray(choice, dtype=np.int64)
        rows = np.arange(len(self.layers))
        pick = {k: float(v[rows, idx].sum()) for k, v in self.arrays.items()
                if k in ("latency_cycles", "latency_s", "energy_j")
                or k.startswith("energy_")}
        pick["edp"] = pick["energy_j"] * pick["latency_s"]
        return pick


# --------------------------------------------------------------------------
# The vectorised core
# --------------------------------------------------------------------------


def _shared_md(plans: Sequence[SeriesPlan], bits: float) -> tuple[np.ndarray, np.ndarray]:
    """Per config: the common M of its sparse terms (0 if none or mixed) and
    the shared per-block metadata bits ``min(M, sum_t N_t * bits)``."""
    m_sh = np.zeros(len(plans))
    bits_sh = np.zeros(len(plans))
    for j, p in enumerate(plans):
        sparse = [t.executed for t in p.terms if t.executed is not None]
        if sparse and len({t.m for t in sparse}) == 1:
            m_sh[j] = float(sparse[0].m)
            bits_sh[j] = min(float(sparse[0].m), sum(t.n for t in sparse) * bits)
    return m_sh, bits_sh


def _plans_to_arrays(plans: Sequence[SeriesPlan]):
    C = len(plans)
    T = max(len(p.terms) for p in plans)
    m_e = np.ones((C, T))
    n_e = np.zeros((C, T))
    sp = np.ones((C, T))
    sparse = np.zeros((C, T))
    valid = np.zeros((C, T))
    for j, p in enumerate(plans):
        for q, t in enumerate(p.terms):
            valid[j, q] = 1.0
            sp[j, q] = t.speedup
            if t.executed is None:
                m_e[j, q], n_e[j, q] = 1.0, 1.0
            else:
                m_e[j, q], n_e[j, q] = float(t.executed.m), float(t.executed.n)
                sparse[j, q] = 1.0
    return m_e, n_e, sp, sparse, valid


def _ceil(x: np.ndarray) -> np.ndarray:
    # guard against 7.000000001-style float noise from divisions
    return np.ceil(x - 1e-9)


def evaluate(hw: Hardware | str | Path, layers: LayerShapes | Iterable[Sequence[int]],
             configs: Sequence[SeriesSpec] | SeriesSpec, *, mode: str = "refuse") -> CostTable:
    """Cost of every layer under every candidate series on target ``hw``.

    ``layers``: a :class:`LayerShapes` or a list of ``(m, k, n[, batch])``.
    ``configs``: a sequence of series specs (or a single spec).
    ``mode``: ``"refuse"`` (non-native sparse pattern -> UnsupportedPatternError)
    or ``"map"`` (run it as the next denser native pattern; recorded per term).
    """
    hw = load_hardware(hw)
    if not isinstance(layers, LayerShapes):
        layers = LayerShapes.from_list(layers)
    if isinstance(configs, str) or (hasattr(configs, "terms") and not isinstance(configs, (list, tuple))):
        configs = [configs]
    configs = list(configs)
    if not configs:
        raise ValueError("evaluate: no configs given")
    if len(layers) == 0:
        raise ValueError("evaluate: no layers given")
    plans = tuple(resolve_series(hw, c, mode) for c in configs)

    if hw.extraction is None and layers.tasd_a.any():
        for p in plans:
            if p.has_sparse:
                raise UnsupportedPatternError(
                    f"target {hw.name!r} has no TASD extraction units: cannot decompose "
                    f"activations at run time (TASD-A) for series {p.label}")

    m_e, n_e, sp, sparse, valid = (a[None, :, :] for a in _plans_to_arrays(plans))

    R = float(hw.array.rows)
    Cc = float(hw.array.cols)
    count = float(hw.array.count)
    vb = float(hw.datatype.value_bytes)
    ob = float(hw.datatype.output_bytes)
    bits = float(hw.sparsity.metadata_bits)
    rf, glb, dram, en = hw.memory.rf, hw.memory.glb, hw.memory.dram, hw.energy

    Mo = layers.m.astype(np.float64)[:, None]      # [L, 1]
    K = layers.k.astype(np.float64)[:, None]
    No = layers.n.astype(np.float64)[:, None]
    bt = layers.batch.astype(np.float64)[:, None]
    ta = layers.tasd_a.astype(np.float64)[:, None]
    src = layers.b_source_elems.astype(np.float64)[:, None]
    K3 = K[:, :, None]                                # [L, 1, 1]

    # ---- per term ----------------------------------------------------------
    nblk = _ceil(K3 / m_e) * valid                    # [L, C, T]
    kpad = nblk * m_e
    kc = nblk * n_e
    stream_t = _ceil(kpad / sp)
    sum_stream = stream_t.sum(axis=2)                 # [L, C]
    sum_kc = kc.sum(axis=2)
    sum_kc_sparse = (kc * sparse).sum(axis=2)
    sum_kpad = kpad.sum(axis=2)
    sum_blk_sparse = (nblk * sparse).sum(axis=2)

    # ---- compute -----------------------------------------------------------
    fr = _ceil(Mo / R)
    fc = _ceil(No / Cc)
    folds = bt * fr * fc                              # [L, 1]
    waves = _ceil(folds / count)
    fill = R + Cc - 2.0
    mac_cycles = waves * sum_stream
    if hw.array.fill_drain_overlap:   # pipelined folds: one skew per layer, a fold >= its drain (R)
        compute = waves * np.maximum(sum_stream, R) + fill
    else:                             # SCALE-Sim: skew fill + drain in every fold
        compute = mac_cycles + waves * fill
    fill_drain = compute - mac_cycles
    MN = Mo * No
    macs = bt * MN * sum_kc
    dense_macs = np.broadcast_to(bt * MN * K, macs.shape)
    mac_util = macs / (hw.macs * compute)
    map_eff = np.broadcast_to(MN / (fr * R * fc * Cc), macs.shape)

    # ---- sizes per batch element ------------------------------------------
    a_row = sum_kc * vb                               # on-chip A bytes per row (all terms)
    md_row = sum_kc_sparse * bits / 8.0
    if hw.sparsity.shared_metadata:   # one mask per block for a same-M series
        m_sh, bits_sh = (x[None, :] for x in _shared_md(plans, bits))
        with np.errstate(divide="ignore", invalid="ignore"):
            md_sh = _ceil(K / np.where(m_sh > 0, m_sh, 1.0)) * bits_sh / 8.0
        md_row = np.where(m_sh > 0, md_sh, md_row)
    A_on = Mo * a_row                                 # [L, C]
    MD = Mo * md_row
    dense_A = Mo * K * vb                             # [L, 1]
    B = K * No * vb
    B_src = np.minimum(B, src * vb)                   # DRAM bytes of B per pass (conv: its input)
    Cb = MN * ob
    A_dram = ta * dense_A + (1.0 - ta) * A_on         # DRAM bytes of A per pass
    MD_dram = (1.0 - ta) * MD                         # TASD-A makes metadata on chip
    rows_p = np.minimum(R, Mo)
    cols_p = np.minimum(Cc, No)
    kch = np.minimum(K, K_CHUNK)
    c_tiles = 2.0 * rows_p * cols_p * ob              # double-buffered C tile
    b_panel = K * cols_p * vb                         # one column panel of B
    a_stream = 2.0 * rows_p * a_row * (kch / K)       # double-buffered K-chunk of an A panel
    G = glb.size_bytes
    Gm = glb.metadata_size_bytes

    # DRAM passes, monotone in A's footprint (see docstring):
    #   A resident (all of A fits next to a double-buffered B panel): A once, B once;
    #   else B resident in column chunks of Nc >= Cc: B once, A once per chunk;
    #   else nothing reused beyond one tile: A once per column fold, B once per row fold.
    a_fits = (A_on + 2.0 * b_panel + c_tiles <= G) & (MD <= Gm)
    nc = np.floor((G - a_stream - c_tiles) / (K * vb) / Cc) * Cc
    b_chunks = nc >= Cc
    with np.errstate(divide="ignore", invalid="ignore"):
        pa_chunks = _ceil(No / np.where(b_chunks, nc, 1.0))
    a_passes = np.where(a_fits, 1.0, np.where(b_chunks, pa_chunks, fc))
    b_passes = np.where(a_fits | b_chunks, 1.0, np.broadcast_to(fr, a_fits.shape))
    b_in_rf = (a_fits & (b_panel <= rf.size_bytes)).astype(np.float64)

    # ---- traffic (totals over batch) ---------------------------------------
    dram_data = bt * (A_dram * a_passes + B_src * b_passes + Cb)
    dram_md = bt * MD_dram * a_passes
    dram_bytes = dram_data + dram_md

    glb_b_reads = B * np.where(b_in_rf > 0, 1.0, fr)
    glb_w = bt * (A_on * a_passes + B_src * b_passes + Cb)
    glb_r = bt * (A_on * fc + glb_b_reads + Cb)
    glb_md_w = bt * MD * a_passes
    glb_md_r = bt * MD * fc
    glb_md = glb_md_w + glb_md_r
    glb_bytes = glb_w + glb_r + glb_md

    rf_r = bt * fr * No * sum_kpad * vb
    rf_w = bt * glb_b_reads
    rf_bytes = rf_r + rf_w

    if hw.extraction is not None:
        ext_ops = bt * ta * Mo * sum_blk_sparse * a_passes
        ext_cycles = _ceil(ext_ops / hw.extraction.units) * hw.extraction.cycles_per_block
        ext_pj = hw.extraction.energy_pj_per_block
    else:
        ext_ops = np.zeros_like(macs)
        ext_cycles = np.zeros_like(macs)
        ext_pj = 0.0

    dram_cycles = dram_bytes / hw.dram_bytes_per_cycle
    glb_cycles = glb_bytes / glb.bandwidth_bytes_per_cycle
    rf_cycles = rf_bytes / rf.bandwidth_bytes_per_cycle
    stack = np.stack([compute, dram_cycles, glb_cycles, rf_cycles, ext_cycles])
    bound_code = np.argmax(stack, axis=0).astype(np.int8)
    latency = stack.max(axis=0)
    latency_s = latency / hw.clock_hz

    # ---- energy ------------------------------------------------------------
    pJ = 1e-12
    b_pos = bt * MN * sum_kpad
    md_pe = bt * MN * sum_kc_sparse
    e_mac = (macs * en.mac_pj + (2.0 * macs + b_pos) * en.pe_register_pj) * pJ
    e_rf = (rf_r * rf.read_pj_per_byte + rf_w * rf.write_pj_per_byte) * pJ
    e_glb = (glb_r * glb.read_pj_per_byte + glb_w * glb.write_pj_per_byte) * pJ
    e_dram = dram_data * dram.energy_pj_per_byte * pJ
    e_md = (dram_md * dram.energy_pj_per_byte + glb_md_r * glb.metadata_read_pj_per_byte
            + glb_md_w * glb.metadata_write_pj_per_byte + md_pe * en.pe_register_pj) * pJ
    e_ext = ext_ops * ext_pj * pJ
    energy = e_mac + e_rf + e_glb + e_dram + e_md + e_ext

    shape = macs.shape

    def full(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(x, shape), dtype=np.float64)

    arrays = {
        "folds": full(folds), "waves": full(waves), "mac_cycles": full(mac_cycles),
        "fill_drain_cycles": full(fill_drain), "compute_cycles": full(compute),
        "macs": full(macs), "dense_macs": full(dense_macs), "mac_utilization": full(mac_util),
        "mapping_efficiency": full(map_eff),
        "dram_bytes": full(dram_bytes), "dram_metadata_bytes": full(dram_md),
        "dram_cycles": full(dram_cycles),
        "glb_bytes": full(glb_bytes), "glb_metadata_bytes": full(glb_md),
        "glb_cycles": full(glb_cycles),
        "rf_bytes": full(rf_bytes), "rf_cycles": full(rf_cycles),
        "extraction_ops": full(ext_ops), "extraction_cycles": full(ext_cycles),
        "a_dram_passes": full(a_passes), "b_dram_passes": full(b_passes), "b_in_rf": full(b_in_rf),
        "latency_cycles": full(latency), "latency_s": full(latency_s),
        "energy_mac_j": full(e_mac), "energy_rf_j": full(e_rf), "energy_glb_j": full(e_glb),
        "energy_dram_j": full(e_dram), "energy_metadata_j": full(e_md),
        "energy_extraction_j": full(e_ext), "energy_j": full(energy),
        "edp": full(energy * latency_s),
    }
    term_mac_cycles = waves[:, :, None] * stream_t
    term_macs = (bt * MN)[:, :, None] * kc
    return CostTable(target=hw.name, layers=layers, plans=plans, bound_code=bound_code,
                     term_mac_cycles=term_mac_cycles, term_macs=term_macs, arrays=arrays)


def cost_layer(hw: Hardware | str | Path, m: int, k: int, n: int, series: SeriesSpec = "dense",
               batch: int = 1, *, tasd_a: bool = False, mode: str = "refuse",
               b_source: int | None = None) -> LayerCost:
    """Cost of one GEMM layer under one series (a 1x1 :func:`evaluate`);
    ``b_source``: elements of B's source tensor (a convolution's input)."""
    table = evaluate(hw, LayerShapes.single(m, k, n, batch, tasd_a, b_source), [series], mode=mode)
    return table.layer_cost(0, 0)
