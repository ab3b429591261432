"""``tasdc sweep``: spec validation, hardware variants, the cache hook, the Pareto
front, and a real 2-worker Dask LocalCluster running a small resumable sweep
whose rows equal TASDER compiles of the same cells."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tasdc import cache
from tasdc.cli import main
from tasdc.decompose import decompose
from tasdc.runtime.accel.hardware import load_hardware
from tasdc.sweep import Store, load_spec
from tasdc.sweep.show import mark_pareto

from conftest import run_cli


def _spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _models(example_dir: Path, *names: str) -> str:
    return "".join(f'[[model]]\npath = "{example_dir}/{n}.pt2"\ncalib = "{example_dir}/{n}-calib.npz"\n\n'
                   for n in names)


# ---------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------

BAD_SPECS = [
    ("not toml [", "not valid TOML"),
    ('[grid]\ntarget = ["stc"]\nquality = [0.99]\n', "model: missing"),
    ('{models}[grid]\ntarget = ["stc"]\nquality = [0.99]\nspeed = 1\n', "grid.speed: unknown key"),
    ('{models}[grid]\ntarget = ["stc"]\nquality = [0.99, 1.5]\n', "grid.quality[1]: must be in (0, 1], got 1.5"),
    ('{models}[grid]\ntarget = ["stc"]\nquality = ["high"]\n', "grid.quality[0]: expected a number, got a string"),
    ('{models}[grid]\ntarget = ["tpu"]\nquality = [0.99]\n', "grid.target[0]: unknown target 'tpu'"),
    ('{models}[grid]\ntarget = ["stc"]\nquality = [0.99]\nobjective = ["speed"]\n', "grid.objective[0]: must be one of"),
    ('{models}[grid]\ntarget = ["stc"]\n', "grid.quality: missing required key"),
    ('[[model]]\npath = "nowhere.pt2"\n[grid]\ntarget = ["stc"]\nquality = [0.99]\n', "model[0].path: nowhere.pt2: no such file"),
    ('{models}[grid]\nquality = [0.99]\n[[target]]\nbase = "vegeta"\narray.rows = [16, 0]\n',
     "array.rows: must be > 0, got 0"),
    ('{models}[grid]\nquality = [0.99]\n[[target]]\nbase = "vegeta"\narray.rows = 16\n',
     "target[0].array.rows: expected a non-empty array of values to try"),
    ('{models}[grid]\nquality = [0.99]\n[[target]]\nbase = "stc"\nsparsity.patterns = [["3:2"]]\n',
     "target[0].sparsity.patterns: '3:2' needs 1 <= N <= M"),
]


@pytest.mark.parametrize("text,expected", BAD_SPECS)
def test_bad_spec_is_one_line_exit_2(example_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     text: str, expected: str) -> None:
    spec = _spec(tmp_path, text.replace("{models}", _models(example_dir, "mlp")))
    out = tmp_path / "r.db"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tasdc: error: ") and str(spec) in err, err
    assert expected in err, err
    assert not out.exists() or Store(out).cells() == []


def test_bad_spec_from_the_command_line(tmp_path: Path) -> None:
    spec = _spec(tmp_path, '[grid]\ntarget = ["stc"]\nquality = [0.99]\n')
    done = run_cli("sweep", str(spec), "--out", str(tmp_path / "r.db"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"tasdc: error: {spec}: model: missing: give at least one [[model]] table\n"


def test_show_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    done = run_cli("sweep", "--show", str(junk))
    assert done.returncode == 2 and done.stderr == f"tasdc: error: {junk}: not a tasdc sweep results file (not SQLite)\n"


def test_hardware_variants_expand_and_validate(example_dir: Path, tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, _models(example_dir, "mlp") + """
[grid]
target = ["stc"]
quality = [0.99, 0.95]
[[target]]
base = "vegeta"
array.rows = [16, 32]
sparsity.patterns = [["2:4"], ["2:4", "1:4"]]
"""))
    labels = [t.label for t in spec.targets]
    assert labels == ["stc",
                      "vegeta[array.rows=16,sparsity.patterns=2:4]", "vegeta[array.rows=16,sparsity.patterns=2:4+1:4]",
                      "vegeta[array.rows=32,sparsity.patterns=2:4]", "vegeta[array.rows=32,sparsity.patterns=2:4+1:4]"]
    variant = tmp_path / "v.toml"
    variant.write_text(spec.targets[2].toml)
    hw = load_hardware(variant)
    assert hw.name == labels[2] and hw.array.rows == 16 and hw.array.cols == 32
    assert sorted(str(p) for p in hw.sparsity.sparse_patterns) == ["1:4", "2:4"]
    assert {p.speedup for p in hw.sparsity.sparse_patterns} == {2.0, 4.0}  # "N:M" -> speedup M/N
    cells = spec.cells()
    assert len(cells) == 1 * 5 * 2 * 1 * 1 and len({c.key for c in cells}) == len(cells)
    # The key depends on the data, not on the spec's wording: the same grid spelt again has the same keys.
    again = load_spec(_spec(tmp_path, _models(example_dir, "mlp") + '[grid]\ntarget = ["stc"]\nquality = [0.99]\n',
                            "again.toml"))
    assert again.cells()[0].key == cells[0].key


# ---------------------------------------------------------------------------
# the cache hook and the Pareto front
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["2:4", "2:4+1:4", "1:4+1:4", "2:8+1:4"])
@pytest.mark.parametrize("axis", [0, 1])
def test_cached_decomposition_is_the_same_decomposition(tmp_path: Path, config: str, axis: int) -> None:
    # K = 37 / 50: not a multiple of 4 or 8, so padding is exercised; 60 % zeros give blocks with fillers.
    rng = np.random.default_rng(7)
    w = rng.standard_normal((37, 50)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0.0
    reference = decompose(w, config, axis)
    store = Store(tmp_path / "c.db")
    cache.reset_counts()
    with cache.using(store):
        first, second = decompose(w, config, axis), decompose(w, config, axis)
    assert cache.COUNTS == {"decomposition miss": 1, "decomposition hit": 1}
    for got in (first, second):  # one code path computes both sides: bit-exact
        assert np.array_equal(got.residual, reference.residual)
        assert np.array_equal(np.signbit(got.residual), np.signbit(reference.residual))
        assert len(got.terms) == len(reference.terms)
        for a, b in zip(got.terms, reference.terms):
            assert np.array_equal(a.values, b.values) and np.array_equal(a.indices, b.indices)
            assert (a.pattern, a.padding, a.dense_shape) == (b.pattern, b.padding, b.dense_shape)
            a.validate()


def test_pareto_front_per_model_and_objective() -> None:
    def cell(model: str, target: str, q: float, edp: float, status: str = "ok") -> dict:
        return {"model": model, "target": target, "quality": 0.99, "objective": "edp", "status": status,
                "measured_quality": q, "edp_reduction": edp}

    cells = [cell("a", "t1", 0.999, 0.10), cell("a", "t2", 0.995, 0.30), cell("a", "t3", 0.990, 0.20),
             cell("a", "t4", 0.999, 0.10), cell("a", "t5", 1.0, 0.9, "failed"), cell("b", "t1", 0.90, 0.05)]
    front = [c["target"] for c in mark_pareto(cells) if c["pareto"]]
    # t3 is dominated by t2 (better on both); equal points (t1, t4) both stay; failed cells never count;
    # model b is a front of its own.
    assert front == ["t1", "t2", "t4", "t1"]


# ---------------------------------------------------------------------------
# a real cluster
# ---------------------------------------------------------------------------


def _forget_in_memory_state() -> None:
    """Run on every worker: drop the per-process sessions and statistics caches."""
    from tasdc import calibration, layer_errors
    from tasdc.sweep import run

    run._sessions.clear()
    calibration._calib_cache.clear()
    layer_errors._weight_cache.clear()
    layer_errors._output_cache.clear()


@pytest.fixture(scope="module")
def cluster() -> object:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit=0, silence_logs=logging.ERROR) as local:
        yield local


def test_sweep_on_a_local_cluster_resumes_records_failures_and_matches_compile(
        example_dir: Path, tmp_path: Path, cluster: object, capsys: pytest.CaptureFixture[str]) -> None:
    import distributed

    from tasdc.sweep.run import run_sweep
    from tasdc.tasder import TasderSession

    address = cluster.scheduler_address  # type: ignore[attr-defined]
    # The second model's calibration inputs have the wrong shape: its cells fail at run time, not in the spec.
    np.savez(tmp_path / "wrong.npz", x=np.zeros((8, 3), dtype=np.float32))
    spec_path = _spec(tmp_path, _models(example_dir, "mlp") + f"""
[[model]]
name = "mlp-wrong-inputs"
path = "{example_dir}/mlp.pt2"
calib = "{tmp_path}/wrong.npz"

[grid]
target = ["stc", "vegeta"]
quality = [0.99]
""")
    spec = load_spec(spec_path)
    out = tmp_path / "results.db"

    # A sweep stopped after one cell (as if killed), then rerun: only the missing cells run.
    first = run_sweep(spec, out, scheduler=address, limit=1, progress=False)
    assert (first.total, first.skipped, first.ran, first.remaining, first.workers) == (4, 0, 1, 3, 2)
    rest = run_sweep(spec, out, scheduler=address, progress=False)
    assert (rest.skipped, rest.ran, rest.failed, rest.remaining) == (1, 3, 2, 0)
    again = run_sweep(spec, out, scheduler=address, progress=False)
    assert (again.skipped, again.ran) == (4, 0)

    cells = {(c["model"], c["target"]): c for c in Store(out).cells()}
    assert len(cells) == 4
    for target in ("stc", "vegeta"):
        bad = cells[("mlp-wrong-inputs", target)]
        assert bad["status"] == "failed" and "has shape" in bad["error"] and "\n" not in bad["error"]

    # Each row equals a TASDER compile of the same cell (same code path: exact equality).
    session = TasderSession(example_dir / "mlp.pt2", calib=example_dir / "mlp-calib.npz", progress=False)
    for target in ("stc", "vegeta"):
        row = cells[("mlp", target)]
        result = session.compile(target, "edp", 0.99, 2)
        assert row["status"] == "ok" and row["error"] is None
        assert row["configs"] == result.configs
        assert row["edp_reduction"] == result.reduction["edp"]
        assert row["measured_quality"] == min(q.value for q in result.measured.values())
        assert row["meets_bound"] is True and row["report"]["layers"] == json.loads(json.dumps(
            [layer.to_json() for layer in result.layers]))

    # A second sweep over the same model with the first one's cache decomposes and calibrates nothing,
    # once the workers' in-memory sessions and statistics are dropped (as in new worker processes).
    with distributed.Client(address) as client:
        client.run(_forget_in_memory_state)
    second = run_sweep(load_spec(_spec(tmp_path, _models(example_dir, "mlp") + '[grid]\ntarget = ["stc", "vegeta"]\n'
                                       'quality = [0.99]\n', "second.toml")),
                       tmp_path / "second.db", scheduler=address, cache=out, progress=False)
    assert (second.ran, second.failed) == (2, 0)
    for row in Store(tmp_path / "second.db").cells():
        assert row["cache"].get("decomposition miss", 0) == 0 and row["cache"]["decomposition hit"] > 0
        assert row["cache"].get("calibration miss", 0) == 0
        assert row["configs"] == cells[(row["model"], row["target"])]["configs"]
        assert row["edp_reduction"] == cells[(row["model"], row["target"])]["edp_reduction"]

    # --show --json: one object per cell with the documented keys.
    assert main(["sweep", "--show", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 4
    for obj in shown:
        assert {"model", "target", "quality", "objective", "status", "edp_reduction", "measured_quality",
                "pareto"} <= set(obj)
    assert {(o["model"], o["status"]) for o in shown} == {("mlp", "ok"), ("mlp-wrong-inputs", "failed")}
