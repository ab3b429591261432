"""Loading a .pt2 must not run code from it.

A crafted archive replaces a pickled entry with a payload whose unpickling
creates a marker file. Plain ``torch.export.load`` runs it (checked here, so
the test cannot pass vacuously); tasdc refuses the file with exit status 2
and the marker is never created.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import run_cli


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.marker, "w"))


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            for suffix, new in replace.items():
                if item.filename.endswith(suffix):
                    data = new
            zout.writestr(item, data)


def _craft(example_dir: Path, tmp_path: Path, where: str) -> tuple[Path, Path]:
    marker = tmp_path / f"pwned-{where}"
    payload = pickle.dumps(_Payload(str(marker)), protocol=2)
    crafted = tmp_path / f"evil-{where}.pt2"
    src = example_dir / "mlp.pt2"
    if where == "weights":
        with zipfile.ZipFile(src) as z:
            config_name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
            config = json.loads(z.read(config_name))
        entry = config["config"]["fc3.bias"]
        entry["use_pickle"] = True
        _rewrite(src, crafted, {config_name: json.dumps(config).encode(), "weights/" + entry["path_name"]: payload})
    else:
        _rewrite(src, crafted, {"sample_inputs/model.pt": payload})
    return crafted, marker


@pytest.mark.parametrize("where", ["weights", "sample_inputs"])
def test_plain_torch_load_runs_the_payload(example_dir: Path, tmp_path: Path, where: str) -> None:
    crafted, marker = _craft(example_dir, tmp_path, where)
    code = f"import torch\ntry:\n    torch.export.load({str(crafted)!r})\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert marker.exists(), "the crafted file should execute code under plain torch.export.load"


@pytest.mark.parametrize("where", ["weights", "sample_inputs"])
def test_tasdc_refuses_the_payload(example_dir: Path, tmp_path: Path, where: str) -> None:
    crafted, marker = _craft(example_dir, tmp_path, where)
    proc = run_cli("compile", str(crafted))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "refusing to unpickle" in proc.stderr
    assert not marker.exists()


def test_clean_archive_still_loads_after_guard(example_dir: Path) -> None:
    from tasdc.importer import load_exported_program

    program = load_exported_program(example_dir / "mlp.pt2")
    assert program is not None
