"""``tasd-cpu-vectorize-contractions``: tile and vectorize dense linalg contractions on tensors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from torch_mlir import ir

from tasdc.contractions import has_default_maps
from tasdc.passes.base import ModulePass, apply_transform_script, remove_attribute

#: Discardable attribute that tags the ops the transform script works on.
TAG = "tasd.vectorize_id"

#: Ops this pass rewrites; anything else (conv, generics, transposed or
#: mixed-precision matmuls, dynamic shapes) is left to the loop path.
_KINDS = {"linalg.matmul": 2, "linalg.batch_matmul": 3}


@dataclass(frozen=True)
class _Piece:
    """One statically shaped part of a contraction after splitting."""

    path: tuple[int, ...]  # which split parts lead here (0 = low, 1 = high) per split dimension
    sizes: tuple[int, ...]  # iteration sizes (batch?, M, N, K)
    outer: tuple[int, ...]  # cache tile sizes (0 = not tiled)
    inner: tuple[int, ...]  # register tile sizes == vector shape of the contraction


def _largest_multiple_dividing(extent: int, step: int, cap: int) -> int:
    """The largest multiple of ``step`` that divides ``extent`` and is <= ``cap`` (at least ``step``)."""
    best = step
    size = step
    while size <= min(cap, extent):
        if extent % size == 0:
            best = size
        size += step
    return best


def _outer_k(k: int, cap: int) -> int:
    """Cache tile of the reduction: a divisor of ``k`` near ``cap``, or 0 (untiled)."""
    if k <= cap:
        return 0
    for size in range(cap, cap // 4 - 1, -1):
        if k % size == 0:
            return size
    return 0  # no reasonable divisor: keep the whole reduction in one tile


def _static_f32_tensor(value: ir.Value) -> ir.RankedTensorType | None:
    if not isinstance(value.type, ir.RankedTensorType):
        return None
    t = ir.RankedTensorType(value.type)
    if not t.has_static_shape or not isinstance(t.element_type, ir.F32Type) or any(d <= 0 for d in t.shape):
        return None
    return t


def contraction_sizes(op: ir.Operation) -> tuple[int, ...] | None:
    """(batch?, M, N, K) of a vectorizable contraction, or ``None`` to leave the op alone.

    Accepted: ``linalg.matmul`` / ``linalg.batch_matmul`` on statically
    shaped f32 tensors with the default indexing maps (an ``indexing_maps``
    attribute that transposes or broadcasts an operand is refused), one result.
    """
    rank = _KINDS.get(op.name)
    if rank is None or len(op.operands) != 3 or len(op.results) != 1:
        return None
    if not has_default_maps(op, op.name):
        return None
    types = [_static_f32_tensor(v) for v in list(op.operands) + [op.results[0]]]
    if any(t is None or t.rank != rank for t in types):
        return None
    a, b, c, r = (tuple(t.shape) for t in types)
    if c != r:
        return None
    if rank == 2:
        (m, k), (k2, n) = a, b
        if k != k2 or c != (m, n):
            return None
        return (m, n, k)
    (ba, m, k), (bb, k2, n) = a, b
    if ba != bb or k != k2 or c != (ba, m, n):
        return None
    return (ba, m, n, k)


@dataclasses.dataclass(frozen=True)
class VectorizeContractions(ModulePass):
    """Tile and vectorize ``linalg.matmul`` / ``linalg.batch_matmul`` on tensors.

    Each accepted contraction (static f32 shapes, default indexing maps; see
    :func:`contraction_sizes`) is rewritten by a generated transform-dialect
    script run with the transform interpreter:

    1. ``structured.split`` along M and N at the largest multiple of the
       register tile, so every part has static shapes that its tiles divide
       (the remainder strips get a smaller register tile equal to their
       extent: no masks, no dynamic shapes);
    2. ``tile_using_for`` with cache tiles (``tile-m``×``tile-n``×``tile-k``
       rounded to divisors) then register tiles ``reg-m``×``reg-n``×1 (batch
       tiled by 1);
    3. ``vectorize {create_named_contraction}`` of each register tile into
       ``vector.transfer_read`` + ``vector.contract``;
    4. canonicalize, fold slices into transfers, ``hoist_loop_invariant_subsets``
       (the accumulator stays in registers across the reduction loop);
    5. lower ``vector.contract`` via outer products to ``vector.fma``.

    The result is still on tensors (scf.for loops with vector bodies);
    ``tasd-cpu-to-llvm`` bufferizes it. Every other op is left unchanged
    and goes through the loop path.
    """

    name: ClassVar[str] = "tasd-cpu-vectorize-contractions"

    reg_m: int = 4
    reg_n: int = 16
    tile_m: int = 128
    tile_n: int = 256
    tile_k: int = 512

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"{field.name.replace('_', '-')} must be >= 1")
        if self.tile_m % self.reg_m or self.tile_n % self.reg_n:
            raise ValueError("tile-m/tile-n must be multiples of reg-m/reg-n")

    # -- planning ---------------------------------------------------------
    def _pieces(self, sizes: tuple[int, ...]) -> list[_Piece]:
        batched = len(sizes) == 4
        *_, m, n, k = sizes
        per_dim: list[list[tuple[int, int]]] = []  # per split dim: [(extent, register tile)]
        for extent, reg in ((m, self.reg_m), (n, self.reg_n)):
            if extent % reg == 0:
                per_dim.append([(extent, reg)])
            elif extent < reg:
                per_dim.append([(extent, extent)])
            else:
                low = extent - extent % reg
                per_dim.append([(low, reg), (extent - low, extent - low)])
        pieces = []
        for i, (pm, rm) in enumerate(per_dim[0]):
            for j, (pn, rn) in enumerate(per_dim[1]):
                om = _largest_multiple_dividing(pm, rm, self.tile_m)
                on = _largest_multiple_dividing(pn, rn, self.tile_n)
                ok = _outer_k(k, self.tile_k)
                inner = (rm, rn, 1)
                outer = (om if om < pm else 0, on if on < pn else 0, ok)
                if batched:
                    pieces.append(_Piece((i, j), (sizes[0], pm, pn, k), (1,) + outer, (0,) + inner))
                else:
                    pieces.append(_Piece((i, j), (pm, pn, k), outer, inner))
        return pieces

    def _script(self, plans: list[tuple[int, tuple[int, ...], list[_Piece]]]) -> str:
        any_op = "!transform.any_op"
        lines = []
        counter = iter(range(1 << 30))

        def fresh() -> str:
            return f"%v{next(counter)}"

        def tile(handle: str, sizes: tuple[int, ...]) -> str:
            loops = sum(1 for s in sizes if s)
            if not loops:
                return handle
            out = fresh()
            results = ", ".join([any_op] * (loops + 1))
            lines.append(
                f"{out}, {fresh()}:{loops} = transform.structured.tile_using_for {handle} "
                f"tile_sizes [{', '.join(map(str, sizes))}] : ({any_op}) -> ({results})"
            )
            return out

        def split(handle: str, dim: int, at: int) -> tuple[str, str]:
            parts, low, high = fresh(), fresh(), fresh()
            lines.append(f"{parts} = transform.structured.split {handle} after {at} {{dimension = {dim}}} : {any_op}")
            lines.append(f"{low}, {high} = transform.split_handle {parts} : ({any_op}) -> ({any_op}, {any_op})")
            return low, high

        for ident, sizes, pieces in plans:
            batched = len(sizes) == 4
            m_dim, n_dim = (1, 2) if batched else (0, 1)
            handle = fresh()
            lines.append(
                f"{handle} = transform.structured.match attributes {{{TAG} = {ident} : i64}} in %root : ({any_op}) -> {any_op}"
            )
            m_split = any(p.path[0] for p in pieces)
            n_split = any(p.path[1] for p in pieces)
            rows = list(split(handle, m_dim, pieces[0].sizes[m_dim])) if m_split else [handle]
            parts: dict[tuple[int, int], str] = {}
            for i, row in enumerate(rows):
                if n_split:
                    parts[(i, 0)], parts[(i, 1)] = split(row, n_dim, pieces[0].sizes[n_dim])
                else:
                    parts[(i, 0)] = row
            for piece in pieces:
                tiled = tile(parts[piece.path], piece.outer)
                tiled = tile(tiled, piece.inner)
                lines.append(f"transform.structured.vectorize {tiled} {{create_named_contraction}} : {any_op}")

        lines += [
            f"%funcs = transform.structured.match ops{{[\"func.func\"]}} in %root : ({any_op}) -> {any_op}",
            "transform.apply_patterns to %funcs {",
            "  transform.apply_patterns.canonicalization",
            "  transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers",
            f"}} : {any_op}",
            f"transform.apply_cse to %funcs : {any_op}",
            f"%loops = transform.structured.match ops{{[\"scf.for\"]}} in %root : ({any_op}) -> {any_op}",
            f"transform.foreach %loops : {any_op} {{",
            f"^bb0(%loop: {any_op}):",
            f"  transform.loop.hoist_loop_invariant_subsets %loop : {any_op}",
            "}",
            "transform.apply_patterns to %funcs {",
            "  transform.apply_patterns.vector.lower_contraction lowering_strategy = \"outerproduct\"",
            "  transform.apply_patterns.vector.transfer_permutation_patterns",
            "  transform.apply_patterns.vector.lower_outerproduct",
            "  transform.apply_patterns.vector.lower_broadcast",
            "  transform.apply_patterns.vector.lower_transpose",
            f"}} : {any_op}",
            # Separate from canonicalization: together they loop forever (DESIGN).
            "transform.apply_patterns to %funcs {",
            "  transform.apply_patterns.vector.lower_shape_cast",
            f"}} : {any_op}",
            "transform.yield",
        ]
        body = "\n    ".join(lines)
        return (
            "module attributes {transform.with_named_sequence} {\n"
            f"  transform.named_sequence @__transform_main(%root: {any_op} {{transform.readonly}}) {{\n"
            f"    {body}\n  }}\n}}\n"
        )

    # -- driver -------------------------------------------------------------
    def plan(self, module: ir.Module) -> list[tuple[ir.Operation, tuple[int, ...], list[_Piece]]]:
        """The contractions this pass will rewrite, with their split/tile plans."""
        found: list[tuple[ir.Operation, tuple[int, ...], list[_Piece]]] = []

        def visit(op: ir.Operation) -> ir.WalkResult:
            sizes = contraction_sizes(op)
            if sizes is not None:
                found.append((op, sizes, self._pieces(sizes)))
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
        return found

    def run(self, module: ir.Module) -> None:
        plans = self.plan(module)
        if not plans:
            return
        i64 = ir.IntegerType.get_signless(64, module.context)
        for ident, (op, _, _) in enumerate(plans):
            op.attributes[TAG] = ir.IntegerAttr.get(i64, ident)
        script_text = self._script([(ident, sizes, pieces) for ident, (_, sizes, pieces) in enumerate(plans)])
        apply_transform_script(module, script_text, self.name)
        remove_attribute(module, TAG)
