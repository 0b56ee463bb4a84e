"""The pictures: the last run read back from the run log, its lanes, the styled DOT,
the self-contained page; ``graph --format svg`` without Graphviz."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackbuild.analyze import analyze
from stackbuild.layers import ImageLayers, Layer, account
from stackbuild.report import (
    critical_path,
    gantt_svg,
    idle_seconds,
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


# the example stack built -j 2: base, then httpd and tools side by side; site-ops waits
# for httpd (its later parent), and ends last
TWO_SLOTS = """\
2026-12-02 11:00:00,000 run: 6 to build, 0 up to date
2026-12-02 11:00:00,100 build base sha256:1 on local
2026-12-02 11:00:02,000 built base
2026-12-02 11:00:02,100 build httpd sha256:2 on local
2026-12-02 11:00:02,100 build tools sha256:3 on local
2026-12-02 11:00:03,000 built tools
2026-12-02 11:00:03,100 build runner sha256:4 on local
2026-12-02 11:00:04,000 built runner
2026-12-02 11:00:05,000 built httpd
2026-12-02 11:00:05,100 build site-ops sha256:5 on local
2026-12-02 11:00:05,100 build site-hello sha256:6 on local
2026-12-02 11:00:06,000 built site-hello
2026-12-02 11:00:09,000 built site-ops
"""
# -j 1: tools is ready at 2.0 s (base built) but the one slot builds httpd until 3.0 s
ONE_SLOT = """\
2026-12-02 11:00:00,000 run: 4 to build, 2 up to date
2026-12-02 11:00:00,000 build base sha256:1 on local
2026-12-02 11:00:02,000 built base
2026-12-02 11:00:02,000 build httpd sha256:2 on local
2026-12-02 11:00:03,000 built httpd
2026-12-02 11:00:03,100 build tools sha256:3 on local
2026-12-02 11:00:05,000 built tools
2026-12-02 11:00:05,100 build runner sha256:4 on local
2026-12-02 11:00:06,000 built runner
"""


def outlined(page: str) -> set[str]:
    return set(re.findall(r'<g class="bar critical" data-image="([^"]+)"', page))


def test_the_critical_path_is_named_and_its_bars_alone_are_outlined(tmp_path: Path) -> None:
    analysis = analyze(example(tmp_path))
    run = last_run(TWO_SLOTS)
    path = critical_path(run, analysis.graph)
    assert path is not None
    assert path.images == ["base", "httpd", "site-ops"]  # not tools: it ended first
    assert (path.busy, path.total, path.wait) == (pytest.approx(8.7), 9.0, 0.0)
    # site-hello took the first free slot at 5.1 s, site-ops the second
    assert idle_seconds(run) == {("local", 0): pytest.approx(3.3), ("local", 1): pytest.approx(3.3)}
    plan = analysis.plan(None)
    svg = layered_svg(analysis.graph, node_states(plan, run), {})
    page = report_html("r", svg, plan, run, None, graph=analysis.graph)
    assert "critical path: base → httpd → site-ops (8.7 s of the run's 9.0 s)" in page
    assert outlined(page) == {"base", "httpd", "site-ops"}
    assert page.count('class="bar') == 6 and 'class="wait"' not in page
    assert "idle time per slot: local #1 3.3 s; local #2 3.3 s" in page
    assert page.count('<rect class="idle"') == 2 and ">idle 3.3s</text>" in page
    # without the graph: no path claimed, the bars as before
    plain = report_html("r", svg, plan, run, None)
    assert "critical path" not in plain and not outlined(plain)


def test_a_start_later_than_its_parents_allow_was_a_wait_for_a_slot(tmp_path: Path) -> None:
    analysis = analyze(example(tmp_path))
    run = last_run(ONE_SLOT)
    path = critical_path(run, analysis.graph)
    assert path is not None
    # runner waited for tools (0.1 s); tools waited 1.1 s after base, for the slot
    assert path.images == ["tools", "runner"] and path.after == "base"
    assert path.wait == pytest.approx(1.1) and path.ready == 2.0
    page = report_html("r", "<svg></svg>", None, run, None, graph=analysis.graph)
    assert outlined(page) == {"tools", "runner"}
    assert ("critical path: tools → runner (2.8 s of the run's 6.0 s); before it, "
            "tools waited 1.1 s for an engine slot after base ended (the dashed line)") in page
    assert page.count('<g class="wait">') == 1
    # an image with no parent in the run that starts late waited for a slot too
    late = last_run("\n".join(ONE_SLOT.splitlines()[:1] + ONE_SLOT.splitlines()[3:5]))
    path = critical_path(late, analysis.graph)
    assert path is not None and path.images == ["httpd"] and path.after is None
    assert "httpd waited 2.0 s for an engine slot after the run began" in path.legend()
    assert critical_path(last_run(""), analysis.graph) is None


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
