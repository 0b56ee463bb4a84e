"""What a person sees: plain CI lines, the live view (when, and what it leaves), the summary."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stackbuild.run.results import ImageResult
from stackbuild.ui import LiveReporter, PlainReporter, make_reporter, step_of, summary
from tests.terminal import FakeTerminal, screen

FP = "sha256:" + "ab" * 32
STAMP = r"\d\d:\d\d:\d\d "


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("Step 1/6 : FROM base", "1/6 FROM base"),
        ("Step 12/13 : RUN echo a : b", "12/13 RUN echo a : b"),
        ("#5 [2/3] RUN echo hi", "RUN echo hi"),
        ("#7 [stage-1 2/4] COPY --from=tools /x /y", "COPY --from=tools /x /y"),
        ("#1 [internal] load .dockerignore", "load .dockerignore"),
        (" ---> Running in 0123456789ab", None),
        ("Successfully built 0123456789ab", None),
        ("#5 DONE 0.2s", None),
        ("#5 0.153 hi", None),
        ("", None),
    ],
)
def test_step_of_classic_and_buildkit_lines(line: str, step: str | None) -> None:
    assert step_of(line) == step


def test_plain_reporter_writes_one_timestamped_line_per_event() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.start(3, 1)
    reporter.image_started("base")
    reporter.image_started("tools", engine="tcp://b1:2376")
    reporter.image_output("base", "Step 1/2 : FROM scratch")  # not shown: it is in the log
    reporter.image_finished(ImageResult("base", "built", FP, duration_s=1.25))
    reporter.image_finished(ImageResult("tools", "failed", FP, duration_s=0.5, error="boom"))
    reporter.image_finished(ImageResult("runner", "blocked", FP, error="parent failed: tools"))
    reporter.image_finished(ImageResult("other", "cancelled", FP))
    reporter.message("hello")
    reporter.close()

    lines = out.getvalue().splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    assert [line[9:] for line in lines] == [
        "3 to build, 1 up to date",
        "start     base",
        "start     tools on tcp://b1:2376",
        "built     base in 1.2s sha256:abababababab",
        "failed    tools after 0.5s: boom",
        "blocked   runner (parent failed: tools)",
        "cancelled other",
        "hello",
    ]
    assert reporter.done == 2  # built and failed ones count as done


TERMINAL = {"TERM": "xterm-256color"}


@pytest.mark.parametrize(
    ("environ", "live"),
    [
        ({"TERM": "dumb"}, False),  # no cursor movement
        ({}, False),  # no TERM: nothing says it moves its cursor
        ({**TERMINAL, "CI": "true"}, False),  # a CI log behind a pseudo-terminal
        ({**TERMINAL, "CI": "1"}, False),
        ({**TERMINAL, "CI": "false"}, True),
        (TERMINAL, True),
    ],
)
def test_make_reporter_is_live_on_a_terminal_outside_ci(environ: dict, live: bool) -> None:
    assert type(make_reporter(io.StringIO(), environ=TERMINAL)) is PlainReporter  # a pipe
    reporter = make_reporter(FakeTerminal(), environ=environ)
    try:
        assert isinstance(reporter, LiveReporter) is live
    finally:
        reporter.close()


def test_json_and_no_color() -> None:
    assert type(make_reporter(FakeTerminal(), live=False, environ=TERMINAL)) is PlainReporter
    for environ, color in (({**TERMINAL, "NO_COLOR": "1"}, False), (TERMINAL, True)):
        reporter = make_reporter(FakeTerminal(), environ=environ)
        assert isinstance(reporter, LiveReporter) and reporter.view.color is color
        reporter.close()


def test_the_plain_path_imports_no_live_view() -> None:
    # what a pipe or CI pays: not the live view, not its time left
    code = (
        "import io, sys\n"
        "from stackbuild.cli.commands import build\n"
        "from stackbuild.ui import make_reporter\n"
        "reporter = make_reporter(io.StringIO())\n"
        "reporter.start(1, 0); reporter.close()\n"
        "print(sorted(m for m in sys.modules if m in ('stackbuild.live', 'stackbuild.eta')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_live_reporter_shows_the_running_builds_and_leaves_only_the_lines() -> None:
    out = FakeTerminal()
    reporter = LiveReporter(out, color=False)
    try:
        reporter.start(2, 0)
        reporter.image_started("base", "engine-b")
        reporter.image_output("base", "Step 2/3 : RUN make")
        reporter.image_output("base", "compiling...")  # not a step: the step stays
        reporter.view.redraw()
        rows = screen(out.getvalue())
        assert rows[-2].startswith("[0/2] ") and rows[-2].endswith("building 1")
        assert re.fullmatch(r" . base  on engine-b  \d+s  2/3 RUN make", rows[-1]), rows
        reporter.image_finished(ImageResult("base", "built", FP, duration_s=1.0))
        assert screen(out.getvalue())[-1].startswith("[1/2] ")
        assert reporter.done == 1
    finally:
        reporter.close()
    rows = screen(out.getvalue())
    assert [row[9:] for row in rows] == [  # the plain reporter's lines, nothing else
        "2 to build, 0 up to date",
        "start     base on engine-b",
        "built     base in 1.0s sha256:abababababab",
    ]
    assert all(re.match(STAMP, row) for row in rows)


def test_a_requeued_build_leaves_the_live_view_until_it_restarts() -> None:
    out = FakeTerminal()
    reporter = LiveReporter(out)
    try:
        reporter.start(1, 0)
        reporter.image_started("base", "engine-b")
        reporter.image_requeued("base", "engine engine-b stopped answering; base goes back")
        assert "base" not in reporter.view.running
        assert reporter.done == 0
        reporter.image_started("base", "engine-a")
        assert "base" in reporter.view.running
    finally:
        reporter.close()
    assert "base goes back" in out.getvalue()


def test_a_plain_notice_is_the_line_the_signal_handler_always_wrote() -> None:
    out = io.StringIO()
    PlainReporter(out).notice("stopping: cancelling running builds (Ctrl-C again to abort)")
    assert out.getvalue() == "\nstopping: cancelling running builds (Ctrl-C again to abort)\n"


def _results() -> list[ImageResult]:
    return [
        ImageResult("base", "up-to-date", FP, tags=["r/base:abababababab", "r/base:latest"]),
        ImageResult("app", "built", FP, duration_s=2.0, tags=["r/app:abababababab"]),
        ImageResult(
            "bad",
            "failed",
            FP,
            duration_s=0.5,
            tags=["r/bad:abababababab"],
            log="/s/.stackbuild/logs/bad.log",
            error="The command '/bin/sh -c false' returned a non-zero code: 1",
            log_tail=[f"line {i}" for i in range(20)],
        ),
        ImageResult("kid", "blocked", FP, error="parent failed: bad"),
    ]


def test_summary_table_with_a_failed_build_tail_and_log_path() -> None:
    text = summary(_results(), tail_lines=5)
    lines = text.splitlines()
    assert lines[0].split() == ["IMAGE", "STATUS", "DURATION", "FINGERPRINT", "TAGS"]
    rows = {line.split()[0]: line.split(maxsplit=4) for line in lines[1:5]}
    assert rows["base"] == [
        "base", "up-to-date", "-", "sha256:abababababab", "r/base:abababababab, r/base:latest"
    ]
    assert rows["app"][1:3] == ["built", "2.0s"]
    assert rows["bad"][1:3] == ["failed", "0.5s"]
    assert rows["bad"][4] == "-"  # a failed build was not tagged
    assert rows["kid"][1:] == ["blocked", "-", "sha256:abababababab", "-"]
    # the columns line up
    assert len({line.index("STATUS") for line in lines[:1]} | {
        line.index(rows[name][1]) for line, name in zip(lines[1:5], rows, strict=True)
    }) == 1
    failure = lines.index(
        "--- bad failed: The command '/bin/sh -c false' returned a non-zero code: 1"
    )
    assert lines[failure + 1 : failure + 7] == [
        "    line 15",
        "    line 16",
        "    line 17",
        "    line 18",
        "    line 19",
        "    full log: /s/.stackbuild/logs/bad.log",
    ]
    assert "line 14" not in text
    assert lines[-1] == "1 up-to-date, 1 built, 1 failed, 1 blocked"


def test_summary_without_failures_has_no_tail() -> None:
    text = summary(_results()[:2])
    assert "---" not in text and "full log" not in text
    assert text.splitlines()[-1] == "1 up-to-date, 1 built"


def test_the_summary_says_which_builder_built() -> None:
    app, lib = ImageResult("app", "built", FP), ImageResult("lib", "built", FP)
    assert "builder" not in summary([app])  # none known (a fake backend): no line
    app.builder, lib.builder = "buildkit", "buildkit"
    assert summary([app, lib]).splitlines()[-2:] == ["builder: buildkit", "2 built"]
    lib.builder = "docker"  # a pool: auto chose per engine
    assert summary([app, lib]).splitlines()[-2] == (
        "builder: buildkit: app; docker (the classic builder): lib"
    )
