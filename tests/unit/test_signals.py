"""Ctrl-C and SIGTERM from the first instruction to the last: exit 130, never a traceback.

The command under test reads its stack.yaml from a FIFO nobody writes to, so it waits
inside ``main`` for as long as the test likes; signals land during the imports (right
after stackbuild's handlers are in place) and while it waits. Bounded: every child is
killed after 60 s. No timing is asserted, only how each child ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (Python has none by default)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _interrupt(tmp_path: Path, signals: list[tuple[float, int]]) -> subprocess.CompletedProcess:
    fifo = tmp_path / "stack.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackbuild", "-f", str(fifo), "plan", "--offline"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 30
        while not _catches_sigterm(proc.pid):  # its first instructions have run
            assert proc.poll() is None and time.monotonic() < deadline, "no handlers installed"
            time.sleep(0.001)
        for delay, signum in signals:
            time.sleep(delay)
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.15, 0.3, 0.6])
def test_a_signal_at_start_up_is_exit_130_without_traceback(
    tmp_path: Path, delay: float, signum: int
) -> None:
    done = _interrupt(tmp_path, [(delay, signum)])
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert "interrupted" in done.stderr


@pytest.mark.parametrize(
    "signals",
    [
        [(0.3, signal.SIGINT), (0.0, signal.SIGINT)],
        [(0.3, signal.SIGINT), (0.001, signal.SIGINT), (0.001, signal.SIGINT)],
        [(0.3, signal.SIGINT), (0.0, signal.SIGTERM)],
        [(0.0, signal.SIGTERM), (0.0, signal.SIGINT)],
    ],
    ids=["INT-INT", "INT-INT-INT", "INT-TERM", "TERM-INT-at-import"],
)
def test_a_second_signal_while_ending_is_still_exit_130(
    tmp_path: Path, signals: list[tuple[float, int]]
) -> None:
    done = _interrupt(tmp_path, signals)
    assert done.returncode == 130, done.stderr  # not -2: ended by SIGINT
    assert "Traceback" not in done.stderr


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


def test_importing_the_cli_leaves_the_importers_handlers_alone() -> None:
    code = (
        "import signal, stackbuild.cli\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr


def test_an_interrupt_lost_in_a_finalizer_still_ends_the_command_with_130() -> None:
    # Python only prints a KeyboardInterrupt raised in __del__ or a weakref callback (the
    # signal landed there): the command must not go on waiting as if never interrupted
    code = (
        "import sys, time\n"
        "from stackbuild.cli.signals import exit_on_swallowed_interrupt\n"
        "sys.unraisablehook = exit_on_swallowed_interrupt\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        "        raise KeyboardInterrupt\n"
        "Finalized()\n"
        "time.sleep(30)\n"
    )
    done = _python(code)
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr


def test_other_errors_in_a_finalizer_are_reported_and_the_command_goes_on() -> None:
    code = (
        "import sys\n"
        "from stackbuild.cli.signals import exit_on_swallowed_interrupt\n"
        "sys.unraisablehook = exit_on_swallowed_interrupt\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        "        raise ValueError('in a finalizer')\n"
        "Finalized()\n"
        "print('went on')\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert "went on" in done.stdout and "in a finalizer" in done.stderr
