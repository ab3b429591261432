"""``tasd-cpu-tile-batch``: run a CNN's large-plane layers one image at a time."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import arith, memref, scf

from tasdc.errors import PipelineError
from tasdc.passes.base import ModulePass
from tasdc.passes.lower_tasd_to_calls import KERNEL_ATTR
from tasdc.report import from_attr

#: On a function declaration: the operand positions of its calls that hold the batch in dim 0
#: (a convolution's input, output and residual; not its filter or bias). The call computes
#: each image from that image's slices only, so it may run on one image of them at a time.
BATCH_OPERANDS_ATTR = "tasd.batch_operands"

#: Ops without operands or side effects (constants, a global's address): moved before the
#: loop as they are.
_HOISTABLE = ("arith.constant", "memref.get_global")


def batch_operands(decl: ir.OpView) -> list[int] | None:
    """The batch operand positions of calls to ``decl``: its ``tasd.batch_operands``, or every
    memref operand of an N:M convolution kernel (``tasd.kernel`` of kind ``conv2d``)."""
    if BATCH_OPERANDS_ATTR in decl.attributes:
        attr = decl.attributes[BATCH_OPERANDS_ATTR]
        name = ir.StringAttr(decl.attributes["sym_name"]).value
        if not isinstance(attr, ir.DenseI64ArrayAttr):
            raise PipelineError(f"@{name}: {BATCH_OPERANDS_ATTR} must be an array<i64: ...> of operand positions, got {attr}")
        positions = [int(v) for v in attr]
        count = len(ir.FunctionType(ir.TypeAttr(decl.attributes["function_type"]).value).inputs)
        bad = [p for p in positions if not 0 <= p < count]
        if bad:
            raise PipelineError(f"@{name}: {BATCH_OPERANDS_ATTR} position {bad[0]} is not one of its {count} operands")
        return positions
    if KERNEL_ATTR in decl.attributes and from_attr(decl.attributes[KERNEL_ATTR]).get("kind") == "conv2d":
        inputs = ir.FunctionType(ir.TypeAttr(decl.attributes["function_type"]).value).inputs
        return [i for i, t in enumerate(inputs) if isinstance(t, ir.MemRefType)]
    return None


def strip_batch_operands(module: ir.Module) -> None:
    """Remove ``tasd.batch_operands`` from every function of ``module``."""
    for op in module.body.operations:
        if op.operation.name == "func.func" and BATCH_OPERANDS_ATTR in op.attributes:
            del op.attributes[BATCH_OPERANDS_ATTR]


def _defining_op(value: ir.Value) -> ir.Operation | None:
    """The op whose result ``value`` is (None for a block argument)."""
    owner = value.owner
    if isinstance(owner, ir.OpView):
        return owner.operation
    return owner if isinstance(owner, ir.Operation) else None


def _root(value: ir.Value) -> ir.Value:
    """``value`` with its ``memref.cast`` chain walked back to the buffer it views."""
    op = _defining_op(value)
    while op is not None and op.name == "memref.cast":
        value = op.operands[0]
        op = _defining_op(value)
    return value


def _static_batch(value: ir.Value) -> int | None:
    t = value.type
    if not isinstance(t, ir.MemRefType) or ir.MemRefType(t).rank == 0:
        return None
    d = ir.MemRefType(t).shape[0]
    return None if ir.ShapedType.is_dynamic_size(d) else d


def _nbytes(value: ir.Value) -> int:
    t = ir.MemRefType(value.type)
    if not t.has_static_shape:
        return 0
    size = max(1, ir.ShapedType(t).element_type.width // 8) if hasattr(t.element_type, "width") else 4
    for d in t.shape:
        size *= d
    return size


def _generic_batch_operands(op: ir.Operation) -> list[int] | None:
    """Positions of the operands of a ``linalg.generic`` on memrefs that carry its loop d0 in
    dim 0, when the generic is per image: d0 parallel, each operand either indexes dim 0 by d0
    alone (and d0 nowhere else) or does not use d0, and every output carries d0."""
    if op.results or "iterator_types" not in op.attributes:
        return None
    iterators = ir.ArrayAttr(op.attributes["iterator_types"])
    if not len(iterators) or "parallel" not in str(iterators[0]):
        return None
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    outputs = int(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"])[1])
    first_output = len(op.operands) - outputs
    d0 = ir.AffineDimExpr.get(0)
    positions: list[int] = []
    for i, (operand, amap) in enumerate(zip(op.operands, maps)):
        if not isinstance(operand.type, ir.MemRefType):
            return None
        uses = [k for k, e in enumerate(amap.results) if _uses_d0(e)]
        if uses == [0] and amap.results[0] == d0:
            positions.append(i)
        elif uses or i >= first_output:
            return None
    return positions


def _uses_d0(expr: ir.AffineExpr) -> bool:
    if isinstance(expr, ir.AffineDimExpr):
        return expr.position == 0
    if isinstance(expr, ir.AffineBinaryExpr):
        return _uses_d0(expr.lhs) or _uses_d0(expr.rhs)
    return False


@dataclasses.dataclass(frozen=True)
class TileBatch(ModulePass):
    """Put a run of per-image ops whose buffers are large into an ``scf.for`` over the images,
    so each image's intermediates stay in cache between the ops (MobileNetV2's 1x1 expand,
    depthwise and 1x1 project on 112² and 56² planes: at batch 8 each intermediate is 15-60 MB,
    written to memory by one call and read back by the next; per image it is 2-7 MB).

    Rule, on memrefs right after bufferization, in each function body: a *per-image op* is a
    ``func.call`` of a declaration with batch operands (:func:`batch_operands`: N:M
    convolution kernels, the dense library's depthwise convolutions) or a ``linalg.generic`` that is
    parallel in d0 and indexes dim 0 of its outputs (and of the inputs that use d0) by d0
    alone; its batch operands (seen through ``memref.cast``) are static with dim 0 = B >= 2,
    and a call's batch operands have a dynamic dim 0 in their type. ``memref.alloc`` (static),
    ``memref.cast``, ``arith.constant`` and ``memref.get_global`` may sit between them; any
    other op ends a run. In a run, the *region* spans from the first to the last per-image op
    with a batch buffer of at least ``min_bytes`` (with the allocations and casts right before
    the first); a region with at least two per-image ops and a buffer of at least
    ``trigger_bytes`` allocated and used only inside it becomes::

        (constants, casts of weights, buffers used after the region: before the loop)
        %img = memref.alloc() : memref<1x...>            // each buffer used only inside
        scf.for %n = 0 to B step 1 {
          %x = memref.subview %in[%n, 0, 0, 0] [1, C, H, W] [1, 1, 1, 1]
          call @kernel(%x', %img') ...                   // the ops in their order
        }

    A buffer defined before the region or used after it is viewed per image by a subview; the
    buffers only the region uses are allocated once with batch 1. Each op computes image n
    from image n's slices, as before: an N:M kernel sums every output in the same order at any
    batch (the same bits); a dense convolution's ``sgemm`` may block another GEMM width
    differently (rounding-level differences). Nothing happens at batch 1 or below the
    thresholds (the benchmarks' transformers: their large buffers are matmul operands, and a
    matmul call ends a run). An allocation in a region that is not a batch operand, or a batch
    buffer passed whole, leaves the region untiled.
    """

    name: ClassVar[str] = "tasd-cpu-tile-batch"

    #: Smallest batch buffer (all images, bytes) of an op in a region: 8 MiB, a quarter of a
    #: 32 MB L3 (shared with the other cores), where a buffer written by one call and read by
    #: the next starts to go through DRAM.
    min_bytes: int = 8 << 20
    #: A region is tiled only when one of the buffers it allocates and uses alone reaches this
    #: (32 MiB: more than a whole L3). MobileNetV2-1.25 at batch 8 (a 58 MB expand output):
    #: 1:8 one thread 97.8 -> 90.0 ms; ResNet-50's largest buffers are 25.7 MB, compute-bound
    #: layers, and per image its 2:4 run at two threads went 322 -> 347 ms, so it stays whole.
    trigger_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        if self.min_bytes < 1:
            raise ValueError(f"min-bytes must be >= 1, got {self.min_bytes}")
        if self.trigger_bytes < self.min_bytes:
            raise ValueError(f"trigger-bytes must be >= min-bytes ({self.min_bytes}), got {self.trigger_bytes}")

    def run(self, module: ir.Module) -> None:
        decls: dict[str, list[int]] = {}
        for op in module.body.operations:
            if op.operation.name == "func.func" and not op.regions[0].blocks:
                positions = batch_operands(op)
                if positions is not None:
                    decls[ir.StringAttr(op.attributes["sym_name"]).value] = positions
        for op in module.body.operations:
            if op.operation.name == "func.func" and op.regions[0].blocks:
                for region, batch in self._regions(op.regions[0].blocks[0], decls):
                    _tile(region, batch)

    def _regions(self, block: ir.Block, decls: dict[str, list[int]]) -> list[tuple[list[ir.Operation], _Batch]]:
        """The regions to tile in ``block`` (consecutive ops) with the batch operands of their
        per-image ops."""
        regions: list[tuple[list[ir.Operation], _Batch]] = []
        run: list[ir.Operation] = []
        found: _Batch = {}
        batch: int | None = None

        def close() -> None:
            nonlocal run, batch, found
            region = self._region(run, found)
            if region:
                regions.append((region, found))
            run, batch, found = [], None, {}

        for op in block.operations:
            op = op.operation
            if _is_glue(op):
                run.append(op)
                continue
            positions = _per_image_operands(op, decls)
            sizes = {_static_batch(_root(op.operands[p])) for p in positions or []}
            if positions is None or len(sizes) != 1 or None in sizes or next(iter(sizes)) < 2:
                close()
                continue
            if batch is not None and sizes != {batch}:
                close()
            batch = next(iter(sizes))
            found[op] = positions
            run.append(op)
        close()
        return regions

    def _region(self, run: list[ir.Operation], found: _Batch) -> list[ir.Operation]:
        """The part of ``run`` to tile (see the class docstring), or []."""
        big = [i for i, op in enumerate(run)
               if op in found and max(_nbytes(_root(op.operands[p])) for p in found[op]) >= self.min_bytes]
        if not big:
            return []
        start = big[0]
        while start > 0 and _is_glue(run[start - 1]):
            start -= 1
        region = run[start:big[-1] + 1]
        if sum(1 for op in region if op in found) < 2 or not _checked(region, found):
            return []
        if not any(op.name == "memref.alloc" and _nbytes(op.results[0]) >= self.trigger_bytes
                   and all(_in_region(u, region) for u in _users(op.results[0])) for op in region):
            return []
        return region


#: The per-image ops of a run -> their batch operand positions.
_Batch = dict[ir.Operation, list[int]]


def _is_glue(op: ir.Operation) -> bool:
    """Ops that may sit between per-image ops: views, constants, static allocations."""
    return op.name in ("memref.cast", *_HOISTABLE) or (op.name == "memref.alloc" and not op.operands)


def _per_image_operands(op: ir.Operation, decls: dict[str, list[int]]) -> list[int] | None:
    """Batch operand positions of a per-image op (a call or a generic), or None."""
    if op.name == "func.call":
        callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
        if callee not in decls or op.results:
            return None
        positions = decls[callee]
        for p in positions:
            t = op.operands[p].type
            if not isinstance(t, ir.MemRefType) or not ir.ShapedType.is_dynamic_size(ir.MemRefType(t).shape[0]):
                return None
    elif op.name == "linalg.generic":
        positions = _generic_batch_operands(op)
    else:
        return None
    return positions or None


def _in_region(op: ir.Operation, region: list[ir.Operation]) -> bool:
    return any(op == r for r in region)


def _batch_roots(region: list[ir.Operation], found: _Batch) -> list[ir.Value]:
    return [_root(op.operands[p]) for op in region if op in found for p in found[op]]


def _checked(region: list[ir.Operation], found: _Batch) -> bool:
    """Whether tiling ``region`` keeps every op's meaning: batch buffers are used only as
    batch operands (and through casts), other operands do not depend on region buffers, and at
    least one allocation stays inside."""
    roots = _batch_roots(region, found)
    local = 0
    for op in region:
        if op.name == "memref.alloc":
            if not any(op.results[0] == r for r in roots):
                return False  # a buffer of the region that is not per image
            if all(_in_region(u, region) for u in _users(op.results[0])):
                local += 1
        elif op in found:
            for i, v in enumerate(op.operands):
                if i in found[op]:
                    continue
                if any(_root(v) == r for r in roots):
                    return False  # a batch buffer passed whole (e.g. as a filter)
                owner = _defining_op(v)
                if owner is not None and _in_region(owner, region) and not _is_glue(owner):
                    return False
    return local > 0


def _users(value: ir.Value) -> list[ir.Operation]:
    """Ops using ``value``, through ``memref.cast`` chains (the casts not included)."""
    found: list[ir.Operation] = []
    for use in value.uses:
        user = use.owner
        if isinstance(user, ir.OpView):
            user = user.operation
        if user.name == "memref.cast":
            found += _users(user.results[0])
        else:
            found.append(user)
    return found


def _one_image_type(t: ir.MemRefType) -> ir.MemRefType:
    """The type of ``subview t[n, 0, ...] [1, ...] [1, ...]`` with a run-time n."""
    strides, _ = t.get_strides_and_offset()
    dyn = ir.ShapedType.get_dynamic_stride_or_offset()
    return ir.MemRefType.get([1, *t.shape[1:]], t.element_type, ir.StridedLayoutAttr.get(dyn, list(strides)),
                             t.memory_space)


def _tile(region: list[ir.Operation], found: _Batch) -> None:
    """Move ``region`` into a loop over the images (see :class:`TileBatch`)."""
    roots = _batch_roots(region, found)
    batch = _static_batch(roots[0])
    assert batch is not None
    last = region[-1]
    loc = last.location
    index = ir.IndexType.get()
    with ir.InsertionPoint.after(last), loc:
        zero = arith.ConstantOp(index, 0)
        one = arith.ConstantOp(index, 1)
        count = arith.ConstantOp(index, batch)
        loop = scf.ForOp(zero.result, count.result, one.result)
        with ir.InsertionPoint(loop.body):
            yield_op = scf.YieldOp([])
    n = loop.induction_variable
    image: list[tuple[ir.Value, ir.Value]] = []  # root -> its image-n value inside the loop
    dead: list[ir.Operation] = []

    def image_of(root: ir.Value, user: ir.Operation) -> ir.Value:
        for key, value in image:
            if key == root:
                return value
        t = ir.MemRefType(root.type)
        with ir.InsertionPoint(user), loc:
            view = memref.subview(root, [n, *([0] * (t.rank - 1))], [1, *t.shape[1:]], [1] * t.rank,
                                  result_type=_one_image_type(t))
        image.append((root, view))
        return view

    for op in region:
        if op in found:
            op.move_before(yield_op)
            for p in found[op]:
                value = op.operands[p]
                view = image_of(_root(value), op)
                if view.type != value.type and op.name == "func.call":
                    with ir.InsertionPoint(op), loc:
                        view = memref.CastOp(value.type, view).result
                op.operands[p] = view
        elif op.name == "memref.alloc" and all(_in_region(u, region) for u in _users(op.results[0])):
            t = ir.MemRefType(op.results[0].type)
            with ir.InsertionPoint(loop.operation), op.location:
                alloc = memref.AllocOp(ir.MemRefType.get([1, *t.shape[1:]], t.element_type, None, t.memory_space), [], [])
            if "alignment" in op.attributes:
                alloc.operation.attributes["alignment"] = op.attributes["alignment"]
            image.append((op.results[0], alloc.result))
            dead.append(op)
        elif op.name == "memref.cast" and any(_root(op.results[0]) == r for r in roots) \
                and all(_in_region(u, region) for u in _users(op.results[0])):
            dead.append(op)  # a view of a batch buffer used only by the region's ops
        else:
            op.move_before(loop.operation)  # constants, weights' casts, buffers used after the region
    for op in reversed(dead):  # users (later casts) first
        op.erase()
