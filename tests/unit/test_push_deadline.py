"""The push retry budget is a run-wide deadline per registry: a registry that stays down
costs one budget, and the pushes after it fail at once with the reason."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from stackbuild.errors import RegistryNotFound, RegistryUnavailable
from stackbuild.run.registry import (
    Pusher,
    RegistryDeadline,
    RegistryDeadlines,
    RetryPolicy,
    with_retries,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def refused(calls: list[str], ref: str) -> Callable[[], str]:
    def call() -> str:
        calls.append(ref)
        raise RegistryUnavailable(f"the registry is unavailable to push {ref} (connection refused)")

    return call


def test_calls_after_the_deadline_fail_at_once_with_the_reason() -> None:
    clock = FakeClock()
    policy = RetryPolicy(first_delay=1, factor=2, max_delay=30, budget=10)
    deadline = RegistryDeadline("reg:5000", clock)
    calls: list[str] = []
    with pytest.raises(RegistryUnavailable, match="gave up after 4 attempts"):
        with_retries(refused(calls, "reg:5000/a:1"), policy, clock=clock, sleep=clock.sleep,
                     deadline=deadline)  # fmt: skip
    assert len(calls) == 4
    for name in "bcdefghijkl":  # ten more images: not one more attempt
        with pytest.raises(RegistryUnavailable) as error:
            with_retries(refused(calls, f"reg:5000/{name}:1"), policy, clock=clock,
                         sleep=clock.sleep, deadline=deadline)  # fmt: skip
        assert "connection refused" in str(error.value)
        assert "not tried again" in str(error.value)
    assert len(calls) == 4
    assert clock.now == 7  # the budget was spent once, not once per image


def test_a_registry_that_answers_again_gets_a_whole_budget_for_its_next_outage() -> None:
    clock = FakeClock()
    policy = RetryPolicy(first_delay=1, factor=2, max_delay=30, budget=10)
    deadline = RegistryDeadline("reg:5000", clock)
    failures = [RegistryUnavailable("503")] * 3

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "sha256:ok"

    assert with_retries(flaky, policy, clock=clock, sleep=clock.sleep, deadline=deadline)
    clock.now += 100  # long after: the earlier outage does not count against this one
    failures[:] = [RegistryUnavailable("503")] * 3
    assert with_retries(flaky, policy, clock=clock, sleep=clock.sleep, deadline=deadline)

    def missing() -> str:
        raise RegistryNotFound("not there")  # an answer, not an outage: not retried

    with pytest.raises(RegistryNotFound):
        with_retries(missing, policy, clock=clock, sleep=clock.sleep, deadline=deadline)


def test_deadlines_are_per_registry() -> None:
    deadlines = RegistryDeadlines()
    assert deadlines.for_ref("a:5000/x:1") is deadlines.for_ref("a:5000/y/z:2")
    assert deadlines.for_ref("a:5000/x:1") is not deadlines.for_ref("b:5000/x:1")


class DeadRegistry:
    """An engine whose registry refuses every push; counts the attempts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pushes: list[str] = []

    def push(self, ref: str, log: Callable[[str], None], cancel: object = None) -> str:
        with self.lock:
            self.pushes.append(ref)
        raise RegistryUnavailable(f"the registry 127.0.0.1:9 is unavailable to push {ref} "
                                  "(connection refused)")


def test_twelve_pushes_to_a_dead_registry_spend_one_budget(tmp_path: Path) -> None:
    backend = DeadRegistry()
    policy = RetryPolicy(first_delay=0.02, factor=2, max_delay=1, budget=0.1)
    pusher = Pusher(backend, 2, tmp_path, threading.Event(), lambda message: None, policy)
    images = [f"img{n}" for n in range(12)]
    for image in images:
        pusher.submit(image, [f"127.0.0.1:9/{image}:latest"])
    outcomes = pusher.wait()
    assert all(outcomes[i].error and "connection refused" in outcomes[i].error for i in images)
    assert not any(outcomes[i].pushed for i in images)
    # attempts: one budget's worth (waits 0.02 + 0.04 fit in 0.1 s: at most 3 attempts)
    # for each of the 2 pushes that ran into the outage together, none for the other ten
    assert len(backend.pushes) <= 2 * 3, backend.pushes
    tried = set(backend.pushes)
    assert len(tried) <= 2
    untried = [i for i in images if f"127.0.0.1:9/{i}:latest" not in tried]
    assert len(untried) >= 10
    assert all("not tried again" in (outcomes[i].error or "") for i in untried)
