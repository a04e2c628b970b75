"""Open report.html in headless Chromium (from disk, no network) and check what renders:
the verdict banner, a timeline with one lane per node, fault shading and the latency plot."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from deploy.analysis import analyze, write_outputs
from deploy.analysis.synthetic import standard_run
from deploy.report import write_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
TIMEOUT_S = 90


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (CI installs the Debian package 'chromium')")
    return exe


def _run_chromium(args: list[str], profile: Path) -> str:
    """Run chromium in its own process group; kill that group if it overstays."""
    proc = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    standard_run(run, bug="diverge", offsets={"n2": 5.0, "n3": -3.0})
    a = analyze(run)
    write_outputs(a)
    return write_report(a)


def test_report_dom_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = _run_chromium(["--dump-dom", report.as_uri()], tmp_path / "profile")
    assert re.search(r'id="verdicts"', dom)
    assert re.search(r'class="verdict overall v-invalid"', dom)
    assert re.findall(r'<g class="lane" data-node="(n\d)">', dom) == ["n1", "n2", "n3"]
    assert re.search(r'<svg id="timeline"', dom)
    assert len(re.findall(r'class="fault" data-fault="partition"', dom)) == 3
    assert re.search(r'<svg id="latency"', dom) and 'class="ops ops-ok"' in dom
    assert re.search(r'<g class="marker violation">', dom)


def test_report_screenshot_shows_the_red_banner(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    _run_chromium(
        [f"--screenshot={shot}", "--window-size=1300,1400", report.as_uri()],
        tmp_path / "profile",
    )
    img = Image.open(shot).convert("RGB")
    assert img.size == (1300, 1400)
    # The overall verdict box (top left, below the title) is painted red for an invalid run.
    box = [img.getpixel((x, y)) for x in range(40, 200, 8) for y in range(95, 150, 5)]
    red = [p for p in box if p[0] > 170 and p[1] < 80 and p[2] < 80]
    assert len(red) > len(box) // 2
    # Below the banners, the leader segments (and ok operations) paint green.
    greens = sum(
        1
        for x in range(100, 1200, 10)
        for y in range(300, 1400, 5)
        if (lambda p: p[1] > 100 and p[0] < 80 and p[2] < 80)(img.getpixel((x, y)))
    )
    assert greens > 50
