"""On-disk cache of packed N:M kernels, beside the compiled objects.

Packing a series for :mod:`tasdc.runtime.cpu.kernels` (validating the
compressed terms, merging them tile by tile into the kernel layout) costs
tens of milliseconds per large layer: ~2 s for a BERT-base at 2:4, more than
loading its machine code. The packed arrays are therefore stored too, keyed
by what they are computed from: the SHA-256 of every kernel's description
(kind, shapes, terms) and weight arrays (dtype, shape, bytes), the versions
of tasdc, the source of the packing code and this process's micro-kernel
(the packed tile width follows it). A model with other weights has
another key; the machine code (:mod:`tasdc.runtime.cpu.object_cache`, keyed
without weights) is shared.

An entry is one file ``<key>.tasdc-k`` in the same ``cpu/`` folder as the
objects: a magic line, a CRC-32 of the rest (damage, truncation), the length
of a JSON header, the header (per kernel and batch: the sizes of a
:class:`~tasdc.runtime.cpu.kernels.PackedSeries` and where its arrays are),
then the arrays, each at a 64-byte aligned offset. Loading reads the file
into anonymous memory (one ``mmap(MAP_ANONYMOUS)`` filled by ``readinto``)
and views the arrays in place. Not a mapping of the file itself: the kernels
ran 4–6 % slower on arrays in page-cache pages than on the same arrays in
anonymous memory (BERT-base at 2:4, one thread: 153.8 vs 147.3 ms, same
process), and reading 214 MB costs ~0.1 s. Writes are atomic
(temporary file + rename), the folder is trimmed least-recently-used with
the objects, and ``tasdc cache clear`` removes both kinds of entry. An entry
that is damaged or does not describe the expected kernels is ignored and
rewritten by the next compile.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tasdc.runtime.cpu import object_cache
from tasdc.runtime.cpu import kernels as kernel_code
from tasdc.runtime.cpu.kernels import PackedSeries

MAGIC = b"tasdc-cpu-kernels 1\n"
SUFFIX = object_cache.KERNEL_SUFFIX
_ALIGN = 64
#: The code that decides the packed layout (part of the key).
_SOURCES = ("tasdc.runtime.cpu.kernels", "tasdc.runtime.cpu.executor", "tasdc.runtime.cpu.kernel_cache")
#: PackedSeries array fields and their dtypes, in file order.
_ARRAYS = (("tile_count", np.dtype(np.int64)), ("tile_ptr", np.dtype(np.int64)),
           ("w_loc", np.dtype(np.uint8)), ("w_val", np.dtype(np.float32)))
_HEAD = struct.Struct("<IQ")  # crc32 of everything after it, header length


def cache_key(kernels: Sequence[tuple[dict[str, Any], Sequence[np.ndarray]]]) -> str:
    """The key of the packed form of ``kernels`` (each: its description and its weight arrays, as in the module)."""
    digest = hashlib.sha256()
    # The packed K-tile width follows this process's micro-kernel (kernels.default_kb).
    for part in (MAGIC.decode(), object_cache.package_version("tasdc"), object_cache.source_digest(_SOURCES),
                 f"isa={kernel_code._WIDE_ISA}"):
        digest.update(part.encode())
        digest.update(b"\0")
    for info, weights in kernels:
        digest.update(json.dumps(info, sort_keys=True, default=str).encode())
        for array in weights:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{list(array.shape)}".encode())
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def entry_path(key: str) -> Path:
    return object_cache.object_dir() / f"{key}{SUFFIX}"


def store(key: str, packed: Sequence[Sequence[PackedSeries]]) -> Path | None:
    """Write the packed kernels under ``key`` (atomically); ``None`` when the folder is not writable."""
    header: list[list[dict[str, Any]]] = []
    chunks: list[np.ndarray] = []
    offset = 0
    for series_list in packed:
        entries = []
        for series in series_list:
            arrays = []
            for name, dtype in _ARRAYS:
                array = np.ascontiguousarray(getattr(series, name), dtype=dtype)
                arrays.append([offset, int(array.size)])
                chunks.append(array)
                offset += -(-array.nbytes // _ALIGN) * _ALIGN
            entries.append({"out_features": series.out_features, "in_features": series.in_features,
                            "kb": series.kb, "patterns": list(series.patterns), "arrays": arrays})
        header.append(entries)
    text = json.dumps(header).encode()
    start = -(-(len(MAGIC) + _HEAD.size + len(text)) // _ALIGN) * _ALIGN
    prefix = text + bytes(start - len(MAGIC) - _HEAD.size - len(text))
    folder = object_cache.object_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + bytes(_HEAD.size) + prefix)
                crc = zlib.crc32(prefix)
                for array in chunks:
                    data = memoryview(array).cast("B")
                    pad = bytes(-len(data) % _ALIGN)
                    out.write(data)
                    out.write(pad)
                    crc = zlib.crc32(pad, zlib.crc32(data, crc))
                out.seek(len(MAGIC))
                out.write(_HEAD.pack(crc, len(text)))
            os.replace(tmp, entry_path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        object_cache.trim(object_cache.max_bytes(), keep=entry_path(key))
    except OSError:
        return None
    return entry_path(key)


def load(key: str, expected: Sequence[tuple[int, tuple[int, int]]]) -> list[list[PackedSeries]] | None:
    """The packed kernels stored under ``key``, or ``None`` when absent, damaged or not as ``expected``.

    ``expected`` gives, per kernel, how many series it has (its batch) and
    their ``(out_features, in_features)``; an entry that disagrees is not used.
    """
    path = entry_path(key)
    try:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size <= len(MAGIC) + _HEAD.size:
                return None
            buffer = _read_anonymous(source, size)
    except (OSError, ValueError):
        return None
    head = len(MAGIC) + _HEAD.size
    if size <= head or bytes(buffer[: len(MAGIC)]) != MAGIC:
        return None
    crc, length = _HEAD.unpack(bytes(buffer[len(MAGIC):head]))
    if zlib.crc32(memoryview(buffer)[head:]) != crc or head + length > size:
        return None
    try:
        header = json.loads(bytes(buffer[head:head + length]))
        start = -(-(head + length) // _ALIGN) * _ALIGN
        packed = [[_series(entry, buffer, start) for entry in entries] for entries in header]
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    if len(packed) != len(expected):
        return None
    for series_list, (batch, shape) in zip(packed, expected):
        if len(series_list) != batch or any((s.out_features, s.in_features) != shape for s in series_list):
            return None
    try:
        os.utime(path)  # recently used: trimmed last
    except OSError:
        pass
    return packed


def _read_anonymous(source: Any, size: int) -> np.ndarray:
    """The first ``size`` bytes of the open file ``source`` in a fresh anonymous mapping
    (page-aligned, private to this process: the arrays stay valid when the file is replaced
    or deleted, and writing to them never reaches it); OSError on a short read."""
    if hasattr(mmap, "MAP_ANONYMOUS"):
        memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    else:  # Windows: an anonymous mapping is the only kind with fileno -1
        memory = mmap.mmap(-1, size)
    with memoryview(memory) as view:
        done = 0
        while done < size:
            count = source.readinto(view[done:])
            if not count:
                raise OSError(f"{source.name}: {size - done} bytes short")
            done += count
    return np.frombuffer(memory, np.uint8)


def _series(entry: dict[str, Any], buffer: np.ndarray, start: int) -> PackedSeries:
    """One PackedSeries viewing ``buffer``; ValueError when the entry is inconsistent."""
    arrays = {}
    for (name, dtype), (offset, count) in zip(_ARRAYS, entry["arrays"], strict=True):
        begin = start + int(offset)
        end = begin + int(count) * dtype.itemsize
        if offset < 0 or count < 0 or begin % dtype.itemsize or end > buffer.size:
            raise ValueError(f"{name} out of bounds")
        arrays[name] = buffer[begin:end].view(dtype)
    o, k, kb = int(entry["out_features"]), int(entry["in_features"]), int(entry["kb"])
    count, ptr, loc, val = arrays["tile_count"], arrays["tile_ptr"], arrays["w_loc"], arrays["w_val"]
    # What the kernel relies on to stay inside its arrays.
    if ptr.size != count.size + 1 or loc.size != val.size or loc.size == 0 or not 0 < kb <= 256:
        raise ValueError("inconsistent sizes")
    if ptr[0] != 0 or np.any(ptr[1:] != ptr[:-1] + count * o) or ptr[-1] > loc.size or np.any(loc >= kb):
        raise ValueError("inconsistent tiles")
    return PackedSeries(out_features=o, in_features=k, kb=kb, patterns=tuple(str(p) for p in entry["patterns"]),
                        tile_count=count, tile_ptr=ptr, w_loc=loc, w_val=val)
