"""``tasdc report`` / ``--html``: one self-contained page, rendered by headless Chromium.

Chromium is Debian's ``chromium`` package (``tools/dev.py test`` installs it
when missing); the rendering test skips, saying so, only when it is absent.
The page has no scripts, so any console message Chromium logs is a failure;
a page with a script error proves the detector sees one. "Not blank" means
the screenshot holds the plots' bar colour (TASD blue) over a sizeable area.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from tasdc.html_report import TASD_COLOR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def render(page: Path, tmp_path: Path, size: str = "1200,2600") -> tuple[np.ndarray, list[str]]:
    """Screenshot of ``page`` (RGB floats) and the console messages Chromium logged."""
    import matplotlib.image

    shot = tmp_path / f"{page.stem}.png"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={size}",
                           f"--screenshot={shot}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return matplotlib.image.imread(str(shot))[..., :3], console


def colour_fraction(image: np.ndarray, hex_colour: str) -> float:
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return float((np.abs(image - rgb).max(axis=-1) < 0.02).mean())


def check_self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "<link" not in text and "<img" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)


@pytest.fixture(scope="module")
def pages(example_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("html")
    proc = run_cli("compile", str(example_dir / "cnn.pt2"), "--config", "2:4+1:4", "--target", "vegeta",
                   "--json", str(out / "cnn.json"), "--html", str(out / "cnn-flag.html"))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", str(out / "cnn.json"), "-o", str(out / "cnn.html"))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("compile", str(example_dir / "mlp.pt2"), "--target", "vegeta", "--quality", "0.99",
                   "--calib", str(example_dir / "mlp-calib.npz"), "--html", str(out / "tasder.html"))
    assert proc.returncode == 0, proc.stderr
    return {"cnn": out / "cnn.html", "cnn-flag": out / "cnn-flag.html", "tasder": out / "tasder.html"}


def test_pages_have_every_section(pages: dict[str, Path]) -> None:
    cnn, flag, tasder = (pages[k].read_text() for k in ("cnn", "cnn-flag", "tasder"))
    for text in (cnn, flag, tasder):
        check_self_contained(text)
        for section in ("Cost per layer: dense vs TASD", "Chosen series per layer and its error",
                        "Block non-zero histograms of the weights"):
            assert section in text
    # cost bars, error bars, histograms; TASDER adds its search path
    assert cnn.count("<svg") == 3 and flag.count("<svg") == 3
    assert tasder.count("<svg") == 4 and "TASDER search path" in tasder
    # the default (bisect) search lists every probe: predicted (budget rule) vs measured quality
    probes = tasder.split("Probes: predicted vs measured quality", 1)[1].split("</table>", 1)[0]
    assert "<th>predicted</th>" in probes and "<th>measured (calibration)</th>" in probes
    assert probes.count("<tr>") >= 2 and re.search(r"<td>0\.\d+</td>", probes)
    assert "conv2d_0" in cnn and "2:4+1:4" in cnn and "on vegeta" in cnn


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (tools/dev.py test installs it; "
                                             "apt-get install chromium)")
def test_pages_render_in_headless_chromium(pages: dict[str, Path], tmp_path: Path) -> None:
    for name in ("cnn", "tasder"):
        image, console = render(pages[name], tmp_path)
        assert console == [], console
        assert (image.min(axis=-1) < 0.9).mean() > 0.03, f"{name}: the screenshot is (nearly) blank"
        assert colour_fraction(image, TASD_COLOR) > 0.002, f"{name}: no plotted TASD bars in the screenshot"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_render_checks_can_fail(tmp_path: Path) -> None:
    """The console and blankness checks above do catch a broken page."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>")
    image, console = render(broken, tmp_path, size="400,300")
    assert any("boom" in line for line in console)
    assert (image.min(axis=-1) < 0.9).mean() < 0.001 and colour_fraction(image, TASD_COLOR) == 0.0


def test_bad_report_is_one_line(tmp_path: Path) -> None:
    from tasdc.cli import main

    bad = tmp_path / "bad.json"
    for text, message in (("{", "not JSON"), ('{"a": 1}', "not a tasdc report"), ("[1]", "not a tasdc report")):
        bad.write_text(text)
        assert main(["report", str(bad), "-o", str(tmp_path / "out.html")]) == 2
    assert not (tmp_path / "out.html").exists()
