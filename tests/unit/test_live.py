"""The live view's status block, read off an emulated terminal: what it shows while a run
goes on, and that it leaves nothing behind."""

from __future__ import annotations

import re

import pytest

from stackbuild.live import LiveView, fit, time_left_text
from stackbuild.scheduler import Schedule
from tests.terminal import FakeTerminal, screen

SGR = re.compile(r"\x1b\[[0-9;]*m")
NEVER = 3600.0  # the ticker's interval: a test redraws when it means to


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def view_on(out: FakeTerminal, clock: Clock, size=(80, 24), color: bool = False) -> LiveView:
    return LiveView(out, color=color, interval=NEVER, clock=clock, size=lambda: size)


#   base (10 s) -> app (20 s)      tools (5 s)
PARENTS = {"base": [], "app": ["base"], "tools": []}
DURATIONS = {"base": 10.0, "app": 20.0, "tools": 5.0}


def scheduled(view: LiveView, durations=DURATIONS, slots: int = 2) -> None:
    view.scheduled(Schedule(PARENTS, list(PARENTS), weights=durations), slots, durations)


def test_the_block_shows_progress_time_left_and_the_running_builds(clock: Clock) -> None:
    out = FakeTerminal()
    view = view_on(out, clock)
    try:
        view.begin(3)
        scheduled(view)
        view.started("base", "engine-a")
        view.step("base", "2/3 RUN make")
        clock.now = 104.0
        view.redraw()
        assert screen(out.getvalue()) == [
            "[0/3] 4s · ~26s left · building 1",  # base 6 s more, then app's 20
            " / base  on engine-a  4s  2/3 RUN make",
        ]
        clock.now = 110.0
        view.settled_as("base", "built")
        view.started("app", None)
        view.started("tools", None)
        view.line("10:00:10 built     base in 10.0s")
        clock.now = 115.0
        view.redraw()
        assert screen(out.getvalue()) == [
            "10:00:10 built     base in 10.0s",  # the log line, above the block
            "[1/3] 15s · ~15s left · building 2",  # app 5 s into its 20
            " - app    5s  starting",
            " - tools  5s  starting",
        ]
        view.settled_as("tools", "failed")
        view.redraw()
        assert screen(out.getvalue())[1] == "[2/3] 15s · ~15s left · building 1 · 1 failed"
    finally:
        view.close()
    assert screen(out.getvalue()) == ["10:00:10 built     base in 10.0s"]  # no block left


def test_the_time_left_says_when_it_holds_estimates_or_is_unknown(clock: Clock) -> None:
    out = FakeTerminal()
    view = view_on(out, clock)
    try:
        view.begin(3)
        # tools never built: the scheduler weighs it by its estimate (8 s, say), so does this
        durations = {"base": 10.0, "app": 20.0}
        view.scheduled(Schedule(PARENTS, list(PARENTS), weights={**durations, "tools": 8.0}), 1,
                       durations)  # fmt: skip
        view.redraw()
        assert screen(out.getvalue())[0] == (
            "[0/3] 0s · ~38s left (1 never built: estimated) · building 0"
        )
        scheduled(view, durations={})
        view.redraw()
        assert screen(out.getvalue())[0] == (
            "[0/3] 0s · time left unknown (no past builds) · building 0"
        )
    finally:
        view.close()


def test_a_line_never_wraps_and_builds_beyond_the_screen_fold_into_a_count(
    clock: Clock,
) -> None:
    out = FakeTerminal()
    view = view_on(out, clock, size=(30, 8))
    try:
        view.begin(10)
        for i in range(10):
            view.started(f"image-{i}", "tcp://builder.example:2376")
            view.step(f"image-{i}", "RUN echo \t\x1b[31m 中文中文中文中文中文中文中文中文 " * 3)
        view.redraw()
        rows = screen(out.getvalue(), columns=30, lines=20)
        assert len(rows) == 7  # the screen's 8 lines, less the cursor's
        assert rows[-1] == "   ... and 5 more"
        assert all(len(row) <= 29 for row in rows)
    finally:
        view.close()
    assert screen(out.getvalue(), columns=30, lines=20) == []  # nothing left, wrapped or not


def test_colours_only_without_no_color(clock: Clock) -> None:
    for color in (True, False):
        out = FakeTerminal()
        view = view_on(out, clock, color=color)
        view.begin(2)
        view.started("base", None)
        view.settled_as("other", "failed")
        view.redraw()
        view.close()
        assert bool(SGR.search(out.getvalue())) is color
        assert "\x1b[J" in out.getvalue()  # the block moves the cursor either way


def test_a_notice_from_a_signal_handler_waits_for_the_next_redraw(clock: Clock) -> None:
    out = FakeTerminal()
    view = view_on(out, clock)
    view.begin(1)
    view.started("base", None)
    view.notice("stopping: cancelling running builds")
    assert "stopping" not in out.getvalue()  # the handler took no lock and wrote nothing
    view.redraw()
    assert screen(out.getvalue())[0] == "stopping: cancelling running builds"
    assert screen(out.getvalue())[1].startswith("[0/1] ")  # the block below it again
    view.close()
    assert screen(out.getvalue()) == ["stopping: cancelling running builds"]


def test_close_stops_the_ticker_and_writes_what_waited(clock: Clock) -> None:
    out = FakeTerminal()
    view = view_on(out, clock)
    view.begin(1)
    ticker = view._ticker
    assert ticker is not None and ticker.is_alive()
    view.notice("bye")
    view.close()
    assert not ticker.is_alive()
    assert screen(out.getvalue()) == ["bye"]
    view.line("after the run")  # a message after close: a plain line
    assert screen(out.getvalue()) == ["bye", "after the run"]


def test_nothing_to_build_draws_no_block(clock: Clock) -> None:
    out = FakeTerminal()
    view = view_on(out, clock)
    view.begin(0)
    view.line("0 to build")
    view.close()
    assert view._ticker is None
    assert out.getvalue() == "0 to build\n"


def test_fit_cuts_at_the_width_in_columns_and_colours_the_pieces() -> None:
    assert fit([("abc", ""), ("defgh", "\x1b[2m")], 5, color=False) == "abcde"
    assert fit([("abc", ""), ("defgh", "\x1b[2m")], 5, color=True) == "abc\x1b[2mde\x1b[0m"
    assert fit([("中文x", "")], 3, color=False) == "中"  # two columns each


def test_time_left_text_of_nothing_left() -> None:
    from stackbuild.eta import TimeLeft

    assert time_left_text(TimeLeft(0.0, 0, False)) == ""
    assert time_left_text(TimeLeft(75.0, 0, True)) == "~1m15s left"
