"""The pictures: the last run read back from the run log, its lanes, the styled DOT,
the self-contained page; ``graph --format svg`` without Graphviz."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from stackbuild.analyze import analyze
from stackbuild.layers import ImageLayers, Layer, account
from stackbuild.report import (
    gantt_svg,
    lanes,
    last_run,
    layered_svg,
    node_states,
    report_html,
    styled_dot,
    svg_body,
)

REPO = Path(__file__).resolve().parents[2]

LOG = """\
2026-12-02 10:00:00,000 run: 2 to build, 0 up to date
2026-12-02 10:00:01,000 build old sha256:1 on unix:///var/run/docker.sock
2026-12-02 10:00:02,000 built old
2026-12-02 11:00:00,000 run: 4 to build, 2 up to date
2026-12-02 11:00:00,500 build base sha256:aa on unix:///var/run/docker.sock
2026-12-02 11:00:02,500 built base
2026-12-02 11:00:02,600 build httpd sha256:bb on unix:///var/run/docker.sock
2026-12-02 11:00:02,700 build tools sha256:cc on unix:///var/run/docker.sock
2026-12-02 11:00:03,700 failed tools returned a non-zero code: 1
2026-12-02 11:00:03,700 blocked runner parent failed: tools
2026-12-02 11:00:04,600 built httpd
"""


def test_the_last_run_is_read_back_from_the_run_log() -> None:
    run = {entry.image: entry for entry in last_run(LOG)}
    assert set(run) == {"base", "httpd", "tools", "runner"}  # not the run before
    assert run["base"].start == 0.5 and run["base"].duration == 2.0
    assert run["tools"].status == "failed" and run["tools"].error == "returned a non-zero code: 1"
    assert run["runner"].start is None and run["runner"].error == "parent failed: tools"
    assert run["httpd"].engine == "unix:///var/run/docker.sock"
    # httpd and tools overlapped: two slots of the one engine; base then httpd in one
    assert {entry.image: lane for _engine, lane, entry in lanes(list(run.values()))} == {
        "base": 0, "httpd": 0, "tools": 1
    }
    assert gantt_svg(list(run.values())).count('class="bar"') == 3


def example(tmp_path: Path) -> Path:
    shutil.copy(REPO / "stack.yaml", tmp_path / "stack.yaml")
    shutil.copytree(REPO / "images", tmp_path / "images", symlinks=True)
    return tmp_path / "stack.yaml"


def test_nodes_are_coloured_by_plan_action_and_sized_by_own_bytes(tmp_path: Path) -> None:
    analysis = analyze(example(tmp_path))
    plan = analysis.plan({"base": "local engine"})
    states = node_states(plan, last_run(LOG))
    assert states["base"] == "skip" and states["tools"] == "failed" and states["httpd"] == "build"
    dot = styled_dot(analysis.graph, states, {"base": 1000, "httpd": 10})
    base_line = next(line for line in dot.splitlines() if line.startswith('  "base" ['))
    httpd_line = next(line for line in dot.splitlines() if line.startswith('  "httpd" ['))
    assert 'fillcolor="#9ad29a"' in base_line and "width=1.88" in base_line
    assert 'fillcolor="#f6c26b"' in httpd_line and "width=0.86" in httpd_line
    assert '"tools" [style=filled, fillcolor="#ec7f7f"' in dot


def test_the_page_holds_everything_and_fetches_nothing(tmp_path: Path) -> None:
    analysis = analyze(example(tmp_path))
    plan = analysis.plan(None)
    run = last_run(LOG)
    layers = ImageLayers("sha256:b", 5, (Layer("sha256:l", 5, "COPY"),))
    stack_account = account([["base"]], {}, {}, {"base": layers})
    svg = layered_svg(analysis.graph, node_states(plan, run), {"base": 5})
    page = report_html("stackbuild report", svg, plan, run, stack_account)
    assert svg.count('class="node"') == len(analysis.stack.images)
    for section in ('id="graph"', 'id="statuses"', 'id="timeline"', 'id="layers"'):
        assert section in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<td>tools</td><td>build</td><td>failed</td>" in page
    assert svg_body('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg">x</svg>') == (
        "<svg>x</svg>"
    )


def test_svg_without_graphviz_names_the_debian_package(tmp_path: Path) -> None:
    stack = example(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(stack), "graph", "--format", "svg"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), "PATH": str(tmp_path)},  # no dot on it
    )
    assert proc.returncode == 2, proc.stderr
    assert "install the Debian package graphviz (apt-get install graphviz)" in proc.stderr
    assert "Traceback" not in proc.stderr
