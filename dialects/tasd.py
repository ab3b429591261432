"""The TASD dialect: structured-sparse weights and the series that sum them.

TASD rewrites a contraction with a sparse weight ``A`` as
``A·B = A1·B + A2·B + … + Ak·B`` where each ``Ai`` is N:M structured sparse.
The dialect spells that identity out in four kinds of op:

``tasd.sparse_weight``
    One N:M term in compressed form: ``values`` and ``indices`` (the in-block
    position of every kept value) along one reduction ``axis``. Its result has
    the *dense* tensor type of the term, so the op also reads as "the dense
    tensor this compressed form denotes".
``tasd.matmul``, ``tasd.batch_matmul``, ``tasd.conv2d``
    A contraction of one term with a dense operand.
``tasd.series``
    The sum of the terms' contractions, with its configuration string
    (``"2:4+1:8"``). All terms share the same dense operand.
``tasd.decompose_activation``
    TASD-A: a *run-time* value (an activation) decomposed, when the program
    runs, into the series ``config`` along its reduction ``axis``. The result
    is the sum of those terms, with the operand's type; a contraction that
    consumes it (``linalg.matmul``, ``linalg.batch_matmul``,
    ``linalg.conv_2d_nchw_fchw``, or the dense operand of a ``tasd.series``)
    contracts the structured-sparse terms instead of the dense activation.

Combining TASD-W and TASD-A on one contraction
----------------------------------------------
The IR can say both: a ``tasd.series`` of weight terms whose dense operand
is a ``tasd.decompose_activation``. Its meaning is ``approx(x)·approx(W)``.
Where it runs:

* the CPU runtime executes it (the activation kernel extracts the terms of
  ``x`` and multiplies them with the exact sum of the weight terms, a
  compile-time constant);
* on the simulated accelerators it is refused: every shipped target
  (``dense``, ``stc``, ``vegeta``, ``ttc-m8``) has *one* structured operand
  port (A, streaming its terms while B and C stay stationary), so a layer can
  be decomposed on the weight side or on the activation side, not both. Only
  ``ttc-m8`` has the TASD extraction units that TASD-A needs at all.

Convolution has its own op rather than an im2col form: ``tasd.conv2d`` takes
an NCHW input and a filter term whose dense shape is ``[F, C*KH*KW]``,
compressed along axis 1 in (c, kh, kw) order — exactly the reduction of the
im2col GEMM — with ``kernel_size = [KH, KW]`` to restore the 4-D filter.
``tasd.batch_matmul`` carries a rank-3 term (one weight per batch).

All ops print in MLIR's generic form (a limit of Python-defined dialects).
The verifiers run before IRDL's attribute checks, so they first check that
each attribute is present and of the right kind, and name op and attribute
in every message.

Compressed format (shared with :mod:`tasdc.decompose` and the runtimes): for
a dense term of reduction size ``K`` along ``axis`` and ``padding`` explicit
zeros, ``values`` has the dense shape with ``shape[axis] = (K+padding)/m*n``;
slot ``j`` belongs to block ``j // n``; ``indices`` has the same shape, type
``i8``, and holds positions in ``[0, m)``, distinct and ascending per block.
"""


from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects.ext import Dialect, Operand, Result

from tasdc.elements import constant_elements

if TYPE_CHECKING:
    from tasdc.decompose import SeriesConfig


class TASD(Dialect, name="tasd"):
    """Tensor Approximation via Structured Decomposition."""


class DenseI64ArrayAttr(ir.DenseI64ArrayAttr):
    """``array<i64: …>`` usable as an IRDL field type."""

    attr_name = "builtin.dense_array"


CONTRACTION_OPS = ("tasd.matmul", "tasd.batch_matmul", "tasd.conv2d")


class VerifyError(Exception):
    """Raised inside a verifier; turned into one MLIR diagnostic on the op."""


def _fail(op: ir.OpView, message: str) -> bool:
    op.location.emit_error(f"'{op.name}' op {message}")
    return False


def _int_attr(op: ir.OpView, name: str) -> int:
    if name not in op.attributes:
        raise VerifyError(f"requires attribute '{name}'")
    attr = op.attributes[name]
    if not isinstance(attr, ir.IntegerAttr):
        raise VerifyError(f"attribute '{name}' must be an integer attribute, got {attr}")
    return int(attr.value)


def _i64_array_attr(op: ir.OpView, name: str, length: int) -> list[int]:
    if name not in op.attributes:
        raise VerifyError(f"requires attribute '{name}'")
    attr = op.attributes[name]
    if not isinstance(attr, ir.DenseI64ArrayAttr):
        raise VerifyError(f"attribute '{name}' must be array<i64: ...>, got {attr}")
    values = list(attr)
    if len(values) != length or any(v <= 0 for v in values):
        raise VerifyError(f"attribute '{name}' must hold {length} positive integers, got {values}")
    return values


def _str_attr(op: ir.OpView, name: str) -> str:
    if name not in op.attributes:
        raise VerifyError(f"requires attribute '{name}'")
    attr = op.attributes[name]
    if not isinstance(attr, ir.StringAttr):
        raise VerifyError(f"attribute '{name}' must be a string, got {attr}")
    return attr.value


def _ranked(value: ir.Value, what: str) -> ir.RankedTensorType:
    if not isinstance(value.type, ir.RankedTensorType):
        raise VerifyError(f"{what} must be a ranked tensor, got {value.type}")
    return ir.RankedTensorType(value.type)


def _defining_op(value: ir.Value) -> ir.OpView | None:
    owner = value.owner
    return owner if isinstance(owner, ir.OpView) else None


def _run(op: ir.OpView, check: Any) -> bool:
    # An exception escaping a verifier hook would abort the process from C++,
    # so every failure becomes a diagnostic on the op.
    try:
        check(op)
    except VerifyError as error:
        return _fail(op, str(error))
    except Exception as error:  # noqa: BLE001 - must not escape into C++
        return _fail(op, f"verifier failed: {type(error).__name__}: {error}")
    return True


class SparseWeightOp(TASD.Operation, name="sparse_weight"):
    """One N:M structured-sparse term in compressed form.

    ``values`` and ``indices`` hold, for every aligned block of ``m`` elements
    along ``axis``, the ``n`` kept entries and their in-block positions. The
    result is the dense tensor the term denotes (zeros elsewhere), with
    ``padding`` trailing zeros on ``axis`` dropped.
    """

    values: Operand[ir.RankedTensorType]
    indices: Operand[ir.RankedTensorType]
    n: ir.IntegerAttr
    m: ir.IntegerAttr
    axis: ir.IntegerAttr
    padding: ir.IntegerAttr
    result: Result[ir.RankedTensorType]

    @staticmethod
    def verify_invariants(op: ir.OpView) -> bool:
        return _run(op, _verify_sparse_weight)


def _verify_sparse_weight(op: ir.OpView) -> None:
    n, m = _int_attr(op, "n"), _int_attr(op, "m")
    axis, padding = _int_attr(op, "axis"), _int_attr(op, "padding")
    if m <= 0:
        raise VerifyError(f"attribute 'm' must be positive, got {m}")
    if not 0 < n <= m:
        raise VerifyError(f"attribute 'n' must satisfy 0 < n <= m, got {n}:{m}")
    result = _ranked(op.results[0], "result")
    values = _ranked(op.operands[0], "values")
    indices = _ranked(op.operands[1], "indices")
    rank = result.rank
    if not 0 <= axis < rank:
        raise VerifyError(f"attribute 'axis' = {axis} is out of range for rank-{rank} result {result}")
    if not 0 <= padding < m:
        raise VerifyError(f"attribute 'padding' must be in [0, m), got {padding}")
    reduction = result.shape[axis]
    if (reduction + padding) % m:
        raise VerifyError(
            f"reduction size {reduction} of axis {axis} is not divisible by m={m} "
            f"(padding={padding}); set 'padding' to {(-reduction) % m} to pad explicitly"
        )
    if values.element_type != result.element_type:
        raise VerifyError(
            f"element type mismatch: values are {values.element_type} but result is {result.element_type}"
        )
    if not (isinstance(indices.element_type, ir.IntegerType) and indices.element_type.width == 8):
        raise VerifyError(f"indices must have element type i8, got {indices.element_type}")
    expected = list(result.shape)
    expected[axis] = (reduction + padding) // m * n
    if list(values.shape) != expected:
        raise VerifyError(
            f"values shape {list(values.shape)} does not match {n}:{m} of dense shape "
            f"{list(result.shape)} along axis {axis}; expected {expected}"
        )
    if list(indices.shape) != expected:
        raise VerifyError(f"indices shape {list(indices.shape)} does not match values shape {expected}")
    index_values = constant_elements(op.operands[1])
    if index_values is not None and index_values.size:
        bad = (index_values < 0) | (index_values >= m)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise VerifyError(
                f"index {int(index_values[where])} at {list(where)} is out of range for m={m}"
            )


def sparse_operand_of(op: ir.OpView) -> tuple[int, ir.OpView]:
    """The operand number and defining ``tasd.sparse_weight`` of a contraction."""
    which = _int_attr(op, "sparse_operand")
    if which not in (0, 1):
        raise VerifyError(f"attribute 'sparse_operand' must be 0 or 1, got {which}")
    producer = _defining_op(op.operands[which])
    if producer is None or producer.name != "tasd.sparse_weight":
        raise VerifyError(f"operand #{which} must be produced by 'tasd.sparse_weight'")
    return which, producer


def _check_element_types(op: ir.OpView, types: Sequence[ir.RankedTensorType]) -> None:
    element_types = {str(t.element_type) for t in types}
    if len(element_types) != 1:
        raise VerifyError(f"element type mismatch between operands and result: {sorted(element_types)}")


def _verify_matmul_like(op: ir.OpView, batch: bool) -> None:
    rank = 3 if batch else 2
    lhs = _ranked(op.operands[0], "lhs")
    rhs = _ranked(op.operands[1], "rhs")
    result = _ranked(op.results[0], "result")
    if lhs.rank != rank or rhs.rank != rank or result.rank != rank:
        raise VerifyError(f"expects rank-{rank} operands and result, got {lhs}, {rhs} -> {result}")
    _check_element_types(op, [lhs, rhs, result])
    b = 1 if batch else 0
    ls, rs, os_ = list(lhs.shape), list(rhs.shape), list(result.shape)
    if ls[b + 1] != rs[b] or os_[b:] != [ls[b], rs[b + 1]] or (batch and not ls[0] == rs[0] == os_[0]):
        raise VerifyError(f"incompatible shapes {ls} x {rs} -> {os_}")
    which, weight = sparse_operand_of(op)
    reduction_axis = b + 1 if which == 0 else b
    weight_axis = _int_attr(weight, "axis")
    if weight_axis != reduction_axis:
        raise VerifyError(
            f"sparse operand #{which} is compressed along axis {weight_axis} "
            f"but the reduction axis is {reduction_axis}"
        )


class MatmulOp(TASD.Operation, name="matmul"):
    """``C = A·B`` (2-D) where operand ``sparse_operand`` is one N:M term.

    The sparse operand must be produced by ``tasd.sparse_weight`` and
    compressed along the reduction axis (1 for ``A``, 0 for ``B``).
    """

    lhs: Operand[ir.RankedTensorType]
    rhs: Operand[ir.RankedTensorType]
    sparse_operand: ir.IntegerAttr
    result: Result[ir.RankedTensorType]

    @staticmethod
    def verify_invariants(op: ir.OpView) -> bool:
        return _run(op, lambda o: _verify_matmul_like(o, batch=False))


class BatchMatmulOp(TASD.Operation, name="batch_matmul"):
    """``C[b] = A[b]·B[b]`` where operand ``sparse_operand`` is a rank-3 N:M term.

    The term is compressed along the reduction axis (2 for ``A``, 1 for ``B``).
    """

    lhs: Operand[ir.RankedTensorType]
    rhs: Operand[ir.RankedTensorType]
    sparse_operand: ir.IntegerAttr
    result: Result[ir.RankedTensorType]

    @staticmethod
    def verify_invariants(op: ir.OpView) -> bool:
        return _run(op, lambda o: _verify_matmul_like(o, batch=True))


def conv_output_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Output extent of an unpadded convolution (padding is explicit in the input)."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _verify_conv2d(op: ir.OpView) -> None:
    image = _ranked(op.operands[0], "input")
    filt = _ranked(op.operands[1], "filter")
    result = _ranked(op.results[0], "result")
    kh, kw = _i64_array_attr(op, "kernel_size", 2)
    sh, sw = _i64_array_attr(op, "strides", 2)
    dh, dw = _i64_array_attr(op, "dilations", 2)
    if image.rank != 4 or filt.rank != 2 or result.rank != 4:
        raise VerifyError(f"expects an NCHW input, a [F, C*KH*KW] filter and an NFHW result, got {image}, {filt} -> {result}")
    _check_element_types(op, [image, filt, result])
    n, c, h, w = image.shape
    f, ckk = filt.shape
    if ckk != c * kh * kw:
        raise VerifyError(f"filter reduction size {ckk} != C*KH*KW = {c}*{kh}*{kw}")
    expected = [n, f, conv_output_size(h, kh, sh, dh), conv_output_size(w, kw, sw, dw)]
    if list(result.shape) != expected:
        raise VerifyError(f"result shape {list(result.shape)} does not match expected {expected}")
    if _int_attr(op, "sparse_operand") != 1:
        raise VerifyError("attribute 'sparse_operand' must be 1 (the filter)")
    which, weight = sparse_operand_of(op)
    if _int_attr(weight, "axis") != 1:
        raise VerifyError("the filter term must be compressed along axis 1 (C*KH*KW)")


class Conv2dOp(TASD.Operation, name="conv2d"):
    """An NCHW convolution whose filter is one N:M term (no padding; pad the input).

    The filter operand has dense shape ``[F, C*KH*KW]``, compressed along axis
    1 in (c, kh, kw) order; ``kernel_size = [KH, KW]``.
    """

    input: Operand[ir.RankedTensorType]
    filter: Operand[ir.RankedTensorType]
    sparse_operand: ir.IntegerAttr
    kernel_size: DenseI64ArrayAttr
    strides: DenseI64ArrayAttr
    dilations: DenseI64ArrayAttr
    result: Result[ir.RankedTensorType]

    @staticmethod
    def verify_invariants(op: ir.OpView) -> bool:
        return _run(op, _verify_conv2d)


def dense_operand_of(op: ir.OpView) -> ir.Value:
    """The operand of a contraction that is not the sparse term."""
    which, _ = sparse_operand_of(op)
    return op.operands[1 - which]


def _config_attr(op: ir.OpView, *, allow_dense: bool) -> "SeriesConfig":
    """The series in the op's ``config`` attribute, parsed by
    :func:`tasdc.decompose.parse_config`: the one rule for a valid config."""
    from tasdc.decompose import ConfigError, parse_config

    text = _str_attr(op, "config")
    try:
        config = parse_config(text)
    except ConfigError as error:
        raise VerifyError(f"attribute 'config': {error}") from None
    if config.is_dense and not allow_dense:
        raise VerifyError("attribute 'config' must name at least one N:M term, got 'dense'")
    return config


STATS_ATTR = "tasd.stats"  # the per-layer record the passes write (tasdc.report)
# Entries of a ``tasd.stats`` record that name a series (reports print them).
STATS_SERIES_KEYS = ("config", "act_config", "cheapest_lossless")


def verify_stats(op: ir.OpView) -> None:
    """Check the series named in ``op``'s ``tasd.stats`` record, if it has one.

    The passes record a layer's series there and the reports print it, so a
    record read from an input file must hold what :func:`parse_config`
    accepts, and on an op with its own ``config`` (``tasd.series``) the
    recorded ``config`` must be that one. Raises :class:`VerifyError`.
    """
    from tasdc.decompose import ConfigError, parse_config

    if STATS_ATTR not in op.attributes:
        return
    stats = op.attributes[STATS_ATTR]
    if not isinstance(stats, ir.DictAttr):
        raise VerifyError(f"attribute '{STATS_ATTR}' must be a dictionary, got {stats}")
    for key in STATS_SERIES_KEYS:
        if key not in stats:
            continue
        if not isinstance(stats[key], ir.StringAttr):
            raise VerifyError(f"attribute '{STATS_ATTR}' entry '{key}' must be a string, got {stats[key]}")
        text = ir.StringAttr(stats[key]).value
        try:
            parse_config(text)
        except ConfigError as error:
            raise VerifyError(f"attribute '{STATS_ATTR}' entry '{key}': {error}") from None
    own = op.attributes["config"] if "config" in op.attributes else None
    if "config" in stats and isinstance(own, ir.StringAttr) and ir.StringAttr(stats["config"]).value != own.value:
        raise VerifyError(
            f"attribute '{STATS_ATTR}' records config '{ir.StringAttr(stats['config']).value}' "
            f"but the op's config is '{own.value}'"
        )


def _verify_series(op: ir.OpView) -> None:
    config = _config_attr(op, allow_dense=True)
    text = _str_attr(op, "config")
    terms = list(op.operands)
    if config.is_dense or len(terms) != len(config.terms):
        raise VerifyError(f"config '{text}' has {len(config.terms)} terms but the op has {len(terms)} operands")
    result = _ranked(op.results[0], "result")
    dense_operand: ir.Value | None = None
    for i, (term, pattern) in enumerate(zip(terms, config.terms)):
        producer = _defining_op(term)
        if producer is None or producer.name not in CONTRACTION_OPS:
            raise VerifyError(f"term #{i} must be produced by one of {', '.join(CONTRACTION_OPS)}")
        if term.type != result:
            raise VerifyError(f"term #{i} has type {term.type} but the result is {result}")
        _, weight = sparse_operand_of(producer)
        got = (_int_attr(weight, "n"), _int_attr(weight, "m"))
        if got != (pattern.n, pattern.m):
            raise VerifyError(f"term #{i} is {got[0]}:{got[1]} but config '{text}' says {pattern}")
        other = dense_operand_of(producer)
        if dense_operand is None:
            dense_operand = other
        elif other != dense_operand:
            raise VerifyError(f"term #{i} contracts a different dense operand than term #0")
    verify_stats(op)


class SeriesOp(TASD.Operation, name="series"):
    """The sum of N:M term contractions that share one dense operand.

    ``config`` names the terms in order, e.g. ``"2:4+1:4"``; operand ``i``
    must be a contraction whose sparse term is the ``i``-th pattern.
    """

    terms: Sequence[Operand[ir.RankedTensorType]]
    config: ir.StringAttr
    result: Result[ir.RankedTensorType]

    @staticmethod
    def verify_invariants(op: ir.OpView) -> bool:
        return _run(op, _verify_series)


def _verify_decompose_activation(op: ir.OpView) -> None:
    _config_attr(op, allow_dense=False)
    axis = _int_attr(op, "axis")
    source = _ranked(op.operands[0], "input")
    result = _ranked(op.results[0], "result")
    if not 0 <= axis < source.rank:
        raise VerifyError(f"attribute 'axis' = {axis} is out of range for rank-{source.rank} input {source}")
    if source != result:
        raise VerifyError(f"result type {result} must equal the input type {source}")
    if not isinstance(source.element_type, (ir.F32Type, ir.F16Type, ir.BF16Type, ir.F64Type)):
        raise VerifyError(f"input must have a floating-point element type, got {source.element_type}")
    verify_stats(op)


class DecomposeActivationOp(TASD.Operation, name="decompose_activation"):
    """TASD-A: ``input`` decomposed at run time into the series ``config``.

    Along ``axis`` (the reduction axis of the contraction that consumes the
    result), term ``i`` keeps in every aligned ``M_i``-block the ``N_i``
    largest magnitudes of what the earlier terms left (ties: lower in-block
    index first; the last block is zero-padded). The result, with the input's
    type, is the sum of the terms: the same greedy rule and tie rule as
    :func:`tasdc.decompose.decompose` for weights, applied to the live value.
    """

    input: Operand[ir.RankedTensorType]
    config: ir.StringAttr
    axis: ir.IntegerAttr
    result: Result[ir.RankedTensorType]

    @staticmethod
    def verify_invariants(op: ir.OpView) -> bool:
        return _run(op, _verify_decompose_activation)


def activation_source(value: ir.Value) -> ir.OpView | None:
    """The ``tasd.decompose_activation`` producing ``value``, if any."""
    owner = _defining_op(value)
    return owner if owner is not None and owner.name == "tasd.decompose_activation" else None


def load_into(context: ir.Context) -> None:
    """Load the TASD dialect into ``context`` unless it is already there."""
    with context:
        if not context.is_dialect_loaded(TASD.DIALECT_NAMESPACE):
            TASD.load()
