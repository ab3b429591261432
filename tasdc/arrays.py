"""Reading numpy input files (``.npy`` / ``.npz``) with one-line errors.

Before numpy allocates an array, its header is checked against the bytes the
file really holds (a header may claim terabytes); pickled object arrays are
refused (``allow_pickle=False``) and so are non-finite values (NaN/inf make
every output and every quality measurement meaningless).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from tasdc.errors import InputError


def _check_header(stream: IO[bytes], available: int, where: str) -> None:
    """The ``.npy`` header in ``stream`` describes at most ``available`` bytes of data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(stream)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(stream)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{where}: not a .npy array ({str(error).splitlines()[0] if str(error) else 'truncated header'})") from None
    if dtype.hasobject:
        raise InputError(f"{where}: holds Python objects (pickled); refusing to load them")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = available - stream.tell()
    if need > have:
        raise InputError(f"{where}: header claims a {list(shape)} {dtype} array ({need:,} bytes) but the file holds {max(have, 0):,}")


def _check_file(path: Path) -> None:
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        raise InputError(f"{path}: empty file, expected a .npy or .npz file")
    with path.open("rb") as stream:
        head = stream.read(4)
        stream.seek(0)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(stream) as archive:
                    for info in archive.infolist():
                        if info.filename.endswith(".npy"):
                            with archive.open(info) as member:
                                _check_header(member, info.file_size, f"{path}:{info.filename}")
            except zipfile.BadZipFile as error:
                raise InputError(f"{path}: not a .npz file ({error})") from None
        elif head.startswith(b"\x93NUM"):
            _check_header(stream, size, str(path))
        else:
            raise InputError(f"{path}: not a .npy/.npz file (no numpy or zip magic)")


def read_arrays(path: str | Path, what: str = "input") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` by name, or ``{"": array}`` for an ``.npy``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such {what} file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npy or .npz file")
    _check_file(path)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays = {"": data}
        else:
            with data:
                arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: not a readable .npy/.npz file ({first})") from None
    if not arrays:
        raise InputError(f"{path}: holds no arrays")
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            label = f"array '{name}'" if name else "the array"
            raise InputError(f"{path}: {label} has {bad} non-finite values (NaN/inf) of {array.size}; refusing {what} data")
    return arrays
