"""The measured search along the greedy path (bisection + demotion), with a fake measurement."""

from __future__ import annotations

from tasdc.path_search import PathMove, bisect_with_demotion, predicted_quality

PATH = [PathMove("conv0", "2:4", 0.001), PathMove("fc1", "2:4", 0.002), PathMove("fc2", "2:4", 0.004),
        PathMove("conv1", "2:4", 0.008), PathMove("fc1", "1:4", 0.02), PathMove("conv1", "1:4", 0.05),
        PathMove("fc2", "1:4", 0.09), PathMove("conv0", "1:4", 0.2)]


class Oracle:
    """Meets the bound iff no 'bad' move is applied and at most ``limit`` moves are."""

    def __init__(self, bad: set[tuple[str, str]], limit: int) -> None:
        self.bad, self.limit = bad, limit
        self.seen: dict[tuple, bool] = {}
        self.calls: list[tuple[int, frozenset]] = []

    def path_of(self, bans):
        return [m for m in PATH if (m.layer, m.series) not in bans]

    def probe(self, steps, bans):
        moves = self.path_of(bans)[:steps]
        key = tuple((m.layer, m.series) for m in moves)
        self.calls.append((steps, bans))
        if key in self.seen:
            return self.seen[key], False
        ok = not any((m.layer, m.series) in self.bad for m in moves) and len(moves) <= self.limit
        self.seen[key] = ok
        return ok, True


def test_whole_path_passes_in_one_probe():
    o = Oracle(set(), 99)
    out = bisect_with_demotion(o.path_of, o.probe, 10)
    assert out.steps == len(PATH) and out.probes == 1 and out.bans == []


def test_bisection_finds_the_longest_passing_prefix():
    o = Oracle(set(), 5)
    out = bisect_with_demotion(o.path_of, o.probe, 20)
    # the 6th move breaks the bound: demoted; then every further move breaks it too
    assert out.steps == 5
    assert out.bans[0] == "conv1@1:4"


def test_a_failing_first_move_does_not_end_the_search():
    """The issue's case: the move with the smallest predicted error alone breaks the bound."""
    o = Oracle({("conv0", "2:4")}, 99)
    out = bisect_with_demotion(o.path_of, o.probe, 20)
    assert out.bans == ["conv0@2:4"]
    chosen = [(m.layer, m.series) for m in out.path[:out.steps]]
    assert ("conv0", "2:4") not in chosen and len(chosen) == len(PATH) - 1
    assert ("conv0", "1:4") in chosen   # the demoted layer may still take another series
    # bisection: full path, then log2 steps down to the first move; after the demotion the next
    # move first (it passes), then the new full path
    assert out.probes <= 3 + 3


def test_at_the_bound_a_demotion_costs_one_probe():
    """Once a move has been demoted the search sits at the bound: the next move is probed first, and
    when it fails it is demoted at once instead of bisecting from the whole remaining path again."""
    o = Oracle(set(), 5)
    out = bisect_with_demotion(o.path_of, o.probe, 20)
    assert out.steps == 5 and len(out.bans) == 3
    # round 1: the whole path, then bisection 4, 6, 5; then one probe per demotion (6 moves, then 6 again
    # on the shorter path); the path then ends at the 5 measured moves
    assert [steps for steps, _ in o.calls] == [8, 4, 6, 5, 6, 6]


def test_probe_budget_is_respected_and_result_was_measured_passing():
    o = Oracle({("fc1", "2:4"), ("conv1", "1:4")}, 4)
    out = bisect_with_demotion(o.path_of, o.probe, 3)
    assert out.probes <= 3 and out.exhausted
    chosen = tuple((m.layer, m.series) for m in out.path[:out.steps])
    assert out.steps == 0 or o.seen[chosen] is True


def test_predicted_quality_inverts_the_budget_rule():
    q = 0.99
    assert abs(predicted_quality(1 / q ** 2 - 1) - q) < 1e-12
    assert predicted_quality(0.0) == 1.0
