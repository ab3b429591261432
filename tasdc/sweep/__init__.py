"""``tasdc sweep``: grids of TASDER compiles on Dask, with a persistent result store.

* :mod:`tasdc.sweep.spec` — the TOML spec and its grid (models x targets,
  including hardware-file variants, x quality bounds x objectives);
* :mod:`tasdc.sweep.store` — the SQLite results file (cells + cache);
* :mod:`tasdc.sweep.run` — one Dask task per cell, resumable;
* :mod:`tasdc.sweep.show` — the table / JSON and the Pareto front per model.
"""

from tasdc.sweep.spec import Cell, Spec, SpecError, load_spec
from tasdc.sweep.store import Store, StoreError

__all__ = ["Cell", "Spec", "SpecError", "Store", "StoreError", "load_spec", "run_sweep"]


def run_sweep(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`tasdc.sweep.run.run_sweep` (imported lazily: it pulls in Dask)."""
    from tasdc.sweep.run import run_sweep as run

    return run(*args, **kwargs)
