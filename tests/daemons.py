"""Start and stop the background servers tests run: extra dockerd engines, registries."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def start_daemon(
    command: Sequence[str], log_path: Path, ready: Callable[[], bool], what: str,
    timeout: float, poll: float = 0.1,
) -> subprocess.Popen:
    """Start ``command`` in its own session, logging to ``log_path``, and wait until
    ``ready()``; a daemon that exits or stays silent is stopped and reported with its log."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {process.returncode}: "
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        if ready():
            return process
        time.sleep(poll)
    stop_daemon(process, timeout=10)
    raise RuntimeError(f"{what} did not answer in {timeout:.0f}s")


def stop_daemon(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
