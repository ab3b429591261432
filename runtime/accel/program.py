"""Lowering of a planned module to a tile-level program for the simulated accelerator.

``tasd-plan-accel`` leaves a ``tasd.accel`` plan on every contraction layer
(see :mod:`tasdc.passes.plan_accel`). :func:`lower_module` turns those plans
into a :class:`Program`: one :class:`LayerProgram` per layer, in program
order, each a small tree of loops over tiles whose leaves are instructions.
The tree is compact — a loop runs its body ``count`` times and tiles of equal
size share one body — so a layer with tens of thousands of folds is a few
dozen nodes; :meth:`LayerProgram.expand` yields the flat per-tile stream
lazily when someone wants to look at it.

Dataflow (the one the cost model assumes)
=========================================
Output-stationary: a *fold* (tile) is one ``rows x cols`` block of C held in
the PEs of one array. B's columns for the tile and the partial sums stay put
while the terms ``A1, A2, …`` stream through, so fill/drain and the write-back
of C happen once per fold, whatever the number of terms. How the operands
reach the global buffer (GLB) is the layer's *schedule*, chosen by
:func:`choose_schedule` from the buffer capacities:

``a_resident``
    All of A (every term, compressed, plus metadata) fits in the GLB next to
    a double-buffered B column panel and a double-buffered C tile: A is
    fetched from DRAM once, B column panel by column panel; when one B panel
    also fits the register file (RF), row folds iterate inside a column fold
    and the panel is loaded into the RF once.
``b_chunks``
    B is held in column chunks of ``b_chunk_cols`` (a multiple of the array
    width): per chunk, B is fetched once and A streams through once.
``tile``
    Nothing is reused beyond one tile: every fold fetches its A row panel and
    its B column panel.

The loop nest is ``batch / [b_chunk] / col_fold / row_fold`` with the terms
innermost in each fold.

Instruction set
===============
Every instruction is an :class:`Instr`; its fields are in elements and bytes
(``bytes`` = data, ``md_bytes`` = metadata), cycles and counts:

=============  ==========================================================
``DMA_A``      DRAM -> GLB: rows of one compressed term of A (TASD-W),
               ``bytes`` values + ``md_bytes`` metadata.
``DMA_A_DENSE`` DRAM -> TASD units: rows of dense A (TASD-A).
``EXTRACT``    TASD units -> GLB: one term of those rows extracted at run
               time; ``blocks`` block selections (0 for a dense term that
               passes through), ``bytes`` + ``md_bytes`` written.
``DMA_B``      DRAM -> GLB: ``cols`` columns of B (all of K); for a
               convolution the share of its input those columns need
               (the input is read once per B pass, the im2col panels are
               formed on chip by ``LOAD_B``).
``LOAD_B``     GLB -> RF: the B column panel of a fold (``cols`` x K).
``LOAD_A_TERM`` GLB -> array edge: the fold's rows of one term, with
               metadata.
``FEED_B``     RF -> array: the dense B positions one term's blocks touch
               (each term re-reads B from the RF).
``MAC``        one term on one fold: ``cycles`` stream cycles, ``macs``
               issued, ``positions`` dense B values passing a PE,
               ``sparse`` (metadata register read per MAC).
``DRAIN``      the fold's systolic skew (fill + drain), ``cycles``; with
               ``array.fill_drain_overlap`` only the part of the fold's C
               drain (``rows`` cycles) its stream does not hide.
``FILL``       (``array.fill_drain_overlap`` only) once per layer, outside
               the folds: the one skew fill + drain of the pipelined folds.
``STORE_C``    array -> GLB -> DRAM: the fold's C tile, ``bytes``.
=============  ==========================================================

Counts are derived here by walking the tiles of each layer; nothing in this
module calls the cost model's formulas (:mod:`.costmodel` is imported only
for its chunk-size constant), so the simulator agreeing with the cost model
is a real cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from tasdc.errors import TasdcError

from .costmodel import K_CHUNK
from .hardware import Hardware, load_hardware

__all__ = [
    "ACCEL_ATTR",
    "INSTRUCTION_KINDS",
    "SCHEDULES",
    "Instr",
    "Loop",
    "TermGeometry",
    "Schedule",
    "LayerPlan",
    "LayerProgram",
    "Program",
    "ProgramError",
    "choose_schedule",
    "term_geometry",
    "lower_layer",
    "lower_plans",
    "lower_module",
    "read_plans",
]

ACCEL_ATTR = "tasd.accel"
INSTRUCTION_KINDS = (
    "DMA_A", "DMA_A_DENSE", "EXTRACT", "DMA_B", "LOAD_B", "LOAD_A_TERM", "FEED_B", "MAC", "DRAIN", "FILL",
    "STORE_C",
)
SCHEDULES = ("a_resident", "b_chunks", "tile")


class ProgramError(TasdcError):
    """A plan that cannot be lowered (malformed, stale or for another target)."""


# --------------------------------------------------------------------------
# Program nodes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instr:
    """One tile-level instruction (see the module docstring for the kinds)."""

    kind: str
    term: int = -1
    rows: int = 0
    cols: int = 0
    bytes: float = 0.0
    md_bytes: float = 0.0
    cycles: int = 0
    macs: int = 0
    positions: int = 0
    blocks: int = 0
    sparse: bool = False

    def __str__(self) -> str:
        parts = [self.kind]
        if self.term >= 0:
            parts.append(f"t{self.term}")
        if self.rows or self.cols:
            parts.append(f"tile={self.rows}x{self.cols}" if self.rows and self.cols
                         else (f"rows={self.rows}" if self.rows else f"cols={self.cols}"))
        for name in ("bytes", "md_bytes", "cycles", "macs", "positions", "blocks"):
            v = getattr(self, name)
            if v:
                parts.append(f"{name}={_fmt_num(v)}")
        if self.sparse:
            parts.append("sparse")
        return " ".join(parts)


@dataclass(frozen=True)
class Loop:
    """``count`` repetitions of ``body``; a ``fold`` loop's body is one tile."""

    label: str
    count: int
    body: tuple["Node", ...]
    fold: bool = False


Node = Union[Instr, Loop]


def _fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# --------------------------------------------------------------------------
# Plans (read back from the IR)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanTerm:
    requested: str          # "2:4", or "dense" for a dense layer
    executed: str           # "2:4" or "dense"
    speedup: float
    mapped: bool


@dataclass(frozen=True)
class LayerPlan:
    """The ``tasd.accel`` attribute of one layer, as Python values."""

    name: str
    op: str
    target: str
    mode: str
    kind: str
    gemm: tuple[int, int, int, int]     # batch, M, K, N (A[M, K] is the structured operand)
    tasd_a: bool
    series: str
    executed: str
    terms: tuple[PlanTerm, ...]
    schedule: str
    b_chunk_cols: int
    b_in_rf: bool
    b_source: int = 0       # elements of B's source (a conv's input); 0 = K*N
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, name: str, op: str, d: dict[str, Any]) -> "LayerPlan":
        try:
            raw_terms = d["terms"]
            keys = sorted(raw_terms, key=lambda k: int(k[1:]))
            terms = tuple(
                PlanTerm(str(raw_terms[k]["requested"]), str(raw_terms[k]["executed"]),
                         float(raw_terms[k]["speedup"]), bool(raw_terms[k]["mapped"]))
                for k in keys)
            gemm = tuple(int(v) for v in d["gemm"])
            if len(gemm) != 4 or not terms:
                raise ValueError("bad gemm or no terms")
            return cls(name=name, op=op, target=str(d["target"]), mode=str(d["mode"]), kind=str(d["kind"]),
                       gemm=gemm,  # type: ignore[arg-type]
                       tasd_a=bool(d["tasd_a"]), series=str(d["series"]), executed=str(d["executed"]),
                       terms=terms, schedule=str(d["schedule"]), b_chunk_cols=int(d["b_chunk_cols"]),
                       b_in_rf=bool(d["b_in_rf"]), b_source=int(d.get("b_source", 0)), attrs=dict(d))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ProgramError(f"layer '{name}': malformed {ACCEL_ATTR} attribute ({error})") from None


def read_plans(module: Any) -> list[LayerPlan]:
    """Every ``tasd.accel`` plan of ``module`` (an ``ir.Module`` or module op), in program order."""
    from torch_mlir import ir

    from tasdc.report import LAYER_ATTR, from_attr

    operation = getattr(module, "operation", module)
    plans: list[LayerPlan] = []

    def visit(op: Any) -> Any:
        view = op.opview
        if ACCEL_ATTR in view.attributes:
            name = (ir.StringAttr(view.attributes[LAYER_ATTR]).value
                    if LAYER_ATTR in view.attributes else f"layer_{len(plans)}")
            plans.append(LayerPlan.from_dict(name, op.name, from_attr(view.attributes[ACCEL_ATTR])))
        return ir.WalkResult.ADVANCE

    operation.walk(visit)
    return plans


# --------------------------------------------------------------------------
# Geometry and schedule
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TermGeometry:
    """How one executed term covers a row of A of reduction length K."""

    index: int
    requested: str
    executed: str
    n: int              # 1:1 for a dense term (every position kept)
    m: int
    speedup: float
    sparse: bool
    blocks: int         # blocks per row (ceil(K / m))
    kpad: int           # K padded to whole blocks
    kept: int           # kept values per row
    stream: int         # cycles one fold spends streaming this term


def _parse_executed(label: str) -> tuple[int, int] | None:
    if label == "dense":
        return None
    n, _, m = label.partition(":")
    return int(n), int(m)


def term_geometry(index: int, term: PlanTerm, k: int) -> TermGeometry:
    """Walk one row of A in blocks of the executed pattern."""
    pat = _parse_executed(term.executed)
    n, m = (1, 1) if pat is None else pat
    if pat is not None and n == m:   # an explicitly dense N:N term
        n, m = 1, 1
    sparse = pat is not None and pat[0] != pat[1]
    blocks = -(-k // m)
    kpad = blocks * m
    kept = blocks * n
    # The array consumes `speedup` dense K positions of A per cycle.
    stream = math.ceil(kpad / term.speedup - 1e-9)
    return TermGeometry(index, term.requested, term.executed, n, m, term.speedup, sparse,
                        blocks, kpad, kept, stream)


def metadata_bytes_per_row(hw: Hardware, terms: list[TermGeometry]) -> list[float]:
    """Metadata bytes per row of A of each term: ``metadata_bits`` per kept
    value, or, with ``sparsity.shared_metadata`` and one M for all sparse
    terms, one ``min(M, sum N * bits)``-bit word per block shared by the
    series (split among the terms in proportion to their N)."""
    bits = hw.sparsity.metadata_bits
    sparse = [t for t in terms if t.sparse]
    if hw.sparsity.shared_metadata and sparse and len({t.m for t in sparse}) == 1:
        total_n = sum(t.n for t in sparse)
        word = min(sparse[0].m, total_n * bits)
        return [t.blocks * word * t.n / total_n / 8.0 if t.sparse else 0.0 for t in terms]
    return [t.kept * bits / 8.0 if t.sparse else 0.0 for t in terms]


@dataclass(frozen=True)
class Schedule:
    """How a layer's operands are staged in the GLB (see module docstring)."""

    kind: str
    b_chunk_cols: int = 0
    b_in_rf: bool = False


def choose_schedule(hw: Hardware, gemm: tuple[int, int, int, int], terms: list[TermGeometry]) -> Schedule:
    """Allocate the GLB for one layer: A resident, else B in column chunks, else per tile.

    Footprints (bytes): all of A as stored on chip (kept values of every term)
    plus a double-buffered B column panel and a double-buffered C tile; for B
    chunks, a double-buffered K-chunk (``K_CHUNK`` positions) of one A row
    panel and the C tiles leave the rest of the GLB to whole column folds of B.
    """
    _, mo, k, no = gemm
    rows, cols = hw.array.rows, hw.array.cols
    vb, ob = hw.datatype.value_bytes, hw.datatype.output_bytes
    glb = hw.memory.glb
    a_row = sum(t.kept for t in terms) * vb
    md_row = sum(metadata_bytes_per_row(hw, terms))
    rows_p, cols_p = min(rows, mo), min(cols, no)
    c_tiles = 2.0 * rows_p * cols_p * ob
    b_panel = k * cols_p * vb
    if mo * a_row + 2.0 * b_panel + c_tiles <= glb.size_bytes and mo * md_row <= glb.metadata_size_bytes:
        return Schedule("a_resident", 0, b_panel <= hw.memory.rf.size_bytes)
    a_stream = 2.0 * rows_p * a_row * (min(k, K_CHUNK) / k)
    chunk = math.floor((glb.size_bytes - a_stream - c_tiles) / (k * vb) / cols) * cols
    if chunk >= cols:
        return Schedule("b_chunks", int(chunk), False)
    return Schedule("tile", 0, False)


def _runs(total: int, tile: int) -> list[tuple[int, int]]:
    """Equal-size pieces of ``total`` cut every ``tile``: [(size, how many)]."""
    full, rem = divmod(total, tile)
    out = []
    if full:
        out.append((tile, full))
    if rem:
        out.append((rem, 1))
    return out


# --------------------------------------------------------------------------
# Programs
# --------------------------------------------------------------------------


@dataclass
class LayerProgram:
    """The instruction tree of one layer."""

    plan: LayerPlan
    schedule: Schedule
    terms: tuple[TermGeometry, ...]
    root: Loop

    @property
    def name(self) -> str:
        return self.plan.name

    def expand(self) -> Iterator[Instr]:
        """The flat instruction stream, one tile at a time (lazy)."""

        def walk(node: Node) -> Iterator[Instr]:
            if isinstance(node, Instr):
                yield node
                return
            for _ in range(node.count):
                for child in node.body:
                    yield from walk(child)

        return walk(self.root)

    def listing(self) -> str:
        """The loop nest as indented text."""
        b, mo, k, no = self.plan.gemm
        lines = [f"layer {self.plan.name}: gemm {b}x{mo}x{k}x{no} series {self.plan.series} "
                 f"-> {self.plan.executed}{' (TASD-A)' if self.plan.tasd_a else ''}, schedule {self.schedule.kind}"
                 + (f" ({self.schedule.b_chunk_cols} columns)" if self.schedule.kind == "b_chunks" else "")
                 + (", B panel in RF" if self.schedule.b_in_rf else "")]

        def walk(node: Node, depth: int) -> None:
            pad = "  " * depth
            if isinstance(node, Instr):
                lines.append(pad + str(node))
                return
            lines.append(f"{pad}{node.label} x{node.count}{' (fold)' if node.fold else ''}:")
            for child in node.body:
                walk(child, depth + 1)

        walk(self.root, 1)
        return "\n".join(lines)


@dataclass
class Program:
    """Per-layer instruction trees for one target, in program order."""

    hardware: Hardware
    layers: list[LayerProgram]

    @property
    def target(self) -> str:
        return self.hardware.name

    def listing(self) -> str:
        return "\n".join(layer.listing() for layer in self.layers)


def lower_layer(plan: LayerPlan, hw: Hardware) -> LayerProgram:
    """Build the instruction tree of one planned layer by walking its tiles."""
    batch, mo, k, no = plan.gemm
    terms = [term_geometry(i, t, k) for i, t in enumerate(plan.terms)]
    schedule = choose_schedule(hw, plan.gemm, terms)
    if plan.schedule != schedule.kind or plan.b_chunk_cols != schedule.b_chunk_cols \
            or plan.b_in_rf != schedule.b_in_rf:
        raise ProgramError(
            f"layer '{plan.name}': the plan's schedule ({plan.schedule}, {plan.b_chunk_cols} columns, "
            f"b_in_rf={plan.b_in_rf}) does not fit target '{hw.name}' ({schedule.kind}, "
            f"{schedule.b_chunk_cols} columns, b_in_rf={schedule.b_in_rf}); re-run tasd-plan-accel")
    R, Cc = hw.array.rows, hw.array.cols
    vb, ob = hw.datatype.value_bytes, hw.datatype.output_bytes
    md_row = metadata_bytes_per_row(hw, terms)
    skew = R + Cc - 2
    overlap = hw.array.fill_drain_overlap
    # exposed drain per fold: all of the skew, or (pipelined folds) what the stream does not hide
    drain = max(0, R - sum(t.stream for t in terms)) if overlap else skew
    # DRAM bytes of B per column: a conv reads its input (once per B pass), a GEMM its B
    b_col_bytes = min(k * no, plan.b_source or k * no) / no * vb

    def md(t: TermGeometry, rows: int) -> float:
        return rows * md_row[t.index]

    def fetch_a(rows: int) -> list[Instr]:
        if plan.tasd_a:
            out = [Instr("DMA_A_DENSE", rows=rows, bytes=rows * k * vb)]
            out += [Instr("EXTRACT", term=t.index, rows=rows, blocks=rows * t.blocks if t.sparse else 0,
                          bytes=rows * t.kept * vb, md_bytes=md(t, rows), sparse=t.sparse) for t in terms]
            return out
        return [Instr("DMA_A", term=t.index, rows=rows, bytes=rows * t.kept * vb, md_bytes=md(t, rows),
                      sparse=t.sparse) for t in terms]

    def fetch_b(cols: int) -> Instr:
        return Instr("DMA_B", cols=cols, bytes=cols * b_col_bytes)

    def load_b(cols: int) -> Instr:
        return Instr("LOAD_B", cols=cols, bytes=k * cols * vb)

    def fold(rows: int, cols: int, *, load: bool, fetch: bool) -> tuple[Node, ...]:
        body: list[Node] = []
        if fetch:
            body += fetch_a(rows)
            body.append(fetch_b(cols))
        if load:
            body.append(load_b(cols))
        for t in terms:
            body.append(Instr("LOAD_A_TERM", term=t.index, rows=rows, cols=cols, bytes=rows * t.kept * vb,
                              md_bytes=md(t, rows), sparse=t.sparse))
            body.append(Instr("FEED_B", term=t.index, rows=rows, cols=cols, bytes=cols * t.kpad * vb))
            body.append(Instr("MAC", term=t.index, rows=rows, cols=cols, cycles=t.stream,
                              macs=rows * cols * t.kept, positions=rows * cols * t.kpad, sparse=t.sparse))
        body.append(Instr("DRAIN", rows=rows, cols=cols, cycles=drain))
        body.append(Instr("STORE_C", rows=rows, cols=cols, bytes=rows * cols * ob))
        return tuple(body)

    def row_folds(cols: int, *, load: bool, fetch: bool = False) -> list[Node]:
        return [Loop("row_fold", n, fold(r, cols, load=load, fetch=fetch), fold=True) for r, n in _runs(mo, R)]

    body: list[Node] = []
    if schedule.kind == "a_resident":
        body += fetch_a(mo)
        for c, n in _runs(no, Cc):
            inner: list[Node] = [fetch_b(c)]
            if schedule.b_in_rf:
                inner.append(load_b(c))
            inner += row_folds(c, load=not schedule.b_in_rf)
            body.append(Loop("col_fold", n, tuple(inner)))
    elif schedule.kind == "b_chunks":
        for width, n in _runs(no, schedule.b_chunk_cols):
            inner = [fetch_b(width), *fetch_a(mo)]
            inner += [Loop("col_fold", nc, tuple(row_folds(c, load=True))) for c, nc in _runs(width, Cc)]
            body.append(Loop("b_chunk", n, tuple(inner)))
    else:
        for c, n in _runs(no, Cc):
            body.append(Loop("col_fold", n, tuple(row_folds(c, load=True, fetch=True))))
    root = Loop("batch", batch, tuple(body))
    if overlap:
        root = Loop("layer", 1, (root, Instr("FILL", cycles=skew)))
    return LayerProgram(plan=plan, schedule=schedule, terms=tuple(terms), root=root)


def lower_plans(plans: list[LayerPlan], hw: Hardware | str) -> Program:
    """Lower already-read plans for target ``hw``."""
    hw = load_hardware(hw)
    for plan in plans:
        if plan.target != hw.name:
            raise ProgramError(f"layer '{plan.name}' is planned for target '{plan.target}', not '{hw.name}'; "
                               "re-run tasd-plan-accel")
    return Program(hardware=hw, layers=[lower_layer(p, hw) for p in plans])


def lower_module(module: Any, hw: Hardware | str) -> Program:
    """The program of a module planned by ``tasd-plan-accel`` for ``hw``."""
    return lower_plans(read_plans(module), hw)
