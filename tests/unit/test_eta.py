"""The time left of a run: the critical path of what remains, shared by the slots."""

from __future__ import annotations

from stackbuild.estimate import ImageShape, estimated_weights
from stackbuild.eta import Estimate, TimeLeft
from stackbuild.scheduler import Schedule

CHAIN = {"a": [], "b": ["a"], "c": ["b"]}  # a -> b -> c
WIDE = {"a": [], "b": [], "c": []}  # three side by side
TIMES = {"a": 10.0, "b": 10.0, "c": 10.0}


def estimate(parents: dict[str, list[str]], slots: int = 4, durations=TIMES) -> Estimate:
    return Estimate.of(Schedule(parents, list(parents), weights=durations), slots, durations)


def test_a_chain_takes_the_sum_of_its_builds_and_a_wide_stack_its_longest() -> None:
    assert estimate(CHAIN).left(set(), {}).seconds == 30.0
    assert estimate(WIDE).left(set(), {}).seconds == 10.0


def test_a_wide_stack_on_fewer_slots_than_images_waits_for_a_slot() -> None:
    assert estimate(WIDE, slots=1).left(set(), {}).seconds == 30.0
    assert estimate(WIDE, slots=2).left(set(), {}).seconds == 15.0  # 30 s of work on 2


def test_the_critical_path_is_the_heaviest_branch_not_the_most_images() -> None:
    #   a(1) -> b(1) -> c(1)     d(20): d alone is the critical path
    parents = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    durations = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 20.0}
    assert estimate(parents, durations=durations).left(set(), {}).seconds == 20.0


def test_progress_shortens_the_estimate() -> None:
    chain = estimate(CHAIN)
    assert chain.left({"a"}, {}).seconds == 20.0  # a built
    assert chain.left({"a"}, {"b": 4.0}).seconds == 16.0  # and b 4 s into its 10
    assert chain.left({"a"}, {"b": 25.0}).seconds == 10.0  # b overran: c is what is left
    assert chain.left({"a", "b", "c"}, {}).seconds == 0.0
    wide = estimate(WIDE)
    assert wide.left({"a", "b"}, {"c": 7.0}).seconds == 3.0


def test_a_failure_takes_what_it_blocked_out_of_the_estimate() -> None:
    # b failed, c is blocked: both settled, nothing is left however long they would take
    assert estimate(CHAIN).left({"a", "b", "c"}, {}).seconds == 0.0
    parents = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    durations = {**TIMES, "d": 10.0}
    assert estimate(parents, durations=durations).left({"a", "b", "c"}, {"d": 2.0}).seconds == 8.0


def test_images_never_built_weigh_their_estimate_and_none_built_make_it_unknown() -> None:
    # as build schedules: Analysis.weights, a known duration or an estimate in its seconds
    shapes = {name: ImageShape(f"FROM scratch\nRUN make {name}\n") for name in CHAIN}
    known = {"a": 10.0, "b": 10.0}
    weights = estimated_weights(shapes, known)
    assert weights["c"] == 10.0  # the same work as a's and b's: their seconds
    chain = Estimate.of(Schedule(CHAIN, list(CHAIN), weights=weights), 4, known)
    left = chain.left(set(), {})
    assert (left.unmeasured, left.known, left.seconds) == (1, True, 30.0)
    # a and b done: c alone is left, still an estimate in seconds, not "unknown"
    assert chain.left({"a", "b"}, {"c": 4.0}) == TimeLeft(6.0, 1, True)
    # nothing ever built: the estimates are work units, no seconds
    units = estimated_weights(shapes, {})
    none = Estimate.of(Schedule(CHAIN, list(CHAIN), weights=units), 4, {}).left(set(), {})
    assert (none.unmeasured, none.known) == (3, False)
