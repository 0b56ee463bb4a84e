"""What a person sees: plain CI lines, the live view's steps, the summary table."""

from __future__ import annotations

import io
import re

import pytest

from stackbuild.run.results import ImageResult
from stackbuild.ui import LiveReporter, PlainReporter, make_reporter, step_of, summary

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


def test_make_reporter_is_plain_without_a_terminal() -> None:
    assert type(make_reporter(io.StringIO())) is PlainReporter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    live = make_reporter(Terminal())
    try:
        assert isinstance(live, LiveReporter)
    finally:
        live.close()


def test_live_reporter_shows_running_builds_with_their_step() -> None:
    out = io.StringIO()
    reporter = LiveReporter(out)
    try:
        reporter.start(2, 0)
        reporter.image_started("base")
        reporter.image_output("base", "Step 2/3 : RUN make")
        reporter.image_output("base", "compiling...")  # not a step: the step stays
        with reporter.lock:
            reporter._redraw()
            assert reporter.running["base"][1] == "2/3 RUN make"
        assert "base" in out.getvalue() and "2/3 RUN make" in out.getvalue()
        reporter.image_finished(ImageResult("base", "built", FP, duration_s=1.0))
        assert "base" not in reporter.running
        assert reporter.done == 1
    finally:
        reporter.close()
    assert not reporter.ticker.is_alive()
    assert re.search(r"built +base", out.getvalue())


def test_a_requeued_build_leaves_the_live_view_until_it_restarts() -> None:
    out = io.StringIO()
    reporter = LiveReporter(out)
    try:
        reporter.start(1, 0)
        reporter.image_started("base", "engine-b")
        reporter.image_requeued("base", "engine engine-b stopped answering; base goes back")
        assert "base" not in reporter.running
        assert reporter.done == 0
        reporter.image_started("base", "engine-a")
        assert "base" in reporter.running
    finally:
        reporter.close()
    assert "base goes back" in out.getvalue()


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
