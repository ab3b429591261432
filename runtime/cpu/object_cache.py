"""On-disk compile cache of the CPU runtime: JIT once, load the machine code next time.

A compiled module is LLVM machine code that calls the N:M kernels by symbol
(``_mlir_ciface_tasd_kernel_k``). MLIR's ``ExecutionEngine`` can dump that
code as a relocatable object file; this module stores it under a key and
loads it back with llvmlite's MCJIT (installed with Numba), binding the
kernel symbols to this process's kernel entry points. Loading runs only the
linker step of the JIT, no LLVM optimisation or code generation.

The key is a SHA-256 over everything the machine code depends on: the module
right before LLVM lowering (as MLIR bytecode). Weights are not in it:
``tasd-cpu-bind-constants`` has turned every constant of 1 KB or more into
an argument bound at load time (the N:M kernels' weights are packed from
the module anyway), so the code, and its key, depend only on shapes and
small constants; models that differ only in their weights share an entry.
Then the lowering options and opt level, the versions
of tasdc and torch-mlir, the source of the lowering passes (a development
checkout changes them without changing the version), and the host CPU name
and features (the code is compiled for the host).

Location: ``$TASDC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/tasdc``, else
``~/.cache/tasdc``; objects live in its ``cpu/`` folder. An entry is one
file: a magic line, the SHA-256 of the rest, a line naming the external
symbols the code calls (kernels, ``malloc``, libm), the object file. Writes go
to a temporary file in the same folder and are renamed into place (atomic
on POSIX), so concurrent compiles never see half an entry; an entry whose
checksum does not match is ignored (and rewritten by the next compile).
Least recently used entries are deleted once the folder exceeds
``$TASDC_CACHE_MAX_MB`` (default 4096). ``tasdc cache clear`` removes every entry.
The packed N:M kernels are cached in the same folder
(:mod:`tasdc.runtime.cpu.kernel_cache`, ``.tasdc-k`` files), and so are the
compiled modules of ``tasdc run`` (:mod:`tasdc.module_cache`, ``.tasdc-m``),
trimmed and cleared with the objects.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from torch_mlir import ir

MAGIC = b"tasdc-cpu-object 1\n"
SUFFIX = ".tasdc-o"
#: Entries of :mod:`tasdc.runtime.cpu.kernel_cache` (packed N:M kernels) share the folder.
KERNEL_SUFFIX = ".tasdc-k"
#: Compiled modules of ``tasdc run`` (:mod:`tasdc.module_cache`) share the folder too.
MODULE_SUFFIX = ".tasdc-m"
ENTRY_SUFFIXES = (SUFFIX, KERNEL_SUFFIX, MODULE_SUFFIX)
_SOURCES = (
    "tasdc.passes.lower_cpu_to_llvm",
    "tasdc.passes.outline_loops",
    "tasdc.passes.dedup_functions",
    "tasdc.passes.inline_entry",
    "tasdc.passes.vectorize_contractions",
    "tasdc.passes.dense_to_calls",
    "tasdc.passes.expand_erf",
    "tasdc.passes.expand_exp",
    "tasdc.passes.reassociate_reductions",
    "tasdc.passes.mark_noalias",
    "tasdc.passes.keep_inner_loops",
    "tasdc.passes.demote_f64",
    "tasdc.passes.lower_tasd_to_calls",
    "tasdc.passes.bind_constants",
    "tasdc.passes.fold_batch_broadcasts",
    "tasdc.passes.fold_batch_norm",
    "tasdc.passes.fuse_kernel_epilogues",
    "tasdc.passes.tap_major_filters",
    "tasdc.passes.interchange_transposes",
    "tasdc.runtime.cpu.executor",
)
#: llvmlite's symbol table is process-wide: bind and link one object at a time.
_LINK_LOCK = threading.Lock()


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get("TASDC_CACHE_DIR"):
        return Path(os.environ["TASDC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tasdc"


def object_dir() -> Path:
    """The folder of the CPU runtime's entries (objects and packed kernels)."""
    return cache_dir() / "cpu"


def package_version(package: str) -> str:
    """The installed version of ``package`` ("unknown" when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _host_cpu() -> str:
    import llvmlite.binding as llvm

    return f"{llvm.get_process_triple()} {llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"


def source_digest(modules: Iterable[str] = _SOURCES) -> str:
    """SHA-256 of the source files of ``modules`` (a development checkout changes them without a new version)."""
    import importlib.util

    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and os.path.exists(spec.origin):
            digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


def cache_key(module: ir.Module, options: str) -> str:
    """The key of ``module`` (about to be lowered to LLVM) compiled with ``options``."""
    digest = hashlib.sha256()
    for part in (MAGIC.decode(), options, package_version("tasdc"), package_version("torch-mlir"), source_digest(), _host_cpu()):
        digest.update(part.encode())
        digest.update(b"\0")
    stream = io.BytesIO()
    module.operation.write_bytecode(stream)
    digest.update(stream.getvalue())
    return digest.hexdigest()


def entry_path(key: str) -> Path:
    return object_dir() / f"{key}{SUFFIX}"


def load_object(key: str) -> tuple[list[str], bytes] | None:
    """The external symbols and object file cached for ``key``, or ``None`` when absent or damaged."""
    try:
        data = entry_path(key).read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 32
    if len(data) <= head or not data.startswith(MAGIC):
        return None
    body = data[head:]
    if hashlib.sha256(body).digest() != data[len(MAGIC):head]:
        return None
    names, newline, payload = body.partition(b"\n")
    if not newline or not payload:
        return None
    try:
        os.utime(entry_path(key))  # recently used: trimmed last
    except OSError:
        pass
    return names.decode().split(), payload


def store_engine(key: str, engine: Any, externals: list[str]) -> Path | None:
    """Store the object file of a JIT-compiled ``ExecutionEngine`` (atomically).

    ``externals`` are the symbols the code calls but does not define; they are
    bound again when the entry is loaded. Returns the entry's path, or
    ``None`` when the cache folder is not writable (that only costs the next JIT).
    """
    folder = object_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
        os.close(fd)
        try:
            engine.dump_to_object_file(tmp)
            body = " ".join(externals).encode() + b"\n" + Path(tmp).read_bytes()
            with open(tmp, "wb") as out:
                out.write(MAGIC + hashlib.sha256(body).digest() + body)
            os.replace(tmp, entry_path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        trim(max_bytes(), keep=entry_path(key))
    except OSError:
        return None
    return entry_path(key)


def max_bytes() -> int:
    """Size limit of the cache: ``$TASDC_CACHE_MAX_MB`` (default 4096 MB)."""
    try:
        return int(float(os.environ.get("TASDC_CACHE_MAX_MB", "4096")) * 2**20)
    except ValueError:
        return 4096 * 2**20


def trim(limit: int, keep: Path | None = None) -> None:
    """Delete the least recently used entries until the folder holds at most ``limit`` bytes."""
    entries = []
    for path in object_dir().iterdir() if object_dir().is_dir() else ():
        if path.name.startswith(".tmp-") or not path.name.endswith(ENTRY_SUFFIXES):
            continue
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size


def clear() -> int:
    """Remove every cache entry (and stale temporaries); returns how many files went."""
    folder = object_dir()
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.name.endswith(ENTRY_SUFFIXES):
            path.unlink(missing_ok=True)
            removed += 1
    blas = cache_dir() / "blas"  # runtime/cpu/dense.py's private copy of OpenBLAS
    if blas.is_dir():
        for path in blas.iterdir():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


_SYSTEM_LIBRARIES_LOADED = False


def _load_system_libraries() -> None:
    """Make libc and libm searchable by the linker: LLVM itself emits calls
    (``expf``, ``memset``, …) that the MLIR module never declares."""
    global _SYSTEM_LIBRARIES_LOADED
    if _SYSTEM_LIBRARIES_LOADED:
        return
    import ctypes.util

    import llvmlite.binding as llvm

    for name in ("c", "m"):
        path = ctypes.util.find_library(name)
        if path:
            try:
                llvm.load_library_permanently(path)
            except RuntimeError:
                pass  # the process's own symbols are searched anyway
    _SYSTEM_LIBRARIES_LOADED = True


class LoadedObject:
    """Machine code from a cached object file, linked into this process by llvmlite's MCJIT."""

    def __init__(self, payload: bytes, symbols: Iterable[tuple[str, int]]) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _load_system_libraries()
        machine = llvm.Target.from_default_triple().create_target_machine()
        with _LINK_LOCK:
            # Symbols are resolved while the object is finalised (linked):
            # bind this executable's kernel addresses right before.
            for name, address in symbols:
                llvm.add_symbol(name, address)
            self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(payload))
            self._engine.finalize_object()

    def lookup(self, name: str) -> ctypes._CFuncPtr:
        """The packed entry of a function compiled with ``llvm.emit_c_interface``
        (same calling convention as ``ExecutionEngine.lookup``)."""
        address = self._engine.get_function_address(f"_mlir__mlir_ciface_{name}")
        if not address:
            raise RuntimeError(f"Unknown function {name}")
        return ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)
