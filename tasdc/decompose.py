"""TASD decomposition: a dense tensor as a sum of N:M structured-sparse terms.

A sparse (or dense) weight ``w`` is rewritten as ``w ≈ A1 + A2 + … + Ak`` where
each ``Ai`` is N_i:M_i structured sparse along one reduction ``axis``: every
aligned block of ``M_i`` consecutive elements along that axis holds at most
``N_i`` non-zeros. Terms are extracted greedily: term ``i`` keeps, in every
block of the residual ``R_{i-1} = w - (A1 + … + A_{i-1})``, the ``N_i``
largest-magnitude entries. Terms of one series may use different ``M``
(``2:4+1:8``).

Selection and tie rule
----------------------
Inside one M-block the entries are ranked by the total order

    larger ``|x|`` first; among equal ``|x|`` the lower in-block index first

and the term keeps the first ``N`` of that order. ``-0.0`` and ``0.0`` are
equal magnitudes. Consequences: ``[1, -1, 1, 0]`` with ``2:4`` keeps indices
0 and 1; a block with fewer than ``N`` non-zeros keeps all of them and fills
the remaining slots with zeros taken at the lowest free positions of the
*current residual* (so a later term may re-use, as a zero filler, a position an
earlier term already took). The selection is a pure function of the residual
values: decomposing twice gives identical arrays.

Compressed format (shared with :mod:`tasdc.dialects.tasd` and the runtimes)
---------------------------------------------------------------------------
Let ``K = w.shape[axis]``, ``Kp = ceil(K / M) * M`` and ``padding = Kp - K``
(explicit zeros appended on the axis and recorded). A term with pattern N:M
stores

``values``
    shape of ``w`` with ``shape[axis] = (Kp // M) * N``, dtype of ``w``,
    C-contiguous. Slot ``j`` on the axis belongs to block ``j // N``.
``indices``
    same shape, dtype ``np.int8``: the in-block position (``0 .. M-1``) of
    each kept value, distinct and strictly ascending within a block. Hence
    ``M <= 128``.

Every term stores exactly ``N`` slots per block (zero fillers included).

Exactness
---------
No arithmetic ever touches a kept value: a term's values are copies of
residual entries, and the residual is updated by *zeroing* the kept
positions. So the sum of the terms is exact (each position is taken at most
once with a non-zero value) and equals ``w - residual`` bit for bit, and a
series whose ``ΣN`` covers every block's non-zeros reproduces ``w`` exactly.

Implementation
--------------
Pure numpy. Blocks are processed in cache-sized chunks (a Python loop over
chunks of tens of thousands of blocks, never over single blocks). Within a
chunk the magnitudes are laid out ``(M, blocks)`` so that every operation is
a contiguous SIMD ufunc: a block's ranks come from ``M - 1`` vectorised
pairwise comparisons (``a[d:] > a[:-d]`` for each distance ``d``), the kept
set is packed into an ``M``-bit code and a lookup table maps the code to the
``N`` ascending indices. ``M > 16`` falls back to a stable ``argsort`` per
block (same tie rule, slower).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from tasdc import cache as _cache
from tasdc.errors import TasdcError

__all__ = [
    "MAX_M",
    "ConfigError",
    "NonFiniteWeightError",
    "Pattern",
    "SeriesConfig",
    "parse_config",
    "CompressedTerm",
    "extract_term",
    "Decomposition",
    "decompose",
    "density",
    "block_histogram",
    "block_nnz",
    "relative_error",
    "l1_dropped",
    "is_lossless",
    "cheapest_lossless",
    "TensorStats",
    "tensor_stats",
]

#: Largest supported block size: in-block indices are stored as int8.
MAX_M = 128

#: Blocks processed per chunk is ``_CHUNK_ELEMENTS // M`` (cache-sized).
_CHUNK_ELEMENTS = 1 << 17

#: Largest M handled by the comparison/lookup-table kernel.
_LUT_MAX_M = 16


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


class ConfigError(TasdcError, ValueError):
    """An invalid N:M pattern or series configuration; the message is one line
    that names the offending term and the reason."""


class NonFiniteWeightError(ValueError):
    """The tensor to decompose contains NaN or Inf."""

    def __init__(self, message: str = "weight contains NaN or Inf") -> None:
        super().__init__(message)


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One N:M pattern: at most ``n`` non-zeros in every aligned block of ``m``.

    ``1 <= n <= m <= MAX_M``; violations raise :class:`ConfigError`.
    """

    n: int
    m: int

    def __post_init__(self) -> None:
        for name in ("n", "m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"invalid N:M pattern '{self.n}:{self.m}': {name.upper()} must be an integer")
            object.__setattr__(self, name, int(value))
        reason = _pattern_problem(self.n, self.m)
        if reason is not None:
            raise ConfigError(f"invalid N:M pattern '{self.n}:{self.m}': {reason}")

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def density(self) -> float:
        """Fraction of slots kept: ``n / m``."""
        return self.n / self.m

    @property
    def fraction(self) -> Fraction:
        """``n / m`` as an exact fraction (for exact comparisons)."""
        return Fraction(self.n, self.m)

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """Parse one ``"N:M"`` term (whitespace tolerant)."""
        return _parse_term(text, text)


def _pattern_problem(n: int, m: int) -> str | None:
    if m < 1:
        return "M must be >= 1"
    if n < 1:
        return "N must be >= 1"
    if n > m:
        return "N must be <= M"
    if m > MAX_M:
        return f"M must be <= {MAX_M} (in-block indices are int8)"
    return None


@dataclass(frozen=True)
class SeriesConfig:
    """A series ``N1:M1+N2:M2+…`` of patterns; the empty series means dense."""

    terms: tuple[Pattern, ...] = ()

    def __post_init__(self) -> None:
        terms = tuple(self.terms)
        for term in terms:
            if not isinstance(term, Pattern):
                raise ConfigError(f"invalid series config: term {term!r} is not a Pattern")
        object.__setattr__(self, "terms", terms)

    def __str__(self) -> str:
        if not self.terms:
            return "dense"
        return "+".join(str(t) for t in self.terms)

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> SeriesConfig:
        """Same as :func:`parse_config`."""
        return parse_config(text, **kwargs)

    @property
    def is_dense(self) -> bool:
        """True for the empty series (no decomposition)."""
        return not self.terms

    @property
    def density(self) -> float:
        """Sum of ``n / m`` over the terms (the stored/computed fraction of a
        dense operand). The dense config has density 1.0."""
        if not self.terms:
            return 1.0
        return float(self.fraction)

    @property
    def fraction(self) -> Fraction:
        """:attr:`density` as an exact fraction."""
        if not self.terms:
            return Fraction(1)
        return sum((t.fraction for t in self.terms), Fraction(0))

    @property
    def ms(self) -> tuple[int, ...]:
        """The distinct block sizes, in order of first appearance."""
        return tuple(dict.fromkeys(t.m for t in self.terms))

    @property
    def same_m(self) -> bool:
        """True when there is at least one term and all terms share one M."""
        return len(self.ms) == 1

    @property
    def m(self) -> int | None:
        """The common M when :attr:`same_m`, else None."""
        return self.terms[0].m if self.same_m else None

    @property
    def max_nnz_per_block(self) -> int | None:
        """``ΣN`` when :attr:`same_m` (the most non-zeros an M-block of the sum
        can hold), else None."""
        return sum(t.n for t in self.terms) if self.same_m else None


_TERM_RE = re.compile(r"([+-]?\d+)\s*:\s*([+-]?\d+)", re.ASCII)


def _parse_term(term: str, text: str, position: int = 1) -> Pattern:
    stripped = term.strip()
    if not stripped:
        raise ConfigError(f"invalid series config '{text.strip()}': term #{position} is empty")
    match = _TERM_RE.fullmatch(stripped)
    if match is None:
        raise ConfigError(f"invalid N:M pattern '{stripped}': expected N:M with integers N and M")
    n, m = int(match.group(1)), int(match.group(2))
    reason = _pattern_problem(n, m)
    if reason is not None:
        raise ConfigError(f"invalid N:M pattern '{stripped}': {reason}")
    return Pattern(n, m)


def parse_config(
    text: str,
    *,
    require_pow2: bool = False,
    allowed_m: Collection[int] | None = None,
    max_terms: int = 8,
) -> SeriesConfig:
    """Parse ``"dense"``, ``"2:4"``, ``"2:4+1:8"`` … into a :class:`SeriesConfig`.

    Whitespace around terms and around ``:``/``+`` is ignored; ``dense`` is
    case-insensitive. Raises :class:`ConfigError` (one line naming the term
    and the reason) for empty or malformed terms, ``N < 1``, ``M < 1``,
    ``N > M``, ``M > 128``, a non-power-of-two ``M`` when ``require_pow2``,
    an ``M`` outside ``allowed_m``, or more than ``max_terms`` terms.
    """
    if not isinstance(text, str):
        raise ConfigError(f"invalid series config {text!r}: expected a string")
    stripped = text.strip()
    if not stripped:
        raise ConfigError("invalid series config '': empty (use 'dense' for no decomposition)")
    if stripped.lower() == "dense":
        return SeriesConfig(())
    parts = stripped.split("+")
    if len(parts) > max_terms:
        raise ConfigError(f"invalid series config '{stripped}': {len(parts)} terms, at most {max_terms} allowed")
    patterns = []
    for position, part in enumerate(parts, start=1):
        if part.strip().lower() == "dense":
            raise ConfigError(f"invalid series config '{stripped}': 'dense' cannot be combined with N:M terms")
        pattern = _parse_term(part, stripped, position)
        term = part.strip()
        if require_pow2 and pattern.m & (pattern.m - 1):
            raise ConfigError(f"invalid N:M pattern '{term}': M must be a power of two")
        if allowed_m is not None and pattern.m not in allowed_m:
            allowed = ", ".join(str(m) for m in sorted(allowed_m))
            raise ConfigError(f"invalid N:M pattern '{term}': M={pattern.m} is not one of the allowed M values ({allowed})")
        patterns.append(pattern)
    return SeriesConfig(tuple(patterns))


def _as_config(config: SeriesConfig | str) -> SeriesConfig:
    if isinstance(config, SeriesConfig):
        return config
    return parse_config(config)


def _as_pattern(pattern: Pattern | str) -> Pattern:
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, str):
        return Pattern.parse(pattern)
    raise ConfigError(f"invalid N:M pattern {pattern!r}: expected a Pattern or an 'N:M' string")


# --------------------------------------------------------------------------
# input handling and layout
# --------------------------------------------------------------------------


def _check_weight(w: np.ndarray, axis: int, *, finite: bool = True) -> tuple[np.ndarray, int]:
    w = np.asarray(w)
    if w.ndim < 1:
        raise ValueError("weight must have at least one dimension")
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"weight must be a floating-point array, got dtype {w.dtype}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -w.ndim <= axis < w.ndim:
        raise np.exceptions.AxisError(int(axis), w.ndim)
    # max/min propagate NaN and expose ±Inf without a full-size temporary
    if finite and w.size and not (np.isfinite(np.max(w)) and np.isfinite(np.min(w))):
        raise NonFiniteWeightError()
    return w, int(axis) % w.ndim


def _padded_k(k: int, m: int) -> int:
    return -(-k // m) * m


class _Work:
    """The residual in axis-last layout, padded to a multiple of the current M:
    ``data`` has shape ``(rows, kp)``; :meth:`blocks` is its
    ``(rows*kp/m, m)`` view. Read-only use (``writable=False``) avoids the
    copy when ``w`` is already C-contiguous, axis-last and unpadded."""

    def __init__(self, w: np.ndarray, axis: int, m: int, *, writable: bool) -> None:
        moved = np.moveaxis(w, axis, -1)
        self.lead = moved.shape[:-1]
        self.k = moved.shape[-1]
        self.rows = math.prod(self.lead)
        self.m = m
        kp = _padded_k(self.k, m)
        if kp == self.k and not writable and moved.flags.c_contiguous:
            self.data = moved.reshape(self.rows, kp)
        elif kp == self.k:
            self.data = np.array(moved, order="C", copy=True).reshape(self.rows, kp)
        else:
            self.data = np.zeros((self.rows, kp), dtype=w.dtype)
            self.data.reshape(self.lead + (kp,))[..., : self.k] = moved

    def repad(self, m: int) -> None:
        """Re-block for a new M (copies only when the padded width changes)."""
        kp = _padded_k(self.k, m)
        if kp != self.data.shape[1]:
            data = np.zeros((self.rows, kp), dtype=self.data.dtype)
            data[:, : self.k] = self.data[:, : self.k]
            self.data = data
        self.m = m

    def blocks(self) -> np.ndarray:
        return self.data.reshape(-1, self.m)

    def unpadded(self, axis: int) -> np.ndarray:
        out = self.data[:, : self.k].reshape(self.lead + (self.k,))
        return np.ascontiguousarray(np.moveaxis(out, -1, axis))


def _from_blocks(arr: np.ndarray, lead: tuple[int, ...], width: int, axis: int) -> np.ndarray:
    """``(rows*blocks, n)`` kernel output → canonical layout (axis restored,
    ``width = blocks * n`` on it)."""
    out = arr.reshape(lead + (width,))
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))


def _to_blocks(arr: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Canonical compressed layout → ``(rows*blocks, n)``."""
    moved = np.moveaxis(arr, axis, -1)
    return moved.reshape(-1, n)


# --------------------------------------------------------------------------
# kernel
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _code_table(m: int, n: int) -> np.ndarray:
    """``table[code]`` = the ``n`` set-bit positions of ``code`` (ascending),
    for every ``m``-bit code with exactly ``n`` bits set; other rows are 0."""
    codes = np.arange(1 << m, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(m)) & 1
    table = np.zeros((1 << m, n), dtype=np.intp)
    rows = bits.sum(axis=1) == n
    table[rows] = np.nonzero(bits[rows])[1].reshape(-1, n)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=64)
def _block_offsets(m: int, n: int, chunk: int) -> np.ndarray:
    """Flat offset of each block's first element, pre-broadcast to
    ``(chunk, n)`` so that adding in-block indices is one flat loop."""
    offsets = np.repeat(np.arange(0, chunk * m, m, dtype=np.intp), n).reshape(chunk, n)
    offsets.setflags(write=False)
    return offsets


@functools.lru_cache(maxsize=None)
def _code_weights(m: int) -> np.ndarray:
    weights = (2.0 ** np.arange(m)).astype(np.float32)
    weights.setflags(write=False)
    return weights


def _select_lut(
    blocks: np.ndarray,
    ns: Sequence[int],
    out_values: Sequence[np.ndarray],
    out_indices: Sequence[np.ndarray],
    zero_last: bool,
) -> None:
    """Extract ``len(ns)`` successive terms from ``blocks`` (``(nb, m)``,
    C-contiguous, m <= 16), zeroing kept entries in place (for the last term
    only when ``zero_last``).

    Per chunk of ``c`` blocks, with ``a = |x|`` laid out ``(m, c)``:
    ``rank[i]`` = how many entries of its block beat entry ``i`` (larger
    magnitude, or equal magnitude and lower index), from ``m - 1`` shifted
    comparisons; ``rank < n`` marks the kept entries; their ``m``-bit code
    (a tiny matrix-vector product) indexes a table of ascending positions.
    All scratch buffers are allocated once (fresh large allocations would
    page-fault on every chunk).
    """
    nb, m = blocks.shape
    full_chunk = max(1, _CHUNK_ELEMENTS // m)
    chunk = min(full_chunk, nb)
    flat_all = blocks.reshape(-1)
    dtype = blocks.dtype
    a = np.empty((m, chunk), dtype=dtype)
    rank = np.empty((m, chunk), dtype=np.uint8)
    cmp = np.empty((max(m - 1, 1), chunk), dtype=np.bool_)
    keep = np.empty((m, chunk), dtype=np.float32)
    notkept = np.empty((m, chunk), dtype=np.bool_)
    code_f = np.empty(chunk, dtype=np.float32)
    code = np.empty(chunk, dtype=np.intp)
    init = np.arange(m, dtype=np.uint8)[:, None]
    weights = _code_weights(m)
    max_n = max(ns)
    bases = {n: _block_offsets(m, n, full_chunk) for n in set(ns)}
    sel_buf = np.empty((chunk, max_n), dtype=np.intp)
    flat_buf = np.empty((chunk, max_n), dtype=np.intp)
    for start in range(0, nb, chunk):
        stop = min(start + chunk, nb)
        c = stop - start
        xb = blocks[start:stop]
        xflat = flat_all[start * m : stop * m]
        at = a[:, :c]
        np.abs(xb.T, out=at)
        for t, n in enumerate(ns):
            last = t == len(ns) - 1
            if n == m:  # keep everything
                out_values[t][start:stop] = xb
                out_indices[t][start:stop] = np.arange(m, dtype=np.int8)
                if zero_last or not last:
                    xb[...] = 0
                    at[...] = 0
                continue
            rk = rank[:, :c]
            np.copyto(rk, init)  # start by assuming all j lower entries beat entry j
            for d in range(1, m):
                beats = np.greater(at[d:], at[:-d], out=cmp[: m - d, :c]).view(np.uint8)
                rk[:-d] += beats  # entry i+d beats entry i
                rk[d:] -= beats  # otherwise entry i beats entry i+d (counted in init)
            kp = np.less(rk, n, out=keep[:, :c])
            cf = np.matmul(weights, kp, out=code_f[:c])  # exact: codes < 2**16
            ci = code[:c]
            np.copyto(ci, cf, casting="unsafe")
            sel = sel_buf[:c, :n]
            np.take(_code_table(m, n), ci, axis=0, out=sel, mode="clip")
            flat = flat_buf[:c, :n]
            np.add(sel, bases[n][:c], out=flat)
            np.take(xflat, flat, out=out_values[t][start:stop], mode="clip")
            out_indices[t][start:stop] = sel
            if zero_last or not last:
                xflat[flat] = 0
            if not last:
                # kept magnitudes become +0.0 (a >= 0, so a * False == +0.0)
                nk = np.less_equal(kp, 0.0, out=notkept[:, :c])
                np.multiply(at, nk, out=at)


def _select_sort(
    blocks: np.ndarray,
    ns: Sequence[int],
    out_values: Sequence[np.ndarray],
    out_indices: Sequence[np.ndarray],
    zero_last: bool,
) -> None:
    """Reference path for any m (used for m > 16): stable argsort per block."""
    nb, m = blocks.shape
    chunk = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, nb, chunk):
        stop = min(start + chunk, nb)
        xb = blocks[start:stop]
        for t, n in enumerate(ns):
            last = t == len(ns) - 1
            order = np.argsort(-np.abs(xb), axis=1, kind="stable")[:, :n]
            order.sort(axis=1)
            out_values[t][start:stop] = np.take_along_axis(xb, order, axis=1)
            out_indices[t][start:stop] = order
            if zero_last or not last:
                np.put_along_axis(xb, order, 0, axis=1)


def _run_group(work: _Work, ns: Sequence[int], zero_last: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    blocks = work.blocks()
    nb = blocks.shape[0]
    values = [np.empty((nb, n), dtype=blocks.dtype) for n in ns]
    indices = [np.empty((nb, n), dtype=np.int8) for n in ns]
    if nb:
        kernel = _select_lut if work.m <= _LUT_MAX_M else _select_sort
        kernel(blocks, ns, values, indices, zero_last)
    return values, indices


# --------------------------------------------------------------------------
# compressed terms and decompositions
# --------------------------------------------------------------------------


@dataclass(eq=False)
class CompressedTerm:
    """One N:M term in the canonical compressed format (see module docstring)."""

    pattern: Pattern
    values: np.ndarray
    indices: np.ndarray
    axis: int
    dense_shape: tuple[int, ...]
    padding: int

    @property
    def num_blocks(self) -> int:
        """Number of M-blocks (over the whole tensor)."""
        return self.values.size // self.pattern.n

    @property
    def nnz(self) -> int:
        """Number of non-zero stored values (zero fillers excluded)."""
        return int(np.count_nonzero(self.values))

    def to_dense(self) -> np.ndarray:
        """Scatter the values back to ``dense_shape`` (padding dropped). Exact:
        values are copied, never combined arithmetically."""
        n, m = self.pattern.n, self.pattern.m
        k = self.dense_shape[self.axis]
        kp = k + self.padding
        moved_shape = tuple(s for i, s in enumerate(self.dense_shape) if i != self.axis)
        vals = _to_blocks(self.values, self.axis, n)
        idx = _to_blocks(self.indices, self.axis, n).astype(np.intp)
        out = np.zeros((vals.shape[0], m), dtype=self.values.dtype)
        np.put_along_axis(out, idx, vals, axis=1)
        out = out.reshape(moved_shape + (kp,))[..., :k]
        return np.ascontiguousarray(np.moveaxis(out, -1, self.axis))

    def validate(self) -> None:
        """Check every invariant of the format; raise ValueError naming the first
        one that fails."""
        n, m = self.pattern.n, self.pattern.m
        shape = tuple(self.dense_shape)
        if not 0 <= self.axis < len(shape):
            raise ValueError(f"axis {self.axis} out of range for dense shape {shape}")
        k = shape[self.axis]
        if self.padding != _padded_k(k, m) - k:
            raise ValueError(f"padding {self.padding} != {_padded_k(k, m) - k} for K={k}, M={m}")
        expected = list(shape)
        expected[self.axis] = (k + self.padding) // m * n
        if list(self.values.shape) != expected:
            raise ValueError(f"values shape {list(self.values.shape)} != expected {expected}")
        if self.indices.shape != self.values.shape:
            raise ValueError(f"indices shape {list(self.indices.shape)} != values shape {list(self.values.shape)}")
        if self.indices.dtype != np.int8:
            raise ValueError(f"indices dtype must be int8, got {self.indices.dtype}")
        idx = _to_blocks(self.indices, self.axis, n)
        if idx.size and (idx.min() < 0 or idx.max() >= m):
            raise ValueError(f"indices outside [0, {m})")
        if n > 1 and idx.size and not (np.diff(idx.astype(np.int16), axis=1) > 0).all():
            raise ValueError("indices are not strictly ascending within a block")
        if self.padding:
            vals = _to_blocks(self.values, self.axis, n)
            blocks_per_row = (k + self.padding) // m
            last = idx.reshape(-1, blocks_per_row, n)[:, -1, :]
            in_pad = last >= m - self.padding
            if np.any(vals.reshape(-1, blocks_per_row, n)[:, -1, :][in_pad] != 0):
                raise ValueError("non-zero value stored in the padding")


def _make_term(pattern: Pattern, values: np.ndarray, indices: np.ndarray, work: _Work, axis: int, shape: tuple[int, ...]) -> CompressedTerm:
    kp = _padded_k(work.k, pattern.m)
    width = kp // pattern.m * pattern.n
    return CompressedTerm(
        pattern=pattern,
        values=_from_blocks(values, work.lead, width, axis),
        indices=_from_blocks(indices, work.lead, width, axis),
        axis=axis,
        dense_shape=tuple(shape),
        padding=kp - work.k,
    )


def extract_term(w: np.ndarray, pattern: Pattern | str, axis: int) -> CompressedTerm:
    """The single N:M term of ``w`` along ``axis`` (top-N magnitudes of every
    M-block, tie rule in the module docstring).

    Raises :class:`NonFiniteWeightError` for NaN/Inf, ``TypeError`` for a
    non-floating dtype, ``AxisError`` for a bad axis.
    """
    pattern = _as_pattern(pattern)
    w, axis = _check_weight(w, axis)
    work = _Work(w, axis, pattern.m, writable=False)
    values, indices = _run_group(work, [pattern.n], zero_last=False)
    return _make_term(pattern, values[0], indices[0], work, axis, w.shape)


@dataclass(eq=False)
class Decomposition:
    """The result of :func:`decompose`.

    ``original`` is the decomposed tensor itself (a reference, not a copy:
    do not modify it while using the decomposition); ``residual`` is what the
    series leaves out; ``approximation`` (computed on first use, then cached)
    is the sum of the terms' dense forms — exactly, bit for bit, since it
    equals ``original - residual`` with every position either ``x - 0`` or
    ``x - x``.
    """

    config: SeriesConfig
    axis: int
    terms: list[CompressedTerm]
    original: np.ndarray
    residual: np.ndarray

    @functools.cached_property
    def approximation(self) -> np.ndarray:
        """Sum of the terms' dense forms (``dense_shape``, dtype of the input)."""
        return np.subtract(self.original, self.residual)

    @property
    def dense_shape(self) -> tuple[int, ...]:
        return tuple(self.original.shape)

    @property
    def is_exact(self) -> bool:
        """True when the series reproduces the tensor exactly."""
        return not np.any(self.residual)

    def relative_error(self) -> float:
        """``||residual||_F / ||original||_F`` (see :func:`relative_error`)."""
        return relative_error(self.original, self.approximation)

    def l1_dropped(self) -> float:
        """See :func:`l1_dropped`."""
        return l1_dropped(self.original, self.approximation)


def decompose(w: np.ndarray, config: SeriesConfig | str, axis: int) -> Decomposition:
    """Greedy TASD decomposition of ``w`` along ``axis`` with ``config``.

    Term ``i`` is :func:`extract_term` of the residual left by terms
    ``1..i-1``. The dense config gives no terms and ``approximation == w``.
    With an active :mod:`tasdc.cache` the terms come from / go to the cache
    (same arrays, bit for bit).
    """
    config = _as_config(config)
    w, axis = _check_weight(w, axis)
    if config.is_dense:
        return Decomposition(config, axis, [], w, np.zeros_like(w))
    if _cache.active() is not None:
        return _decompose_cached(w, config, axis)
    return _decompose(w, config, axis)


def _decompose(w: np.ndarray, config: SeriesConfig, axis: int) -> Decomposition:
    terms: list[CompressedTerm] = []
    work: _Work | None = None
    # consecutive terms with the same M are extracted in one pass over the data
    for m, group in itertools.groupby(config.terms, key=lambda p: p.m):
        patterns = list(group)
        if work is None:
            work = _Work(w, axis, m, writable=True)
        else:
            work.repad(m)
        values, indices = _run_group(work, [p.n for p in patterns], zero_last=True)
        for p, v, i in zip(patterns, values, indices):
            terms.append(_make_term(p, v, i, work, axis, w.shape))
    assert work is not None
    return Decomposition(config, axis, terms, w, work.unpadded(axis))


def _decompose_cached(w: np.ndarray, config: SeriesConfig, axis: int) -> Decomposition:
    """:func:`decompose` through the active :mod:`tasdc.cache` (same result)."""
    key = f"{_cache.array_digest(w)}/{axis}/{config}"
    found = _cache.lookup("decomposition", key)
    if found is None:
        result = _decompose(w, config, axis)
        arrays = {}
        for i, term in enumerate(result.terms):
            arrays[f"values{i}"], arrays[f"indices{i}"] = term.values, term.indices
        _cache.store("decomposition", key, arrays)
        return result
    k = w.shape[axis]
    terms = [CompressedTerm(p, found[f"values{i}"], found[f"indices{i}"], axis, tuple(w.shape), _padded_k(k, p.m) - k)
             for i, p in enumerate(config.terms)]
    residual = np.array(w, copy=True)
    for term in terms:  # disjoint supports: every position is x - x or x - 0, exactly
        residual -= term.to_dense()
    return Decomposition(config, axis, terms, w, residual)


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------


def density(w: np.ndarray) -> float:
    """Fraction of non-zero entries (0.0 for an empty tensor)."""
    w = np.asarray(w)
    return float(np.count_nonzero(w)) / w.size if w.size else 0.0


def block_nnz(w: np.ndarray, m: int, axis: int) -> np.ndarray:
    """Non-zeros in every aligned ``m``-block along ``axis`` (padding counts as
    zeros); shape: ``w``'s shape with the axis moved last and replaced by the
    number of blocks."""
    w = np.asarray(w)
    if w.ndim < 1:
        raise ValueError("tensor must have at least one dimension")
    if m < 1:
        raise ValueError(f"block size must be >= 1, got {m}")
    axis = int(axis)
    if not -w.ndim <= axis < w.ndim:
        raise np.exceptions.AxisError(axis, w.ndim)
    nz = np.moveaxis(w != 0, axis, -1)
    k = nz.shape[-1]
    kp = _padded_k(k, m)
    if kp != k or not nz.flags.c_contiguous:
        padded = np.zeros(nz.shape[:-1] + (kp,), dtype=np.uint8)
        padded[..., :k] = nz
    else:
        padded = nz.view(np.uint8)
    blocks = padded.reshape(-1, m)
    word = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
    popcount = getattr(np, "bitwise_count", None)  # numpy >= 2.0
    if popcount is not None and m in word:  # bytes are 0/1: popcount of a block word is its nnz
        counts = popcount(blocks.view(word[m])[:, 0])
    elif popcount is not None and m % 8 == 0:
        counts = popcount(blocks.view(np.uint64)).sum(axis=1, dtype=np.int64)
    else:
        counts = blocks.sum(axis=1, dtype=np.int64)
    return counts.astype(np.int64, copy=False).reshape(nz.shape[:-1] + (kp // m,))


def block_histogram(w: np.ndarray, m: int, axis: int) -> np.ndarray:
    """``hist[j]`` = number of aligned ``m``-blocks along ``axis`` holding
    exactly ``j`` non-zeros, ``j = 0..m`` (padding counts as zeros)."""
    counts = block_nnz(w, m, axis)
    return np.bincount(counts.reshape(-1), minlength=m + 1).astype(np.int64)


def _sq_norm(x: np.ndarray) -> float:
    return float(np.sum(np.square(x, dtype=np.float64)))


def relative_error(w: np.ndarray, approx: np.ndarray) -> float:
    """``||w - approx||_F / ||w||_F`` (accumulated in float64). For an all-zero
    ``w`` it is 0.0 when ``approx`` is zero too, else ``inf``."""
    w, approx = np.asarray(w), np.asarray(approx)
    if w.shape != approx.shape:
        raise ValueError(f"shape mismatch: {w.shape} vs {approx.shape}")
    num = _sq_norm(np.subtract(w, approx, dtype=np.float64))
    den = _sq_norm(w)
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return math.sqrt(num / den)


def l1_dropped(w: np.ndarray, approx: np.ndarray) -> float:
    """Fraction of the L1 mass not represented: ``Σ|w - approx| / Σ|w|``
    (same zero convention as :func:`relative_error`)."""
    w, approx = np.asarray(w), np.asarray(approx)
    if w.shape != approx.shape:
        raise ValueError(f"shape mismatch: {w.shape} vs {approx.shape}")
    num = float(np.sum(np.abs(np.subtract(w, approx, dtype=np.float64))))
    den = float(np.sum(np.abs(w), dtype=np.float64))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def _max_block_nnz(w: np.ndarray, m: int, axis: int) -> int:
    counts = block_nnz(w, m, axis)
    return int(counts.max()) if counts.size else 0


def is_lossless(w: np.ndarray, config: SeriesConfig | str, axis: int) -> bool:
    """True when the series reproduces ``w`` exactly.

    Dense: always. Equal M: iff every M-block holds at most ``ΣN`` non-zeros
    (no decomposition needed). Mixed M: decompose and compare exactly.
    """
    config = _as_config(config)
    w, axis = _check_weight(w, axis)
    if config.is_dense:
        return True
    if config.same_m:
        return _max_block_nnz(w, config.terms[0].m, axis) <= config.max_nnz_per_block
    if not _capacity_ok(config, {m: _max_block_nnz(w, m, axis) for m in config.ms}):
        return False
    return decompose(w, config, axis).is_exact


def _capacity_ok(config: SeriesConfig, max_nnz: dict[int, int]) -> bool:
    """Necessary condition for a lossless series: for every M in the series,
    an aligned M-block can receive at most ``N_i * M / M_i`` values from each
    term whose M_i divides M, and otherwise at most ``N_i`` per M_i-block
    the M-block overlaps."""
    for m, worst in max_nnz.items():
        capacity = 0
        for t in config.terms:
            if m % t.m == 0:
                overlapping = m // t.m  # aligned: exactly m / M_i blocks
            elif t.m % m == 0:
                overlapping = 1  # the m-block lies inside one M_i-block
            else:
                overlapping = -(-m // t.m) + 1
            capacity += min(t.n * max(overlapping, 1), m)
        if worst > capacity:
            return False
    return True


def _candidate_series(patterns: Sequence[Pattern], max_terms: int) -> Iterable[SeriesConfig]:
    """All series of 1..max_terms terms with non-increasing density (each
    order of equal-density patterns is a separate candidate)."""
    for k in range(1, max_terms + 1):
        for combo in itertools.product(patterns, repeat=k):
            if all(combo[i].fraction >= combo[i + 1].fraction for i in range(k - 1)):
                yield SeriesConfig(combo)


def cheapest_lossless(
    w: np.ndarray,
    patterns: Sequence[Pattern | str],
    axis: int,
    max_terms: int = 2,
) -> SeriesConfig | None:
    """The cheapest series that reproduces ``w`` exactly, or None.

    Candidates: 1..``max_terms`` terms drawn with repetition from ``patterns``,
    ordered by non-increasing density (``2:4+1:4``, never ``1:4+2:4``; equal
    densities are tried in every order). Cheapest = smallest total density
    ``Σn/m``, ties broken by fewer terms, then the lexicographically smaller
    string. Equal-M candidates are decided from the block histograms alone;
    mixed-M candidates are pruned by a block-capacity bound and only then
    decomposed (cheapest first, stopping at the first lossless one).
    """
    if max_terms < 1:
        raise ValueError(f"max_terms must be >= 1, got {max_terms}")
    pats = list(dict.fromkeys(_as_pattern(p) for p in patterns))
    w, axis = _check_weight(w, axis)
    if not pats:
        return None
    max_nnz = {m: _max_block_nnz(w, m, axis) for m in {p.m for p in pats}}
    candidates = sorted(
        _candidate_series(pats, max_terms),
        key=lambda c: (c.fraction, len(c.terms), str(c)),
    )
    for cand in candidates:
        if cand.same_m:
            if max_nnz[cand.terms[0].m] <= cand.max_nnz_per_block:
                return cand
        elif _capacity_ok(cand, {m: max_nnz[m] for m in cand.ms}):
            if decompose(w, cand, axis).is_exact:
                return cand
    return None


# --------------------------------------------------------------------------
# per-tensor report
# --------------------------------------------------------------------------


@dataclass
class TensorStats:
    """What a decomposition of one tensor did; :meth:`to_json` gives plain
    Python types (histogram keys become strings)."""

    shape: tuple[int, ...]
    dtype: str
    axis: int
    config: str
    size: int
    nnz: int
    density: float
    histograms: dict[int, list[int]]
    max_block_nnz: dict[int, int]
    num_terms: int
    compute_density: float
    stored_values: int
    approx_nnz: int
    approx_density: float
    relative_error: float
    l1_dropped: float
    lossless: bool
    term_nnz: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": [int(s) for s in self.shape],
            "dtype": self.dtype,
            "axis": int(self.axis),
            "config": self.config,
            "size": int(self.size),
            "nnz": int(self.nnz),
            "density": float(self.density),
            "histograms": {str(m): [int(c) for c in h] for m, h in self.histograms.items()},
            "max_block_nnz": {str(m): int(v) for m, v in self.max_block_nnz.items()},
            "num_terms": int(self.num_terms),
            "compute_density": float(self.compute_density),
            "stored_values": int(self.stored_values),
            "approx_nnz": int(self.approx_nnz),
            "approx_density": float(self.approx_density),
            "relative_error": float(self.relative_error),
            "l1_dropped": float(self.l1_dropped),
            "lossless": bool(self.lossless),
            "term_nnz": [int(n) for n in self.term_nnz],
        }


def tensor_stats(
    w: np.ndarray,
    config: SeriesConfig | str,
    axis: int,
    *,
    histogram_ms: Sequence[int] = (4, 8),
) -> TensorStats:
    """Decompose ``w`` with ``config`` and report density, block histograms
    (for ``histogram_ms`` and every M of the config), errors and losslessness.

    ``compute_density`` is the config's ``Σn/m`` (1.0 for dense) — the
    fraction of dense MACs the series issues; ``stored_values`` counts every
    stored slot, zero fillers and padding included.
    """
    config = _as_config(config)
    w, axis = _check_weight(w, axis)
    result = decompose(w, config, axis)
    ms = sorted(set(histogram_ms) | set(config.ms))
    histograms = {m: block_histogram(w, m, axis) for m in ms}
    max_nnz = {m: int(np.max(np.nonzero(h)[0])) if h.any() else 0 for m, h in histograms.items()}
    approx_nnz = int(np.count_nonzero(result.approximation))
    return TensorStats(
        shape=tuple(int(s) for s in w.shape),
        dtype=str(w.dtype),
        axis=axis,
        config=str(config),
        size=int(w.size),
        nnz=int(np.count_nonzero(w)),
        density=density(w),
        histograms={m: [int(c) for c in h] for m, h in histograms.items()},
        max_block_nnz=max_nnz,
        num_terms=len(result.terms),
        compute_density=config.density,
        stored_values=sum(int(t.values.size) for t in result.terms),
        approx_nnz=approx_nnz,
        approx_density=approx_nnz / w.size if w.size else 0.0,
        relative_error=relative_error(w, result.approximation),
        l1_dropped=l1_dropped(w, result.approximation),
        lossless=result.is_exact,
        term_nnz=[t.nnz for t in result.terms],
    )
