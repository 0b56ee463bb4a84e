"""A frozen engine (dockerd under SIGSTOP) is not waited on forever: every call that should
return gives up after its read timeout with EngineUnreachable naming the engine, and a
command whose only engine froze exits 3 saying which one.

The engine is a private test dockerd (tests/engines.py), stopped with SIGSTOP and always
continued with SIGCONT before it is closed: the shared engine is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends import open_backend
from stackbuild.backends.engine import TIMEOUT_ENV
from stackbuild.errors import EXIT_UNREACHABLE, EngineUnreachable
from tests.engines import ExtraEngine, engines_or_skip
from tests.helpers import make_request, write_base_context

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = "2"  # s, the engine read timeout these tests run with
GUARD = 90  # s: a call still waiting after this long waits forever (the bug)


@pytest.fixture(scope="module")
def engine() -> Iterator[ExtraEngine]:
    with engines_or_skip(1) as (started,):
        yield started


@pytest.fixture(scope="module")
def image(engine: ExtraEngine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image built on the private engine; its reference."""
    ref = "sbt-frozen/base:latest"
    request = make_request(write_base_context(tmp_path_factory.mktemp("base")),
                           "sbt-frozen/base", unique="sbt-frozen", tags=(ref,))  # fmt: skip
    backend = open_backend("docker", engine.url)
    try:
        result = backend.build(request, lambda line: None, threading.Event())
    finally:
        backend.close()
    assert result.ok, result.error
    return ref


@contextmanager
def frozen(engine: ExtraEngine) -> Iterator[None]:
    assert engine.pid is not None and engine.running
    os.kill(engine.pid, signal.SIGSTOP)
    try:
        wait_until_stopped(engine.pid)
        yield
    finally:
        os.kill(engine.pid, signal.SIGCONT)


def wait_until_stopped(pid: int, timeout: float = 10.0) -> None:
    """Wait until every thread of ``pid`` is stopped: kill() returns once SIGSTOP is queued,
    and on a busy machine a thread of dockerd can still answer a request after that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue  # a thread that just ended
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)
    pytest.fail(f"dockerd {pid} did not stop within {timeout}s of SIGSTOP")


def all_give_up(calls: dict[str, Callable[[], Any]]) -> dict[str, EngineUnreachable]:
    """Run every call side by side (each must raise EngineUnreachable); fail, instead of
    hanging, when one is still waiting after GUARD seconds. Side by side, the read
    timeouts run out together instead of one after the other."""
    executor = ThreadPoolExecutor(max_workers=len(calls))
    futures = {what: executor.submit(call) for what, call in calls.items()}
    deadline = time.monotonic() + GUARD
    errors = {}
    try:
        for what, future in futures.items():
            try:
                future.result(timeout=max(deadline - time.monotonic(), 0.1))
            except EngineUnreachable as error:
                errors[what] = error
                continue
            except FutureTimeout:
                pytest.fail(f"{what}: still waiting on the frozen engine after {GUARD}s")
            pytest.fail(f"{what}: the call returned although the engine is frozen")
    finally:
        executor.shutdown(wait=False)  # a stuck call ends once the engine is continued
    return errors


def test_calls_that_should_return_give_up_on_a_frozen_engine_naming_it(
    engine: ExtraEngine, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, TIMEOUT)
    sdk = open_backend("docker", engine.url)  # its SDK client exists before the freeze
    assert sdk.image_id(image)
    fresh = open_backend("docker", engine.url)  # no SDK client yet: the raw-socket path
    fresh.ping()
    try:
        with frozen(engine):
            calls: dict[str, Callable[[], Any]] = {
                "ping": fresh.ping,
                "list": fresh.fingerprinted_images,
                "sdk ping": sdk.ping,
                "sdk list": sdk.fingerprinted_images,
                "inspect": lambda: sdk.image_id(image),
                "labels": lambda: sdk.image_labels(image),
                "tag": lambda: sdk.tag(image, "sbt-frozen/base:other"),
                "registry look-up": lambda: sdk.registry_digest("127.0.0.1:9/sbt-frozen/x:1"),
            }
            errors = all_give_up(calls)
            assert set(errors) == set(calls)
            for what, error in errors.items():
                assert engine.url in str(error), (what, str(error))
                assert "stopped answering" in str(error), (what, str(error))
                assert error.exit_code == EXIT_UNREACHABLE
        assert sdk.image_id(image)  # continued: the same backend answers again
    finally:
        sdk.close()
        fresh.close()


def test_plan_and_build_on_a_frozen_engine_exit_3_naming_it(
    engine: ExtraEngine, image: str, tmp_path: Path
) -> None:
    commands = (["plan"], ["build"], ["lock"])
    for command in commands:  # a checkout each: side by side, no run waits for another's lock
        (tmp_path / command[0] / "app").mkdir(parents=True)
        (tmp_path / command[0] / "app" / "Dockerfile").write_text(f"FROM {image}\nLABEL a=1\n")
        (tmp_path / command[0] / "stack.yaml").write_text(
            "version: 1\nimages:\n  sbt-frozen/app:\n    context: app\n"
        )
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": engine.url, TIMEOUT_ENV: TIMEOUT}
    with frozen(engine):
        # side by side: their read timeouts run out together
        running = [
            subprocess.Popen(
                [sys.executable, "-m", "stackbuild", "-f",
                 str(tmp_path / command[0] / "stack.yaml"), *command],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            for command in commands
        ]
        try:
            ended = []
            for command, proc in zip(commands, running, strict=True):
                try:
                    _, stderr = proc.communicate(timeout=GUARD)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{command} still waiting on the frozen engine after {GUARD}s")
                ended.append((command, proc.returncode, stderr))
        finally:
            for proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    for command, code, stderr in ended:
        assert code == EXIT_UNREACHABLE, (command, stderr)
        assert "Traceback" not in stderr
        assert engine.url in stderr and "stopped answering" in stderr, stderr
