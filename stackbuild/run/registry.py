"""The registry side of a build: pinned upstreams, registry parents, pushes, retries.

- ``registry_error`` sorts a registry failure (as the engine words it) into
  ``RegistryAuthError`` (refused credentials: one sentence, exit 1),
  ``RegistryNotFound`` and ``RegistryUnavailable`` (5xx, 429, refused or
  reset connections: worth retrying; exit 3 when it ends a command).
- ``with_retries`` retries transient failures with exponential backoff
  within a bounded total time (``STACKBUILD_PUSH_RETRY_SECONDS``, default 120).
  The pushes of a run share that time per registry (``RegistryDeadline``): a
  registry that stays down costs one budget, not one per image.
- ``Pusher`` pushes every tag of an image on its own threads (``--push-jobs``),
  so a child's build never waits for its parent's push.
- ``RegistryHooks`` is what ``BuildRun`` calls around each build: before it,
  the image's upstreams are made to resolve to their ``stack.lock`` digests
  (pulled by digest when missing) and parents that only the registry has
  are pulled; after it, the push of its fingerprint tag is queued (its
  release tags move later, ``run.promote``); at the end, push failures turn
  the image's result into ``failed``.
- ``existing_images`` finds the images already built: on the local engine,
  then (with ``registry:``) as ``<registry>/<image>:<fingerprint12>`` tags.

Imports nothing heavy at module level: ``plan`` pays only for what it uses.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Backend, BuildRequest, Cancelled, LogSink
from stackbuild.errors import (
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
    UsageError,
)
from stackbuild.plan import short
from stackbuild.refs import registry_host, split_reference
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import Status
from stackbuild.state import safe_filename

T = TypeVar("T")

RETRY_ENV = "STACKBUILD_PUSH_RETRY_SECONDS"
DEFAULT_PUSH_JOBS = 2


# --- retries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient registry failures, bounded in total time."""

    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    budget: float = 120.0  # s from the first attempt after which no retry starts

    @classmethod
    def from_env(cls) -> RetryPolicy:
        value = os.environ.get(RETRY_ENV)
        if not value:
            return cls()
        try:
            budget = float(value)
        except ValueError:
            raise UsageError(f"{RETRY_ENV}={value!r} is not a number of seconds") from None
        return cls(first_delay=min(cls.first_delay, max(budget / 4, 0.05)), budget=budget)


class RegistryDeadline:
    """One registry's retry budget, shared by every call of a run that retries against it.

    The clock starts at the first transient failure and stops at the next success, so
    a registry that answers again gets a whole budget for its next outage. Once a
    retry loop runs out of it, the registry counts as down for the rest of the run:
    every later call fails at once, with the error that ended the retries.
    """

    def __init__(self, host: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._down: RegistryUnavailable | None = None

    def check(self) -> None:
        """Raise at once when the registry ran out of its budget earlier in this run."""
        with self._lock:
            down = self._down
        if down is not None:
            raise RegistryUnavailable(
                f"{down} (not tried again: the registry {self.host} used up this run's "
                f"retry time, {RETRY_ENV})"
            )

    def answered(self) -> None:
        with self._lock:
            if self._down is None:
                self._failing_since = None

    def failing_for(self) -> float:
        """Seconds since this outage began (now, when it begins with this failure)."""
        now = self._clock()
        with self._lock:
            if self._failing_since is None:
                self._failing_since = now
            return now - self._failing_since

    def give_up(self, error: RegistryUnavailable) -> None:
        with self._lock:
            if self._down is None:
                self._down = error


class RegistryDeadlines:
    """A ``RegistryDeadline`` per registry host, created on first use (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_host: dict[str, RegistryDeadline] = {}

    def for_ref(self, ref: str) -> RegistryDeadline:
        host = registry_host(ref)
        with self._lock:
            if host not in self._by_host:
                self._by_host[host] = RegistryDeadline(host, self._clock)
            return self._by_host[host]


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    on_retry: Callable[[int, float, RegistryError], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
    deadline: RegistryDeadline | None = None,
) -> T:
    """``call()``, retried while it raises a transient RegistryError and time is left.

    ``sleep(seconds)`` returns True to abandon (default: wait on ``stop``).
    The error that ends the retries says how many attempts were made. With a
    ``deadline``, the budget is that registry's for the whole run (shared with other
    calls, see ``RegistryDeadline``), not this call's own.
    """
    stop = stop or threading.Event()
    sleep = sleep or stop.wait
    started = clock()
    delay = policy.first_delay
    attempt = 1
    while True:
        if deadline is not None:
            deadline.check()  # another call used up the registry's time meanwhile
        try:
            result = call()
        except RegistryError as error:
            if not isinstance(error, RegistryUnavailable):
                if deadline is not None:  # "not found", "refused": the registry answers
                    deadline.answered()
                raise

            elapsed = clock() - started
            spent = deadline.failing_for() if deadline is not None else elapsed
            if stop.is_set() or spent + delay > policy.budget:
                final = error
                if attempt > 1:
                    final = type(error)(
                        f"{error}; gave up after {attempt} attempts in {elapsed:.0f}s"
                    )
                if deadline is not None and not stop.is_set():
                    deadline.give_up(final)
                if final is error:
                    raise
                raise final from error
            if on_retry:
                on_retry(attempt, delay, error)
            if sleep(delay):
                raise
            delay = min(delay * policy.factor, policy.max_delay)
            attempt += 1
        else:
            if deadline is not None:
                deadline.answered()
            return result


def with_logged_retries(
    call: Callable[[], T], policy: RetryPolicy, stop: threading.Event | None, log: LogSink,
    deadline: RegistryDeadline | None = None,
) -> T:
    """``with_retries``, saying each retry in ``log``."""

    def on_retry(attempt: int, delay: float, error: RegistryError) -> None:
        log(f"attempt {attempt} failed ({error}); retrying in {delay:.1f}s")

    return with_retries(call, policy, stop=stop, on_retry=on_retry, deadline=deadline)


# --- pushing ---------------------------------------------------------------------------


@dataclass
class PushOutcome:
    image: str
    pushed: list[str] = field(default_factory=list)  # references the registry confirmed
    current: list[str] = field(default_factory=list)  # already there with this content
    error: str | None = None
    cancelled: bool = False
    log: Path | None = None
    duration_s: float = 0.0


class _PushLog:
    """``.stackbuild/logs/<image>.push.log``: this run's push output of one image."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, line: str) -> None:
        self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class PushBackend(Protocol):
    """What a ``Pusher`` asks of its backend: a ``Backend``, or a pool's ``PoolPushes``
    (each image pushed from an engine that holds it)."""

    def registry_digest(self, ref: str) -> str: ...

    def push(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str: ...


class Pusher:
    """Pushes images' tags on ``jobs`` threads of its own, retrying transient failures."""

    def __init__(
        self,
        backend: PushBackend,
        jobs: int,
        logs_dir: Path,
        stop: threading.Event,
        notify: Callable[[str], None],
        policy: RetryPolicy | None = None,
    ) -> None:
        self.backend = backend
        self.logs_dir = logs_dir
        self.stop = stop
        self.notify = notify
        self.policy = policy or RetryPolicy.from_env()
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stackbuild-push")
        self._futures: dict[str, Future[PushOutcome]] = {}
        # the retry budget is the run's, per registry: a registry that stays down fails
        # the remaining pushes at once instead of costing every image a whole budget
        self.deadlines = RegistryDeadlines()

    def submit(self, image: str, refs: Sequence[str], only_missing: bool = False) -> None:
        """Queue a push of ``refs`` (the fingerprint tag first). ``only_missing``: an image
        built earlier; tags the registry already has with the same content are left alone."""
        self._futures[image] = self._pool.submit(self._push, image, list(refs), only_missing)

    def wait(self) -> dict[str, PushOutcome]:
        """Every queued push's outcome, once all have ended."""
        self._pool.shutdown(wait=True)
        return {image: future.result() for image, future in self._futures.items()}

    def _retrying(self, call: Callable[[], T], log: LogSink, ref: str | None = None) -> T:
        deadline = self.deadlines.for_ref(ref) if ref is not None else None
        return with_logged_retries(call, self.policy, self.stop, log, deadline)

    def _already_there(self, refs: list[str], log: LogSink) -> set[str]:
        """The refs whose registry digest is the fingerprint tag's (``refs[0]``)."""
        try:
            want = self._retrying(lambda: self.backend.registry_digest(refs[0]), log, refs[0])
        except RegistryNotFound:
            return set()
        there = {refs[0]}
        for ref in refs[1:]:
            try:
                digest = self._retrying(
                    functools.partial(self.backend.registry_digest, ref), log, ref
                )
                if digest == want:
                    there.add(ref)
            except RegistryNotFound:
                pass
        return there

    def _push(self, image: str, refs: list[str], only_missing: bool) -> PushOutcome:
        outcome = PushOutcome(image)
        started = time.monotonic()
        log = _PushLog(self.logs_dir / f"{safe_filename(image)}.push.log")
        outcome.log = log.path
        try:
            if only_missing:
                there = self._already_there(refs, log)
                outcome.current = [ref for ref in refs if ref in there]
                refs = [ref for ref in refs if ref not in there]
            for ref in refs:
                if self.stop.is_set():
                    outcome.cancelled = True
                    outcome.error = f"push of {ref} cancelled: interrupted"
                    break
                log(f"=== stackbuild: push {ref} ===")
                digest = self._retrying(
                    functools.partial(self.backend.push, ref, log, self.stop), log, ref
                )
                log(f"=== stackbuild: pushed {ref} {digest} ===")
                outcome.pushed.append(ref)
        except Exception as error:  # any failure is this image's, never the run's
            outcome.cancelled = isinstance(error, Cancelled) or self.stop.is_set()
            outcome.error = "push cancelled: interrupted" if outcome.cancelled else str(error)
            log(f"=== stackbuild: error: {outcome.error} ===")
        finally:
            outcome.duration_s = time.monotonic() - started
            log.close()
        if outcome.error:
            self.notify(f"push    {image} failed: {outcome.error}")
        elif outcome.pushed:
            self.notify(f"pushed  {image} ({len(outcome.pushed)} tags, "
                        f"{outcome.duration_s:.1f}s)")
        return outcome


# --- what exists already ---------------------------------------------------------------


# --- around each build -----------------------------------------------------------------


class _Once:
    """A value computed by the first caller; others wait for it (a failure is not kept)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: str | None = None


class RegistryHooks:
    """What a BuildRun asks of registries: see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        analysis: Analysis,
        remote: Mapping[str, str],
        pusher: Pusher | None,
        stop: threading.Event,
    ) -> None:
        self.backend = backend
        self.analysis = analysis
        self.remote = dict(remote)
        self.pusher = pusher
        self.stop = stop
        self.policy = pusher.policy if pusher else RetryPolicy.from_env()
        self._lock = threading.Lock()
        self._once: dict[str, _Once] = {}

    @property
    def pushing(self) -> bool:
        return self.pusher is not None

    def built_earlier(self, name: str, tags: Sequence[str]) -> None:
        """An image up to date on this engine: its fingerprint tag pushed if the registry
        lacks it (its release tags are ``run.promote``'s)."""
        if self.pusher:
            self.pusher.submit(name, tags[:1], only_missing=True)

    def prepare(self, name: str, request: BuildRequest, log: LogSink) -> BuildRequest:
        """``request`` with its upstreams pinned to local images of the locked digests, and
        registry-only parents pulled. Raises RegistryError when one cannot be had."""
        remote_refs = set(self.remote.values())
        for source in request.pins.values():
            if source in remote_refs:
                self._local(source, source, log, f"parent {source} is only in the registry")
        pins = dict(request.pins)
        for ref, digest in self.analysis.inputs[name].upstream.items():
            if not digest or split_reference(ref)[2]:
                continue  # unpinned: the engine resolves it; a digest reference is exact
            repository = split_reference(ref)[0]
            pinned = f"{repository}@{digest}"
            pins[ref] = self._local(
                pinned, pinned, log, f"upstream {ref} is pinned to {short(digest)} in stack.lock",
                also=digest,  # an upstream that exists only locally is pinned by image id
            )
        return dataclasses.replace(request, pins=pins)

    def _local(self, key: str, pull_ref: str, log: LogSink, why: str, also: str = "") -> str:
        """Id of the local image ``key`` (or ``also``), pulling ``pull_ref`` once if missing."""
        with self._lock:
            once = self._once.setdefault(key, _Once())
        with once.lock:
            if once.value is None:
                found = self.backend.image_id(key) or (also and self.backend.image_id(also))
                if not found:
                    log(f"pull {pull_ref} ({why})")
                    try:
                        found = with_retries(
                            lambda: self.backend.pull(pull_ref, log, self.stop),
                            self.policy,
                            stop=self.stop,
                        )
                    except RegistryError as error:
                        raise type(error)(
                            f"{why}, not on this engine, and cannot be pulled: {error}"
                        ) from error
                once.value = found
            return once.value

    def built(self, name: str, tags: Sequence[str]) -> None:
        """Push the fingerprint tag (``tags[0]``) at once: it names this build only. The
        release tags move once the run knows the image passed (``run.promote``)."""
        if self.pusher:
            self.pusher.submit(name, tags[:1])

    def finish(self, results: Mapping[str, ImageResult]) -> None:
        """Wait for the pushes; an image whose push failed is ``failed``, never "pushed"."""
        if not self.pusher:
            return
        for name, outcome in self.pusher.wait().items():
            result = results[name]
            result.pushed = list(outcome.pushed)
            if outcome.cancelled:
                result.status, result.error = Status.CANCELLED, outcome.error
            elif outcome.error:
                result.status, result.error = Status.FAILED, f"push failed: {outcome.error}"
                # the error says it all; the summary points at the push log for the rest
                result.log, result.log_tail = str(outcome.log), []


def push_summary(results: Iterable[ImageResult], registry: str | None) -> str:
    """One line: what went to the registry, and what did not."""
    results = list(results)
    pushed = [r for r in results if r.pushed]
    failed = [r for r in results if (r.error or "").startswith("push failed")]
    line = (
        f"pushed {len(pushed)} image(s), {sum(len(r.pushed) for r in pushed)} tag(s) "
        f"to {registry}"
    )
    if failed:
        line += f"; {len(failed)} push(es) failed: {', '.join(r.image for r in failed)}"
    return line
