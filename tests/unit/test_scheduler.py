"""Specs of the scheduler: ready queue, critical path first, failures, cancel, threads."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence

import pytest

from stackbuild.scheduler import (
    NoSlotsLeft,
    RetryElsewhere,
    Schedule,
    SchedulerEvent,
    Slots,
    Status,
    run_threaded,
    simulate,
)

DIAMOND = {"base": [], "left": ["base"], "right": ["base"], "top": ["left", "right"]}

# base -> a -> a1 -> a2;  base -> b -> b1;  d needs a1 and b1;  c stands alone
FAMILY = {
    "base": [],
    "a": ["base"],
    "a1": ["a"],
    "a2": ["a1"],
    "b": ["base"],
    "b1": ["b"],
    "d": ["a1", "b1"],
    "c": [],
}


def random_dag(n: int, seed: int, window: int, max_parents: int = 3):
    """Node i picks up to ``max_parents`` parents among the ``window`` nodes before it."""
    rng = random.Random(seed)
    names = [f"n{i:05d}" for i in range(n)]
    parents: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        k = rng.randint(0, min(max_parents, i))
        parents[name] = [names[rng.randrange(max(0, i - window), i)] for _ in range(k)]
    durations = {name: rng.uniform(1.0, 10.0) for name in names}
    return parents, durations


def waves_makespan(parents: Mapping[str, Sequence[str]], durations: Mapping[str, float]) -> float:
    """Level-by-level with unlimited slots: a level starts when the previous one is done."""
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((depth(p) for p in parents[name]), default=-1)
        return level[name]

    longest: dict[int, float] = {}
    for name in parents:
        longest[depth(name)] = max(longest.get(depth(name), 0.0), durations[name])
    return sum(longest.values())


def brute_force_priority(parents, weights, name) -> float:
    children = [c for c, ps in parents.items() if name in ps]
    below = max((brute_force_priority(parents, weights, c) for c in children), default=0.0)
    return weights.get(name, 1.0) + below


# -- the state machine ---------------------------------------------------------


def test_diamond_runs_in_dependency_order():
    s = Schedule(DIAMOND, DIAMOND)
    assert s.ready() == ["base"]
    assert s.pop_ready() == "base"
    assert s.pop_ready() is None  # nothing else is ready while base runs
    s.finish("base", ok=True)
    assert sorted(s.ready()) == ["left", "right"]
    first, second = s.pop_ready(), s.pop_ready()
    s.finish(first, ok=True)
    assert s.ready() == []  # top still waits for the other side
    s.finish(second, ok=True)
    assert s.pop_ready() == "top"
    assert not s.done()
    s.finish("top", ok=True)
    assert s.done()
    assert set(s.statuses().values()) == {Status.BUILT}


def test_parents_outside_todo_are_already_available():
    # base is up to date: only its descendants are to do, and they are ready at once
    s = Schedule(DIAMOND, ["left", "right", "top"])
    assert sorted(s.ready()) == ["left", "right"]
    with pytest.raises(KeyError):
        s.status("base")  # not the scheduler's business: the caller says "up-to-date"


def test_a_parent_named_twice_counts_once():
    s = Schedule({"base": [], "app": ["base", "base"]}, ["base", "app"])
    s.finish(s.pop_ready(), ok=True)
    assert s.ready() == ["app"]


def test_a_cycle_is_rejected_with_its_members():
    with pytest.raises(ValueError, match="cycle among: x, y"):
        Schedule({"x": ["y"], "y": ["x"], "z": []}, ["x", "y", "z"])


def test_start_refuses_a_node_that_is_not_ready():
    s = Schedule(DIAMOND, DIAMOND)
    with pytest.raises(ValueError, match="not ready"):
        s.start("top")
    s.start("base")
    with pytest.raises(ValueError, match="not ready"):
        s.start("base")
    with pytest.raises(ValueError, match="not running"):
        s.finish("left", ok=True)


def test_priority_is_the_weighted_longest_path_to_a_leaf():
    parents, durations = random_dag(60, seed=3, window=10)
    s = Schedule(parents, parents, durations)
    for name in parents:
        assert s.priority(name) == pytest.approx(brute_force_priority(parents, durations, name))


def test_ready_is_ordered_by_priority_then_children_then_name():
    parents = {
        "long": [],
        "long2": ["long"],
        "fan": [],  # same priority as "lone" (2.0) but unlocks two children
        "fan_a": ["fan"],
        "fan_b": ["fan"],
        "lone": [],
        "alpha": [],  # alpha and beta tie on everything: name decides
        "beta": [],
    }
    weights = {"long": 2.0, "long2": 2.0, "lone": 2.0, "fan": 1.0}
    s = Schedule(parents, parents, weights)
    assert s.ready() == ["long", "fan", "lone", "alpha", "beta"]
    assert s.pop_ready() == "long"


def test_fifo_keeps_the_order_nodes_became_ready():
    s = Schedule({"z": [], "a": [], "m": ["z"]}, ["z", "a", "m"], {"m": 100}, priority="fifo")
    assert s.ready() == ["z", "a"]


def test_lower_bound_is_critical_path_or_work_over_slots():
    s = Schedule({"a": [], "b": ["a"], "c": []}, ["a", "b", "c"], {"a": 3, "b": 4, "c": 1})
    assert s.lower_bound(1) == 8.0
    assert s.lower_bound(4) == 7.0


# -- simulated runs --------------------------------------------------------------


def test_a_node_starts_as_soon_as_its_parents_finish_not_level_by_level():
    parents = {"quick": [], "slow": [], "after_quick": ["quick"]}
    durations = {"quick": 1.0, "slow": 10.0, "after_quick": 10.0}
    result = simulate(Schedule(parents, parents), slots=3, durations=durations)
    assert result.start["after_quick"] == 1.0  # not 10.0, when "slow" ends its level
    assert result.makespan == 11.0
    assert waves_makespan(parents, durations) == 20.0


def test_the_critical_path_goes_first():
    chain = {f"chain{i}": [f"chain{i - 1}"] if i else [] for i in range(10)}
    leaves = {f"leaf{i}": [] for i in range(10)}
    parents = leaves | chain  # leaves listed first: what FIFO would take first
    s = Schedule(parents, parents)
    assert s.lower_bound(2) == 10.0
    result = simulate(s, slots=2, durations={})
    assert result.makespan == 10.0
    assert [result.start[f"chain{i}"] for i in range(10)] == list(range(10))
    fifo = simulate(Schedule(parents, parents, priority="fifo"), slots=2, durations={})
    assert fifo.makespan == 15.0


def test_a_failure_blocks_exactly_its_descendants_and_the_rest_goes_on():
    s = Schedule(FAMILY, FAMILY)
    result = simulate(s, slots=2, durations={}, fail={"a"})
    assert result.statuses == {
        "base": "built",
        "a": "failed",
        "a1": "blocked",
        "a2": "blocked",
        "d": "blocked",
        "b": "built",
        "b1": "built",
        "c": "built",
    }
    assert s.blocked_by("a2") == "a"
    assert s.blocked_by("d") == "a"
    assert s.blocked_by("b1") is None
    assert s.done()


def test_fail_fast_cancels_everything_not_started():
    s = Schedule(FAMILY, FAMILY, {"b": 5.0}, fail_fast=True)
    durations = {"base": 1.0, "a": 1.0, "b": 5.0, "c": 1.0}
    result = simulate(s, slots=2, durations=durations, fail={"a"})
    # t=0: base and c start; t=1: b (priority 6) and a (3); a fails at t=2 while b
    # runs until t=6: b still ends built, nothing else starts.
    assert result.order == ["base", "c", "b", "a"]
    assert result.statuses["b"] == "built"
    assert result.statuses["a"] == "failed"
    assert [result.statuses[n] for n in ("a1", "a2", "d")] == ["blocked"] * 3
    assert result.statuses["b1"] == "cancelled"
    assert s.blocked_by("b1") is None
    assert s.pop_ready() is None


def test_cancel_stops_pending_and_leaves_running_to_the_caller():
    s = Schedule(FAMILY, FAMILY)
    assert s.pop_ready() == "base"  # priority 4, before c (1)
    assert set(s.cancel()) == set(FAMILY) - {"base"}
    assert s.pop_ready() is None
    assert not s.done()
    s.finish("base", ok=False, cancelled=True)
    assert s.done()
    assert set(s.statuses().values()) == {Status.CANCELLED}
    assert s.cancel() == []  # idempotent


# -- threaded runs ---------------------------------------------------------------


def test_threaded_run_respects_dependencies_and_never_exceeds_the_slots():
    dag, _ = random_dag(80, seed=11, window=8)
    slots = 3
    # independent roots so that `slots` jobs can actually overlap at the start
    parents = {f"root{i}": [] for i in range(slots)} | dag
    lock = threading.Lock()
    built: set[str] = set()
    active = most = started = 0
    first = threading.Barrier(slots)  # the first `slots` jobs must overlap, or this breaks

    def run(name: str) -> bool:
        nonlocal active, most, started
        with lock:
            assert all(p in built for p in parents[name]), f"{name} started before a parent"
            active += 1
            most = max(most, active)
            started += 1
            mine = started
        if mine <= slots:
            first.wait(timeout=5)
        with lock:
            active -= 1
            built.add(name)
        return True

    s = Schedule(parents, parents)
    run_threaded(s, slots, run, threading.Event())
    assert s.done()
    assert {n: s.error(n) for n in parents if s.status(n) != "built"} == {}
    assert most == slots


def test_threaded_exceptions_are_failures_and_never_escape():
    events: list[SchedulerEvent] = []

    def run(name: str) -> bool:
        if name == "a":
            raise RuntimeError("boom in a")
        return name != "b"  # b fails by returning False

    s = Schedule(FAMILY, FAMILY)
    run_threaded(s, 2, run, threading.Event(), events.append)
    assert s.statuses() == {
        "base": "built",
        "a": "failed",
        "a1": "blocked",
        "a2": "blocked",
        "d": "blocked",
        "b": "failed",
        "b1": "blocked",
        "c": "built",
    }
    (finished_a,) = [e for e in events if e.kind == "finished" and e.name == "a"]
    assert finished_a.status == "failed"
    assert finished_a.error == "RuntimeError: boom in a"
    assert s.error("a") == "RuntimeError: boom in a"
    blocked = {e.name: e.blocked_by for e in events if e.kind == "blocked"}
    assert blocked["a2"] == "a" and blocked["b1"] == "b"
    assert blocked["d"] in ("a", "b")  # whichever of its ancestors failed first


def test_stop_mid_run_keeps_finished_builds_and_cancels_the_rest():
    # priorities: slow (10) > quick (6) > spare (1); two slots
    parents = {"slow": [], "tail": ["slow"], "quick": [], "later": ["quick"], "spare": []}
    weights = {"slow": 5, "tail": 5, "quick": 1, "later": 5, "spare": 1}
    stop = threading.Event()
    waiting = {"slow": threading.Event(), "later": threading.Event()}
    events: list[SchedulerEvent] = []

    def run(name: str) -> bool:
        if name in waiting:
            waiting[name].set()
            stop.wait(timeout=10)  # a real build aborts when it sees stop
            return False
        return True

    def press_ctrl_c() -> None:
        for started in waiting.values():
            started.wait(timeout=10)
        stop.set()

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    s = Schedule(parents, parents, weights)
    run_threaded(s, 2, run, stop, events.append)
    presser.join()
    assert s.statuses() == {
        "quick": "built",
        "slow": "cancelled",
        "later": "cancelled",
        "tail": "cancelled",
        "spare": "cancelled",
    }
    started = [e.name for e in events if e.kind == "started"]
    assert sorted(started) == ["later", "quick", "slow"]
    assert {e.name for e in events if e.kind == "cancelled"} == {"tail", "spare"}
    finished = {e.name: e.status for e in events if e.kind == "finished"}
    assert finished == {"quick": "built", "slow": "cancelled", "later": "cancelled"}


def test_a_slot_pool_gets_the_slot_passed_to_run():
    seen: dict[str, int] = {}

    def run(name: str, slot: int) -> bool:
        seen[name] = slot
        return True

    s = Schedule(DIAMOND, DIAMOND)
    run_threaded(s, Slots(2), run, threading.Event())
    assert s.done()
    assert seen["base"] == 0 and set(seen.values()) <= {0, 1}


# -- scale -------------------------------------------------------------------------


def test_critical_path_is_within_5_percent_of_the_lower_bound_on_10k_nodes():
    parents, durations = random_dag(10_000, seed=7, window=100)
    s = Schedule(parents, parents, durations)
    # as many slots as the graph can use: critical path ~ work / slots, the hard case
    slots = round(sum(durations.values()) / max(map(s.priority, parents)))
    bound = s.lower_bound(slots)
    ours = simulate(s, slots, durations)
    assert ours.statuses and set(ours.statuses.values()) == {Status.BUILT}
    assert ours.makespan / bound <= 1.05
    fifo = simulate(Schedule(parents, parents, durations, priority="fifo"), slots, durations)
    assert fifo.makespan > ours.makespan


# -- slots that break (a builder pool's engine stops answering) -------------------


def test_requeue_puts_a_running_node_back_to_ready():
    s = Schedule(DIAMOND, DIAMOND)
    assert s.pop_ready() == "base"
    s.requeue("base")
    assert s.status("base") == "pending" and s.ready() == ["base"] and not s.done()
    assert s.pop_ready() == "base"
    assert s.finish("base", ok=True) == []
    assert s.ready() == ["left", "right"]
    # started out of order: its stale heap entry is reused, never doubled
    s.start("right")
    s.requeue("right")
    assert s.ready() == ["left", "right"]
    assert s.pop_ready() == "left" and s.pop_ready() == "right" and s.pop_ready() is None
    s.finish("left", ok=True)
    s.finish("right", ok=True)
    assert s.pop_ready() == "top"
    s.finish("top", ok=True)
    assert s.done()


def test_requeue_only_a_running_node_of_a_live_schedule():
    s = Schedule(DIAMOND, DIAMOND)
    with pytest.raises(ValueError, match="not running"):
        s.requeue("base")
    s.pop_ready()
    s.cancel()
    with pytest.raises(ValueError, match="cancelled"):
        s.requeue("base")


class BreakingSlots(Slots):
    """Slots whose jobs may report them broken; remembers what it was told."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.lost_slots: list[int] = []

    def lost(self, slot: int) -> None:
        self.lost_slots.append(slot)
        super().lost(slot)


def test_a_job_that_loses_its_slot_runs_again_and_its_children_wait():
    tries: dict[str, int] = {}
    events: list[SchedulerEvent] = []

    def run(name: str, slot: int) -> bool:
        tries[name] = tries.get(name, 0) + 1
        if name == "left" and tries[name] < 3:  # twice: retried at most twice
            raise RetryElsewhere("engine x stopped answering")
        return True

    pool = BreakingSlots(2)
    s = Schedule(DIAMOND, DIAMOND)
    run_threaded(s, pool, run, threading.Event(), events.append)
    assert set(s.statuses().values()) == {"built"}
    assert tries == {"base": 1, "left": 3, "right": 1, "top": 1}
    assert len(pool.lost_slots) == 2
    requeued = [e for e in events if e.kind == "requeued"]
    assert [e.name for e in requeued] == ["left", "left"]
    assert requeued[0].error == "engine x stopped answering" and requeued[0].status == "pending"
    kinds = [(e.kind, e.name) for e in events]
    assert kinds.index(("finished", "left")) < kinds.index(("started", "top"))
    assert not any(e.kind == "finished" and e.status != "built" for e in events)


def test_a_job_that_keeps_losing_its_slot_fails_after_two_retries():
    def run(name: str, slot: int) -> bool:
        if name == "left":
            raise RetryElsewhere("engine x stopped answering")
        return True

    s = Schedule(DIAMOND, DIAMOND)
    run_threaded(s, BreakingSlots(2), run, threading.Event())
    assert s.statuses() == {"base": "built", "left": "failed", "right": "built",
                            "top": "blocked"}  # fmt: skip
    assert s.error("left") == "engine x stopped answering (gave up after 3 attempts)"


def test_a_lost_slot_after_stop_is_cancelled_not_retried():
    stop = threading.Event()
    tries: list[str] = []

    def run(name: str, slot: int) -> bool:
        tries.append(name)
        stop.set()
        raise RetryElsewhere("engine x stopped answering")

    s = Schedule(DIAMOND, DIAMOND)
    run_threaded(s, BreakingSlots(1), run, stop)
    assert tries == ["base"]
    assert set(s.statuses().values()) == {"cancelled"}


class NoSlots(Slots):
    """Every slot gone: acquire raises NoSlotsLeft."""

    def acquire(self, name: str) -> int | None:
        raise NoSlotsLeft("no engine is left in the pool (x stopped answering)")


def test_a_pool_with_no_slot_left_fails_what_would_start():
    events: list[SchedulerEvent] = []
    s = Schedule(FAMILY, FAMILY)
    run_threaded(s, NoSlots(1), lambda name, slot: True, threading.Event(), events.append)
    assert s.done()
    statuses = s.statuses()
    assert {n for n, st in statuses.items() if st == "failed"} == {"base", "c"}
    assert {st for n, st in statuses.items() if n not in ("base", "c")} == {"blocked"}
    assert s.error("c") == "no engine is left in the pool (x stopped answering)"
    assert not [e for e in events if e.kind == "started"]


def test_a_schedule_in_topological_order_does_not_import_networkx() -> None:
    # a build hands the scheduler its images in the cached graph's order: sorting them
    # again would cost every build networkx's import (0.1-0.3 s)
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from stackbuild.scheduler import Schedule\n"
        "s = Schedule({'base': [], 'app': ['base'], 'web': ['base']}, ['base', 'app', 'web'],"
        " weights={'app': 5.0})\n"
        "assert s.peek() == 'base', s.peek()\n"
        "assert 'networkx' not in sys.modules, 'networkx imported'\n"
        "s = Schedule({'app': ['base'], 'base': []}, ['app', 'base'])\n"  # not in order
        "assert s.peek() == 'base' and 'networkx' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- test-failed: built, but a check failed ----------------------------------------------


def test_a_test_failed_node_blocks_its_descendants_like_a_failed_build():
    s = Schedule(FAMILY, FAMILY)
    for name in ("base", "a"):
        assert s.pop_ready() == name or s.start(name) is None  # base first, then a
        if s.status(name) is not Status.RUNNING:
            s.start(name)
        s.finish(name, ok=name == "base", failed_as=Status.TEST_FAILED)
    assert s.status("a") == "test-failed"
    assert {n: s.status(n) for n in ("a1", "a2", "d")} == dict.fromkeys(("a1", "a2", "d"),
                                                                         "blocked")  # fmt: skip
    assert s.blocked_by("d") == "a"
    assert s.status("b") == "pending"


def test_a_job_returning_a_status_is_finished_as_that_status():
    outcome = {"a": Status.TEST_FAILED, "b": Status.TESTED}
    events: list[SchedulerEvent] = []

    def job(name: str):
        return outcome.get(name, True)

    run_threaded(Schedule(FAMILY, FAMILY), 2, job, threading.Event(), events.append)
    finished = {e.name: e.status for e in events if e.kind != "started"}
    assert finished["a"] == "test-failed"
    assert finished["b"] == "built"  # tested: a success, its children go on
    assert finished["b1"] == "built"
    assert {finished[n] for n in ("a1", "a2", "d")} == {"blocked"}
