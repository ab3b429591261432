"""Sweep specifications: a TOML file that names a grid of TASDER compiles.

::

    [[model]]                          # one table per model (paths relative to this file)
    path = "examples/out/mlp.pt2"      # .pt2 or .mlir
    calib = "examples/out/mlp-calib.npz"   # optional: layer-output errors + measured quality
    eval = "examples/out/mlp-eval.npz"     # optional: held-out inputs, measured quality
    name = "mlp"                       # optional label (default: the file stem)

    [grid]
    target = ["stc", "vegeta"]         # shipped names or hardware .toml files
    quality = [0.99, 0.95]             # bounds in (0, 1]
    objective = ["edp"]                # optional, default ["edp"]; edp | latency | energy
    max_terms = [2]                    # optional, default [2]

    [[target]]                         # optional: variants of a hardware file
    base = "vegeta"                    # shipped name or .toml file
    array.rows = [16, 32, 64]          # every other key: a hardware key (dotted) and the values to try
    array.cols = [16, 32, 64]          # several keys: their cross product
    sparsity.patterns = [["2:4"], ["2:4", "1:4"]]   # "N:M" = { n, m, speedup = M/N }

The grid is models x targets (``grid.target`` then every ``[[target]]``
variant) x quality x objective x max_terms. A variant is the base file with
the given keys replaced, named ``base[key=value,…]`` and validated by
:func:`tasdc.runtime.accel.hardware.hardware_from_dict`; its TOML text (not
a path) travels with each cell, so remote workers need no copy of it.

Every problem is a :class:`SpecError` naming the spec file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from tasdc.cache import file_digest
from tasdc.errors import TasdcError

_MODEL_KEYS = {"path", "calib", "eval", "name"}
_GRID_KEYS = {"target", "quality", "objective", "max_terms"}
_TOP_KEYS = {"model", "grid", "target"}
OBJECTIVES = ("edp", "latency", "energy")


class SpecError(TasdcError):
    """A sweep spec that cannot be read or is invalid (one line naming file and key)."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of the grid, with its input files and their digests."""

    name: str
    path: Path
    calib: Path | None
    eval: Path | None
    digest: str          # of the model file, calibration and evaluation files together


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """One target: a shipped name, or the TOML text of a file or variant."""

    label: str
    shipped: str | None     # shipped target name, else None
    toml: str               # the description's TOML text
    digest: str             # of the parsed description (comments do not count)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One compile of the grid; ``key`` identifies it across runs."""

    model: ModelSpec
    target: TargetSpec
    quality: float
    objective: str
    max_terms: int
    key: str


@dataclasses.dataclass
class Spec:
    path: Path
    models: list[ModelSpec]
    targets: list[TargetSpec]
    qualities: list[float]
    objectives: list[str]
    max_terms: list[int]

    def cells(self) -> list[Cell]:
        """Every cell of the grid, model-major (cells of one model are adjacent)."""
        version = tasdc_version()
        out = []
        for model, target, quality, objective, terms in itertools.product(
                self.models, self.targets, self.qualities, self.objectives, self.max_terms):
            ident = json.dumps([model.digest, target.digest, quality, objective, terms, version])
            key = hashlib.blake2b(ident.encode(), digest_size=16).hexdigest()
            out.append(Cell(model, target, quality, objective, terms, key))
        return out


def tasdc_version() -> str:
    try:
        return metadata.version("tasdc")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "unknown"


# --------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not valid TOML ({error})") from None
    where = _Where(path)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise where.fail(unknown[0], f"unknown key (expected one of: {', '.join(sorted(_TOP_KEYS))})")
    models = _models(where, data.get("model"))
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise where.fail("grid", "expected a table")
    unknown = sorted(set(grid) - _GRID_KEYS)
    if unknown:
        raise where.fail(f"grid.{unknown[0]}", f"unknown key (expected one of: {', '.join(sorted(_GRID_KEYS))})")
    targets = [_target(where, f"grid.target[{i}]", name)
               for i, name in enumerate(_list(where, "grid.target", grid.get("target", []), str, allow_empty=True))]
    variants = data.get("target", [])
    if not isinstance(variants, list):
        raise where.fail("target", "expected an array of tables ([[target]])")
    for i, variant in enumerate(variants):
        targets += _variants(where, f"target[{i}]", variant)
    if not targets:
        raise where.fail("grid.target", "no targets (give grid.target or [[target]] tables)")
    labels = [t.label for t in targets]
    dup = next((label for label in labels if labels.count(label) > 1), None)
    if dup is not None:
        raise where.fail("grid.target", f"target '{dup}' appears twice")
    if "quality" not in grid:
        raise where.fail("grid.quality", "missing required key")
    qualities = _list(where, "grid.quality", grid["quality"], float)
    for i, q in enumerate(qualities):
        if not (math.isfinite(q) and 0.0 < q <= 1.0):
            raise where.fail(f"grid.quality[{i}]", f"must be in (0, 1], got {q}")
    objectives = _list(where, "grid.objective", grid.get("objective", ["edp"]), str)
    for i, o in enumerate(objectives):
        if o not in OBJECTIVES:
            raise where.fail(f"grid.objective[{i}]", f"must be one of {', '.join(OBJECTIVES)}, got '{o}'")
    max_terms = _list(where, "grid.max_terms", grid.get("max_terms", [2]), int)
    for i, t in enumerate(max_terms):
        if not 1 <= t <= 4:
            raise where.fail(f"grid.max_terms[{i}]", f"must be in [1, 4], got {t}")
    return Spec(path, models, targets, _unique(qualities), _unique(objectives), _unique(max_terms))


class _Where:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.path}: {key}: {problem}")


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _list(where: _Where, key: str, value: Any, kind: type, allow_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        value = [value]
    if not value and not allow_empty:
        raise where.fail(key, "must not be empty")
    out = []
    for i, item in enumerate(value):
        ok = isinstance(item, kind) and not isinstance(item, bool)
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            item, ok = float(item), True
        if not ok:
            noun = {str: "a string", float: "a number", int: "an integer"}[kind]
            raise where.fail(f"{key}[{i}]", f"expected {noun}, got {_type_name(item)}")
        out.append(item)
    return out


def _models(where: _Where, value: Any) -> list[ModelSpec]:
    if value is None:
        raise where.fail("model", "missing: give at least one [[model]] table")
    if not isinstance(value, list) or not value:
        raise where.fail("model", "expected an array of tables ([[model]])")
    out = []
    base = where.path.parent
    for i, entry in enumerate(value):
        key = f"model[{i}]"
        if not isinstance(entry, dict):
            raise where.fail(key, "expected a table")
        unknown = sorted(set(entry) - _MODEL_KEYS)
        if unknown:
            raise where.fail(f"{key}.{unknown[0]}", f"unknown key (expected one of: {', '.join(sorted(_MODEL_KEYS))})")
        if "path" not in entry:
            raise where.fail(f"{key}.path", "missing required key")
        files: dict[str, Path | None] = {}
        for field in ("path", "calib", "eval"):
            raw = entry.get(field)
            if raw is None:
                files[field] = None
                continue
            if not isinstance(raw, str) or not raw:
                raise where.fail(f"{key}.{field}", f"expected a file path, got {_type_name(raw)}")
            p = Path(raw)
            p = p if p.is_absolute() else (base / p)
            if not p.is_file():
                raise where.fail(f"{key}.{field}", f"{raw}: no such file")
            files[field] = p.resolve()
        model = files["path"]
        assert model is not None
        if model.suffix not in (".pt2", ".mlir"):
            raise where.fail(f"{key}.path", f"{entry['path']}: expected a .pt2 or .mlir model")
        name = entry.get("name", model.stem)
        if not isinstance(name, str) or not name:
            raise where.fail(f"{key}.name", "expected a non-empty string")
        digest = hashlib.blake2b(digest_size=16)
        for field in ("path", "calib", "eval"):
            f = files[field]
            digest.update(f"{field}:{file_digest(str(f)) if f else '-'};".encode())
        out.append(ModelSpec(name, model, files["calib"], files["eval"], digest.hexdigest()))
    names = [m.name for m in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise where.fail("model", f"two models are named '{dup}' (give them distinct 'name' keys)")
    return out


def _hardware_data(where: _Where, key: str, name: str) -> tuple[str | None, dict[str, Any], str]:
    """(shipped name or None, parsed description, TOML text) of a target name or file."""
    from tasdc.runtime.accel.hardware import HARDWARE_DIR, HardwareError, list_targets, load_hardware

    if name.endswith(".toml") or "/" in name:
        file = Path(name)
        file = file if file.is_absolute() else where.path.parent / file
        shipped = None
    else:
        if name not in list_targets():
            raise where.fail(key, f"unknown target '{name}' (shipped: {', '.join(list_targets())}; or a .toml file)")
        file, shipped = HARDWARE_DIR / f"{name}.toml", name
    if not file.is_file():
        raise where.fail(key, f"{name}: no such hardware file")
    try:
        load_hardware(file)
    except HardwareError as error:
        raise where.fail(key, str(error)) from None
    text = file.read_text()
    return shipped, tomllib.loads(text), text


def _digest_of(data: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=16).hexdigest()


def _target(where: _Where, key: str, name: str) -> TargetSpec:
    shipped, data, text = _hardware_data(where, key, name)
    label = shipped or str(data.get("name", Path(name).stem))
    return TargetSpec(label, shipped, text, _digest_of(data))


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += _flatten(f"{prefix}.{k}" if prefix else k, v)
        return out
    return [(prefix, value)]


def _pattern(where: _Where, key: str, item: Any) -> Any:
    """``"N:M"`` -> ``{n, m, speedup = M/N}``; tables pass through (the validator checks them)."""
    if not isinstance(item, str):
        return item
    parts = item.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise where.fail(key, f"'{item}' is not an N:M pattern")
    n, m = int(parts[0]), int(parts[1])
    if not 1 <= n <= m:
        raise where.fail(key, f"'{item}' needs 1 <= N <= M")
    return {"n": n, "m": m, "speedup": m / n}


def _variants(where: _Where, key: str, entry: Any) -> list[TargetSpec]:
    from tasdc.runtime.accel.hardware import HardwareError, hardware_from_dict
    import tomli_w

    if not isinstance(entry, dict):
        raise where.fail(key, "expected a table")
    base = entry.get("base")
    if not isinstance(base, str) or not base:
        raise where.fail(f"{key}.base", "missing: the shipped target or .toml file to vary")
    _, data, _ = _hardware_data(where, f"{key}.base", base)
    axes = [(k, v) for k, v in _flatten("", {k: v for k, v in entry.items() if k != "base"})]
    if not axes:
        raise where.fail(key, "no hardware keys to vary (e.g. array.rows = [16, 32])")
    for k, values in axes:
        if not isinstance(values, list) or not values:
            raise where.fail(f"{key}.{k}", "expected a non-empty array of values to try")
        if k in ("name", "schema_version"):
            raise where.fail(f"{key}.{k}", "cannot be varied")
    out = []
    for combo in itertools.product(*[values for _, values in axes]):
        variant = copy.deepcopy(data)
        parts = []
        for (k, _), value in zip(axes, combo):
            if k == "sparsity.patterns":
                if not isinstance(value, list):
                    raise where.fail(f"{key}.{k}", "each value must be an array of patterns")
                value = [_pattern(where, f"{key}.{k}", item) for item in value]
                shown = "+".join(f"{p['n']}:{p['m']}" if isinstance(p, dict) and "n" in p and "m" in p else "?"
                                 for p in value) or "none"
            else:
                shown = str(value)
            node = variant
            path = k.split(".")
            for part in path[:-1]:
                if not isinstance(node.get(part, {}), dict):
                    raise where.fail(f"{key}.{k}", f"'{part}' is not a table in {base}")
                node = node.setdefault(part, {})
            node[path[-1]] = value
            parts.append(f"{k}={shown}")
        label = f"{data.get('name', base)}[{','.join(parts)}]"
        variant["name"] = label
        try:
            hardware_from_dict(variant, source=f"{where.path}: {key} {label}")
        except HardwareError as error:
            raise SpecError(str(error)) from None
        out.append(TargetSpec(label, None, tomli_w.dumps(variant), _digest_of(variant)))
    return out
