"""Running a sweep on Dask distributed.

:func:`run_sweep` expands the spec into cells, drops the cells the store
already holds, and submits one Dask task per remaining cell, to an embedded
``LocalCluster`` (one single-threaded worker process per core) or to an
existing scheduler. The client writes each cell's row as it completes, so an
interrupted sweep keeps what finished and a rerun runs only the rest.

In a worker, :func:`run_cell` keeps one :class:`~tasdc.tasder.TasderSession`
per model and process: a model is imported and analysed once per worker, not
once per cell (cells are submitted model-major, so a worker tends to take
consecutive cells of one model). With a cache, one :func:`prepare_model`
task per model runs before the model's cells and computes its calibration
statistics and dense reference outputs once, for every worker. With a cache
(default: the results file itself) the worker also makes :mod:`tasdc.cache`
active and keeps two more kinds there: the measured quality of a per-layer
series assignment (``measurement``, keyed by the model's digest and the
series of every layer) and the dense model's reference outputs
(``reference``). Calibration statistics and decompositions come from
:mod:`tasdc.cache`. So a second sweep over the same models imports each
model again, but decomposes, calibrates and JIT-runs nothing it has seen.

With ``--scheduler`` the model, calibration and evaluation paths, and the
cache file, must be readable (writable) on the workers at the same paths;
target descriptions travel with the task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from tasdc.errors import TasdcError
from tasdc.sweep.spec import Cell, Spec
from tasdc.sweep.store import Store


@dataclasses.dataclass
class SweepSummary:
    """What one :func:`run_sweep` call did."""

    total: int
    skipped: int
    ran: int
    failed: int
    seconds: float
    workers: int
    remaining: int       # cells left for a later run (``limit``)


# --------------------------------------------------------------------------
# the worker side
# --------------------------------------------------------------------------

_sessions: dict[tuple[str, ...], Any] = {}


def _session_class() -> type:
    import numpy as np

    from tasdc import cache
    from tasdc.tasder import QualityReport, TasderSession

    class CachedSession(TasderSession):
        """A TASDER session whose measurements and dense reference outputs
        persist in the active :mod:`tasdc.cache`, keyed by ``digest``."""

        digest = ""

        def reference(self) -> dict[str, np.ndarray]:
            if self._reference is None and cache.active() is not None:
                found = cache.lookup("reference", self.digest)
                if found is not None:
                    self._metric = str(found.pop("__metric__"))
                    self._reference = found
                    self.timings["reference"] = 0.0
                else:
                    reference = super().reference()
                    cache.store("reference", self.digest, {**reference, "__metric__": np.array(self._metric)})
            return super().reference()

        def measure(self, result: Any, key: tuple[str, ...] | None = None,
                    bound: float | None = None) -> tuple[dict[str, Any], bool]:
            # Measured in full (no early stop at ``bound``): the stored values serve every bound.
            if key is None or cache.active() is None or key in self._measurements:
                return super().measure(result, key)
            ckey = f"{self.digest}/{'+'.join(key)}"
            found = cache.lookup("measurement", ckey)
            if found is not None:
                self.reference()
                reports = {name: QualityReport(**_report_fields(found, name)) for name in self.sets}
                self._measurements[key] = reports
                return reports, True
            reports, cached = super().measure(result, key)
            arrays = {}
            for name, rep in reports.items():
                for field, value in rep.to_json().items():
                    arrays[f"{name}|{field}"] = np.array(value if value is not None else np.nan)
            cache.store("measurement", ckey, arrays)
            return reports, cached

    return CachedSession


def _report_fields(arrays: dict[str, Any], name: str) -> dict[str, Any]:
    import math

    out: dict[str, Any] = {}
    for key, value in arrays.items():
        set_name, field = key.split("|", 1)
        if set_name != name:
            continue
        v = value.item()
        if isinstance(v, float) and math.isnan(v) and field in ("accuracy", "dense_accuracy"):
            v = None
        out[field] = int(v) if field == "samples" else v
    return out


def _session(task: dict[str, Any]) -> Any:
    key = (task["model"], task["calib"] or "", task["eval"] or "", task["model_digest"])
    session = _sessions.get(key)
    if session is None:
        _sessions.clear()  # one model per worker at a time: cells come model-major
        cls = _session_class()
        session = cls(Path(task["model"]), calib=task["calib"], eval=task["eval"], progress=False)
        session.digest = task["model_digest"]
        _sessions[key] = session
    return session


def _target_path(task: dict[str, Any]) -> str:
    """A shipped target's name, or a file holding the task's TOML text (per worker)."""
    if task["shipped"]:
        return task["shipped"]
    folder = Path(tempfile.gettempdir()) / f"tasdc-sweep-targets-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    path = folder / f"{hashlib.blake2b(task['toml'].encode(), digest_size=16).hexdigest()}.toml"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(task["toml"])
        tmp.replace(path)
    return str(path)


def _quiet() -> None:
    import warnings

    os.environ["TASDC_NO_PROGRESS"] = "1"
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def prepare_model(task: dict[str, Any], cache_path: str) -> bool:
    """Import a model, compute its calibration statistics and dense reference
    outputs into the cache, once per model before its cells run; whether it
    worked (a failure is left to the cells to report, one line each)."""
    _quiet()
    from tasdc import cache
    from tasdc.calibration import collect_calibration

    store = Store(cache_path)
    try:
        with cache.using(store):
            session = _session(task)
            if session.calib:   # first: its run gives the calibration set's dense reference too
                collect_calibration(session._clone().module, session.calib, digest=session.text_digest)
            if session.sets:
                session.reference()
        return True
    except Exception:  # noqa: BLE001 - the cells of this model report it
        return False
    finally:
        store.close()


def run_cell(task: dict[str, Any], cache_path: str | None, prepared: Any = None) -> dict[str, Any]:
    """Compile one cell with TASDER in this process; the row for the store.

    ``prepared``: the result of the model's :func:`prepare_model` task (passed
    so that Dask runs that first). Never raises for a problem with the cell:
    a failure becomes a row with ``status = "failed"`` and the one-line error.
    """
    _quiet()
    from tasdc import cache

    start = time.perf_counter()
    row: dict[str, Any] = {k: task[k] for k in ("key", "target", "quality", "objective", "max_terms")}
    row["model"] = task["model_name"]
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    cache.reset_counts()
    store = Store(cache_path) if cache_path else None
    try:
        with cache.using(store):
            session = _session(task)
            result = session.compile(_target_path(task), task["objective"], task["quality"], task["max_terms"])
        red = result.reduction
        measured = [q.value for q in result.measured.values()]
        row.update(
            status="ok", error=None,
            edp_reduction=red.get("edp"), latency_reduction=red.get("latency_cycles"),
            energy_reduction=red.get("energy_j"), macs_reduction=red.get("macs"),
            measured_quality=min(measured) if measured else None,
            meets_bound=None if result.meets_bound is None else int(result.meets_bound),
            configs=result.configs, report=result.to_json())
    except TasdcError as error:
        row.update(status="failed", error=str(error))
    except Exception as error:  # a bug in tasdc: record it and let the sweep go on
        row.update(status="failed", error=" ".join(f"internal error: {type(error).__name__}: {error}".split()))
    finally:
        if store is not None:
            store.close()
    row["seconds"] = time.perf_counter() - start
    row["cache"] = dict(cache.COUNTS)
    return row


def _task(cell: Cell) -> dict[str, Any]:
    m, t = cell.model, cell.target
    return {"key": cell.key, "model": str(m.path), "calib": str(m.calib) if m.calib else None,
            "eval": str(m.eval) if m.eval else None, "model_digest": m.digest, "model_name": m.name,
            "target": t.label, "shipped": t.shipped, "toml": t.toml,
            "quality": cell.quality, "objective": cell.objective, "max_terms": cell.max_terms}


# --------------------------------------------------------------------------
# the client side
# --------------------------------------------------------------------------


def run_sweep(spec: Spec, out: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              cache: str | Path | None = None, use_cache: bool = True, limit: int | None = None,
              retry_failed: bool = False, progress: bool = True) -> SweepSummary:
    """Run the cells of ``spec`` that ``out`` does not hold yet (see module docstring).

    ``cache``: the store holding the cache (default: ``out``); ``limit``: run
    at most this many cells now; ``retry_failed``: rerun failed cells too.
    """
    from tasdc.progress import progress as bar

    start = time.perf_counter()
    store = Store(out)
    cells = spec.cells()
    done = store.finished(include_failed=not retry_failed)
    todo = [c for c in cells if c.key not in done]
    skipped = len(cells) - len(todo)
    remaining = 0
    if limit is not None and len(todo) > limit:
        remaining = len(todo) - limit
        todo = todo[:limit]
    if not todo:
        return SweepSummary(len(cells), skipped, 0, 0, time.perf_counter() - start, 0, remaining)
    cache_path = None
    if use_cache:
        cache_path = str(Path(cache).resolve()) if cache is not None else str(Path(out).resolve())
        if cache is not None:
            Store(cache_path).close()  # fail early on a bad cache file
    client, cluster = _connect(scheduler, workers)
    failed = 0
    try:
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        # With a cache, one task per model computes its calibration statistics and
        # dense reference first; the model's cells wait for it and read them from the cache.
        prepared: dict[str, Any] = {}
        if cache_path is not None:
            for cell in todo:
                if cell.model.digest not in prepared:
                    prepared[cell.model.digest] = client.submit(
                        prepare_model, _task(cell), cache_path, key=f"tasdc-prepare-{cell.model.digest}",
                        pure=False, priority=2 * len(todo) - len(prepared))
        futures = []
        for i, cell in enumerate(todo):
            # Earlier cells first (model-major order keeps a worker on one model).
            futures.append(client.submit(run_cell, _task(cell), cache_path, prepared.get(cell.model.digest),
                                         key=f"tasdc-cell-{cell.key}", pure=False, priority=len(todo) - i))
        from distributed import as_completed

        for future in bar(as_completed(futures), desc="sweep", unit="cell", total=len(futures)):
            try:
                row = future.result()
            except Exception as error:  # the worker died (e.g. killed) or the task could not run
                key = future.key.removeprefix("tasdc-cell-")
                cell = next(c for c in todo if c.key == key)
                row = {"key": cell.key, "model": cell.model.name, "target": cell.target.label,
                       "quality": cell.quality, "objective": cell.objective, "max_terms": cell.max_terms,
                       "status": "failed", "error": " ".join(f"{type(error).__name__}: {error}".split())}
            failed += row["status"] != "ok"
            store.put_cell(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        store.close()
    return SweepSummary(len(cells), skipped, len(todo), failed, time.perf_counter() - start, n_workers, remaining)


def _connect(scheduler: str | None, workers: int | None) -> tuple[Any, Any]:
    """A Dask client on ``scheduler``, or on a new LocalCluster (returned too, to close)."""
    import dask
    from distributed import Client, LocalCluster

    # A worker that dies on a cell (an abort in native code) fails that cell, not the sweep.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as error:
            raise TasdcError(f"--scheduler {scheduler}: cannot connect ({str(error).splitlines()[0]})") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=0, silence_logs=logging.ERROR)
    return Client(cluster), cluster
