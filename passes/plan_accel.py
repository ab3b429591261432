"""``tasd-plan-accel``: plan every contraction layer for a structured-sparse accelerator."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch_mlir import ir

from tasdc.contractions import CONTRACTION_NAMES, GROUPED_CONVS, b_source_elems, grouped_conv_gemm, scan
from tasdc.diagnostics import remark
from tasdc.dialects.tasd import activation_source, dense_operand_of, sparse_operand_of
from tasdc.passes.base import ModulePass
from tasdc.report import LAYER_ATTR, STATS_ATTR, from_attr, to_attr
from tasdc.runtime.accel.costmodel import (
    BOUNDS,
    ENERGY_COMPONENTS,
    LayerShapes,
    Pattern,
    UnsupportedPatternError,
    evaluate,
    parse_series,
    resolve_series,
    series_label,
)
from tasdc.runtime.accel.hardware import Hardware, load_hardware
from tasdc.runtime.accel.program import ACCEL_ATTR, PlanTerm, choose_schedule, term_geometry

MODES = ("map", "refuse")
TASD_CONTRACTIONS = {"tasd.matmul": "matmul", "tasd.batch_matmul": "batch_matmul", "tasd.conv2d": "conv2d"}


@dataclasses.dataclass
class _Layer:
    op: ir.OpView
    name: str | None          # existing tasd.layer
    kind: str
    gemm: tuple[int, int, int, int]
    terms: tuple[Pattern, ...]  # requested series, () = dense
    operand: str              # what the structured operand A is: "weight" | "activation"
    tasd_a: bool = False
    note: str = ""
    explicit_a: bool = False  # TASD-A asked for by a tasd.decompose_activation op in the IR
    both: str = ""            # "W+A": weight and activation series on one contraction
    b_source: int = 0         # elements of B before im2col (a conv's input), see b_source_elems
    natural: tuple[tuple[int, int, int, int], str] | None = None  # (gemm, operand) before TASD-A swapped them


def _shape(value: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(value.type).shape)


def _static(op: ir.OpView) -> bool:
    values = [*op.operands, *op.results]
    return all(isinstance(v.type, ir.RankedTensorType) and ir.RankedTensorType(v.type).has_static_shape
               for v in values)


def _is_constant(value: ir.Value) -> bool:
    owner = value.owner
    while isinstance(owner, ir.OpView) and owner.name == "linalg.transpose":
        owner = owner.operands[0].owner
    return isinstance(owner, ir.OpView) and owner.name == "arith.constant"


def _act_series(value: ir.Value) -> tuple[Pattern, ...] | None:
    """The TASD-A series of ``value`` when a ``tasd.decompose_activation`` produces it."""
    source = activation_source(value)
    return None if source is None else parse_series(ir.StringAttr(source.attributes["config"]).value)


def _swap(gemm: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The same GEMM with the other operand as A: ``[b, M, K, N]`` -> ``[b, N, K, M]``."""
    batch, m, k, n = gemm
    return (batch, n, k, m)


def _int(attr: ir.Attribute) -> int:
    return int(ir.IntegerAttr(attr).value)


def _tasd_gemm(op: ir.OpView) -> tuple[int, int, int, int]:
    """GEMM of one TASD term contraction, the term as A (as tasdc.contractions does)."""
    kind = TASD_CONTRACTIONS[op.name]
    lhs, rhs, res = _shape(op.operands[0]), _shape(op.operands[1]), _shape(op.results[0])
    if kind == "conv2d":
        n, _, _, _ = lhs
        f, ckk = rhs
        _, _, oh, ow = res
        return (1, f, ckk, n * oh * ow)
    batch = lhs[0] if kind == "batch_matmul" else 1
    m, k = lhs[-2:]
    n = rhs[-1]
    return (batch, n, k, m) if _int(op.attributes["sparse_operand"]) == 1 else (batch, m, k, n)


def _loop_sizes(op: ir.OpView) -> dict[int, int]:
    sizes: dict[int, int] = {}
    maps = ir.ArrayAttr(op.attributes["indexing_maps"])
    for value, attr in zip([*op.operands], maps):
        shape = _shape(value)
        for pos, expr in enumerate(ir.AffineMapAttr(attr).value.results):
            if isinstance(expr, ir.AffineDimExpr):
                sizes.setdefault(expr.position, shape[pos])
    return sizes


def _dense_gemm(op: ir.OpView, kind: str) -> tuple[tuple[int, int, int, int], ir.Value]:
    """GEMM of a linalg contraction with the lhs (conv: the filter) as A, and A's value."""
    if kind == "conv2d":
        n, c, _, _ = _shape(op.operands[0])
        f, _, kh, kw = _shape(op.operands[1])
        _, _, oh, ow = _shape(op.results[0])
        return (1, f, c * kh * kw, n * oh * ow), op.operands[1]
    if "indexing_maps" in op.attributes:
        d = _loop_sizes(op)
        if kind == "matmul":
            return (1, d[0], d[2], d[1]), op.operands[0]
        return (d[0], d[1], d[3], d[2]), op.operands[0]
    lhs, rhs = _shape(op.operands[0]), _shape(op.operands[1])
    batch = lhs[0] if kind == "batch_matmul" else 1
    return (batch, lhs[-2], lhs[-1], rhs[-1]), op.operands[0]


@dataclasses.dataclass(frozen=True)
class PlanAccel(ModulePass):
    """Plan every contraction layer for the accelerator ``target``.

    Layers are each ``tasd.series`` (its terms give the series) and each
    remaining dense ``linalg.matmul`` / ``linalg.batch_matmul`` /
    ``linalg.conv_2d_nchw_fchw`` (weight or activation x activation) and
    depthwise / grouped convolution (``linalg.depthwise_conv_2d_nchw_chw``,
    ``linalg.conv_2d_ngchw_gfchw``: never decomposed, costed dense as one GEMM
    per group, kind ``depthwise_conv2d`` / ``grouped_conv2d``), as the
    GEMM ``[batch, M, K, N]`` of their structured operand ``A[M, K]`` — the
    weight when there is one, else the lhs (a convolution: the filter), as in
    :mod:`tasdc.contractions`. ``target`` is a shipped target name (``dense``,
    ``stc``, ``vegeta``, ``ttc-m8``) or a path to a hardware ``.toml`` (from
    Python also a loaded ``Hardware``).

    Patterns the target does not run natively are executed as the next denser
    native pattern in ``mode=map`` (recorded per term) and are a user error in
    ``mode=refuse``. ``activations`` (default ``dense``) decomposes the
    run-time A operand of activation x activation contractions at run time
    (TASD-A; needs the target's TASD extraction units, else those layers run
    dense in map mode). ``dense=true`` plans every layer as a dense GEMM (the
    baseline run of the simulator).

    A contraction whose activation operand comes from
    ``tasd.decompose_activation`` (TASD-A in the IR) is planned with that
    activation as A (its GEMM transposed accordingly) and the op's series; a
    target without extraction units refuses it in either mode, and so does
    every shipped target for a contraction decomposed on both sides (a
    weight series over a decomposed activation, or two decomposed
    activations): they have one structured operand.

    Every layer gets a ``tasd.layer`` name (the contraction scan's, made
    unique) and a ``tasd.accel`` dictionary: ``target``, ``mode``, ``kind``,
    ``gemm``, ``b_source`` (elements of B before im2col: a convolution's
    input, read once from DRAM per B pass; ``K*N`` for a GEMM), ``operand``,
    ``tasd_a``, ``series`` (requested), ``executed``,
    ``mapped_from``/``mapped_to`` ("+"-joined, empty when nothing is mapped),
    ``terms`` (``t0``, ``t1``, … with ``requested``, ``executed``, ``speedup``,
    ``mapped``), the tiling (``fold_rows``, ``fold_cols``, ``folds``,
    ``waves``), the GLB ``schedule`` (``a_resident`` | ``b_chunks`` |
    ``tile``, ``b_chunk_cols``, ``b_in_rf``, ``a_dram_passes``,
    ``b_dram_passes``), ``bound`` and the cost model's prediction
    (``macs``, ``dense_macs``, ``mac_cycles``, ``compute_cycles``,
    ``dram_cycles``, ``glb_cycles``, ``rf_cycles``, ``extraction_cycles``,
    ``latency_cycles``, ``latency_s``, ``energy_j``, ``energy`` by component
    in J, ``edp`` in J*s), from one vectorised cost-model call over all layers.
    """

    name: ClassVar[str] = "tasd-plan-accel"
    target: str = "stc"
    mode: str = "map"
    activations: str = "dense"
    dense: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        load_hardware(self.target)
        parse_series(self.activations)

    # -- collection ----------------------------------------------------------
    def _collect(self, module: ir.Module) -> list[_Layer]:
        found = scan(module)
        candidates = {c.op.operation: c for c in found.candidates}
        scan_names = {c.op.operation: c.layer for c in found.candidates}
        scan_names.update({s.op.operation: s.layer for s in found.skipped})  # contractions scan() counts
        act_series = parse_series(self.activations)
        layers: list[_Layer] = []
        # Default name of each layer: ``<kind>_<i>`` with ``i`` counting every
        # contraction the scan sees plus every series, so that the numbering of
        # a decomposed module is that of the module before decomposition.
        names: list[str] = []
        position = [0]

        def visit(operation: ir.Operation) -> ir.WalkResult:
            name = operation.name
            counted = name == "tasd.series" or operation in scan_names
            index = position[0]
            position[0] += counted
            if name != "tasd.series" and name not in CONTRACTION_NAMES and name not in GROUPED_CONVS:
                return ir.WalkResult.ADVANCE
            op = operation.opview
            if not _static(op):
                remark(op.location, f"{name} with dynamic shapes is not planned for the accelerator")
                return ir.WalkResult.ADVANCE
            existing = ir.StringAttr(op.attributes[LAYER_ATTR]).value if LAYER_ATTR in op.attributes else None
            if name == "tasd.series":
                terms = []
                for value in op.operands:
                    _, weight = sparse_operand_of(value.owner)
                    terms.append(Pattern(_int(weight.attributes["n"]), _int(weight.attributes["m"])))
                first = op.operands[0].owner
                stats = from_attr(op.attributes[STATS_ATTR]) if STATS_ATTR in op.attributes else {}
                gemm = tuple(stats["gemm"]) if isinstance(stats, dict) and len(stats.get("gemm", [])) == 4 \
                    else _tasd_gemm(first)
                layer = _Layer(op, existing, TASD_CONTRACTIONS[first.name], gemm,  # type: ignore[arg-type]
                               tuple(terms), "weight", b_source=b_source_elems(first, gemm))  # type: ignore[arg-type]
                act = _act_series(dense_operand_of(first))
                if act is not None:
                    layer.both = f"TASD-W {series_label(layer.terms)} and TASD-A {series_label(act)}"
                layers.append(layer)
                names.append(f"{TASD_CONTRACTIONS[first.name]}_{index}")
                return ir.WalkResult.ADVANCE
            if name in GROUPED_CONVS:  # not decomposed by TASD: costed as dense GEMMs, one per group
                gemm = grouped_conv_gemm(op)
                assert gemm is not None
                layer = _Layer(op, existing, GROUPED_CONVS[name], gemm, (), "weight")
                layer.b_source = b_source_elems(op, gemm)
                layers.append(layer)
                names.append(f"{GROUPED_CONVS[name]}_{index}")
                return ir.WalkResult.ADVANCE
            kind = CONTRACTION_NAMES[name]
            cand = candidates.get(operation)
            if cand is not None:
                layer = _Layer(op, existing, kind, cand.gemm, (), "weight")
                act = _act_series(op.operands[1 - cand.sparse_operand])
                if act is not None:  # TASD-A on the activation operand: it becomes the structured A
                    layer = _Layer(op, existing, kind, _swap(cand.gemm), act, "activation", True, explicit_a=True,
                                   natural=(cand.gemm, "weight"))
            else:
                gemm, a_value = _dense_gemm(op, kind)
                operand = "weight" if _is_constant(a_value) else "activation"
                layer = _Layer(op, existing, kind, gemm, (), operand)
                lhs_act, rhs_act = _act_series(op.operands[0]), _act_series(op.operands[1])
                if lhs_act is not None and rhs_act is not None:
                    layer.both = f"TASD-A {series_label(lhs_act)} and {series_label(rhs_act)}"
                elif lhs_act is not None or rhs_act is not None:
                    layer.terms, layer.tasd_a, layer.explicit_a = lhs_act or rhs_act, True, True  # type: ignore[assignment]
                    if lhs_act is None:
                        layer.gemm, layer.natural = _swap(gemm), (gemm, operand)
                elif operand == "activation" and act_series:
                    layer.terms, layer.tasd_a = act_series, True
            layer.b_source = b_source_elems(op, layer.gemm)
            layers.append(layer)
            names.append(f"{kind}_{index}")
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
        self._name(layers, names)
        return layers

    @staticmethod
    def _name(layers: list[_Layer], defaults: list[str]) -> None:
        """Keep existing names (first occurrence), else the default ``<kind>_<i>``; all unique."""
        reserved = {layer.name for layer in layers if layer.name}
        used: set[str] = set()

        def fresh(base: str, start: int) -> str:
            j = start
            while f"{base}_{j}" in used or f"{base}_{j}" in reserved:
                j += 1
            return f"{base}_{j}"

        for layer, scanned in zip(layers, defaults):
            if layer.name and layer.name not in used:
                name = layer.name
            elif layer.name:
                name = fresh(layer.name, 1)
            elif scanned and scanned not in used and scanned not in reserved:
                name = scanned
            else:
                name = fresh(layer.kind, 0)
            used.add(name)
            if layer.name != name:
                layer.op.attributes[LAYER_ATTR] = ir.StringAttr.get(name)
            layer.name = name

    # -- planning ------------------------------------------------------------
    def run(self, module: ir.Module) -> None:
        hw = load_hardware(self.target)
        layers = self._collect(module)
        if not layers:
            return
        if self.dense:  # every layer as the dense model maps it (TASD-A's operand swap undone)
            for layer in layers:
                layer.terms, layer.tasd_a, layer.explicit_a, layer.both = (), False, False, ""
                if layer.natural is not None:
                    (layer.gemm, layer.operand), layer.natural = layer.natural, None
                    layer.b_source = b_source_elems(layer.op, layer.gemm)
        self._check_support(hw, layers)
        configs = list(dict.fromkeys(layer.terms for layer in layers))
        shapes = LayerShapes.from_arrays(
            [l.gemm[1] for l in layers], [l.gemm[2] for l in layers], [l.gemm[3] for l in layers],
            [l.gemm[0] for l in layers], [l.tasd_a for l in layers], names=[l.name or "" for l in layers],
            b_source=[l.b_source for l in layers])
        table = evaluate(hw, shapes, configs, mode=self.mode)
        index = {c: j for j, c in enumerate(configs)}
        for i, layer in enumerate(layers):
            plan = self._plan(hw, table, i, index[layer.terms], layer)
            layer.op.attributes[ACCEL_ATTR] = to_attr(plan)
            if plan["mapped_to"]:
                remark(layer.op.location, f"{layer.name}: {plan['mapped_from']} runs as {plan['mapped_to']} "
                                          f"on target '{hw.name}'")

    def _check_support(self, hw: Hardware, layers: list[_Layer]) -> None:
        for layer in layers:
            if layer.both:
                raise UnsupportedPatternError(
                    f"layer '{layer.name}': target '{hw.name}' has one structured operand per contraction: "
                    f"cannot run {layer.both} together (decompose one side only)")
            if layer.explicit_a and hw.extraction is None:
                raise UnsupportedPatternError(
                    f"layer '{layer.name}': target '{hw.name}' has no TASD extraction units: cannot decompose "
                    f"activations at run time (TASD-A {series_label(layer.terms)}); use a target with "
                    f"[extraction] such as ttc-m8, or compile without --act-config")
            if layer.tasd_a and hw.extraction is None:
                if self.mode == "refuse":
                    raise UnsupportedPatternError(
                        f"layer '{layer.name}': target '{hw.name}' has no TASD extraction units: cannot "
                        f"decompose activations at run time (TASD-A) as {series_label(layer.terms)}")
                layer.note = f"TASD-A {series_label(layer.terms)}"
                layer.terms, layer.tasd_a = (), False
            if self.mode == "refuse":
                try:
                    resolve_series(hw, layer.terms, "refuse")
                except UnsupportedPatternError as error:
                    raise UnsupportedPatternError(f"layer '{layer.name}': {error}") from None

    def _plan(self, hw: Hardware, table: Any, i: int, j: int, layer: _Layer) -> dict[str, Any]:
        series = table.plans[j]
        a = {name: float(values[i, j]) for name, values in table.arrays.items()}
        terms = {
            f"t{q}": {"requested": t.requested_label, "executed": t.executed_label,
                      "speedup": float(t.speedup), "mapped": bool(t.mapped)}
            for q, t in enumerate(series.terms)
        }
        geometry = [term_geometry(q, PlanTerm(t.requested_label, t.executed_label, t.speedup, t.mapped),
                                  layer.gemm[2]) for q, t in enumerate(series.terms)]
        schedule = choose_schedule(hw, layer.gemm, geometry)
        mapped_from, mapped_to = "+".join(series.mapped_from), "+".join(series.mapped_to)
        if layer.note:
            mapped_from, mapped_to = layer.note, "dense"
        return {
            "target": hw.name,
            "mode": self.mode,
            "kind": layer.kind,
            "gemm": [int(v) for v in layer.gemm],
            "b_source": int(layer.b_source),
            "operand": layer.operand,
            "tasd_a": bool(layer.tasd_a),
            "series": series.label,
            "executed": series.executed_label,
            "mapped_from": mapped_from,
            "mapped_to": mapped_to,
            "terms": terms,
            "fold_rows": -(-layer.gemm[1] // hw.array.rows),
            "fold_cols": -(-layer.gemm[3] // hw.array.cols),
            "folds": int(a["folds"]),
            "waves": int(a["waves"]),
            "schedule": schedule.kind,
            "b_chunk_cols": schedule.b_chunk_cols,
            "b_in_rf": schedule.b_in_rf,
            "a_dram_passes": int(a["a_dram_passes"]),
            "b_dram_passes": int(a["b_dram_passes"]),
            "bound": BOUNDS[int(table.bound_code[i, j])],
            "macs": int(a["macs"]),
            "dense_macs": int(a["dense_macs"]),
            "mac_cycles": int(a["mac_cycles"]),
            "compute_cycles": int(a["compute_cycles"]),
            "dram_cycles": a["dram_cycles"],
            "glb_cycles": a["glb_cycles"],
            "rf_cycles": a["rf_cycles"],
            "extraction_cycles": a["extraction_cycles"],
            "latency_cycles": a["latency_cycles"],
            "latency_s": a["latency_s"],
            "energy_j": a["energy_j"],
            "energy": {c: a[f"energy_{c}_j"] for c in ENERGY_COMPONENTS},
            "edp": a["edp"],
        }
