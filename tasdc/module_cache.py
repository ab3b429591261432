"""On-disk cache of compiled modules, so ``tasdc run`` of a model it has compiled starts in seconds.

``tasdc run model.pt2 --config 2:4`` spends most of its time before the
CPU runtime sees a module: importing torch (and ``transformers`` for a
Hugging Face program), loading the ``.pt2``, torch.export's decompositions,
torch-mlir's lowering and the TASD passes (BERT-base: ~40 s on this
machine). The result depends only on the model file's bytes, the compile
options and the code, so it is stored: the module after the TASD pipeline as
MLIR bytecode (weights included) plus the model's input names, shapes and
dtypes (checked against the input file as before).

The key is a BLAKE2b digest of the model file's bytes (every weight byte is
in it), the options, the versions of tasdc, torch, torch-mlir and
transformers, and the source of every module of the tasdc, tasdc.passes and
tasdc.dialects packages (a development checkout changes them without a new
version). Only self-contained files are cached: ``.pt2`` archives and
``.mlir`` text; an ONNX model may keep its weights in other files, so it is
compiled every time.

An entry is one file ``<key>.tasdc-m`` in the CPU runtime's cache folder
(``tasdc.runtime.cpu.object_cache.object_dir``; trimmed least-recently-used
and cleared with the objects and packed kernels): a magic line, a CRC-32 of
the rest (damage, truncation), the length of a JSON header, the header (the
inputs), the bytecode. Writes are atomic (temporary file + rename). An entry
that is damaged or does not parse is ignored and rewritten by the next
compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch_mlir import ir

from tasdc.importer import InputSpec

MAGIC = b"tasdc-module 1\n"
SUFFIX = ".tasdc-m"  # object_cache.MODULE_SUFFIX
_HEAD = struct.Struct("<IQ")  # crc32 of everything after it, header length
#: Packages whose source decides the compiled module (import, passes, dialect).
_PACKAGES = ("tasdc", "tasdc.passes", "tasdc.dialects")
_VERSIONS = ("tasdc", "torch", "torch-mlir", "transformers")


@dataclass
class CachedModule:
    """A compiled module read back from the cache, with the model's inputs."""

    module: ir.Module
    inputs: list[InputSpec]


def cacheable(path: Path) -> bool:
    """Whether the model file holds everything its compile reads (``.pt2`` or ``.mlir``, not ONNX)."""
    return path.is_file() and path.suffix.lower() != ".onnx"


def _source_digest() -> str:
    import importlib

    digest = hashlib.blake2b(digest_size=32)
    for name in _PACKAGES:
        folder = Path(importlib.import_module(name).__file__ or "").parent
        for source in sorted(folder.glob("*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def cache_key(path: Path, options: str) -> str:
    """The key of the model file ``path`` compiled with ``options`` (a canonical description)."""
    from tasdc.runtime.cpu.object_cache import package_version

    digest = hashlib.blake2b(digest_size=32)
    for part in (MAGIC.decode(), options, *(package_version(p) for p in _VERSIONS), _source_digest()):
        digest.update(part.encode() + b"\0")
    with open(path, "rb") as model:
        digest.update(hashlib.file_digest(model, "blake2b").digest())
    return digest.hexdigest()


def entry_path(key: str) -> Path:
    from tasdc.runtime.cpu.object_cache import object_dir

    return object_dir() / f"{key}{SUFFIX}"


def store(key: str, module: ir.Module, inputs: Sequence[InputSpec]) -> Path | None:
    """Write ``module`` (bytecode) and its inputs under ``key``, atomically; ``None`` when the folder is not writable."""
    from tasdc.runtime.cpu import object_cache

    header = json.dumps([{"name": s.name, "shape": list(s.shape), "dtype": np.dtype(s.dtype).str} for s in inputs]).encode()
    folder = object_cache.object_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
        try:
            with os.fdopen(fd, "w+b") as out:
                out.write(MAGIC + bytes(_HEAD.size) + header)
                module.operation.write_bytecode(out)
                out.flush()
                out.seek(len(MAGIC) + _HEAD.size)
                crc = 0
                for chunk in iter(lambda: out.read(1 << 24), b""):
                    crc = zlib.crc32(chunk, crc)
                out.seek(len(MAGIC))
                out.write(_HEAD.pack(crc, len(header)))
            os.replace(tmp, entry_path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        object_cache.trim(object_cache.max_bytes(), keep=entry_path(key))
    except OSError:
        return None
    return entry_path(key)


def load(key: str, context: ir.Context) -> CachedModule | None:
    """The module and inputs stored under ``key``, parsed into ``context``; ``None`` when absent or damaged."""
    path = entry_path(key)
    head = len(MAGIC) + _HEAD.size
    try:
        with open(path, "rb") as source:
            prefix = source.read(head)
            if len(prefix) != head or not prefix.startswith(MAGIC):
                return None
            crc, length = _HEAD.unpack(prefix[len(MAGIC):])
            header = source.read(length)
            bytecode = source.read()
    except OSError:
        return None
    if len(header) != length or zlib.crc32(bytecode, zlib.crc32(header)) != crc:
        return None
    try:
        inputs = [InputSpec(str(s["name"]), tuple(int(d) for d in s["shape"]), np.dtype(s["dtype"]))
                  for s in json.loads(header)]
        with context:
            module = ir.Module.parse(bytecode)
    except (ValueError, TypeError, KeyError, ir.MLIRError):
        return None
    try:
        os.utime(path)  # recently used: trimmed last
    except OSError:
        pass
    return CachedModule(module, inputs)


def describe_options(**options: Any) -> str:
    """A canonical text of compile options (part of the key)."""
    return json.dumps(options, sort_keys=True, default=str)
