"""The registry side of a build without an engine: retries and the run-wide retry deadline
per registry, the pusher, and pinning upstreams before a build. ``tests.fakes.FakeBackend``
stands in for the engine and its registry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from stackbuild.backends.contract import BuildRequest
from stackbuild.errors import (
    RegistryAuthError,
    RegistryNotFound,
    RegistryUnavailable,
    UsageError,
)
from stackbuild.run.registry import (
    Pusher,
    RegistryDeadline,
    RegistryDeadlines,
    RegistryHooks,
    RetryPolicy,
    with_retries,
)
from tests.fakes import FakeBackend, FakeRegistry, Manifest

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
ID = "sha256:" + "1" * 64


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


def failing(times: int, error: Exception, value: str = "ok") -> Callable[[], str]:
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return value

    return call


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    clock = FakeClock()
    policy = RetryPolicy(first_delay=1, factor=2, max_delay=3, budget=100)
    result = with_retries(failing(4, RegistryUnavailable("503")), policy, clock=clock,
                          sleep=clock.sleep)
    assert result == "ok"
    assert clock.sleeps == [1, 2, 3, 3]


def test_retries_stop_within_the_time_budget_and_say_so() -> None:
    clock = FakeClock()
    policy = RetryPolicy(first_delay=1, factor=2, max_delay=30, budget=10)
    with pytest.raises(RegistryUnavailable) as error:
        with_retries(failing(99, RegistryUnavailable("connection refused")), policy,
                     clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1, 2, 4]  # a fourth wait (8 s) would pass the 10 s budget
    assert "connection refused; gave up after 4 attempts in 7s" in str(error.value)


def test_permanent_failures_are_not_retried() -> None:
    clock = FakeClock()
    with pytest.raises(RegistryAuthError):
        with_retries(failing(1, RegistryAuthError("refused")), RetryPolicy(), clock=clock,
                     sleep=clock.sleep)
    assert clock.sleeps == []


def test_the_retry_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKBUILD_PUSH_RETRY_SECONDS", "2")
    assert RetryPolicy.from_env().budget == 2
    monkeypatch.setenv("STACKBUILD_PUSH_RETRY_SECONDS", "soon")
    with pytest.raises(UsageError, match="not a number of seconds"):
        RetryPolicy.from_env()


def holding(*refs: str) -> FakeBackend:
    """An engine holding one image tagged ``refs``, to be pushed."""
    backend = FakeBackend()
    backend.add_image(ID, refs)
    return backend


def pusher(backend: FakeBackend, tmp_path: Path, messages: list[str]) -> Pusher:
    policy = RetryPolicy(first_delay=0.01, budget=1)
    return Pusher(backend, 2, tmp_path, threading.Event(), messages.append, policy)


def test_the_pusher_pushes_every_tag_and_retries_a_transient_failure(tmp_path: Path) -> None:
    backend = holding("r/a:f1", "r/a:latest")
    backend.fail_next("push", RegistryUnavailable("503"), ref="r/a:latest")
    messages: list[str] = []
    push = pusher(backend, tmp_path, messages)
    push.submit("a", ["r/a:f1", "r/a:latest"])
    outcome = push.wait()["a"]
    assert outcome.error is None and outcome.pushed == ["r/a:f1", "r/a:latest"]
    assert backend.attempts("push").count("r/a:latest") == 2
    assert "attempt 1 failed" in (tmp_path / "a.push.log").read_text()
    assert messages == [f"pushed  a (2 tags, {outcome.duration_s:.1f}s)"]


def test_a_failed_push_is_reported_and_never_counted_as_pushed(tmp_path: Path) -> None:
    backend = holding("r/a:f1", "r/a:latest")
    backend.fail_next("push", RegistryAuthError("the registry r refused the credentials"),
                      ref="r/a:f1")  # fmt: skip
    messages: list[str] = []
    push = pusher(backend, tmp_path, messages)
    push.submit("a", ["r/a:f1", "r/a:latest"])
    outcome = push.wait()["a"]
    assert outcome.pushed == [] and "refused the credentials" in str(outcome.error)
    assert "r/a:latest" not in backend.attempts("push")
    assert messages[0].startswith("push    a failed: the registry r refused")


def test_an_up_to_date_image_pushes_only_the_tags_the_registry_lacks(tmp_path: Path) -> None:
    backend = holding("r/a:f1", "r/a:latest", "r/b:f2", "r/b:latest")
    backend.registry.update(FakeRegistry({"r/a:f1": A, "r/a:latest": B}))  # latest moved
    push = pusher(backend, tmp_path, [])
    push.submit("a", ["r/a:f1", "r/a:latest"], only_missing=True)
    push.submit("b", ["r/b:f2", "r/b:latest"], only_missing=True)  # not there at all
    outcomes = push.wait()
    assert outcomes["a"].pushed == ["r/a:latest"] and outcomes["a"].current == ["r/a:f1"]
    assert outcomes["b"].pushed == ["r/b:f2", "r/b:latest"]


def test_builds_pin_upstreams_to_local_images_of_the_locked_digests() -> None:
    backend = FakeBackend(registry=FakeRegistry({"up:1": Manifest(A, ID)}))
    analysis = SimpleNamespace(inputs={
        "app": SimpleNamespace(upstream={"up:1": A, "other@" + B: B, "unpinned:1": ""}),
    })
    hooks = RegistryHooks(backend, analysis, {}, None, threading.Event())  # type: ignore[arg-type]
    request = BuildRequest("app", "r/app", A, (), (), b"", "Dockerfile",
                           pins={"parent:latest": "sha256:parent"})
    log: list[str] = []
    pinned = hooks.prepare("app", request, log.append)
    assert pinned.pins == {"parent:latest": "sha256:parent", "up:1": ID}
    registry_calls = ("push", "pull", "registry_digest")
    # missing here: pulled by digest, once
    assert backend.history(*registry_calls) == [("pull", f"up@{A}")]
    hooks.prepare("app", request, log.append)
    assert backend.history(*registry_calls) == [("pull", f"up@{A}")]


def test_an_upstream_that_cannot_be_had_fails_the_build_with_the_reason() -> None:
    backend = FakeBackend()
    analysis = SimpleNamespace(inputs={"app": SimpleNamespace(upstream={"up:1": A})})
    hooks = RegistryHooks(backend, analysis, {}, None, threading.Event())  # type: ignore[arg-type]
    with pytest.raises(RegistryNotFound, match="upstream up:1 is pinned to sha256:aaaaaaaaaaaa"):
        hooks.prepare("app", BuildRequest("app", "r/app", A, (), (), b"", "Dockerfile"),
                      lambda line: None)


# -- one retry budget per registry and run -----------------------------------------------
# a registry that stays down costs one budget, and the pushes after it fail at once with
# the reason


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


def test_twelve_pushes_to_a_dead_registry_spend_one_budget(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.fail_always("push", RegistryUnavailable(
        "the registry 127.0.0.1:9 is unavailable to push (connection refused)"
    ))  # fmt: skip
    policy = RetryPolicy(first_delay=0.02, factor=2, max_delay=1, budget=0.1)
    pusher = Pusher(backend, 2, tmp_path, threading.Event(), lambda message: None, policy)
    images = [f"img{n}" for n in range(12)]
    for image in images:
        backend.add_image(f"sha256:{image}", [f"127.0.0.1:9/{image}:latest"])
        pusher.submit(image, [f"127.0.0.1:9/{image}:latest"])
    outcomes = pusher.wait()
    assert all(outcomes[i].error and "connection refused" in outcomes[i].error for i in images)
    assert not any(outcomes[i].pushed for i in images)
    # attempts: one budget's worth (waits 0.02 + 0.04 fit in 0.1 s: at most 3 attempts)
    # for each of the 2 pushes that ran into the outage together, none for the other ten
    assert len(backend.attempts("push")) <= 2 * 3, backend.attempts("push")
    tried = set(backend.attempts("push"))
    assert len(tried) <= 2
    untried = [i for i in images if f"127.0.0.1:9/{i}:latest" not in tried]
    assert len(untried) >= 10
    assert all("not tried again" in (outcomes[i].error or "") for i in untried)
