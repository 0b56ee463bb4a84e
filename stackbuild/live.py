"""The live view of a build run on a terminal: a status block at the bottom, redrawn in place.

The block says how far the run is (``[settled/total]``), how long it has been going,
the time left (``stackbuild.eta``: the critical path of what remains) and, one line
each, the builds running now: image, engine, time so far, current step. A few times
a second it is redrawn where it stands: the cursor goes back up over it
(``ESC[nF``), the screen is cleared from there (``ESC[J``) and the block is written
again, in one write so it does not flicker. A permanent line (an event, a warning)
is written in its place and the block again below it, so the log scrolls above
the block. ``close`` (the end of the run, or Ctrl-C unwinding) clears it for good.

Plain ANSI, not a terminal library: the block needs two control sequences and SGR
colours, and this module is imported only when the view is on (``ui.make_reporter``),
so a pipe or a CI log pays nothing for it. Colours go with ``NO_COLOR``; cursor
movement stays, which is what a live view is.
"""

from __future__ import annotations

import os
import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from stackbuild.eta import Estimate, TimeLeft
from stackbuild.render import human_duration
from stackbuild.scheduler import Schedule

INTERVAL = 0.2  # seconds between redraws: the elapsed times and the spinner move
LEFT_EVERY = 0.1  # seconds: the time left is worked out again when older than this
SPINNER = "|/-\\"
FALLBACK_SIZE = (100, 24)  # columns, lines when the stream says none (not a real terminal)
MAX_NAME = 40  # the image column is as wide as the longest running name, up to this
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # a step line's tabs, escapes...: one space each

BOLD, DIM, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m"


@dataclass
class Running:
    started: float
    engine: str | None
    step: str = "starting"


def cell_width(char: str) -> int:
    """Terminal columns a character takes: East Asian wide ones take two."""
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def fit(segments: list[tuple[str, str]], width: int, color: bool) -> str:
    """``(text, colour)`` pieces cut to ``width`` columns, coloured when ``color``: a
    line of the block never wraps, or going back up over it would miss lines."""
    out, used = [], 0
    for text, sgr in segments:
        kept = 0
        for char in text:
            if used + cell_width(char) > width:
                break
            used += cell_width(char)
            kept += 1
        piece = text[:kept]
        out.append(f"{sgr}{piece}{RESET}" if color and sgr and piece else piece)
        if kept < len(text):
            break
    return "".join(out)


def time_left_text(left: TimeLeft) -> str:
    if not left.known:
        return "time left unknown (no past builds)" if left.unmeasured else ""
    if left.unmeasured:  # weighed by their estimates, as the scheduler weighs them
        return f"~{human_duration(left.seconds)} left ({left.unmeasured} never built: estimated)"
    return f"~{human_duration(left.seconds)} left"


class LiveView:
    """The status block on ``stream`` and what it shows. Thread-safe: the build runner
    reports from its coordinating thread, the ticker redraws from its own."""

    def __init__(
        self,
        stream: TextIO,
        color: bool = True,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.stream = stream
        self._size = size  # columns, lines; by default the stream's terminal's
        self.color = color
        self.interval = interval
        self.clock = clock
        self.lock = threading.Lock()
        self.total = 0
        self.began: float | None = None  # the run's start; the block shows from then on
        self.estimate: Estimate | None = None
        # the time left as last computed, and when: it walks every unfinished image, so
        # not again for each of a burst of event lines
        self._left: tuple[float, str] | None = None
        self.running: dict[str, Running] = {}
        self.settled: dict[str, str] = {}  # image -> its status
        self.notices: deque[str] = deque()  # from signal handlers: written by the ticker
        self.drawn = 0  # lines of the block on the screen now
        self.tick = 0
        self.closed = False
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- what the run reports ---------------------------------------------------------

    def begin(self, total: int) -> None:
        """The run starts building ``total`` images: the block appears (if any)."""
        with self.lock:
            self.total = total
            self.began = self.clock()
            self._write("")
        if total and self._ticker is None:
            self._ticker = threading.Thread(
                target=self._tick, name="stackbuild-live", daemon=True
            )
            self._ticker.start()

    def scheduled(self, schedule: Schedule, slots: int, durations: Mapping[str, float]) -> None:
        estimate = Estimate.of(schedule, slots, durations)  # now: the run's thread only, later
        with self.lock:
            self.estimate = estimate
            self._left = None

    def started(self, image: str, engine: str | None) -> None:
        with self.lock:
            self.running[image] = Running(self.clock(), engine)

    def step(self, image: str, step: str) -> None:
        with self.lock:
            if image in self.running:
                self.running[image].step = step

    def requeued(self, image: str) -> None:
        with self.lock:
            self.running.pop(image, None)  # not running until a slot elsewhere takes it

    def settled_as(self, image: str, status: str) -> None:
        with self.lock:
            self.running.pop(image, None)
            self.settled[image] = status

    def line(self, text: str) -> None:
        """A permanent line: written where the block was, the block below it again."""
        with self.lock:
            self._write(text + "\n")

    def notice(self, text: str) -> None:
        """A line from a signal handler, which must not wait for the lock (the thread it
        interrupts may hold it): the ticker writes it on its next round."""
        if self._ticker is None or self.closed:  # no block on the screen to step around
            self.stream.write(f"\n{text}\n")
            self.stream.flush()
            return
        self.notices.append(text)  # atomic, as popleft is: no lock needed

    def close(self) -> None:
        """Remove the block for good (the lines written stay)."""
        self._stopped.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        with self.lock:
            self.closed = True
            self._write(self._take_notices())

    # -- drawing ---------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stopped.wait(self.interval):
            self.redraw()

    def redraw(self) -> None:
        """The elapsed times and the spinner moved on; the notices waiting are written."""
        with self.lock:
            self.tick += 1
            self._write(self._take_notices())

    def _take_notices(self) -> str:
        taken = []
        while self.notices:  # one taker (the lock held); a handler may append meanwhile
            taken.append(self.notices.popleft())
        return "".join(f"{text}\n" for text in taken)

    def _write(self, text: str) -> None:
        """Clear the block, write ``text``, draw the block again: one write (the lock held)."""
        up = f"\r\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
        block = [] if self.closed or self.began is None or not self.total else self.lines()
        self.drawn = len(block)
        self.stream.write(up + text + "".join(f"{line}\n" for line in block))
        self.stream.flush()

    def size(self) -> tuple[int, int]:
        if self._size is not None:
            return self._size()
        try:
            columns, lines = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):  # not a real terminal (a test's stream)
            return FALLBACK_SIZE
        return columns or FALLBACK_SIZE[0], lines or FALLBACK_SIZE[1]

    def time_left(self, now: float) -> str:
        """The time left in words (the lock held), at most ``LEFT_EVERY`` old."""
        if self.estimate is None:
            return ""
        if self._left is None or not 0 <= now - self._left[0] < LEFT_EVERY:
            running = {name: now - r.started for name, r in self.running.items()}
            self._left = (now, time_left_text(self.estimate.left(self.settled, running)))
        return self._left[1]

    def lines(self) -> list[str]:
        """The block as it stands now (the lock held): the header, then the running builds,
        as many as the terminal has lines for."""
        now = self.clock()
        columns, height = self.size()
        width = columns - 1  # the last column would wrap on some terminals
        color = self.color
        failed = sum(status in ("failed", "test-failed") for status in self.settled.values())
        blocked = sum(status == "blocked" for status in self.settled.values())
        header = [(f"[{len(self.settled)}/{self.total}]", BOLD)]
        header.append((f" {human_duration(now - (self.began or now))}", ""))
        left = self.time_left(now)
        if left:
            header.append((f" · {left}", ""))
        header.append((f" · building {len(self.running)}", ""))
        if failed:
            header.append((f" · {failed} failed", RED))
        if blocked:
            header.append((f" · {blocked} blocked", RED))
        lines = [fit(header, width, color)]
        room = max(height - 2, 1)  # the block and the cursor's line fit on the screen
        builds = sorted(self.running.items(), key=lambda item: (item[1].started, item[0]))
        shown = builds if len(builds) <= room else builds[: room - 1]
        name_width = min(max((len(name) for name, _ in shown), default=0), MAX_NAME)
        engine_width = max((len(build.engine or "") for _, build in shown), default=0)
        spinner = SPINNER[self.tick % len(SPINNER)]
        for name, build in shown:
            where = f"  on {build.engine:<{engine_width}}" if build.engine else ""
            took = human_duration(now - build.started)
            lines.append(fit([
                (f" {spinner} {name:<{name_width}}{where}  {took}  ", ""),
                (CONTROL.sub(" ", build.step), DIM),
            ], width, color))  # fmt: skip
        if len(shown) < len(builds):
            lines.append(fit([(f"   ... and {len(builds) - len(shown)} more", DIM)], width, color))
        return lines
