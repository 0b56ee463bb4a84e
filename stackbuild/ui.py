"""What a person sees during a build: a live view on a terminal, plain lines in CI.

Both reporters take the same events from the build runner (from several
threads, hence the lock) and end with the same summary table.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from typing import TextIO

from stackbuild.plan import short
from stackbuild.render import table
from stackbuild.run.results import ImageResult

STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")  # the classic builder's step lines
BUILDKIT_STEP = re.compile(r"^#\d+ \[[^\]]*\] (.*)$")  # BuildKit's plain progress
STATUS_WIDTH = len("cancelled")  # event lines: "<status> <image>", image names aligned


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
            self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.stream.flush()

    def start(self, to_build: int, up_to_date: int) -> None:
        self.total = to_build
        self._line(f"{to_build} to build, {up_to_date} up to date")

    def message(self, text: str) -> None:
        self._line(text)

    def image_started(self, image: str, engine: str | None = None) -> None:
        where = f" on {engine}" if engine else ""
        self._line(f"{'start':<{STATUS_WIDTH}} {image}{where}")

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
    """A live view of the running builds, redrawn in place on a terminal."""

    SPINNER = "|/-\\"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self.running: dict[str, tuple[float, str]] = {}  # image -> (started, step)
        self.drawn = 0
        self.tick = 0
        self.stopped = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def _tick(self) -> None:
        while not self.stopped.wait(0.2):
            with self.lock:
                self.tick += 1
                self._redraw()

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _redraw(self) -> None:
        self._clear()
        width = shutil.get_terminal_size((100, 20)).columns
        now = time.monotonic()
        lines = [f"[{self.done}/{self.total}] building {len(self.running)}"]
        spinner = self.SPINNER[self.tick % len(self.SPINNER)]
        for image, (started, step) in sorted(self.running.items()):
            lines.append(f" {spinner} {image}  {now - started:5.1f}s  {step}"[: width - 1])
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self.drawn = len(lines)

    def _line(self, text: str) -> None:
        # permanent lines scroll above the live region
        with self.lock:
            self._clear()
            self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self._redraw()

    def image_started(self, image: str, engine: str | None = None) -> None:
        with self.lock:
            self.running[image] = (time.monotonic(), "starting")
        super().image_started(image, engine)

    def image_output(self, image: str, line: str) -> None:
        step = step_of(line)
        if step:
            with self.lock:
                started, _ = self.running.get(image, (time.monotonic(), ""))
                self.running[image] = (started, step)

    def image_finished(self, result: ImageResult) -> None:
        with self.lock:
            self.running.pop(result.image, None)
        super().image_finished(result)

    def image_requeued(self, image: str, why: str) -> None:
        with self.lock:
            self.running.pop(image, None)  # not running until a slot elsewhere takes it
        super().image_requeued(image, why)

    def close(self) -> None:
        self.stopped.set()
        self.ticker.join()
        with self.lock:
            self._clear()
            self.stream.flush()


def make_reporter(stream: TextIO | None = None) -> PlainReporter:
    stream = stream or sys.stderr
    return LiveReporter(stream) if stream.isatty() else PlainReporter(stream)


def _tests_cell(result: ImageResult) -> str:
    """The TESTS column: how many checks passed, "skipped", or "-" when none ran."""
    if result.tests_skipped:
        return "skipped"
    if not result.checks:
        return "-"
    passed = sum(check.passed for check in result.checks)
    return f"{passed}/{len(result.checks)} passed"


def summary(results: list[ImageResult], tail_lines: int = 15, engines: bool = False) -> str:
    """The table every build ends with, plus the tail of each failed build's log.

    ``engines``: an ENGINE column, where each image was built (a builder pool's run).
    """
    timed = ("built", "failed", "test-failed", "tested")
    rows = [
        [
            r.image,
            r.status,
            f"{r.duration_s:.1f}s" if r.status in timed else "-",
            short(r.fingerprint),
            ", ".join(r.tags) if r.status in ("built", "up-to-date", "tested") else "-",
        ]
        for r in results
    ]
    headers = ["IMAGE", "STATUS", "DURATION", "FINGERPRINT", "TAGS"]
    if any(r.checks or r.tests_skipped for r in results):  # a stack without tests: as before
        headers.insert(4, "TESTS")
        for row, r in zip(rows, results, strict=True):
            row.insert(4, _tests_cell(r))
    if engines:
        headers.insert(2, "ENGINE")
        for row, r in zip(rows, results, strict=True):
            row.insert(2, r.engine or "-")
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
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts.append("\n" + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(parts)
