"""Accelerator descriptions as data.

A target is one TOML file (see ``hardware/*.toml`` next to this module for the
shipped ones: ``dense``, ``stc``, ``vegeta``, ``ttc-m8``). Users copy a file,
edit the numbers and pass its path wherever a target name is accepted::

    hw = load_hardware("stc")                # shipped target, by name
    hw = load_hardware("my/targets/big.toml")  # user file, by path
    list_targets()                           # ['dense', 'stc', 'ttc-m8', 'vegeta']

Schema (every key is required unless marked optional; unknown keys are errors
at every level; integers must be TOML integers, numbers may be int or float)::

    schema_version = 1
    name = "stc"
    description = "..."                       # optional

    [technology]
    node_nm = 45                              # informational
    clock_ghz = 1.0

    [array]                                   # an output-stationary systolic array
    dataflow = "os"                           # only "os" is modelled
    rows = 32                                 # PE rows   (C rows / A rows, Mo)
    cols = 32                                 # PE columns (C columns / B columns, No)
    count = 1                                 # identical arrays sharing the buffers
    fill_drain_overlap = false                # optional (default false): see "Options" below

    [datatype]
    value_bytes = 1                           # A and B elements
    output_bytes = 1                          # C elements written back

    [sparsity]
    metadata_bits = 2                         # per kept value of A (index in block)
    patterns = [ { n = 2, m = 4, speedup = 2.0 } ]   # [] for a dense-only array
    shared_metadata = false                   # optional (default false): see "Options" below

    [extraction]                              # optional: TASD units (TASD-A)
    units = 32
    cycles_per_block = 1
    energy_pj_per_block = 0.6

    [memory.rf]
    size_kib = 8
    bandwidth_bytes_per_cycle = 128
    read_pj_per_byte = 1.659
    write_pj_per_byte = 1.676

    [memory.glb]
    size_kib = 256
    metadata_size_kib = 32
    bandwidth_bytes_per_cycle = 256
    read_pj_per_byte = 5.126
    write_pj_per_byte = 4.911
    metadata_read_pj_per_byte = 3.234
    metadata_write_pj_per_byte = 2.456

    [memory.dram]
    bandwidth_gb_per_s = 32.0
    energy_pj_per_byte = 64.0

    [energy]
    mac_pj = 0.5608                           # one MAC issued
    pe_register_pj = 0.072                    # one PE pipeline-register access

Rules for ``sparsity.patterns`` (an N:M entry keeps at most N of every aligned
block of M values of A along the reduction axis and runs ``speedup`` times
faster than dense): ``1 <= n <= m``; ``m`` a power of two; a sparse entry
(``n < m``) needs ``m <= 2**metadata_bits`` (the in-block index must fit the
metadata) and ``1 <= speedup <= m / n`` (no more than the skipped zeros); an
``n == m`` entry is dense and must have ``speedup = 1``; no duplicates. Dense
always runs on every target whether listed or not.

Options (booleans, default ``false``; the SCALE-Sim cross-check runs with
both off)::

    array.fill_drain_overlap   The array double-buffers its output registers, so
                               consecutive folds pipeline: the next fold's A/B
                               enter right behind the previous fold's last
                               values while that fold's C drains. A layer pays
                               the skew fill + drain (rows + cols - 2 cycles)
                               once per array instead of once per fold; a fold
                               shorter than the drain (``rows`` cycles, one C
                               row per cycle out of each column) waits for it.
                               Off: every fold pays rows + cols - 2 (SCALE-Sim).
    sparsity.shared_metadata   A series whose sparse terms all share one block
                               size M stores one metadata word per block for
                               the whole series: an M-bit mask of the kept
                               positions (terms take the masked values in
                               order; any split of a block's kept values among
                               the terms gives the same sum), or the per-term
                               indices when those are shorter, i.e.
                               ``min(M, sum_t N_t * metadata_bits)`` bits per
                               block. Off: ``metadata_bits`` per kept value
                               per term.

Every validation failure raises :class:`HardwareError` whose one-line message
names the file and the dotted key.
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasdc.errors import TasdcError

__all__ = [
    "HardwareError",
    "Hardware",
    "Technology",
    "ArrayConfig",
    "DataType",
    "NativePattern",
    "Sparsity",
    "ExtractionUnits",
    "RegisterFile",
    "GlobalBuffer",
    "Dram",
    "Memory",
    "ComputeEnergy",
    "SCHEMA_VERSION",
    "HARDWARE_DIR",
    "load_hardware",
    "hardware_from_dict",
    "list_targets",
]

SCHEMA_VERSION = 1
HARDWARE_DIR = Path(__file__).resolve().parent / "hardware"
SUPPORTED_DATAFLOWS = ("os",)


class HardwareError(TasdcError, ValueError):
    """A hardware description that cannot be read or is invalid (one line)."""


# --------------------------------------------------------------------------
# Data classes (frozen, hashable: a Hardware can key caches)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Technology:
    node_nm: int
    clock_ghz: float


@dataclass(frozen=True)
class ArrayConfig:
    dataflow: str
    rows: int
    cols: int
    count: int
    fill_drain_overlap: bool = False

    @property
    def pes(self) -> int:
        return self.rows * self.cols * self.count


@dataclass(frozen=True)
class DataType:
    value_bytes: float
    output_bytes: float


@dataclass(frozen=True)
class NativePattern:
    n: int
    m: int
    speedup: float

    @property
    def is_dense(self) -> bool:
        return self.n == self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


@dataclass(frozen=True)
class Sparsity:
    metadata_bits: int
    patterns: tuple[NativePattern, ...]
    shared_metadata: bool = False

    @property
    def sparse_patterns(self) -> tuple[NativePattern, ...]:
        return tuple(p for p in self.patterns if not p.is_dense)


@dataclass(frozen=True)
class ExtractionUnits:
    units: int
    cycles_per_block: float
    energy_pj_per_block: float


@dataclass(frozen=True)
class RegisterFile:
    size_kib: float
    bandwidth_bytes_per_cycle: float
    read_pj_per_byte: float
    write_pj_per_byte: float

    @property
    def size_bytes(self) -> float:
        return self.size_kib * 1024.0


@dataclass(frozen=True)
class GlobalBuffer:
    size_kib: float
    metadata_size_kib: float
    bandwidth_bytes_per_cycle: float
    read_pj_per_byte: float
    write_pj_per_byte: float
    metadata_read_pj_per_byte: float
    metadata_write_pj_per_byte: float

    @property
    def size_bytes(self) -> float:
        return self.size_kib * 1024.0

    @property
    def metadata_size_bytes(self) -> float:
        return self.metadata_size_kib * 1024.0


@dataclass(frozen=True)
class Dram:
    bandwidth_gb_per_s: float
    energy_pj_per_byte: float


@dataclass(frozen=True)
class Memory:
    rf: RegisterFile
    glb: GlobalBuffer
    dram: Dram


@dataclass(frozen=True)
class ComputeEnergy:
    mac_pj: float
    pe_register_pj: float


@dataclass(frozen=True)
class Hardware:
    """One accelerator target, as read from its TOML file."""

    name: str
    description: str
    technology: Technology
    array: ArrayConfig
    datatype: DataType
    sparsity: Sparsity
    extraction: ExtractionUnits | None
    memory: Memory
    energy: ComputeEnergy
    source: str = field(default="", compare=False)

    # -- conveniences -----------------------------------------------------
    @property
    def macs(self) -> int:
        """Number of MAC units (rows x cols x count)."""
        return self.array.pes

    @property
    def clock_hz(self) -> float:
        return self.technology.clock_ghz * 1e9

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.memory.dram.bandwidth_gb_per_s / self.technology.clock_ghz

    def native(self, n: int, m: int) -> NativePattern | None:
        """The native sparse entry for ``n:m`` (None if not native or dense)."""
        for p in self.sparsity.patterns:
            if p.n == n and p.m == m and not p.is_dense:
                return p
        return None

    def supports(self, n: int, m: int) -> bool:
        """True if ``n:m`` runs natively (dense ``n == m`` always does)."""
        return n == m or self.native(n, m) is not None

    def native_pattern_names(self) -> list[str]:
        return [str(p) for p in self.sparsity.sparse_patterns]

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        pats = ", ".join(self.native_pattern_names()) or "dense only"
        return (f"{self.name}: {self.array.count}x {self.array.rows}x{self.array.cols} "
                f"{self.array.dataflow.upper()} @ {self.technology.clock_ghz} GHz, "
                f"native {pats}")


# --------------------------------------------------------------------------
# Declarative schema
# --------------------------------------------------------------------------

# Leaf kinds: (kind, constraint, required)
#   kind: "int" | "num" | "str"
#   constraint: "pos" (> 0), "nonneg" (>= 0), None
_I_POS = ("int", "pos", True)
_I_NONNEG = ("int", "nonneg", True)
_N_POS = ("num", "pos", True)
_N_NONNEG = ("num", "nonneg", True)
_STR = ("str", None, True)
_STR_OPT = ("str", None, False)
_BOOL_OPT = ("bool", None, False)

_PATTERN_SCHEMA: dict[str, Any] = {
    "n": ("int", None, True),
    "m": ("int", None, True),
    "speedup": ("num", None, True),
}

_SCHEMA: dict[str, Any] = {
    "schema_version": ("int", None, True),
    "name": _STR,
    "description": _STR_OPT,
    "technology": {"node_nm": _I_POS, "clock_ghz": _N_POS},
    "array": {"dataflow": _STR, "rows": _I_POS, "cols": _I_POS, "count": _I_POS,
              "fill_drain_overlap": _BOOL_OPT},
    "datatype": {"value_bytes": _N_POS, "output_bytes": _N_POS},
    "sparsity": {"metadata_bits": _I_NONNEG, "patterns": ("patterns", None, True),
                 "shared_metadata": _BOOL_OPT},
    "extraction?": {
        "units": _I_POS,
        "cycles_per_block": _N_POS,
        "energy_pj_per_block": _N_NONNEG,
    },
    "memory": {
        "rf": {
            "size_kib": _N_POS,
            "bandwidth_bytes_per_cycle": _N_POS,
            "read_pj_per_byte": _N_NONNEG,
            "write_pj_per_byte": _N_NONNEG,
        },
        "glb": {
            "size_kib": _N_POS,
            "metadata_size_kib": _N_NONNEG,
            "bandwidth_bytes_per_cycle": _N_POS,
            "read_pj_per_byte": _N_NONNEG,
            "write_pj_per_byte": _N_NONNEG,
            "metadata_read_pj_per_byte": _N_NONNEG,
            "metadata_write_pj_per_byte": _N_NONNEG,
        },
        "dram": {"bandwidth_gb_per_s": _N_POS, "energy_pj_per_byte": _N_NONNEG},
    },
    "energy": {"mac_pj": _N_NONNEG, "pe_register_pj": _N_NONNEG},
}


#: Plausible ranges: the largest value each leaf may take (the smallest is
#: given by its "pos"/"nonneg" constraint). Far beyond any real accelerator,
#: they keep the model's arithmetic finite (e.g. ``rows = 1e12`` would
#: overflow cycle counts into inf/NaN and print a nonsense report).
PLAUSIBLE_MAX: dict[str, float] = {
    "schema_version": 1_000, "node_nm": 1_000, "clock_ghz": 100.0,
    "rows": 65_536, "cols": 65_536, "count": 65_536,
    "value_bytes": 64, "output_bytes": 64, "metadata_bits": 64,
    "units": 1_000_000, "cycles_per_block": 1_000_000, "energy_pj_per_block": 1e6,
    "size_kib": float(1 << 30), "metadata_size_kib": float(1 << 30),  # 1 TiB
    "bandwidth_bytes_per_cycle": 1e9, "bandwidth_gb_per_s": 1e9,
    "read_pj_per_byte": 1e6, "write_pj_per_byte": 1e6,
    "metadata_read_pj_per_byte": 1e6, "metadata_write_pj_per_byte": 1e6,
    "energy_pj_per_byte": 1e6, "mac_pj": 1e6, "pe_register_pj": 1e6,
    "n": 1_024, "m": 1_024, "speedup": 1_024,
}


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> HardwareError:
        return HardwareError(f"{self.source}: {key}: {problem}")

    # -- leaves -------------------------------------------------------------
    def leaf(self, key: str, value: Any, kind: str, constraint: str | None) -> Any:
        if kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(key, f"expected true or false, got {_tname(value)}")
            return value
        if kind == "str":
            if not isinstance(value, str):
                raise self.fail(key, f"expected a string, got {_tname(value)}")
            return value
        if isinstance(value, bool):
            raise self.fail(key, f"expected a {_kname(kind)}, got a boolean")
        if kind == "int":
            if not isinstance(value, int):
                raise self.fail(key, f"expected an integer, got {_tname(value)}")
        elif kind == "num":
            if not isinstance(value, (int, float)):
                raise self.fail(key, f"expected a number, got {_tname(value)}")
            if not math.isfinite(value):
                raise self.fail(key, f"must be finite, got {value}")
            value = float(value)
        if constraint == "pos" and not value > 0:
            raise self.fail(key, f"must be > 0, got {_fmt(value)}")
        if constraint == "nonneg" and not value >= 0:
            raise self.fail(key, f"must be >= 0, got {_fmt(value)}")
        limit = PLAUSIBLE_MAX.get(key.rsplit(".", 1)[-1].split("]")[-1].lstrip("."))
        if limit is not None and abs(value) > limit:
            raise self.fail(key, f"{_fmt(value)} is outside the plausible range (at most {_fmt(limit)})")
        return value

    # -- tables -------------------------------------------------------------
    def table(self, prefix: str, data: Any, schema: dict[str, Any]) -> dict[str, Any]:
        where = prefix or "<top level>"
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a table, got {_tname(data)}")
        names = {k.rstrip("?"): k for k in schema}
        unknown = sorted(set(data) - set(names))
        if unknown:
            key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
            raise self.fail(key, "unknown key (expected one of: "
                            + ", ".join(sorted(names)) + ")")
        out: dict[str, Any] = {}
        for name, skey in names.items():
            spec = schema[skey]
            key = f"{prefix}.{name}" if prefix else name
            optional_table = skey.endswith("?")
            if name not in data:
                if optional_table or (isinstance(spec, tuple) and not spec[2]):
                    out[name] = None
                    continue
                raise self.fail(key, "missing required key")
            value = data[name]
            if isinstance(spec, dict):
                out[name] = self.table(key, value, spec)
            elif spec[0] == "patterns":
                out[name] = self.patterns(key, value)
            else:
                out[name] = self.leaf(key, value, spec[0], spec[1])
        return out

    def patterns(self, key: str, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(key, f"expected an array of tables, got {_tname(value)}")
        return [self.table(f"{key}[{i}]", item, _PATTERN_SCHEMA)
                for i, item in enumerate(value)]


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _kname(kind: str) -> str:
    return {"int": "integer", "num": "number"}.get(kind, kind)


def _fmt(v: Any) -> str:
    return repr(v) if not isinstance(v, float) else f"{v:g}"


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def _build(data: dict[str, Any], source: str) -> Hardware:
    chk = _Checker(source)
    d = chk.table("", data, _SCHEMA)

    if d["schema_version"] != SCHEMA_VERSION:
        raise chk.fail("schema_version",
                       f"unsupported version {d['schema_version']} (this tasdc reads {SCHEMA_VERSION})")
    if not d["name"].strip():
        raise chk.fail("name", "must not be empty")

    arr = d["array"]
    if arr["dataflow"] not in SUPPORTED_DATAFLOWS:
        raise chk.fail("array.dataflow",
                       f"unsupported dataflow {arr['dataflow']!r} (modelled: "
                       + ", ".join(repr(x) for x in SUPPORTED_DATAFLOWS) + ")")

    sp = d["sparsity"]
    bits = sp["metadata_bits"]
    pats: list[NativePattern] = []
    seen: set[tuple[int, int]] = set()
    for i, p in enumerate(sp["patterns"]):
        key = f"sparsity.patterns[{i}]"
        n, m, s = p["n"], p["m"], p["speedup"]
        if n <= 0:
            raise chk.fail(f"{key}.n", f"N must be >= 1, got {n} (pattern {n}:{m})")
        if m <= 0:
            raise chk.fail(f"{key}.m", f"M must be >= 1, got {m} (pattern {n}:{m})")
        if n > m:
            raise chk.fail(f"{key}.n", f"N > M in pattern {n}:{m}")
        if not _is_pow2(m):
            raise chk.fail(f"{key}.m",
                           f"M must be a power of two (block index decoding), got {m} (pattern {n}:{m})")
        if (n, m) in seen:
            raise chk.fail(key, f"duplicate pattern {n}:{m}")
        seen.add((n, m))
        if n == m:
            if s != 1.0:
                raise chk.fail(f"{key}.speedup",
                               f"dense pattern {n}:{m} must have speedup 1, got {s:g}")
        else:
            if m > (1 << bits):
                raise chk.fail(f"{key}.m",
                               f"pattern {n}:{m} needs {int(math.log2(m))} metadata bits per kept "
                               f"value but sparsity.metadata_bits = {bits}")
            if not (1.0 <= s <= m / n):
                raise chk.fail(f"{key}.speedup",
                               f"speedup of {n}:{m} must be in [1, {m / n:g}] (M/N), got {s:g}")
        pats.append(NativePattern(n, m, float(s)))
    sparse = [p for p in pats if not p.is_dense]

    mem = d["memory"]
    vb = d["datatype"]["value_bytes"]
    if sparse:
        if mem["glb"]["metadata_size_kib"] <= 0:
            raise chk.fail("memory.glb.metadata_size_kib",
                           "must be > 0 when sparsity.patterns lists sparse patterns")
        max_m = max(p.m for p in sparse)
    else:
        max_m = 1
    need = arr["cols"] * max_m * vb
    if mem["rf"]["size_kib"] * 1024.0 < need:
        raise chk.fail("memory.rf.size_kib",
                       f"{mem['rf']['size_kib']:g} KiB cannot stage one block-aligned slice of B "
                       f"(array.cols x max M x value_bytes = {need:g} bytes)")

    ext = d["extraction"]
    if ext is not None and not sparse:
        raise chk.fail("extraction", "TASD extraction units need at least one native sparse pattern")

    return Hardware(
        name=d["name"],
        description=d["description"] or "",
        technology=Technology(**d["technology"]),
        array=ArrayConfig(**{**arr, "fill_drain_overlap": bool(arr["fill_drain_overlap"])}),
        datatype=DataType(**d["datatype"]),
        sparsity=Sparsity(metadata_bits=bits, patterns=tuple(pats),
                          shared_metadata=bool(sp["shared_metadata"])),
        extraction=None if ext is None else ExtractionUnits(**ext),
        memory=Memory(rf=RegisterFile(**mem["rf"]), glb=GlobalBuffer(**mem["glb"]),
                      dram=Dram(**mem["dram"])),
        energy=ComputeEnergy(**d["energy"]),
        source=source,
    )


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def list_targets() -> list[str]:
    """Names of the shipped targets (file stems under ``hardware/``)."""
    return sorted(p.stem for p in HARDWARE_DIR.glob("*.toml"))


def _resolve(name_or_path: str | Path) -> Path:
    if isinstance(name_or_path, Path):
        return name_or_path
    s = str(name_or_path)
    if s.endswith(".toml") or "/" in s or "\\" in s:
        return Path(s)
    p = HARDWARE_DIR / f"{s}.toml"
    if not p.is_file():
        raise HardwareError(f"unknown hardware target {s!r} (shipped: "
                            + ", ".join(list_targets()) + "; or give a path to a .toml file)")
    return p


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int, size: int) -> Hardware:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise HardwareError(f"{path}: <toml>: {e}") from None
    return _build(data, path)


def load_hardware(name_or_path: str | Path) -> Hardware:
    """Load a target by shipped name (``"stc"``) or by path to a TOML file."""
    if isinstance(name_or_path, Hardware):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        st = path.stat()
    except OSError as e:
        raise HardwareError(f"{path}: cannot read hardware file ({e.strerror or e})") from None
    if not path.is_file():
        raise HardwareError(f"{path}: not a file")
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


def hardware_from_dict(data: dict[str, Any], source: str = "<dict>") -> Hardware:
    """Validate an already-parsed description (same rules as files)."""
    return _build(data, source)
