"""Tests of tasdc.decompose: format invariants, greedy selection and its tie
rule (against an independent brute force), exactness, metrics, config parsing
and the cheapest-lossless search."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tasdc import decompose as D
from tasdc.decompose import (
    CompressedTerm,
    ConfigError,
    NonFiniteWeightError,
    Pattern,
    SUPPORTED_M,
    SeriesConfig,
    block_histogram,
    block_nnz,
    cheapest_lossless,
    decompose,
    density,
    extract_term,
    is_lossless,
    l1_dropped,
    parse_config,
    relative_error,
    tensor_stats,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------
# strategies and references
# --------------------------------------------------------------------------

M_CHOICES = [1, 2, 3, 4, 5, 8, 16, 20]  # 20 exercises the argsort path (M > 16)


@st.composite
def patterns(draw, ms=M_CHOICES):
    m = draw(st.sampled_from(ms))
    n = draw(st.integers(1, m))
    return Pattern(n, m)


@st.composite
def configs(draw, max_terms=3, ms=M_CHOICES):
    return SeriesConfig(tuple(draw(st.lists(patterns(ms), min_size=1, max_size=max_terms))))


@st.composite
def tensors(draw, max_rank=3, max_dim=7, max_k=21):
    """A small float tensor and an axis. Values come from a tiny set so that
    equal magnitudes (ties) are common; `density` controls the zeros."""
    rank = draw(st.integers(1, max_rank))
    axis = draw(st.integers(-rank, rank - 1))
    shape = [draw(st.integers(1, max_dim)) for _ in range(rank)]
    shape[axis] = draw(st.integers(1, max_k))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    frac_nonzero = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8, 1.0]))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        x = rng.integers(-3, 4, size=shape).astype(dtype) * dtype(0.5)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) >= frac_nonzero] = 0
    return x, axis


def blocks_of(x: np.ndarray, m: int, axis: int) -> np.ndarray:
    """(num_blocks, m) view of x padded along axis (test-side, loops allowed)."""
    moved = np.moveaxis(x, axis, -1)
    k = moved.shape[-1]
    kp = -(-k // m) * m
    padded = np.zeros(moved.shape[:-1] + (kp,), dtype=x.dtype)
    padded[..., :k] = moved
    return padded.reshape(-1, m)


def term_blocks(term: CompressedTerm) -> tuple[np.ndarray, np.ndarray]:
    n = term.pattern.n
    vals = np.moveaxis(term.values, term.axis, -1).reshape(-1, n)
    idx = np.moveaxis(term.indices, term.axis, -1).reshape(-1, n)
    return vals, idx


def beats(block: np.ndarray, i: int, j: int) -> bool:
    """Tie rule: larger magnitude first, then the lower index."""
    return abs(block[i]) > abs(block[j]) or (abs(block[i]) == abs(block[j]) and i < j)


def brute_force_selection(block: np.ndarray, n: int) -> tuple[int, ...]:
    """The unique n-subset whose every member beats every non-member, found by
    trying all combinations (independent of any sorting)."""
    m = len(block)
    winners = [
        combo
        for combo in itertools.combinations(range(m), n)
        if all(beats(block, i, j) for i in combo for j in range(m) if j not in combo)
    ]
    assert len(winners) == 1
    return winners[0]


def brute_force_decompose(x: np.ndarray, config: SeriesConfig, axis: int):
    """Per-term (indices, values) blocks and the final residual, loops only."""
    residual = x.copy()
    out = []
    for p in config.terms:
        b = blocks_of(residual, p.m, axis)
        sel = np.array([brute_force_selection(row, p.n) for row in b], dtype=np.int64).reshape(-1, p.n)
        vals = np.take_along_axis(b, sel, axis=1)
        b = b.copy()
        np.put_along_axis(b, sel, 0, axis=1)
        moved = np.moveaxis(residual, axis, -1)
        k = moved.shape[-1]
        new = b.reshape(moved.shape[:-1] + (-1,))[..., :k]
        residual = np.ascontiguousarray(np.moveaxis(new, -1, axis))
        out.append((sel, vals))
    return out, residual


def check_term_invariants(term: CompressedTerm, w: np.ndarray, axis: int) -> None:
    n, m = term.pattern.n, term.pattern.m
    ax = axis % w.ndim
    k = w.shape[ax]
    kp = -(-k // m) * m
    assert term.axis == ax
    assert term.dense_shape == w.shape
    assert term.padding == kp - k
    expected = list(w.shape)
    expected[ax] = kp // m * n
    assert list(term.values.shape) == expected
    assert term.indices.shape == term.values.shape
    assert term.indices.dtype == np.int8
    assert term.values.dtype == w.dtype
    vals, idx = term_blocks(term)
    assert ((idx >= 0) & (idx < m)).all()
    assert (np.diff(idx.astype(np.int64), axis=1) > 0).all()  # distinct, strictly ascending
    assert (np.count_nonzero(vals, axis=1) <= n).all()
    dense = term.to_dense()
    assert dense.shape == w.shape
    assert (block_nnz(dense, m, ax) <= n).all()
    term.validate()


# --------------------------------------------------------------------------
# hand-made tie-rule and format cases
# --------------------------------------------------------------------------


def test_tie_rule_equal_magnitudes_keep_lowest_indices():
    t = extract_term(np.array([1, -1, 1, 0], np.float32), "2:4", axis=0)
    assert t.indices.tolist() == [0, 1]
    assert t.values.tolist() == [1, -1]


@pytest.mark.parametrize(
    "block, n, indices, values",
    [
        ([0, 0, 0, 0], 2, [0, 1], [0, 0]),  # all zero: lowest positions
        ([0, 0, 5, 0], 2, [0, 2], [0, 5]),  # one non-zero, filler at the lowest free slot
        ([3, -3, 3, 3], 1, [0], [3]),
        ([1, 2, -2, 1], 2, [1, 2], [2, -2]),
        ([-0.0, 0.0, 0.0, 1], 2, [0, 3], [0, 1]),  # -0.0 and 0.0 tie
        ([4, 1, 1, 4], 3, [0, 1, 3], [4, 1, 4]),
        ([7, 8, 9, 6], 4, [0, 1, 2, 3], [7, 8, 9, 6]),
    ],
)
def test_tie_rule_hand_made(block, n, indices, values):
    t = extract_term(np.array(block, np.float64), Pattern(n, 4), axis=0)
    assert t.indices.tolist() == indices
    assert t.values.tolist() == values


def test_later_term_reuses_taken_position_as_zero_filler():
    d = decompose(np.array([5, 0, 0, 0], np.float32), "1:4+1:4", axis=0)
    assert d.terms[0].indices.tolist() == [0] and d.terms[0].values.tolist() == [5]
    # residual is all zero: its lowest position (0) is the filler
    assert d.terms[1].indices.tolist() == [0] and d.terms[1].values.tolist() == [0]
    assert np.array_equal(d.approximation, [5, 0, 0, 0])


def test_padding_recorded_and_round_trip():
    w = np.arange(1, 11, dtype=np.float32).reshape(1, 10)  # K=10, M=4 -> Kp=12
    t = extract_term(w, "2:4", axis=1)
    assert t.padding == 2
    assert t.values.shape == (1, 6)
    assert t.indices.tolist() == [[2, 3, 2, 3, 0, 1]]
    assert t.values.tolist() == [[3, 4, 7, 8, 9, 10]]
    assert np.array_equal(t.to_dense(), [[0, 0, 3, 4, 0, 0, 7, 8, 9, 10]])
    t8 = extract_term(w, "8:8", axis=1)
    assert t8.padding == 6
    assert np.array_equal(t8.to_dense(), w)


def test_axis_zero_and_non_contiguous_input():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 5)).astype(np.float32)
    d0 = decompose(w, "2:4", axis=0)
    dt = decompose(np.ascontiguousarray(w.T), "2:4", axis=1)
    assert np.array_equal(d0.approximation, dt.approximation.T)
    assert np.array_equal(d0.terms[0].values, dt.terms[0].values.T)
    assert d0.terms[0].values.flags.c_contiguous
    view = w.T  # non-contiguous
    assert np.array_equal(decompose(view, "2:4", axis=1).approximation, dt.approximation)
    assert np.array_equal(decompose(w, "2:4", axis=-2).approximation, d0.approximation)


def test_dense_config_is_identity():
    w = np.random.default_rng(1).standard_normal((3, 9)).astype(np.float32)
    d = decompose(w, "dense", axis=1)
    assert d.terms == []
    assert np.array_equal(d.approximation, w)
    assert not np.any(d.residual)
    assert is_lossless(w, "dense", 1)


def test_empty_tensors():
    for shape, axis in [((0, 8), 1), ((3, 0), 1), ((0, 8), 0)]:
        w = np.zeros(shape, np.float32)
        d = decompose(w, "2:4+1:8", axis)
        assert d.approximation.shape == shape
        for t in d.terms:
            check_term_invariants(t, w, axis)
        assert block_histogram(w, 4, axis).sum() == block_nnz(w, 4, axis).size


def test_input_errors():
    with pytest.raises(NonFiniteWeightError, match="weight contains NaN or Inf"):
        decompose(np.array([1.0, np.nan, 0, 0]), "2:4", 0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        extract_term(np.array([1.0, -np.inf, 0, 0]), "2:4", 0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        decompose(np.array([np.inf, 0.0]), "2:4+1:8", 0)
    with pytest.raises(TypeError):
        decompose(np.array([1, 2, 3, 4]), "2:4", 0)
    with pytest.raises(np.exceptions.AxisError):
        decompose(np.zeros((2, 4)), "2:4", 2)
    with pytest.raises(ValueError):
        decompose(np.float32(1.0), "2:4", 0)
    with pytest.raises(ConfigError):
        decompose(np.zeros(4), "2:3:4", 0)


def test_float16_supported():
    w = np.array([[1, -3, 2, 0.5, 0, 0, 7, 7]], np.float16)
    d = decompose(w, "1:4+1:4", axis=1)
    assert d.terms[0].values.dtype == np.float16
    assert d.terms[0].indices.tolist() == [[1, 2]]
    assert np.array_equal(d.approximation, [[0, -3, 2, 0, 0, 0, 7, 7]])


def test_many_chunks(monkeypatch):
    """Chunk boundaries (including a partial last chunk) do not change results."""
    rng = np.random.default_rng(3)
    w = rng.integers(-2, 3, size=(7, 45)).astype(np.float32)
    ref = decompose(w, "2:4+1:4+1:8+3:20", axis=1)
    monkeypatch.setattr(D, "_CHUNK_ELEMENTS", 12)
    small = decompose(w, "2:4+1:4+1:8+3:20", axis=1)
    for a, b in zip(ref.terms, small.terms):
        assert np.array_equal(a.values, b.values) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(ref.residual, small.residual)


def test_large_tensor_matches_sort_reference():
    """The comparison/LUT kernel agrees with a stable-sort reference on a
    tensor bigger than one chunk, with many ties."""
    rng = np.random.default_rng(4)
    w = (rng.integers(-4, 5, size=(96, 3000)) * 0.25).astype(np.float32)
    for pattern in ["1:4", "2:4", "3:8", "2:16", "3:20", "9:32"]:  # M > 16: argsort path
        p = Pattern.parse(pattern)
        t = extract_term(w, p, axis=1)
        b = blocks_of(w, p.m, 1)
        order = np.sort(np.argsort(-np.abs(b), axis=1, kind="stable")[:, : p.n], axis=1)
        vals, idx = term_blocks(t)
        assert np.array_equal(idx, order)
        assert np.array_equal(vals, np.take_along_axis(b, order, axis=1))


# --------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------


@SETTINGS
@given(tensors(), configs())
def test_terms_respect_pattern(data, config):
    w, axis = data
    d = decompose(w, config, axis)
    assert len(d.terms) == len(config.terms)
    for term, p in zip(d.terms, config.terms):
        assert term.pattern == p
        check_term_invariants(term, w, axis)


@SETTINGS
@given(tensors(max_k=13), configs(ms=[1, 2, 3, 4, 5, 8]))  # C(m, n) combinations stay small
def test_greedy_equals_brute_force(data, config):
    w, axis = data
    d = decompose(w, config, axis)
    expected, residual = brute_force_decompose(w, config, axis)
    for term, (sel, vals) in zip(d.terms, expected):
        got_vals, got_idx = term_blocks(term)
        assert np.array_equal(got_idx, sel)
        assert np.array_equal(got_vals, vals)
    assert np.array_equal(d.residual, residual)


@SETTINGS
@given(tensors(), configs())
def test_round_trip_and_exact_sum(data, config):
    w, axis = data
    d = decompose(w, config, axis)
    total = np.zeros_like(w)
    for term in d.terms:
        dense = term.to_dense()
        assert not np.any(total[dense != 0])  # each position taken at most once
        total += dense
    assert np.array_equal(total, d.approximation)
    assert np.array_equal(d.approximation + d.residual, w)
    assert np.array_equal(d.original, w)
    # the approximation only keeps entries of w
    kept = d.approximation != 0
    assert np.array_equal(d.approximation[kept], w[kept])


@SETTINGS
@given(tensors(), configs())
def test_deterministic(data, config):
    w, axis = data
    a, b = decompose(w, config, axis), decompose(w.copy(), config, axis)
    for ta, tb in zip(a.terms, b.terms):
        assert np.array_equal(ta.values, tb.values)
        assert np.array_equal(ta.indices, tb.indices)
        assert ta.padding == tb.padding
    assert np.array_equal(a.residual, b.residual)


@SETTINGS
@given(tensors(), configs(max_terms=2), patterns())
def test_error_never_increases_when_a_term_is_appended(data, config, extra):
    w, axis = data
    before = decompose(w, config, axis)
    after = decompose(w, SeriesConfig(config.terms + (extra,)), axis)
    # the new residual is the old one with more entries zeroed
    assert not np.any(after.residual[before.residual == 0])
    assert relative_error(w, after.approximation) <= relative_error(w, before.approximation)
    assert l1_dropped(w, after.approximation) <= l1_dropped(w, before.approximation)


@st.composite
def block_limited(draw):
    """A tensor whose every M-block holds at most `limit` non-zeros, with an
    equal-M series; the series covers the limit iff `covered`."""
    m = draw(st.sampled_from([2, 4, 8, 16]))
    ns = draw(st.lists(st.integers(1, m), min_size=1, max_size=3))
    config = SeriesConfig(tuple(Pattern(n, m) for n in ns))
    limit = draw(st.integers(0, m))
    rows = draw(st.integers(1, 6))
    k = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    # keep, in every block, at most `limit` random positions
    b = blocks_of(x, m, 1)
    ranks = np.argsort(np.argsort(rng.random(b.shape), axis=1), axis=1)
    b[ranks >= limit] = 0
    x = b.reshape(rows, -1)[:, :k].copy()
    axis = draw(st.sampled_from([1, -1]))
    return x, config, axis


@SETTINGS
@given(block_limited())
def test_equal_m_series_exact_iff_blocks_fit(data):
    w, config, axis = data
    d = decompose(w, config, axis)
    fits = int(block_nnz(w, config.m, axis).max()) <= config.max_nnz_per_block
    assert d.is_exact == fits == is_lossless(w, config, axis)
    if fits:
        assert np.array_equal(d.approximation, w)


@SETTINGS
@given(tensors(), configs(max_terms=3, ms=[2, 3, 4, 5, 8]))
def test_is_lossless_matches_decomposition(data, config):
    w, axis = data
    assert is_lossless(w, config, axis) == decompose(w, config, axis).is_exact


def test_two_halves_reproduce_anything():
    w = np.random.default_rng(5).standard_normal((4, 13)).astype(np.float32)
    d = decompose(w, "2:4+2:4", axis=1)
    assert np.array_equal(d.approximation, w)
    assert is_lossless(w, "2:4+2:4", 1)
    assert not is_lossless(w, "2:4+1:4", 1)


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------


def test_block_histogram_counts_padding_as_zero():
    w = np.array([[1, 1, 1, 0, 2, 0]], np.float32)  # blocks of 4: [1,1,1,0] [2,0,pad,pad]
    assert block_histogram(w, 4, 1).tolist() == [0, 1, 0, 1, 0]
    assert block_histogram(w, 3, 1).tolist() == [0, 1, 0, 1]  # non power of two
    assert block_histogram(w.T, 4, 0).tolist() == [0, 1, 0, 1, 0]
    assert block_nnz(w, 2, 1).tolist() == [[2, 1, 1]]
    assert block_histogram(np.ones((2, 32), np.float32), 16, 1).tolist() == [0] * 16 + [4]


@SETTINGS
@given(tensors(), st.sampled_from([1, 2, 3, 4, 8, 16, 24]))
def test_block_histogram_matches_loops(data, m):
    w, axis = data
    b = blocks_of(w, m, axis)
    expected = np.zeros(m + 1, np.int64)
    for row in b:
        expected[np.count_nonzero(row)] += 1
    assert block_histogram(w, m, axis).tolist() == expected.tolist()


def test_error_metrics():
    w = np.array([3.0, 4.0, 0.0])
    assert relative_error(w, w) == 0.0
    assert relative_error(w, np.zeros(3)) == 1.0
    assert math.isclose(relative_error(w, np.array([3.0, 0, 0])), 4 / 5)
    assert math.isclose(l1_dropped(w, np.array([3.0, 0, 0])), 4 / 7)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert l1_dropped(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.zeros(3), np.ones(3)) == math.inf
    assert density(w) == 2 / 3 and density(np.zeros((0, 3))) == 0.0
    with pytest.raises(ValueError):
        relative_error(w, np.zeros(4))


# --------------------------------------------------------------------------
# configuration parsing
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dense", "dense"),
        (" Dense ", "dense"),
        ("2:4", "2:4"),
        ("2:4+1:4", "2:4+1:4"),
        (" 2 : 4 + 1:8 ", "2:4+1:8"),
        ("4:8+2:8", "4:8+2:8"),
        ("1:16", "1:16"),
        ("1:2+1:16", "1:2+1:16"),
    ],
)
def test_parse_accepts(text, expected):
    assert str(parse_config(text)) == expected


@pytest.mark.parametrize("text", ["1:1", "1:3", "3:3", "2:6", "1:32", "1:128"])
def test_parse_refuses_m_the_kernels_cannot_run(text):
    """One rule for a user's M (SUPPORTED_M, what the CPU kernels run); the
    library itself still takes any M up to 128 with ``allowed_m=None``."""
    from tasdc.runtime.cpu.kernels import SUPPORTED_M as KERNEL_M

    assert SUPPORTED_M == KERNEL_M
    with pytest.raises(ConfigError, match=r"M=\d+ is not one of the allowed M values \(2, 4, 8, 16\)"):
        parse_config(text)
    assert str(parse_config(text, allowed_m=None)) == text


@pytest.mark.parametrize(
    "text, kwargs, fragment",
    [
        ("0:4", {}, "'0:4': N must be >= 1"),
        ("-1:4", {}, "'-1:4': N must be >= 1"),
        ("3:2", {}, "invalid N:M pattern '3:2': N must be <= M"),
        ("2:0", {}, "'2:0': M must be >= 1"),
        ("1:256", {"allowed_m": None}, "'1:256': M must be <= 128"),
        ("2:3", {"require_pow2": True}, "'2:3': M must be a power of two"),
        ("2:4+", {}, "'2:4+': term #2 is empty"),
        ("+", {}, "'+': term #1 is empty"),
        ("", {}, "invalid series config ''"),
        ("   ", {}, "invalid series config ''"),
        ("a:b", {}, "'a:b': expected N:M"),
        ("2:4:8", {}, "'2:4:8': expected N:M"),
        ("2:4+dense", {}, "'dense' cannot be combined"),
        ("2:8", {"allowed_m": {4}}, "'2:8': M=8 is not one of the allowed M values (4)"),
        ("1:4+1:4+1:4", {"max_terms": 2}, "3 terms, at most 2"),
    ],
)
def test_parse_rejects(text, kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(text, **kwargs)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_config_properties():
    c = parse_config("2:4+1:4")
    assert c.same_m and c.m == 4 and c.max_nnz_per_block == 3
    assert math.isclose(c.density, 0.75) and not c.is_dense
    mixed = parse_config("2:4+1:8")
    assert not mixed.same_m and mixed.max_nnz_per_block is None and math.isclose(mixed.density, 0.625)
    dense = parse_config("dense")
    assert dense.is_dense and str(dense) == "dense" and dense.density == 1.0 and dense.terms == ()
    assert str(Pattern(2, 4)) == "2:4" and Pattern(2, 4).density == 0.5
    assert SeriesConfig((Pattern(1, 2),)) == parse_config("1:2")
    with pytest.raises(ConfigError, match="N must be <= M"):
        Pattern(5, 4)
    with pytest.raises(ConfigError):
        Pattern(True, 4)


# --------------------------------------------------------------------------
# cheapest lossless series
# --------------------------------------------------------------------------


def _sparse_rows(nnz_per_block: list[int], m: int = 4) -> np.ndarray:
    """One row; block j has nnz_per_block[j] non-zeros at its first positions."""
    w = np.zeros((1, m * len(nnz_per_block)), np.float32)
    for j, c in enumerate(nnz_per_block):
        w[0, j * m : j * m + c] = np.arange(1, c + 1)
    return w


def test_cheapest_one_per_block():
    w = _sparse_rows([1, 0, 1, 1])
    assert str(cheapest_lossless(w, ["2:4", "1:4"], axis=1)) == "1:4"


def test_cheapest_three_per_block():
    w = _sparse_rows([3, 1, 0, 2])
    assert str(cheapest_lossless(w, ["2:4", "1:4"], axis=1)) == "2:4+1:4"
    assert cheapest_lossless(w, [Pattern(2, 4), Pattern(1, 4)], axis=1, max_terms=1) is None


def test_cheapest_dense_tensor():
    w = np.random.default_rng(6).standard_normal((4, 16)).astype(np.float32)
    assert cheapest_lossless(w, ["2:4", "1:4"], axis=1, max_terms=1) is None
    assert str(cheapest_lossless(w, ["2:4", "1:4"], axis=1, max_terms=2)) == "2:4+2:4"
    assert str(cheapest_lossless(w, ["2:4", "4:4"], axis=1, max_terms=1)) == "4:4"


def test_cheapest_ties_and_mixed_m():
    # <=1 nnz per 4-block: 1:4 and 2:8 cost the same; the smaller string wins
    w = _sparse_rows([1, 1, 0, 1])
    assert str(cheapest_lossless(w, ["2:8", "1:4"], axis=1)) == "1:4"
    # two non-zeros in one half of an 8-block: only 2:8 fits at density 1/4
    w = np.zeros((1, 16), np.float32)
    w[0, [0, 1, 8, 12]] = [1, 2, 3, 4]
    assert str(cheapest_lossless(w, ["2:8", "1:4"], axis=1)) == "2:8"
    # fewer terms win at equal density: 2:4 over 1:4+1:4
    w = _sparse_rows([2, 1, 2])
    assert str(cheapest_lossless(w, ["1:4", "2:4"], axis=1)) == "2:4"
    assert cheapest_lossless(np.zeros((2, 8), np.float32), ["1:8", "2:4"], axis=1) == parse_config("1:8")
    assert cheapest_lossless(w, [], axis=1) is None


@SETTINGS
@given(
    tensors(max_rank=2, max_k=16),
    st.lists(st.sampled_from(["1:4", "2:4", "1:8", "2:8", "4:8", "1:2"]), min_size=1, max_size=3, unique=True),
    st.integers(1, 2),
)
def test_cheapest_lossless_is_lossless_and_minimal(data, pats, max_terms):
    w, axis = data
    best = cheapest_lossless(w, pats, axis, max_terms=max_terms)
    patterns_ = [Pattern.parse(p) for p in pats]
    candidates = [
        SeriesConfig(c)
        for k in range(1, max_terms + 1)
        for c in itertools.product(patterns_, repeat=k)
        if all(c[i].density >= c[i + 1].density for i in range(k - 1))
    ]
    lossless = [c for c in candidates if decompose(w, c, axis).is_exact]
    if best is None:
        assert lossless == []
        return
    assert is_lossless(w, best, axis) and decompose(w, best, axis).is_exact
    key = lambda c: (c.fraction, len(c.terms), str(c))  # noqa: E731
    assert key(best) == min(key(c) for c in lossless)


# --------------------------------------------------------------------------
# pruned weights and stats
# --------------------------------------------------------------------------


def magnitude_pruned(shape, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    threshold = np.quantile(np.abs(w), sparsity)
    w[np.abs(w) < threshold] = 0
    return w


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_pruned_weights_stats(sparsity):
    w = magnitude_pruned((64, 96), sparsity, seed=int(sparsity * 100))
    errors = []
    for config in ["1:8", "1:4", "2:8", "2:4", "2:4+1:4", "2:8+1:8", "2:4+2:4"]:
        s = tensor_stats(w, config, axis=1)
        assert s.shape == (64, 96) and s.config == config and s.dtype == "float32"
        assert abs(s.density - (1 - sparsity)) < 0.01
        assert 0.0 <= s.relative_error <= 1.0 and 0.0 <= s.l1_dropped <= 1.0
        assert s.lossless == (s.relative_error == 0.0)
        assert s.approx_nnz <= s.nnz
        for m, hist in s.histograms.items():
            assert sum(hist) == 64 * (-(-96 // m)) and len(hist) == m + 1
            assert s.max_block_nnz[m] == max(i for i, c in enumerate(hist) if c)
        assert sum(s.term_nnz) == s.approx_nnz
        assert math.isclose(s.compute_density, parse_config(config).density)
        payload = s.to_json()
        assert json.loads(json.dumps(payload)) == payload
        errors.append((config, s.relative_error))
    err = dict(errors)
    assert err["2:4+2:4"] == 0.0
    assert err["2:4+1:4"] <= err["2:4"] <= err["1:4"]
    assert err["2:8+1:8"] <= err["2:8"] <= err["1:8"]
    # more sparsity -> a cheap series loses less
    if sparsity == 0.95:
        assert err["2:8"] < 0.2


def test_pruned_weights_error_decreases_with_sparsity():
    errs = [tensor_stats(magnitude_pruned((64, 128), s, seed=9), "2:8", axis=1).relative_error for s in (0.5, 0.8, 0.95)]
    assert errs[0] > errs[1] > errs[2]
    dense_stats = tensor_stats(magnitude_pruned((8, 8), 0.0), "dense", axis=1)
    assert dense_stats.lossless and dense_stats.relative_error == 0.0 and dense_stats.compute_density == 1.0
