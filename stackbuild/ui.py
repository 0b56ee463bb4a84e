"""What a person sees during a build: a live view on a terminal, plain lines in CI.

Both reporters take the same events from the build runner (from several
threads, hence the lock) and end with the same summary table. The live view's
block (``stackbuild.live``) is imported only when it is on.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from stackbuild.ci_reports import builders_line, status_counts, summary_rows
from stackbuild.plan import short
from stackbuild.render import counts_line, table
from stackbuild.run.results import ImageResult

if TYPE_CHECKING:
    from stackbuild.scheduler import Schedule

STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")  # the classic builder's step lines
BUILDKIT_STEP = re.compile(r"^#\d+ \[[^\]]*\] (.*)$")  # BuildKit's plain progress
STATUS_WIDTH = len("cancelled")  # event lines: "<status> <image>", image names aligned


def stamped(text: str) -> str:
    """An event line as the log shows it: the wall-clock time first."""
    return f"{time.strftime('%H:%M:%S')} {text}"


def step_of(line: str) -> str | None:
    """The build step a log line announces, if any."""
    match = STEP.match(line)
    if match:
        return f"{match.group(1)} {match.group(2)}"
    match = BUILDKIT_STEP.match(line)
    return match.group(1) if match else None


class PlainReporter:
    """One timestamped line per event: for CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.done = 0
        self.total = 0

    def _line(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"{stamped(text)}\n")
            self.stream.flush()

    def notice(self, text: str) -> None:
        """A line from a signal handler: no lock, which the thread it interrupts may hold."""
        self.stream.write(f"\n{text}\n")
        self.stream.flush()

    def start(self, to_build: int, up_to_date: int, to_test: int = 0) -> None:
        self.total = to_build + to_test
        self._line(counts_line(to_build, up_to_date, to_test))

    def message(self, text: str) -> None:
        self._line(text)

    def image_started(self, image: str, engine: str | None = None) -> None:
        where = f" on {engine}" if engine else ""
        self._line(f"{'start':<{STATUS_WIDTH}} {image}{where}")

    def scheduled(self, schedule: Schedule, slots: int, durations: Mapping[str, float]) -> None:
        pass  # the time left is the live view's

    def image_output(self, image: str, line: str) -> None:
        pass  # the full output is in the image's log file

    def image_requeued(self, image: str, why: str) -> None:
        """The image's engine stopped answering; it waits for a slot elsewhere."""
        self._line(why)

    def image_finished(self, result: ImageResult) -> None:
        with self.lock:
            self.done += result.status in ("built", "failed", "test-failed", "tested")
        passed = sum(check.passed for check in result.checks)
        tested = f", {passed}/{len(result.checks)} checks passed" if result.checks else ""
        detail = {
            "built": f"in {result.duration_s:.1f}s {short(result.fingerprint)}{tested}",
            "tested": f"in {result.duration_s:.1f}s{tested}",
            "failed": f"after {result.duration_s:.1f}s: {result.error or 'see log'}",
            "test-failed": f"{result.error or 'see log'}",
            "blocked": f"({result.error})" if result.error else "",
            "cancelled": "",
        }.get(result.status, "")
        self._line(f"{result.status:<{STATUS_WIDTH}} {result.image} {detail}".rstrip())

    def close(self) -> None:
        pass


class LiveReporter(PlainReporter):
    """The plain lines, scrolling above a live view of the run (``stackbuild.live``): the
    running builds, progress, elapsed time and time left, redrawn in place."""

    def __init__(self, stream: TextIO | None = None, color: bool = True) -> None:
        from stackbuild.live import LiveView  # only on a terminal: a pipe imports nothing more

        super().__init__(stream)
        self.view: LiveView = LiveView(self.stream, color)

    def _line(self, text: str) -> None:
        self.view.line(stamped(text))

    def notice(self, text: str) -> None:
        self.view.notice(text)

    def start(self, to_build: int, up_to_date: int, to_test: int = 0) -> None:
        super().start(to_build, up_to_date, to_test)
        self.view.begin(to_build + to_test)

    def scheduled(self, schedule: Schedule, slots: int, durations: Mapping[str, float]) -> None:
        self.view.scheduled(schedule, slots, durations)

    def image_started(self, image: str, engine: str | None = None) -> None:
        self.view.started(image, engine)
        super().image_started(image, engine)

    def image_output(self, image: str, line: str) -> None:
        step = step_of(line)
        if step:
            self.view.step(image, step)

    def image_finished(self, result: ImageResult) -> None:
        self.view.settled_as(result.image, result.status)
        super().image_finished(result)

    def image_requeued(self, image: str, why: str) -> None:
        self.view.requeued(image)
        super().image_requeued(image, why)

    def close(self) -> None:
        self.view.close()


def live_terminal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` gets the live view: a terminal that moves its cursor (``TERM``
    set, not ``dumb``), outside CI (``CI`` set: a log, even behind a pseudo-terminal)."""
    if not stream.isatty() or environ.get("TERM", "dumb") in ("", "dumb"):
        return False
    return environ.get("CI", "").lower() in ("", "0", "false", "no")


def make_reporter(
    stream: TextIO | None = None, live: bool = True, environ: Mapping[str, str] | None = None
) -> PlainReporter:
    """The live view on a terminal (unless ``live`` is False: ``--json``), plain lines
    elsewhere; ``NO_COLOR`` takes the colours out of the live view."""
    stream = stream or sys.stderr
    environ = os.environ if environ is None else environ
    if live and live_terminal(stream, environ):
        return LiveReporter(stream, color=not environ.get("NO_COLOR"))
    return PlainReporter(stream)


def summary(results: list[ImageResult], tail_lines: int = 15, engines: bool = False) -> str:
    """The table every build ends with, plus the tail of each failed build's log.

    ``engines``: an ENGINE column, where each image was built (a builder pool's run).
    """
    headers, rows = summary_rows(results, engines)
    parts = [table(rows, headers)]
    checks = [[r.image, c.name, c.status, f"{c.duration_s:.1f}s", c.detail or ""]
              for r in results for c in r.checks]  # fmt: skip
    if checks:
        parts.append("\n" + table(checks, ["IMAGE", "CHECK", "RESULT", "DURATION", "WHY"]))
    skipped = [r.image for r in results if r.tests_skipped]
    if skipped:
        parts.append(f"\nchecks skipped (--no-test): {', '.join(skipped)}")
    for r in results:
        if r.status in ("failed", "test-failed"):
            parts.append(f"\n--- {r.image} {r.status}: {r.error or 'see log'}")
            parts += [f"    {line}" for line in r.log_tail[-tail_lines:]]
            parts.append(f"    full log: {r.test_log if r.status == 'test-failed' else r.log}")
    builders = builders_line(results)  # just above the counts, which stay the last line
    parts.append("\n" + (f"{builders}\n" if builders else "") + status_counts(results))
    return "\n".join(parts)
