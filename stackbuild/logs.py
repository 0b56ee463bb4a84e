"""Log files: one per image build plus the run log, through concurrent-log-handler.

    .stackbuild/logs/<image>.log        the build output of that image
    .stackbuild/logs/<image>.test.log   the output of its checks (``tests:``)
    .stackbuild/logs/stackbuild.log     what each run did, one line per event
    .stackbuild/logs/.locks/            the handlers' lock files, kept in one place

concurrent-log-handler's rotating handler takes a file lock around every
write and rotation, so parallel builds and two runs at once never interleave
half-lines or lose them. Each handler holds two file descriptors while open,
so an image's handler is closed as soon as its build ends.

Logs are a record, not the build: a log that cannot be written (a full disk)
costs its lines, never the run. The first such failure of a run is said once
on stderr, naming the file; later ones are silent (no ``--- Logging error ---``
traceback per line, as logging's default handler would print).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from stackbuild.state import StateDir

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(message)s"


OnError = Callable[[Path, BaseException], None]


@functools.cache
def _handler_class() -> Callable[[Path, Path, OnError], logging.Handler]:
    # concurrent-log-handler costs 30-90 ms to import: only a run that builds pays it
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    class _Handler(ConcurrentRotatingFileHandler):
        """The rotating handler, reporting a failed write to ``on_error`` instead of printing
        a traceback to stderr for every line."""

        def __init__(self, path: Path, lock_dir: Path, on_error: OnError) -> None:
            self._on_error = on_error
            self._path = path
            super().__init__(
                str(path),
                maxBytes=MAX_BYTES,
                backupCount=BACKUPS,
                encoding="utf-8",
                lock_file_directory=str(lock_dir),
            )

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
            error = sys.exc_info()[1]
            self._on_error(self._path, error if error is not None else OSError("write failed"))

        def close(self) -> None:
            try:
                super().close()
            except OSError as error:  # flushing the last lines onto a full disk
                self._on_error(self._path, error)

    return _Handler


def _handler(path: Path, lock_dir: Path, on_error: OnError) -> logging.Handler:
    """The file's handler; a handler that drops every line when the file cannot even be
    opened (``on_error`` is told)."""
    try:
        handler: logging.Handler = _handler_class()(path, lock_dir, on_error)
    except OSError as error:
        on_error(path, error)
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


class ImageLog:
    """The log of one image's build; call it with each output line, then close it."""

    def __init__(self, logger: logging.Logger, handler: logging.Handler, path: Path) -> None:
        self._logger = logger
        self._handler = handler
        self.path = path

    def __call__(self, line: str) -> None:
        self._logger.info(line)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()

    def tail(self, lines: int = 15, since: str | None = None) -> list[str]:
        """The last ``lines`` lines of the file, for the summary of a failed build;
        ``since``: none before the last line holding it (this run's part of the file)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        found = text.splitlines()
        if since is not None:
            starts = [i for i, line in enumerate(found) if since in line]
            found = found[starts[-1]:] if starts else found
        return found[-lines:]


BUILD_MARKER = "=== stackbuild: build "  # the first line of each build in an image's log
TEST_MARKER = "=== stackbuild: test "  # the first line of each run of an image's checks
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")  # FORMAT's asctime


def last_build(path: Path, max_bytes: int = 4 * 1024 * 1024) -> list[str]:
    """The lines of the latest build in the image log ``path``, oldest first, without their
    time stamps: what reports search for the failed step. [] when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = [_STAMP.sub("", line, count=1) for line in text.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith(BUILD_MARKER)]
    return lines[starts[-1]:] if starts else lines


class RunLogs:
    """Opens the run log and one log per image in the stack's ``.stackbuild/logs/``."""

    def __init__(self, state: StateDir, warn: Callable[[str], None] | None = None) -> None:
        logs_dir = state.logs
        self.state = state
        self.dir = logs_dir
        self.lock_dir = logs_dir / ".locks"
        self._lock = threading.Lock()
        self._failed_lock = threading.Lock()  # not _lock: open_image reports under _lock
        self._warn = warn or _stderr
        self.failed: list[tuple[Path, str]] = []  # (file, why) of every log that lost lines
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # the handlers then fail to open, and say so once
            self._write_failed(self.lock_dir, error)
        self.run_path = logs_dir / "stackbuild.log"
        # a logger per process and directory: two stacks in one process stay apart
        self.run = logging.getLogger(f"stackbuild.run.{os.getpid()}.{logs_dir}")
        self.run.setLevel(logging.INFO)
        self.run.propagate = False
        self._run_handler = _handler(self.run_path, self.lock_dir, self._write_failed)
        self.run.addHandler(self._run_handler)

    def _write_failed(self, path: Path, error: BaseException) -> None:
        """A log lost a line: warn on the run's first such loss, then keep quiet."""
        why = (error.strerror if isinstance(error, OSError) else None) or str(error)
        with self._failed_lock:
            first = not self.failed
            if all(known != path for known, _ in self.failed):
                self.failed.append((path, why))
        if first:
            self._warn(
                f"stackbuild: warning: cannot write the log {path}: {why}; "
                "log lines that cannot be written are dropped"
            )

    def open_image(self, image: str, suffix: str = ".log") -> ImageLog:
        """The build log of ``image``; ``suffix=".test.log"``: the log of its checks."""
        path = self.state.log_path(image, suffix)
        with self._lock:
            logger = logging.getLogger(
                f"stackbuild.image.{os.getpid()}.{self.dir}.{image}{suffix}"
            )
            logger.setLevel(logging.INFO)
            logger.propagate = False
            handler = _handler(path, self.lock_dir, self._write_failed)
            logger.addHandler(handler)
        return ImageLog(logger, handler, path)

    def close(self) -> None:
        self.run.removeHandler(self._run_handler)
        self._run_handler.close()


def _stderr(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr itself is gone: nothing to do
        print(message, file=sys.stderr, flush=True)
