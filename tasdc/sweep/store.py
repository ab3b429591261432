"""The sweep's result store: one SQLite file (WAL) with cells and a cache.

Tables:

* ``cells`` — one row per grid cell, keyed by the cell key (a digest of the
  model, calibration and evaluation files' bytes, the parsed target
  description, quality, objective, max terms and the tasdc version): status
  (``ok`` / ``failed``), the one-line error of a failed cell, the
  reductions of EDP / latency / energy / MACs against the dense model on the
  same target, the measured quality (the lowest over the measured sets),
  whether the bound holds, the per-layer series, the whole TASDER report as
  JSON, seconds, the worker and the cache hits and misses of the cell;
* ``cache`` — entries of :mod:`tasdc.cache` (decompositions, calibration
  statistics) and the sweep's measured qualities and dense reference
  outputs, as ``.npz`` blobs (loaded with ``allow_pickle=False``) keyed by
  (kind, key);
* ``meta`` — the schema version.

Every process opens its own connection (workers write the cache, the
sweep's client writes cells); writes are single statements in autocommit
mode, so a killed sweep leaves every finished cell stored.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from tasdc.errors import TasdcError

SCHEMA_VERSION = 1
CELL_COLUMNS = ("key", "model", "target", "quality", "objective", "max_terms", "status", "error",
                "edp_reduction", "latency_reduction", "energy_reduction", "macs_reduction",
                "measured_quality", "meets_bound", "configs", "report", "seconds", "worker", "cache",
                "finished_at")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, target TEXT NOT NULL, quality REAL NOT NULL,
    objective TEXT NOT NULL, max_terms INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,
    edp_reduction REAL, latency_reduction REAL, energy_reduction REAL, macs_reduction REAL,
    measured_quality REAL, meets_bound INTEGER, configs TEXT, report TEXT, seconds REAL,
    worker TEXT, cache TEXT, finished_at REAL);
CREATE TABLE IF NOT EXISTS cache (kind TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (kind, key));
"""


class StoreError(TasdcError):
    """A results file that is not a tasdc sweep store (one line)."""


class Store:
    """A sweep store at ``path`` (created on first use); picklable (reopens per process)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = str(path)
        self._create = create
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_create": self._create}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], create=state["_create"])  # type: ignore[misc]

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        path = Path(self.path)
        if not self._create and not path.is_file():
            raise StoreError(f"{path}: no such results file")
        if path.is_dir():
            raise StoreError(f"{path}: is a directory, expected a results file")
        if not path.parent.is_dir():
            raise StoreError(f"{path.parent}: output directory does not exist")
        if path.is_file():
            with open(path, "rb") as f:
                head = f.read(16)
            if head and head != b"SQLite format 3\x00":
                raise StoreError(f"{path}: not a tasdc sweep results file (not SQLite)")
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            if self._create:  # readers (--show) never create or convert anything
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"meta", "cells", "cache"} <= tables:
                raise StoreError(f"{path}: not a tasdc sweep results file (no 'cells' table)")
            row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreError(f"{path}: results schema version {row[0]}, this tasdc writes {SCHEMA_VERSION}")
            columns = [r[1] for r in conn.execute("PRAGMA table_info(cells)")]
            if tuple(columns) != CELL_COLUMNS:
                raise StoreError(f"{path}: not a tasdc sweep results file (unexpected 'cells' table)")
        except (sqlite3.DatabaseError, StoreError) as error:
            if conn is not None:
                conn.close()
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{path}: not a tasdc sweep results file ({error})") from None
        return conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # -- cells ---------------------------------------------------------------
    def finished(self, *, include_failed: bool = True) -> set[str]:
        """Keys of the stored cells (``ok`` ones only unless ``include_failed``)."""
        query = "SELECT key FROM cells" + ("" if include_failed else " WHERE status='ok'")
        return {r[0] for r in self.conn.execute(query)}

    def put_cell(self, row: dict[str, Any]) -> None:
        values = dict(row)
        for name in ("configs", "report", "cache"):
            if values.get(name) is not None and not isinstance(values[name], str):
                values[name] = json.dumps(values[name])
        values.setdefault("finished_at", time.time())
        self.conn.execute(
            f"INSERT OR REPLACE INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})",
            [values.get(c) for c in CELL_COLUMNS])

    def cells(self) -> list[dict[str, Any]]:
        """Every stored cell as a dict (JSON columns decoded), in insertion order."""
        rows = self.conn.execute(f"SELECT {', '.join(CELL_COLUMNS)} FROM cells ORDER BY rowid").fetchall()
        out = []
        for r in rows:
            cell = dict(zip(CELL_COLUMNS, r))
            for name in ("configs", "report", "cache"):
                if cell[name] is not None:
                    cell[name] = json.loads(cell[name])
            cell["meets_bound"] = None if cell["meets_bound"] is None else bool(cell["meets_bound"])
            out.append(cell)
        return out

    # -- cache (the tasdc.cache.ArrayCache protocol) ----------------------------
    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        row = self.conn.execute("SELECT data FROM cache WHERE kind=? AND key=?", (kind, key)).fetchone()
        if row is None:
            return None
        with np.load(io.BytesIO(row[0]), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self.conn.execute("INSERT OR IGNORE INTO cache VALUES (?, ?, ?)", (kind, key, buffer.getvalue()))

    def cache_counts(self) -> dict[str, int]:
        """Entries per kind."""
        return dict(self.conn.execute("SELECT kind, COUNT(*) FROM cache GROUP BY kind").fetchall())
