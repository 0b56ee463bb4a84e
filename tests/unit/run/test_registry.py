"""The engine-free parts of registry support: error sorting, retries, the pusher, pinning
upstreams, resolving digests, and what a refresh moves. Fakes stand in for the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from stackbuild.backends.contract import BuildRequest
from stackbuild.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
    UsageError,
    registry_error,
)
from stackbuild.refs import registry_host
from stackbuild.run.registry import Pusher, RegistryHooks, RetryPolicy, with_retries
from stackbuild.run.upstream import lock_entries, moved_upstreams, resolve

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
ID = "sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        ("unauthorized: authentication required", RegistryAuthError),
        ('Head "http://h/v2/x/manifests/1": no basic auth credentials', RegistryAuthError),
        ("denied: requested access to the resource is denied", RegistryAuthError),
        ("manifest unknown: manifest unknown", RegistryNotFound),
        ('Get "http://h/v2/": dial tcp h: connect: connection refused', RegistryUnavailable),
        ("received unexpected HTTP status: 503 Service Unavailable", RegistryUnavailable),
        ("toomanyrequests: You have reached your pull rate limit", RegistryUnavailable),
        ("read tcp 1.2.3.4:5: connection reset by peer", RegistryUnavailable),
        ("blob upload invalid", RegistryError),
    ],
)
def test_registry_failures_are_sorted_by_what_to_do_about_them(detail: str, kind: type) -> None:
    error = registry_error(detail, "127.0.0.1:5000/acme/base:1", "push")
    assert type(error) is kind
    assert "127.0.0.1:5000" in str(error) and detail in str(error)


def test_refused_credentials_say_how_to_log_in() -> None:
    error = registry_error("unauthorized: authentication required", "reg.example/a:1", "push")
    assert "\n" not in str(error)  # one sentence, not a stack of messages
    assert "docker login reg.example" in str(error)
    assert error.exit_code == 1
    assert RegistryUnavailable("x").exit_code == 3


@pytest.mark.parametrize(
    ("ref", "host"),
    [("debian:12", "docker.io"), ("acme/base", "docker.io"), ("localhost/a", "localhost"),
     ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000"), ("ghcr.io/o/i@sha256:ab", "ghcr.io")],
)
def test_registry_host(ref: str, host: str) -> None:
    assert registry_host(ref) == host


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


class FakeBackend:
    """A registry in a dict (ref -> digest) and an engine in another (ref -> image id)."""

    def __init__(self, registry: dict[str, str] | None = None,
                 local: dict[str, str] | None = None) -> None:
        self.registry = dict(registry or {})
        self.local = dict(local or {})  # ref or id -> image id
        self.local_digests: dict[str, str] = {}  # ref -> RepoDigest digest
        self.fail_push: dict[str, list[Exception]] = {}
        self.calls: list[tuple[str, str]] = []

    def push(self, ref: str, log: Callable[[str], None], cancel: object = None) -> str:
        self.calls.append(("push", ref))
        errors = self.fail_push.get(ref)
        if errors:
            raise errors.pop(0)
        self.registry[ref] = A
        return A

    def registry_manifest(self, ref: str) -> None:
        return None  # a registry in a dict: no manifest bytes to check digests against

    def registry_digest(self, ref: str) -> str:
        self.calls.append(("look up", ref))
        if ref not in self.registry:
            raise RegistryNotFound(f"{ref} is not in the registry")
        return self.registry[ref]

    def image_id(self, ref: str) -> str | None:
        return self.local.get(ref)

    def local_digest(self, ref: str) -> str | None:
        if ref not in self.local:
            return None
        return self.local_digests.get(ref, self.local[ref])

    def pull(self, ref: str, log: Callable[[str], None], cancel: object = None) -> str:
        self.calls.append(("pull", ref))
        if ref.rpartition("@")[2] not in self.registry.values():
            raise RegistryNotFound(f"{ref} is not in the registry")
        self.local[ref] = ID
        return ID


def pusher(backend: FakeBackend, tmp_path: Path, messages: list[str]) -> Pusher:
    policy = RetryPolicy(first_delay=0.01, budget=1)
    return Pusher(backend, 2, tmp_path, threading.Event(), messages.append, policy)


def test_the_pusher_pushes_every_tag_and_retries_a_transient_failure(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.fail_push["r/a:latest"] = [RegistryUnavailable("503")]
    messages: list[str] = []
    push = pusher(backend, tmp_path, messages)
    push.submit("a", ["r/a:f1", "r/a:latest"])
    outcome = push.wait()["a"]
    assert outcome.error is None and outcome.pushed == ["r/a:f1", "r/a:latest"]
    assert backend.calls.count(("push", "r/a:latest")) == 2
    assert "attempt 1 failed" in (tmp_path / "a.push.log").read_text()
    assert messages == [f"pushed  a (2 tags, {outcome.duration_s:.1f}s)"]


def test_a_failed_push_is_reported_and_never_counted_as_pushed(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.fail_push["r/a:f1"] = [RegistryAuthError("the registry r refused the credentials")]
    messages: list[str] = []
    push = pusher(backend, tmp_path, messages)
    push.submit("a", ["r/a:f1", "r/a:latest"])
    outcome = push.wait()["a"]
    assert outcome.pushed == [] and "refused the credentials" in str(outcome.error)
    assert ("push", "r/a:latest") not in backend.calls
    assert messages[0].startswith("push    a failed: the registry r refused")


def test_an_up_to_date_image_pushes_only_the_tags_the_registry_lacks(tmp_path: Path) -> None:
    backend = FakeBackend(registry={"r/a:f1": A, "r/a:latest": B})  # latest moved elsewhere
    push = pusher(backend, tmp_path, [])
    push.submit("a", ["r/a:f1", "r/a:latest"], only_missing=True)
    push.submit("b", ["r/b:f2", "r/b:latest"], only_missing=True)  # not there at all
    outcomes = push.wait()
    assert outcomes["a"].pushed == ["r/a:latest"] and outcomes["a"].current == ["r/a:f1"]
    assert outcomes["b"].pushed == ["r/b:f2", "r/b:latest"]


def test_builds_pin_upstreams_to_local_images_of_the_locked_digests() -> None:
    backend = FakeBackend(registry={"up:1": A})
    analysis = SimpleNamespace(inputs={
        "app": SimpleNamespace(upstream={"up:1": A, "other@" + B: B, "unpinned:1": ""}),
    })
    hooks = RegistryHooks(backend, analysis, {}, None, threading.Event())  # type: ignore[arg-type]
    request = BuildRequest("app", "r/app", A, (), (), b"", "Dockerfile",
                           pins={"parent:latest": "sha256:parent"})
    log: list[str] = []
    pinned = hooks.prepare("app", request, log.append)
    assert pinned.pins == {"parent:latest": "sha256:parent", "up:1": ID}
    assert backend.calls == [("pull", f"up@{A}")]  # missing here: pulled by digest, once
    hooks.prepare("app", request, log.append)
    assert backend.calls == [("pull", f"up@{A}")]


def test_an_upstream_that_cannot_be_had_fails_the_build_with_the_reason() -> None:
    backend = FakeBackend()
    analysis = SimpleNamespace(inputs={"app": SimpleNamespace(upstream={"up:1": A})})
    hooks = RegistryHooks(backend, analysis, {}, None, threading.Event())  # type: ignore[arg-type]
    with pytest.raises(RegistryNotFound, match="upstream up:1 is pinned to sha256:aaaaaaaaaaaa"):
        hooks.prepare("app", BuildRequest("app", "r/app", A, (), (), b"", "Dockerfile"),
                      lambda line: None)


def test_resolving_asks_the_registry_and_falls_back_to_local_only_images() -> None:
    backend = FakeBackend(registry={"up:1": A}, local={"mine:1": ID, "pulled:1": ID})
    backend.local_digests["pulled:1"] = B  # came from a registry: its RepoDigest
    warnings: list[str] = []
    assert resolve(backend, "up:1", strict=True, warn=warnings.append) == A
    assert resolve(backend, "x@" + B, strict=True, warn=warnings.append) == B
    assert resolve(backend, "mine:1", strict=True, warn=warnings.append) == ID  # only here
    assert ("look up", "mine:1") not in backend.calls
    assert resolve(backend, "pulled:1", strict=True, warn=warnings.append) == B  # gone there
    with pytest.raises(RegistryNotFound):
        resolve(backend, "nowhere:1", strict=True, warn=warnings.append)
    assert warnings == []


def test_an_unavailable_registry_is_fatal_only_when_strict() -> None:
    backend = FakeBackend(local={"pulled:1": ID})
    backend.local_digests["pulled:1"] = B

    def down(ref: str) -> str:
        raise RegistryUnavailable("the registry docker.io is unavailable")

    backend.registry_digest = down  # type: ignore[method-assign]
    with pytest.raises(RegistryUnavailable):
        resolve(backend, "pulled:1", strict=True, warn=print)
    warnings: list[str] = []
    assert resolve(backend, "pulled:1", strict=False, warn=warnings.append) == B
    assert warnings and "pinning pulled:1 to the local image" in warnings[0]


class FakeGraph:
    def __init__(self, parents: dict[str, tuple[str, ...]],
                 upstream: dict[str, tuple[str, ...]]) -> None:
        self._parents, self._upstream = parents, upstream

    def parents(self, name: str) -> tuple[str, ...]:
        return self._parents[name]

    def upstream(self, name: str) -> tuple[str, ...]:
        return self._upstream[name]


def test_a_moved_upstream_affects_exactly_the_images_above_it() -> None:
    graph = FakeGraph(
        parents={"base": (), "tool": ("base",), "app": (), "child": ("app",), "mix": ("tool",)},
        upstream={"base": (), "tool": (), "app": ("up:1",), "child": (), "mix": ("py:3",)},
    )
    order = ["base", "tool", "app", "child", "mix"]
    moved = moved_upstreams(graph, order, {"up:1": A, "py:3": A}, {"up:1": B, "py:3": A})  # type: ignore[arg-type]
    assert [(m.ref, m.old, m.new, m.images) for m in moved] == [("up:1", A, B, ("app", "child"))]
    assert str(moved[0]) == "up:1  sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb"


def test_lock_entries_name_every_change() -> None:
    entries = lock_entries({"a:1": A, "b:1": A, "c:1": A}, {"a:1": A, "b:1": B, "d:1": B})
    assert [(e.ref, e.status) for e in entries] == [
        ("a:1", "unchanged"), ("b:1", "updated"), ("c:1", "removed"), ("d:1", "added")
    ]
