"""Parallel build scheduling: a ready queue ordered by critical path.

The scheduler knows nothing about Docker or manifests. It works on plain
names, a ``parents`` mapping and weights (last build durations), in three
layers:

``Schedule``
    A pure, single-threaded state machine. A node becomes *ready* the moment
    all of its to-do parents are built (no level-by-level waves); among ready
    nodes the one with the longest remaining weighted path to a leaf goes
    first. Failures block descendants; ``fail_fast`` and ``cancel()`` stop
    everything not yet started.

``run_threaded``
    Drives a ``Schedule`` with real jobs on worker threads. The calling thread
    is the only one that touches the ``Schedule``, the ``SlotPool`` and
    ``on_event``; workers only run ``run()`` and post their result to a queue.

``simulate``
    Drives the very same ``Schedule`` in virtual time, for tests and
    benchmarks (10,000 nodes in well under a second).

A slot can break under a job (a builder pool's engine stops answering): the
job raises ``RetryElsewhere``, the pool hears ``lost(slot)`` and the node goes
back to ready (``Schedule.requeue``), at most ``retries`` times. A pool that
will never have a slot again raises ``NoSlotsLeft``; the nodes still to start
then fail with its message.

Statuses: ``pending``, ``running``, ``built``, ``failed``, ``test-failed``
(built, but a check of it failed: a failure like any other), ``blocked``,
``cancelled``. Nodes outside ``todo`` have no status here; the caller shows
them as ``up-to-date`` (or ``tested``: only its checks ran).

Priority (``priority="critical-path"``, the default): the weighted length of
the longest path from the node down to a leaf, counting only to-do nodes,
each node weighing ``weights.get(name, 1.0)``. Computed once in O(V+E) by
``graph.longest_path_lengths`` (networkx's topological order, walked
backwards). Ties are broken, deterministically, by the
larger number of direct to-do children (finishing such a node unlocks more
parallel work at once), then by name. ``priority="fifo"`` is the baseline
the benchmark compares with: ready nodes start in the order they became
ready, initial ones in ``todo`` order.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from stackbuild.graph import NotADag, longest_path_lengths

__all__ = [
    "NoSlotsLeft",
    "Priority",
    "RetryElsewhere",
    "Schedule",
    "SchedulerEvent",
    "SimulationResult",
    "SlotPool",
    "Slots",
    "Status",
    "run_threaded",
    "simulate",
]


class Status(StrEnum):
    """Status of a node, and of an image's result in a run (``run.results``, the summary,
    ``--json``); a ``str``, so it compares and serialises as one."""

    PENDING = "pending"
    RUNNING = "running"
    BUILT = "built"
    FAILED = "failed"
    TEST_FAILED = "test-failed"  # built, but a check failed: it blocks like a failed build
    TESTED = "tested"  # not built (it exists), its checks ran again and passed
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    UP_TO_DATE = "up-to-date"  # not to do: the plan found it built


Priority = Literal["critical-path", "fifo"]

_PENDING = Status.PENDING
_RUNNING = Status.RUNNING


class Schedule:
    """Which to-do node may start next, and what a success or failure implies.

    ``parents`` maps a node to the nodes it is built on. Only edges between
    ``todo`` nodes matter: a parent outside ``todo`` (up to date, or not in
    ``parents`` at all) is taken as already available. Not thread-safe: one
    thread drives it (``run_threaded``'s coordinator, or ``simulate``).
    """

    def __init__(
        self,
        parents: Mapping[str, Sequence[str]],
        todo: Iterable[str],
        weights: Mapping[str, float | None] | None = None,
        fail_fast: bool = False,
        priority: Priority = "critical-path",
    ) -> None:
        if priority not in ("critical-path", "fifo"):
            raise ValueError(f"unknown priority {priority!r}: use 'critical-path' or 'fifo'")
        # Internally nodes are ints (their position in ``todo``): list indexing is
        # what keeps 10,000-node schedules and simulations fast.
        names = list(dict.fromkeys(todo))
        index = {name: i for i, name in enumerate(names)}
        n = len(names)
        children: list[list[int]] = [[] for _ in range(n)]
        remaining = [0] * n  # to-do parents not built yet
        for i, name in enumerate(names):
            # dict.fromkeys: an image may name the same parent twice (FROM + COPY --from)
            for j in dict.fromkeys(index[p] for p in parents.get(name, ()) if p in index):
                children[j].append(i)
                remaining[i] += 1

        weights = weights or {}
        weight = [_weight(weights.get(name)) for name in names]
        try:
            prio = longest_path_lengths(children, weight)
        except NotADag as cycle:
            stuck = sorted(names[i] for i in cycle.stuck)
            raise ValueError(f"dependency cycle among: {', '.join(stuck)}") from None

        self._names = names
        self._index = index
        self._children = children
        self._remaining = remaining
        self._weight = weight
        self._prio = prio
        self._fifo = priority == "fifo"
        self._fail_fast = fail_fast
        self._status: list[Status] = [_PENDING] * n
        self._blocked_by: list[str | None] = [None] * n
        self._errors: dict[str, str] = {}
        self._pending = n
        self._running = 0
        self._halted = False  # after cancel() or a fail_fast failure
        # The ready queue is a heap of int keys; ``_decode[key]`` is the node.
        # Critical path: the key is the node's rank in a one-off sort, so
        # comparisons are int-cheap. FIFO: the key is a running counter.
        if self._fifo:
            self._decode: list[int] = []
            self._rank: list[int] = []
        else:
            self._decode = sorted(range(n), key=lambda i: (-prio[i], -len(children[i]), names[i]))
            self._rank = [0] * n
            for r, i in enumerate(self._decode):
                self._rank[i] = r
        self._heap: list[int] = []
        for i in range(n):  # the roots, in todo order
            if not remaining[i]:
                self._push(i)

    # -- queries ---------------------------------------------------------

    def status(self, name: str) -> Status:
        """Status of a to-do node (KeyError for any other name)."""
        return self._status[self._index[name]]

    def statuses(self) -> dict[str, Status]:
        return dict(zip(self._names, self._status, strict=True))

    def blocked_by(self, name: str) -> str | None:
        """The failed (or cancelled) ancestor that stopped this node, if any."""
        return self._blocked_by[self._index[name]]

    def error(self, name: str) -> str | None:
        """The message recorded with a failed node's ``finish``."""
        return self._errors.get(name)

    def priority(self, name: str) -> float:
        """Weighted length of the longest to-do path from ``name`` to a leaf."""
        return self._prio[self._index[name]]

    def weight(self, name: str) -> float:
        return self._weight[self._index[name]]

    @property
    def halted(self) -> bool:
        """After ``cancel()`` or a fail-fast failure: nothing new starts."""
        return self._halted

    def done(self) -> bool:
        """Nothing pending and nothing running."""
        return self._pending == 0 and self._running == 0

    def lower_bound(self, slots: int) -> float:
        """No schedule on ``slots`` slots can finish sooner than this."""
        if slots < 1:
            raise ValueError("slots must be at least 1")
        critical = max(self._prio, default=0.0)
        return max(critical, sum(self._weight) / slots)

    def ready(self) -> list[str]:
        """Startable nodes, not yet started, highest priority first."""
        status, decode = self._status, self._decode
        return [self._names[decode[k]] for k in sorted(self._heap) if status[decode[k]] is _PENDING]

    def peek(self) -> str | None:
        """The ready node that would start next, or None."""
        heap, status, decode = self._heap, self._status, self._decode
        # Lazy deletion: entries go stale when start() picks a node out of
        # order, or when cancel()/fail_fast empties the queue.
        while heap and status[decode[heap[0]]] is not _PENDING:
            heapq.heappop(heap)
        return self._names[decode[heap[0]]] if heap else None

    # -- transitions -----------------------------------------------------

    def pop_ready(self) -> str | None:
        """Start the highest-priority ready node and return it (None if none): O(log n)."""
        name = self.peek()
        if name is not None:
            i = self._decode[heapq.heappop(self._heap)]
            self._status[i] = _RUNNING
            self._pending -= 1
            self._running += 1
        return name

    def start(self, name: str) -> None:
        """Start a ready node chosen by the caller (e.g. a builder pool's preference)."""
        i = self._index[name]
        if self._status[i] is not _PENDING or self._remaining[i]:
            raise ValueError(f"{name} is not ready to start ({self._status[i]})")
        self._status[i] = _RUNNING  # its heap entry is now stale; peek() drops it
        self._pending -= 1
        self._running += 1

    def finish(
        self, name: str, ok: bool, cancelled: bool = False, error: str | None = None,
        failed_as: Status = Status.FAILED,
    ) -> list[str]:  # fmt: skip
        """Record the end of a running node; return the nodes this blocked or cancelled.

        ``ok`` -> built; its children whose to-do parents are all built become
        ready. Not ``ok`` -> failed, or ``failed_as`` (``test-failed``), or cancelled
        with ``cancelled=True``;
        every pending to-do descendant becomes blocked (cancelled) with
        ``blocked_by == name``. With ``fail_fast`` a failure also cancels every
        other pending node; running ones are left to finish.
        """
        i = self._index[name]
        if self._status[i] is not _RUNNING:
            raise ValueError(f"{name} is not running ({self._status[i]})")
        if ok and cancelled:
            raise ValueError("a node cannot both succeed and be cancelled")
        self._running -= 1
        if ok:
            self._status[i] = Status.BUILT
            remaining, status = self._remaining, self._status
            for c in self._children[i]:
                remaining[c] -= 1
                if remaining[c] == 0 and status[c] is _PENDING:
                    self._push(c)
            return []

        self._status[i] = Status.CANCELLED if cancelled else failed_as
        if error:
            self._errors[name] = error
        affected = self._stop_descendants(i, Status.CANCELLED if cancelled else Status.BLOCKED)
        if self._fail_fast and not cancelled:
            affected += self.cancel()
        return affected

    def requeue(self, name: str) -> None:
        """Put a running node back among the ready ones: its slot broke, not its build.

        It starts again in priority order. Not after ``cancel()`` (or a fail-fast
        failure): then the caller finishes it as cancelled instead.
        """
        i = self._index[name]
        if self._status[i] is not _RUNNING:
            raise ValueError(f"{name} is not running ({self._status[i]})")
        if self._halted:
            raise ValueError(f"{name} cannot go back to ready: the schedule was cancelled")
        self._status[i] = _PENDING
        self._running -= 1
        self._pending += 1
        # start() may have left this node's entry in the heap (lazy deletion): do not
        # add a second one. O(ready nodes), and requeues are rare.
        decode = self._decode
        if all(decode[k] != i for k in self._heap):
            self._push(i)

    def cancel(self) -> list[str]:
        """Cancel every node not started yet; return them. Running ones are the caller's."""
        if self._halted:
            return []
        self._halted = True
        cancelled = [name for i, name in enumerate(self._names) if self._status[i] is _PENDING]
        for name in cancelled:
            self._status[self._index[name]] = Status.CANCELLED
        self._pending -= len(cancelled)
        self._heap.clear()
        return cancelled

    # -- internals -------------------------------------------------------

    def _push(self, i: int) -> None:
        if self._fifo:
            key = len(self._decode)
            self._decode.append(i)
        else:
            key = self._rank[i]
        heapq.heappush(self._heap, key)

    def _stop_descendants(self, root: int, new: Status) -> list[str]:
        # Invariant: a non-pending node's to-do descendants are all non-pending
        # already (they could not have started), so the walk stops there and
        # each failure costs O(its pending descendants).
        status, children, names = self._status, self._children, self._names
        culprit = names[root]
        affected: list[str] = []
        stack = list(reversed(children[root]))
        while stack:
            c = stack.pop()
            if status[c] is not _PENDING:
                continue
            status[c] = new
            self._blocked_by[c] = culprit
            affected.append(names[c])
            stack.extend(reversed(children[c]))
        self._pending -= len(affected)
        return affected


def _weight(value: float | None) -> float:
    # No weight given: count the node as one unit (a build estimates first builds'
    # weights, Analysis.weights; this is for callers that pass none)
    return 1.0 if value is None else float(value)


# -- running jobs on threads -----------------------------------------------


class RetryElsewhere(Exception):
    """Raised by a job whose slot failed, not its work (its engine stopped answering).

    ``run_threaded`` hands the slot to ``SlotPool.lost`` and puts the node back
    to ready, so it runs again on another slot (at most ``retries`` times).
    """


class NoSlotsLeft(Exception):
    """Raised by ``SlotPool.acquire`` when no slot will ever be free again."""


class SlotPool(Protocol):
    """Where a job may run. ``-j N`` is ``Slots(N)``.

    A builder pool (several engines, each with its own slot count,
    ``stackbuild.run.pool``) implements this: ``acquire`` prefers the
    engine that already holds the node's parents and returns an object naming
    engine and slot, which ``run_threaded`` hands to ``run(name, slot)``. Only
    the coordinating thread calls ``acquire``, ``release`` and ``lost``, so
    they need no locking.
    """

    @property
    def capacity(self) -> int:
        """Most jobs that can ever run at once (the worker thread count)."""
        ...

    def acquire(self, name: str) -> Any | None:
        """A free slot for ``name``, or None when none is free now."""
        ...

    def release(self, slot: Any) -> None:
        """Give back a slot returned by ``acquire``."""
        ...

    def lost(self, slot: Any) -> None:
        """The job on ``slot`` raised RetryElsewhere: the slot (or its engine) broke."""
        ...


class Slots:
    """``N`` interchangeable slots numbered ``0..N-1``; a live UI can use the number as a line."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("slots must be at least 1")
        self._count = count
        self._free = list(range(count - 1, -1, -1))  # pop() hands out the lowest number

    @property
    def capacity(self) -> int:
        return self._count

    def acquire(self, name: str) -> int | None:
        return self._free.pop() if self._free else None

    def release(self, slot: int) -> None:
        self._free.append(slot)
        self._free.sort(reverse=True)  # at most N entries; keeps numbering stable

    def lost(self, slot: int) -> None:
        self.release(slot)  # nothing behind a plain slot can break: it stays usable


EventKind = Literal["started", "finished", "blocked", "cancelled", "requeued"]


@dataclass(frozen=True)
class SchedulerEvent:
    """One thing that happened to one node, reported from the coordinating thread.

    ``started``: the node got ``slot``. ``finished``: ``run`` returned;
    ``status`` is built, failed or cancelled, ``duration`` its wall seconds,
    ``error`` the exception's message if it raised. ``blocked`` / ``cancelled``:
    a pending node will not run; ``blocked_by`` names the failed ancestor.
    ``requeued``: the job raised RetryElsewhere (``error``) and the node is
    ready again; ``slot`` is the one it lost.
    """

    kind: EventKind
    name: str
    status: Status
    duration: float | None = None
    error: str | None = None
    blocked_by: str | None = None
    slot: Any = None


def run_threaded(
    schedule: Schedule,
    slots: int | SlotPool,
    run: Callable[..., bool | Status],
    stop: threading.Event,
    on_event: Callable[[SchedulerEvent], None] | None = None,
    retries: int = 2,
) -> None:
    """Run every to-do node of ``schedule`` with ``run``, on worker threads.

    ``slots``: an int N (``run(name)`` is called) or a ``SlotPool``
    (``run(name, slot)`` is called with the slot it acquired). A node starts
    as soon as its parents are built and a slot is free. ``run`` returns
    True for success; False or an exception is a failure (the exception's
    message goes into the ``finished`` event and ``schedule.error``), never
    propagated. ``RetryElsewhere`` is not a failure: the node is requeued,
    up to ``retries`` times, then fails with that message. When ``acquire``
    raises ``NoSlotsLeft``, each node that would start fails with its message.

    When ``stop`` is set: nothing new starts, pending nodes are cancelled,
    and running jobs are waited for; ``run`` is expected to watch ``stop``
    and abort, and a job returning False after ``stop`` counts as
    cancelled. Ctrl-C while waiting acts like ``stop`` and re-raises
    KeyboardInterrupt once the running jobs have ended.

    The calling thread coordinates and blocks on a queue of results: it only
    ever waits while at least one job runs, so every wake-up is a job
    ending (a set ``stop`` is noticed when the first running job, aborting,
    returns; no polling).
    """
    pool: SlotPool = Slots(slots) if isinstance(slots, int) else slots
    with_slot = not isinstance(slots, int)
    emit = on_event or _ignore
    results: queue.SimpleQueue[tuple[str, Any, bool, str | None, float, bool, Status]] = (
        queue.SimpleQueue()
    )

    def job(name: str, slot: Any) -> None:
        started = time.monotonic()
        ok, error, retry, failed_as = False, None, False, Status.FAILED
        try:
            outcome = run(name, slot) if with_slot else run(name)
            if isinstance(outcome, Status):
                ok = outcome in (Status.BUILT, Status.TESTED)
                failed_as = Status.FAILED if ok else outcome
            else:
                ok = bool(outcome)
        except RetryElsewhere as exc:
            retry, error = True, str(exc) or "its slot broke"
        except Exception as exc:  # a failed build, not a scheduler crash
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:  # always post, or the coordinator would wait forever
            results.put((name, slot, ok, error, time.monotonic() - started, retry, failed_as))

    def finish(name: str, ok: bool, *, cancelled: bool = False, error: str | None = None,
               duration: float = 0.0, slot: Any = None,
               failed_as: Status = Status.FAILED) -> None:  # fmt: skip
        """Record the end of ``name``; say so, and what it blocked or cancelled."""
        affected = schedule.finish(name, ok, cancelled=cancelled, error=error,
                                   failed_as=failed_as)  # fmt: skip
        emit(SchedulerEvent("finished", name, schedule.status(name), duration=duration,
                            error=error, slot=slot))  # fmt: skip
        for other in affected:
            status = schedule.status(other)
            kind: EventKind = "blocked" if status is Status.BLOCKED else "cancelled"
            emit(SchedulerEvent(kind, other, status, blocked_by=schedule.blocked_by(other)))

    attempts: dict[str, int] = {}
    in_flight = 0
    stopping = False
    interrupted = False
    with ThreadPoolExecutor(pool.capacity, thread_name_prefix="stackbuild-job") as executor:
        try:
            while True:
                if stop.is_set() and not stopping:
                    stopping = True
                    for dropped in schedule.cancel():
                        emit(SchedulerEvent("cancelled", dropped, Status.CANCELLED))
                while not stopping and (name := schedule.peek()) is not None:
                    try:
                        slot = pool.acquire(name)
                    except NoSlotsLeft as exc:  # nowhere to run it, ever: it fails
                        schedule.start(name)
                        finish(name, False, error=str(exc))
                        continue
                    if slot is None:
                        break
                    schedule.start(name)
                    in_flight += 1
                    emit(SchedulerEvent("started", name, Status.RUNNING, slot=slot))
                    executor.submit(job, name, slot)
                if in_flight == 0:
                    if schedule.done():
                        break
                    raise RuntimeError(f"slot pool gave no slot to {schedule.peek()!r} while idle")
                try:
                    name, slot, ok, error, duration, retry, failed_as = results.get()
                except KeyboardInterrupt:
                    stop.set()  # drain: running jobs see stop and abort
                    interrupted = True
                    continue
                in_flight -= 1
                # a node that lost its slot after a fail-fast failure will not run again
                cancelled = not ok and (stop.is_set() or (retry and schedule.halted))
                if retry:
                    pool.lost(slot)
                    attempts[name] = attempts.get(name, 1) + 1
                    if not cancelled and attempts[name] <= retries + 1:
                        schedule.requeue(name)
                        emit(SchedulerEvent("requeued", name, Status.PENDING, duration=duration,
                                            error=error, slot=slot))  # fmt: skip
                        continue
                    if not cancelled:
                        error = f"{error} (gave up after {attempts[name] - 1} attempts)"
                else:
                    pool.release(slot)
                finish(name, ok, cancelled=cancelled, error=error, duration=duration, slot=slot,
                       failed_as=failed_as)  # fmt: skip
        except BaseException:
            # The coordinator itself broke (on_event raised, ...): make the running
            # jobs abort, so leaving the executor block does not wait for full builds.
            stop.set()
            raise
    if interrupted:
        raise KeyboardInterrupt


def _ignore(event: SchedulerEvent) -> None:
    pass


# -- simulation in virtual time ----------------------------------------------


@dataclass
class SimulationResult:
    makespan: float
    start: dict[str, float] = field(default_factory=dict)
    finish: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # start order
    statuses: dict[str, Status] = field(default_factory=dict)


def simulate(
    schedule: Schedule,
    slots: int,
    durations: Mapping[str, float],
    fail: Collection[str] = (),
) -> SimulationResult:
    """Run a fresh ``schedule`` in virtual time on ``slots`` slots; nodes in ``fail`` fail.

    A node without a duration takes its schedule weight. Jobs ending at the
    same instant all finish before the next start, so the choice sees every
    node they made ready. Consumes ``schedule``.
    """
    if slots < 1:
        raise ValueError("slots must be at least 1")
    fail = frozenset(fail)
    result = SimulationResult(makespan=0.0)
    start, finish, order = result.start, result.finish, result.order
    events: list[tuple[float, int, str]] = []  # (finish time, start sequence, name)
    now = 0.0
    free = slots
    while True:
        while free and (name := schedule.pop_ready()) is not None:
            free -= 1
            start[name] = now
            duration = durations.get(name)
            end = now + (schedule.weight(name) if duration is None else float(duration))
            heapq.heappush(events, (end, len(order), name))
            order.append(name)
        if not events:
            break
        now = events[0][0]
        while events and events[0][0] == now:
            _, _, name = heapq.heappop(events)
            schedule.finish(name, ok=name not in fail)
            finish[name] = now
            free += 1
    result.makespan = now
    result.statuses = schedule.statuses()
    return result
