"""Reading numpy input files (``.npy`` / ``.npz``) with one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasdc.errors import InputError


def read_arrays(path: str | Path, what: str = "input") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` by name, or ``{"": array}`` for an ``.npy``.

    Pickled object arrays are refused (``allow_pickle=False``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such {what} file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npy or .npz file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a .npy/.npz file ({str(error).splitlines()[0]})") from None
    if isinstance(data, np.ndarray):
        return {"": data}
    with data:
        return {name: data[name] for name in data.files}
