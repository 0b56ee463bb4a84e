"""Log files: one per image build plus the run log, through concurrent-log-handler.

    .stackbuild/logs/<image>.log        the build output of that image
    .stackbuild/logs/stackbuild.log     what each run did, one line per event
    .stackbuild/logs/.locks/            the handlers' lock files, kept in one place

concurrent-log-handler's rotating handler takes a file lock around every
write and rotation, so parallel builds and two runs at once never interleave
half-lines or lose them. Each handler holds two file descriptors while open,
so an image's handler is closed as soon as its build ends.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from concurrent_log_handler import ConcurrentRotatingFileHandler

from stackbuild.state import StateDir

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(message)s"


def _handler(path: Path, lock_dir: Path) -> ConcurrentRotatingFileHandler:
    handler = ConcurrentRotatingFileHandler(
        str(path),
        maxBytes=MAX_BYTES,
        backupCount=BACKUPS,
        encoding="utf-8",
        lock_file_directory=str(lock_dir),
    )
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

    def tail(self, lines: int = 15) -> list[str]:
        """The last ``lines`` lines of the file, for the summary of a failed build."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


class RunLogs:
    """Opens the run log and one log per image in the stack's ``.stackbuild/logs/``."""

    def __init__(self, state: StateDir) -> None:
        logs_dir = state.logs
        self.state = state
        self.dir = logs_dir
        self.lock_dir = logs_dir / ".locks"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.run_path = logs_dir / "stackbuild.log"
        # a logger per process and directory: two stacks in one process stay apart
        self.run = logging.getLogger(f"stackbuild.run.{os.getpid()}.{logs_dir}")
        self.run.setLevel(logging.INFO)
        self.run.propagate = False
        self._run_handler = _handler(self.run_path, self.lock_dir)
        self.run.addHandler(self._run_handler)

    def open_image(self, image: str) -> ImageLog:
        path = self.state.log_path(image)
        with self._lock:
            logger = logging.getLogger(f"stackbuild.image.{os.getpid()}.{self.dir}.{image}")
            logger.setLevel(logging.INFO)
            logger.propagate = False
            handler = _handler(path, self.lock_dir)
            logger.addHandler(handler)
        return ImageLog(logger, handler, path)

    def close(self) -> None:
        self.run.removeHandler(self._run_handler)
        self._run_handler.close()
