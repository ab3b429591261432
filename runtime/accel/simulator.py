"""A runtime for the simulated structured-sparse accelerator, with a per-layer trace.

:func:`simulate_program` executes a :class:`~.program.Program` (built by
:func:`~.program.lower_module` from a module planned by ``tasd-plan-accel``)
on its :class:`~.hardware.Hardware`: it walks every layer's loop nest,
issues each instruction ``count`` times (the product of its enclosing loop
counts) and records what the hardware did. :func:`simulate_module` plans,
lowers and runs a module on a target and on a baseline (``dense``) and
returns a :class:`SimReport` with ``table()`` and ``to_json()``.

Execution semantics
===================
Instructions move bytes between DRAM, the global buffer (GLB, data and
metadata banks), the register file (RF) and the array, or keep the array
busy. Per instruction kind (``b`` = ``bytes``, ``md`` = ``md_bytes``)::

    DMA_A        DRAM read b + md        GLB write b, metadata write md
    DMA_A_DENSE  DRAM read b             (into the TASD units)
    EXTRACT      TASD units: blocks      GLB write b, metadata write md
    DMA_B        DRAM read b             GLB write b
    LOAD_B       GLB read b              RF write b
    LOAD_A_TERM  GLB read b, metadata read md
    FEED_B       RF read b
    MAC          macs issued, B positions passing PEs, cycles of the fold
    DRAIN        cycles of the fold (systolic fill + drain)
    FILL         cycles once per layer (pipelined folds' one fill + drain)
    STORE_C      GLB write b, GLB read b, DRAM write b

Folds (the bodies of ``fold`` loops) are dispatched to the ``array.count``
arrays longest first, ``count`` at a time; a wave lasts as long as its
longest fold (the compute cycles). Memory levels and the TASD units work
concurrently with the arrays (double buffering), each at its bandwidth:
cycles = bytes / bandwidth (DRAM GB/s converted with the clock), extraction
``ceil(blocks / units) * cycles_per_block``. A layer's latency is the largest
of compute, DRAM, GLB, RF and extraction cycles; ``bound`` names it (ties go
to the earlier of that list). Energy is counted per event with the
hardware's per-byte / per-access energies: MAC energy per MAC issued plus PE
register accesses (A in, partial-sum update, each B position), RF / GLB /
DRAM per byte read or written, metadata (DRAM and GLB metadata bytes, one PE
metadata-register read per sparse MAC), extraction per block. These are the
accounting rules of :mod:`.costmodel`, which predicts the same numbers from
closed-form formulas; the test suite checks that both agree.

JSON schema (:meth:`SimReport.to_json`)
=======================================
::

    {
      "schema": "tasdc-simulate/1",
      "source": str,                  # model file / module name ("" if unknown)
      "config": str,                  # series requested at compile time ("mixed" if layers differ)
      "target": RUN,
      "baseline": RUN | null,         # the same layers as dense series on the baseline target
      "ratios": {"latency": float, "energy": float, "edp": float} | null
                                      # baseline / target totals (> 1: the target is better)
    }
    RUN = {
      "target": str, "mode": "map" | "refuse", "clock_ghz": float,
      "layers": [LAYER, ...],         # program order
      "totals": TOTALS
    }
    LAYER = {
      "name": str, "op": str,         # tasd.layer and the MLIR op name
      "kind": "matmul" | "batch_matmul" | "conv2d" | "depthwise_conv2d" | "grouped_conv2d",
      "gemm": [batch, M, K, N],       # A[M, K] is the structured operand
      "tasd_a": bool,                 # A decomposed at run time
      "b_source": int,                # elements of B before im2col (conv: its input), DRAM reads it
      "series": str, "executed": str, # requested / as executed ("dense" or "N:M+...")
      "mapped_from": str, "mapped_to": str,   # "+"-joined terms that were mapped ("" if none)
      "schedule": "a_resident" | "b_chunks" | "tile", "b_chunk_cols": int, "b_in_rf": bool,
      "instructions": {KIND: int},    # instructions issued, by kind
      "folds": int, "waves": int,
      "macs": int,                    # MACs issued (effectual work of the executed series)
      "dense_macs": int,              # batch*M*K*N, the dense-equivalent work
      "sparse_macs": int,             # MACs of sparse terms (read metadata)
      "b_positions": int,             # dense B values passing PEs
      "mac_cycles": int, "fill_drain_cycles": int, "compute_cycles": int,   # cycles
      "dram_bytes": float, "dram_metadata_bytes": float, "dram_cycles": float,
      "glb_bytes": float, "glb_metadata_bytes": float, "glb_cycles": float,
      "rf_bytes": float, "rf_cycles": float,
      "extraction_ops": int, "extraction_cycles": int,     # block selections, cycles
      "a_dram_passes": int, "b_dram_passes": int,          # times A / B is read from DRAM
      "latency_cycles": float, "latency_s": float, "bound": "compute" | "dram" | "glb" | "rf" | "extraction",
      "mac_utilization": float,       # macs / (PEs * compute_cycles)
      "energy": {"mac"|"rf"|"glb"|"dram"|"metadata"|"extraction": float},   # J
      "energy_j": float,              # J
      "edp": float                    # J*s (energy_j * latency_s)
    }
    TOTALS = sums over layers of every count, byte, cycle and energy field
             (same names, plus "instructions"), "latency_s" (s), "energy_j" (J),
             "energy" by component (J), "edp" = energy_j * latency_s (J*s)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .costmodel import BOUNDS, ENERGY_COMPONENTS
from .hardware import Hardware, load_hardware
from .program import INSTRUCTION_KINDS, Instr, LayerProgram, Loop, Program, lower_module, read_plans

__all__ = ["LayerTrace", "SimRun", "SimReport", "simulate_program", "simulate_layer", "simulate_module",
           "SCHEMA"]

SCHEMA = "tasdc-simulate/1"

# Counter updates per instruction kind: (counter, instruction field).
_EFFECTS: dict[str, tuple[tuple[str, str], ...]] = {
    "DMA_A": (("dram_data", "bytes"), ("dram_md", "md_bytes"), ("glb_w", "bytes"), ("glb_md_w", "md_bytes")),
    "DMA_A_DENSE": (("dram_data", "bytes"),),
    "EXTRACT": (("ext_ops", "blocks"), ("glb_w", "bytes"), ("glb_md_w", "md_bytes")),
    "DMA_B": (("dram_data", "bytes"), ("glb_w", "bytes"), ("b_cols", "cols")),
    "LOAD_B": (("glb_r", "bytes"), ("rf_w", "bytes")),
    "LOAD_A_TERM": (("glb_r", "bytes"), ("glb_md_r", "md_bytes")),
    "FEED_B": (("rf_r", "bytes"),),
    "MAC": (("macs", "macs"), ("positions", "positions")),
    "DRAIN": (),
    "FILL": (),
    "STORE_C": (("glb_w", "bytes"), ("glb_r", "bytes"), ("dram_data", "bytes")),
}
assert set(_EFFECTS) == set(INSTRUCTION_KINDS)

# Fields of a LayerTrace that add up over layers.
_ADDITIVE = (
    "folds", "waves", "macs", "dense_macs", "sparse_macs", "b_positions",
    "mac_cycles", "fill_drain_cycles", "compute_cycles",
    "dram_bytes", "dram_metadata_bytes", "dram_cycles", "glb_bytes", "glb_metadata_bytes", "glb_cycles",
    "rf_bytes", "rf_cycles", "extraction_ops", "extraction_cycles", "latency_cycles", "latency_s",
    *(f"energy_{c}_j" for c in ENERGY_COMPONENTS), "energy_j",
)


@dataclass
class LayerTrace:
    """What one layer did on the simulated target (totals over its batch)."""

    name: str
    op: str
    kind: str
    gemm: tuple[int, int, int, int]
    tasd_a: bool
    series: str
    executed: str
    b_source: int                 # elements of B before im2col (a conv's input; K*N for a GEMM)
    mapped_from: str
    mapped_to: str
    schedule: str
    b_chunk_cols: int
    b_in_rf: bool
    instructions: dict[str, int]
    folds: int
    waves: int
    macs: int
    dense_macs: int
    sparse_macs: int
    b_positions: int
    mac_cycles: int
    fill_drain_cycles: int
    compute_cycles: int
    dram_bytes: float
    dram_metadata_bytes: float
    dram_cycles: float
    glb_bytes: float
    glb_metadata_bytes: float
    glb_cycles: float
    rf_bytes: float
    rf_cycles: float
    extraction_ops: int
    extraction_cycles: int
    a_dram_passes: int
    b_dram_passes: int
    latency_cycles: float
    latency_s: float
    bound: str
    mac_utilization: float
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

    @property
    def cycles(self) -> dict[str, float]:
        """Cycles by level (the bound is the largest)."""
        return {"compute": self.compute_cycles, "dram": self.dram_cycles, "glb": self.glb_cycles,
                "rf": self.rf_cycles, "extraction": self.extraction_cycles}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name.startswith("energy_") and name != "energy_j":
                continue
            value = getattr(self, name)
            d[name] = list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, dict) else value)
        d["energy"] = self.energy
        return d


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


class _Counters:
    def __init__(self) -> None:
        self.values: dict[str, float] = dict.fromkeys(
            ("dram_data", "dram_md", "glb_w", "glb_r", "glb_md_w", "glb_md_r", "rf_w", "rf_r",
             "macs", "positions", "sparse_macs", "ext_ops", "a_rows", "b_cols", "fill"), 0)
        self.issued: Counter[str] = Counter()
        self.folds: list[tuple[int, int, int]] = []   # (fold cycles, MAC cycles, how many)

    def issue(self, ins: Instr, times: int) -> None:
        self.issued[ins.kind] += times
        v = self.values
        for counter, attr in _EFFECTS[ins.kind]:
            v[counter] += getattr(ins, attr) * times
        if ins.kind == "FILL":
            v["fill"] += ins.cycles * times
        if ins.kind == "MAC" and ins.sparse:
            v["sparse_macs"] += ins.macs * times
        if ins.kind == "DMA_A_DENSE" or (ins.kind == "DMA_A" and ins.term == 0):
            v["a_rows"] += ins.rows * times

    def run(self, node: Loop | Instr, times: int) -> None:
        if isinstance(node, Instr):
            self.issue(node, times)
            return
        times *= node.count
        if node.fold:
            mac = sum(i.cycles for i in node.body if isinstance(i, Instr) and i.kind == "MAC")
            other = sum(i.cycles for i in node.body if isinstance(i, Instr) and i.kind == "DRAIN")
            self.folds.append((mac + other, mac, times))
        for child in node.body:
            self.run(child, times)


def _dispatch(folds: list[tuple[int, int, int]], arrays: int) -> tuple[int, int, int, int]:
    """Folds issued longest first, ``arrays`` at a time: (folds, waves, cycles, MAC cycles)."""
    start = waves = cycles = mac = 0
    for total, mac_cycles, n in sorted(folds, key=lambda f: -f[0]):
        # waves whose first (longest) fold falls into this run
        starts = -(-(start + n) // arrays) - -(-start // arrays)
        waves += starts
        cycles += starts * total
        mac += starts * mac_cycles
        start += n
    return start, waves, cycles, mac


def simulate_layer(layer: LayerProgram, hw: Hardware) -> LayerTrace:
    """Execute one layer's instructions on ``hw`` and record the trace."""
    ctr = _Counters()
    ctr.run(layer.root, 1)
    v = ctr.values
    plan = layer.plan
    batch, mo, k, no = plan.gemm
    folds, waves, compute, mac_cycles = _dispatch(ctr.folds, hw.array.count)
    compute += int(v["fill"])

    dram_bytes = v["dram_data"] + v["dram_md"]
    glb_md = v["glb_md_w"] + v["glb_md_r"]
    glb_bytes = v["glb_w"] + v["glb_r"] + glb_md
    rf_bytes = v["rf_r"] + v["rf_w"]
    ext_ops = int(v["ext_ops"])
    if hw.extraction is not None and ext_ops:
        ext_cycles = -(-ext_ops // hw.extraction.units) * hw.extraction.cycles_per_block
        ext_pj = hw.extraction.energy_pj_per_block
    else:
        ext_cycles, ext_pj = 0, 0.0
    levels = (compute, dram_bytes / hw.dram_bytes_per_cycle,
              glb_bytes / hw.memory.glb.bandwidth_bytes_per_cycle,
              rf_bytes / hw.memory.rf.bandwidth_bytes_per_cycle, ext_cycles)
    latency = max(levels)
    bound = BOUNDS[levels.index(latency)]
    latency_s = latency / hw.clock_hz

    pj = 1e-12
    en, mem = hw.energy, hw.memory
    macs = v["macs"]
    e_mac = (macs * en.mac_pj + (2.0 * macs + v["positions"]) * en.pe_register_pj) * pj
    e_rf = (v["rf_r"] * mem.rf.read_pj_per_byte + v["rf_w"] * mem.rf.write_pj_per_byte) * pj
    e_glb = (v["glb_r"] * mem.glb.read_pj_per_byte + v["glb_w"] * mem.glb.write_pj_per_byte) * pj
    e_dram = v["dram_data"] * mem.dram.energy_pj_per_byte * pj
    e_md = (v["dram_md"] * mem.dram.energy_pj_per_byte + v["glb_md_r"] * mem.glb.metadata_read_pj_per_byte
            + v["glb_md_w"] * mem.glb.metadata_write_pj_per_byte + v["sparse_macs"] * en.pe_register_pj) * pj
    e_ext = ext_ops * ext_pj * pj
    energy = e_mac + e_rf + e_glb + e_dram + e_md + e_ext
    attrs = plan.attrs
    return LayerTrace(
        name=plan.name, op=plan.op, kind=plan.kind, gemm=plan.gemm, tasd_a=plan.tasd_a,
        series=plan.series, executed=plan.executed, b_source=plan.b_source or k * no,
        mapped_from=str(attrs.get("mapped_from", "")), mapped_to=str(attrs.get("mapped_to", "")),
        schedule=layer.schedule.kind, b_chunk_cols=layer.schedule.b_chunk_cols, b_in_rf=layer.schedule.b_in_rf,
        instructions={kind: ctr.issued[kind] for kind in INSTRUCTION_KINDS if ctr.issued[kind]},
        folds=folds, waves=waves, macs=int(macs), dense_macs=batch * mo * k * no,
        sparse_macs=int(v["sparse_macs"]), b_positions=int(v["positions"]),
        mac_cycles=mac_cycles, fill_drain_cycles=compute - mac_cycles, compute_cycles=compute,
        dram_bytes=dram_bytes, dram_metadata_bytes=v["dram_md"], dram_cycles=levels[1],
        glb_bytes=glb_bytes, glb_metadata_bytes=glb_md, glb_cycles=levels[2],
        rf_bytes=rf_bytes, rf_cycles=levels[3],
        extraction_ops=ext_ops, extraction_cycles=int(ext_cycles),
        a_dram_passes=_num(v["a_rows"] / (batch * mo)), b_dram_passes=_num(v["b_cols"] / (batch * no)),
        latency_cycles=latency, latency_s=latency_s, bound=bound,
        mac_utilization=macs / (hw.macs * compute) if compute else 0.0,
        energy_mac_j=e_mac, energy_rf_j=e_rf, energy_glb_j=e_glb, energy_dram_j=e_dram,
        energy_metadata_j=e_md, energy_extraction_j=e_ext, energy_j=energy, edp=energy * latency_s,
    )


@dataclass
class SimRun:
    """One target's run of a program: per-layer traces and totals."""

    target: str
    mode: str
    hardware: Hardware
    layers: list[LayerTrace]
    remarks: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, Any]:
        """Sums over layers; ``edp`` = total energy x total latency."""
        out: dict[str, Any] = {name: sum(getattr(t, name) for t in self.layers) for name in _ADDITIVE}
        issued: Counter[str] = Counter()
        for t in self.layers:
            issued.update(t.instructions)
        out["instructions"] = {k: issued[k] for k in INSTRUCTION_KINDS if issued[k]}
        out["energy"] = {c: out[f"energy_{c}_j"] for c in ENERGY_COMPONENTS}
        out["edp"] = out["energy_j"] * out["latency_s"]
        return out

    def layer(self, name: str) -> LayerTrace:
        for t in self.layers:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        totals = {k: v for k, v in self.totals.items() if not (k.startswith("energy_") and k != "energy_j")}
        return {"target": self.target, "mode": self.mode, "clock_ghz": self.hardware.technology.clock_ghz,
                "layers": [t.to_dict() for t in self.layers], "totals": totals}


def simulate_program(program: Program, mode: str = "map") -> SimRun:
    """Run every layer of ``program`` on its hardware."""
    hw = program.hardware
    return SimRun(target=hw.name, mode=mode, hardware=hw,
                  layers=[simulate_layer(layer, hw) for layer in program.layers])


@dataclass
class SimReport:
    """The simulation of one model on a target, next to a baseline."""

    run: SimRun
    baseline: SimRun | None = None
    source: str = ""
    config: str = ""

    @property
    def layers(self) -> list[LayerTrace]:
        return self.run.layers

    @property
    def totals(self) -> dict[str, Any]:
        return self.run.totals

    @property
    def ratios(self) -> dict[str, float] | None:
        """Baseline / target totals for latency, energy and EDP (> 1: the target is better)."""
        if self.baseline is None:
            return None
        t, b = self.run.totals, self.baseline.totals
        return {"latency": _ratio(b["latency_s"], t["latency_s"]), "energy": _ratio(b["energy_j"], t["energy_j"]),
                "edp": _ratio(b["edp"], t["edp"])}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "source": self.source, "config": self.config, "target": self.run.to_dict(),
                "baseline": None if self.baseline is None else self.baseline.to_dict(), "ratios": self.ratios}

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (schema in the module docstring)."""
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        """Per-layer rows, totals, the baseline's totals and the ratios baseline/target."""
        run, base = self.run, self.baseline
        base_by_name = {t.name: t for t in base.layers} if base is not None else {}
        head = (f"simulated on {run.target} ({run.mode} mode)"
                + (f", model {self.source}" if self.source else "")
                + (f", config {self.config}" if self.config else "")
                + (f"; baseline {base.target}" if base is not None else ""))
        cols = (f"{'layer':<16} {'gemm BxMxKxN':<20} {'series':<10} {'executed':<10} {'bound':<8} "
                f"{'cycles':>11} {'MAC util':>8} {'energy nJ':>10} {'EDP J*s':>10}")
        if base is not None:
            cols += f" {'x lat':>6} {'x EDP':>6}"
        lines = [head, cols, "-" * len(cols)]

        def row(label: str, gemm: str, series: str, executed: str, bound: str, cycles: float,
                util: float | None, energy: float, edp: float, ref: tuple[float, float] | None) -> str:
            u = f"{util:>8.1%}" if util is not None else f"{'':>8}"
            line = (f"{label:<16} {gemm:<20} {series:<10} {executed:<10} {bound:<8} {cycles:>11,.0f} {u} "
                    f"{energy * 1e9:>10.3f} {edp:>10.3e}")
            if ref is not None:
                line += f" {_ratio(ref[0], cycles):>5.2f}x {_ratio(ref[1], edp):>5.2f}x"
            return line

        for t in run.layers:
            b = base_by_name.get(t.name)
            lines.append(row(t.name, "x".join(str(v) for v in t.gemm), t.series,
                             t.executed + ("*" if t.mapped_to else ""), t.bound, t.latency_cycles,
                             t.mac_utilization, t.energy_j, t.edp,
                             (b.latency_cycles, b.edp) if b is not None else None))
        lines.append("-" * len(cols))
        tot = run.totals
        bt = base.totals if base is not None else None
        lines.append(row("total", "", "", "", "", tot["latency_cycles"], None, tot["energy_j"], tot["edp"],
                         (bt["latency_cycles"], bt["edp"]) if bt is not None else None))
        if base is not None and bt is not None:
            lines.append(row(f"{base.target} baseline", "", "", "", "", bt["latency_cycles"], None,
                             bt["energy_j"], bt["edp"], None))
            r = self.ratios or {}
            lines.append(f"{base.target}/{run.target}: latency {r['latency']:.2f}x, energy {r['energy']:.2f}x, "
                         f"EDP {r['edp']:.2f}x  (x lat, x EDP columns: per layer, > 1 = {run.target} is better)")
        e = tot["energy"]
        lines.append("energy by component (nJ): "
                     + ", ".join(f"{c} {e[c] * 1e9:.3f}" for c in ENERGY_COMPONENTS))
        groups: dict[tuple[str, str], list[str]] = {}
        for t in run.layers:
            if t.mapped_to:
                groups.setdefault((t.mapped_from, t.mapped_to), []).append(t.name)
        for (src, dst), names in groups.items():
            lines.append(f"* mapped to native patterns of {run.target}: {src} -> {dst} in {len(names)} "
                         f"layer{'s' if len(names) > 1 else ''} ({', '.join(names)})")
        lines.extend(coverage_lines(run))
        return "\n".join(lines)


DENSE_ONLY_KINDS = ("depthwise_conv2d", "grouped_conv2d")


def coverage_lines(run: SimRun) -> list[str]:
    """What the totals include and what they leave out (for reports)."""
    out = []
    dense_only = [t for t in run.layers if t.kind in DENSE_ONLY_KINDS]
    total = sum(t.dense_macs for t in run.layers)
    if dense_only and total:
        share = sum(t.dense_macs for t in dense_only) / total
        out.append(f"not decomposed, costed dense in both runs: {len(dense_only)} depthwise/grouped convolution "
                   f"layer{'s' if len(dense_only) > 1 else ''} ({share:.1%} of the contraction MACs)")
    out.append("not modelled: non-contraction ops (elementwise, normalisation, pooling, softmax), contractions "
               "with dynamic shapes, reuse between layers (each layer starts from DRAM)")
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------


def _plan(module: Any, target: str | Hardware, mode: str, **options: Any) -> list[str]:
    """Run tasd-plan-accel on ``module`` in place; returns the remarks it made."""
    from torch_mlir import ir

    from tasdc.diagnostics import capture
    from tasdc.passes.plan_accel import PlanAccel

    plan = PlanAccel(target=target, mode=mode, **options)
    context = module.context
    with context, ir.Location.unknown(), capture(context) as log:
        plan.run(module)
    return [d.message for d in log.entries]


def simulate_module(module: Any, target: str | Hardware, mode: str = "map",
                    baseline: str | Hardware | None = "dense",
                    *, activations: str = "dense") -> SimReport:
    """Plan (unless already planned for ``target`` in ``mode``), lower and simulate ``module``.

    The target plan is written into ``module`` (``tasd.accel`` attributes). The
    baseline (``None`` to skip) runs the same layers as dense series on a
    clone. A pattern the target cannot run in ``mode="refuse"`` raises
    :class:`~.costmodel.UnsupportedPatternError` (a ``TasdcError``).
    """
    hw = load_hardware(target)
    plans = read_plans(module)
    remarks: list[str] = []
    if not plans or any(p.target != hw.name or p.mode != mode for p in plans) or activations != "dense":
        remarks = _plan(module, hw, mode, activations=activations)
    run = simulate_program(lower_module(module, hw), mode)
    run.remarks = remarks
    base_run = None
    if baseline is not None:
        base_hw = load_hardware(baseline)
        clone = module.operation.clone()  # detached; freed with the Python object
        _plan(clone, base_hw, "map", dense=True)
        base_run = simulate_program(lower_module(clone, base_hw), "map")
        del clone
    configs = {t.series for t in run.layers}
    config = configs.pop() if len(configs) == 1 else ("mixed" if configs else "")
    return SimReport(run=run, baseline=base_run, config=config)
