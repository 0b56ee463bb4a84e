"""The live view on a real terminal: ``stackbuild build`` under a pseudo-terminal.

The CLI runs with its stdout and stderr on a pty (Python's ``pty``, with a window
size, TERM set and CI unset, as in a person's terminal) against the real engine; what
it wrote is played through a terminal emulator (``tests.terminal``) to see what the
person saw at the end.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_build import child, cli_command, cli_env, write_stack
from tests.terminal import screen

COLUMNS, LINES = 200, 50
BLOCK_HEADER = re.compile(r"^\[\d+/\d+\] ")
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colours: the terminal's, not the text's


def run_on_a_terminal(
    root: Path, *args: str, timeout: float = 120, interrupt_at: str | None = None
) -> tuple[int, str]:
    """``stackbuild <args>`` with stdout and stderr on a pty; its exit code and output.
    ``interrupt_at``: once the output shows this, Ctrl-C (SIGINT to its process group,
    as the terminal sends it)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = cli_env(TERM="xterm-256color")
    for name in ("CI", "NO_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        cli_command(root, *args), cwd=root, stdin=subprocess.DEVNULL, stdout=terminal,
        stderr=terminal, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            so_far = SGR.sub("", b"".join(chunks).decode(errors="replace"))
            if interrupt_at and interrupt_at in so_far:
                os.killpg(proc.pid, signal.SIGINT)
                interrupt_at = None
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.docker
def test_build_on_a_terminal_shows_progress_and_ends_with_the_summary_alone(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(tmp_path, unique, {"app": child("base", "app")})

    code, written = run_on_a_terminal(tmp_path, "build", "-j", "2")

    assert code == 0, written
    assert "Traceback" not in written
    # the block was drawn: progress, the time so far, the build running on it
    text = SGR.sub("", written)
    assert re.search(r"\[0/2\] \d+s · time left unknown \(no past builds\) · building 1", text)
    assert re.search(rf"\n . {unique}/base +\d+s ", text), text  # the running build's row
    assert "\x1b[J" in written
    rows = screen(written, COLUMNS, 200, newline="\n")  # the pty wrote CR LF itself
    assert not [row for row in rows if BLOCK_HEADER.match(row)], rows  # and it is gone
    summary = rows.index(next(row for row in rows if row.startswith("IMAGE ")))
    assert [row.split()[:2] for row in rows[summary + 1 : summary + 3]] == [
        [f"{unique}/base", "built"], [f"{unique}/app", "built"],
    ]  # fmt: skip
    assert rows[-1] == "2 built"

    # again, with the durations of that run: a time left from the critical path
    code, written = run_on_a_terminal(
        tmp_path, "build", "--force", f"{unique}/base", "--force", f"{unique}/app"
    )
    assert code == 0, written
    assert re.search(r"\[0/2\] \d+s · ~\d+s left · building 1", SGR.sub("", written)), written
    rows = screen(written, COLUMNS, 200, newline="\n")
    assert not [row for row in rows if BLOCK_HEADER.match(row)], rows
    assert rows[-1] == "2 built"


@pytest.mark.docker
def test_ctrl_c_on_a_terminal_removes_the_block_and_says_what_was_cancelled(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(tmp_path, unique, {"slow": "FROM {r}/base\nRUN sleep 60\n"})

    code, written = run_on_a_terminal(tmp_path, "build", interrupt_at="RUN sleep 60")

    assert code == 130, written
    assert "Traceback" not in written
    rows = screen(written, COLUMNS, 200, newline="\n")
    assert not [row for row in rows if BLOCK_HEADER.match(row)], rows
    assert "stopping: cancelling running builds (Ctrl-C again to abort)" in rows
    assert rows[-1] == "1 built, 1 cancelled"
