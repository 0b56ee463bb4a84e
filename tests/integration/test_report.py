"""``stackbuild report`` rendered by a real headless Chromium, and ``graph --format
svg`` drawn by Graphviz, on the example stack built for real (one image failing: the
session's ``example_run``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


def need(tool: str, package: str) -> str:
    """The tool's path; without it the test skips (fails in CI, which installs it)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: apt-get install {package} (scripts/setup.sh does)"
        if os.environ.get("STACKBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def stackbuild(stack: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(stack), *args],
        capture_output=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == expect, proc.stderr.decode() + proc.stdout.decode(errors="replace")
    return proc


def chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )


@pytest.mark.docker
def test_the_report_renders_in_chromium_with_graph_timeline_and_layers(
    tmp_path: Path, example_run: Any
) -> None:
    browser = need("chromium", "chromium")
    need("dot", "graphviz")
    stack, unique = example_run.stack, example_run.prefix  # built -j 2; broken failed
    images = 7

    # graph --format svg: one node per image (Graphviz's <g class="node">)
    svg = ET.fromstring(stackbuild(stack, "graph", "--format", "svg").stdout)
    nodes = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "node"]
    assert len(nodes) == images
    titles = {g.findtext(f"{SVG}title") for g in nodes}
    assert f"{unique}/broken" in titles
    png = stackbuild(stack, "graph", "--format", "png").stdout
    assert png.startswith(b"\x89PNG\r\n\x1a\n")

    page = tmp_path / "report.html"
    stackbuild(stack, "report", "-o", str(page))
    text = page.read_text()
    assert not re.search(r"(src|href)=\"?https?:", text) and "<link" not in text
    dom = chromium(browser, "--dump-dom", page.as_uri()).stdout
    graph = dom[dom.index('<section id="graph">') : dom.index('<section id="statuses">')]
    assert graph.count('class="node"') == images
    assert "#ec7f7f" in graph  # broken: failed in the last run, still to build
    timeline = dom[dom.index('<section id="timeline">') : dom.index('<section id="layers">')]
    assert timeline.count('class="bar') == images  # every image ran, broken too
    # the critical path is named in the legend, and its bars alone are outlined
    legend = re.search(r'id="critical-path">.*?critical path: ([^(<]+) \(', timeline)
    assert legend, timeline
    chain = legend[1].split(" \u2192 ")
    outlined = re.findall(r'class="bar critical" data-image="([^"]+)"', timeline)
    assert sorted(outlined) == sorted(chain) and "idle time per slot" in timeline
    assert f'data-image="{unique}/broken"' in timeline
    layers = dom[dom.index('<section id="layers">') :]
    assert layers.count("<tr>") == 1 + images - 1  # header + the six built ones
    assert "sharing saves" in layers

    shot = tmp_path / "report.png"
    chromium(browser, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert shot.stat().st_size > 1000
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
