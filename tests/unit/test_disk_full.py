"""A full disk under ``.stackbuild/`` or stack.lock: one clear error naming the file, state
left as it was, logs that lose lines without a traceback per line.

Most tests use a real full file system: a 64 KiB tmpfs mounted (as root) for the test and
filled to the last byte. Where mounting is not permitted they are skipped, saying why; the
``*_injected`` tests cover the same paths by making a write fail with ENOSPC.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackbuild.errors import EXIT_BUILD_FAILED, StackbuildError
from stackbuild.fingerprint import ImageInputs
from stackbuild.state import BuildRecord, StateDir, StateWriteError, atomic_write

REPO = Path(__file__).resolve().parents[2]


def _fill(directory: Path) -> None:
    """Write ``directory/.fill`` until the file system has not a byte left."""
    with open(directory / ".fill", "wb", buffering=0) as handle:
        block = b"\0" * 4096
        while True:
            try:
                handle.write(block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        for size in (512, 64, 1):  # the last partial block too
            while True:
                try:
                    handle.write(b"\0" * size)
                except OSError:
                    break


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An empty 64 KiB tmpfs of this test's own, unmounted at teardown."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full file system)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _record(image: str, fingerprint: str) -> BuildRecord:
    inputs = ImageInputs(
        dockerfile="d" * 64, files={"a.txt": "f644:" + "0" * 64}, build_args={}, labels={},
        target=None, platform=None, parents={}, upstream={},
    )
    return BuildRecord(image, fingerprint, inputs, 1.0, 0.0, tags=[f"{image}:latest"])


# -- the run lock ---------------------------------------------------------------------


def test_run_lock_on_a_full_file_system_is_one_clear_error(small_fs: Path) -> None:
    state = StateDir(small_fs.parent)
    state.path = small_fs  # .stackbuild/ is the full file system
    state.lock_file = small_fs / "run.lock"
    _fill(small_fs)
    with pytest.raises(StateWriteError) as caught, state.run_lock():
        pytest.fail("the lock was taken on a full file system")
    error = caught.value
    assert isinstance(error, StackbuildError) and error.exit_code == EXIT_BUILD_FAILED
    assert str(error).startswith(f"cannot write {small_fs / 'run.lock'}: No space left")
    assert "free some space" in str(error)


def test_run_lock_write_failure_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    state = StateDir(tmp_path)
    failure = pytest.raises(StateWriteError, match=r"run\.lock: No space left on device")
    with failure, state.run_lock():
        pytest.fail("the lock was taken although its pid could not be written")
    monkeypatch.undo()
    with state.run_lock():  # the failed attempt left nothing held
        assert state.lock_file.read_text() == str(os.getpid())


# -- records and stack.lock -----------------------------------------------------------


def test_a_record_that_does_not_fit_keeps_the_old_one_and_no_temp_file(small_fs: Path) -> None:
    state = StateDir(small_fs)
    state.save_record(_record("app", "sha256:" + "1" * 64))
    _fill(small_fs)
    big = _record("app", "sha256:" + "2" * 64)
    big.tags = [f"app:{n}" for n in range(20000)]  # larger than any space left
    with pytest.raises(StateWriteError) as caught:
        state.save_record(big)
    assert str(caught.value).startswith(f"cannot write {state.record_path('app')}: No space")
    kept = state.load_record("app")
    assert kept is not None and kept.fingerprint == "sha256:" + "1" * 64
    assert sorted(os.listdir(state.images)) == ["app.json"]


def test_atomic_write_failure_is_a_state_write_error_still_an_oserror(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir-parent"
    target.write_text("a file where a directory should be")
    with pytest.raises(OSError) as caught:  # callers catching OSError keep working
        atomic_write(target / "x.json", b"{}")
    assert isinstance(caught.value, StateWriteError)
    assert str(caught.value).startswith(f"cannot write {target / 'x.json'}:")


def test_lock_command_onto_a_full_disk_exits_1_naming_stack_lock(small_fs: Path) -> None:
    (small_fs / "app").mkdir()
    (small_fs / "app" / "Dockerfile").write_text("FROM scratch\n")
    (small_fs / "stack.yaml").write_text("version: 1\nimages:\n  app:\n    context: app\n")
    _fill(small_fs)
    done = subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(small_fs / "stack.yaml"), "lock"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )
    assert done.returncode == EXIT_BUILD_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot write {small_fs / 'stack.lock'}: No space left on device" in done.stderr
    assert not (small_fs / "stack.lock").exists()
    assert sorted(os.listdir(small_fs)) == [".fill", "app", "stack.yaml"]  # no temp left


# -- logs -----------------------------------------------------------------------------


def _write_lines(logs, image: str, count: int) -> None:
    log = logs.open_image(image)
    for n in range(count):
        log(f"line {n} " + "x" * 1000)
        logs.run.info("event %d %s", n, "y" * 500)
    log.close()


def test_logs_on_a_disk_that_fills_lose_lines_but_print_no_traceback(
    small_fs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from stackbuild.logs import RunLogs

    state = StateDir(small_fs)
    logs = RunLogs(state)
    _write_lines(logs, "before", 3)  # fine while there is room
    _fill(small_fs)
    _write_lines(logs, "after", 100)  # every line of it lost
    logs.close()
    err = capfd.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    warnings = [line for line in err.splitlines() if "cannot write the log" in line]
    assert len(warnings) == 1, err  # said once per run, not per line
    assert "No space left on device" in warnings[0]
    assert str(state.logs) in warnings[0]
    assert {path.name for path, _why in logs.failed} >= {"after.log"}
    assert "line 2" in state.log_path("before").read_text()


def test_logs_opened_on_a_full_disk_print_no_traceback(
    small_fs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from stackbuild.logs import RunLogs

    _fill(small_fs)
    warnings: list[str] = []
    logs = RunLogs(StateDir(small_fs), warn=warnings.append)
    _write_lines(logs, "app", 20)
    assert logs.open_image("app").tail() == []  # nothing there, and no error either
    logs.close()
    err = capfd.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert len(warnings) == 1 and "No space left on device" in warnings[0]


def test_log_write_failure_injected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    from stackbuild.logs import RunLogs

    def full(self, msg: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ConcurrentRotatingFileHandler, "do_write", full)
    monkeypatch.setattr(logging, "raiseExceptions", True)  # logging's default
    logs = RunLogs(StateDir(tmp_path))
    _write_lines(logs, "app", 30)
    logs.close()
    err = capfd.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.count("cannot write the log") == 1
