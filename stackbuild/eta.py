"""How long a build run has left: the critical path of what remains.

Pure: a snapshot of the scheduler's numbers taken when the run starts (each to-do
image's weight, its last build duration, and its critical-path priority, the
heaviest to-do path from it down to a leaf), then, as often as a live view
redraws, the time left given which images have settled and how long the running
ones have been at it. Nothing here walks the graph again: the scheduler's
longest paths (``graph.longest_path_lengths``, networkx's order) already hold
what lies below each image, and every to-do image below an unfinished one is
unfinished too, so those paths stay true for the whole run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from stackbuild.scheduler import Schedule


@dataclass(frozen=True)
class TimeLeft:
    """``seconds``: the estimate; ``unmeasured``: unfinished images with no past build,
    counted as the scheduler counts them (one second each), so with any the estimate
    is a lower bound; ``known``: whether any unfinished image has a past build at all."""

    seconds: float
    unmeasured: int
    known: bool


@dataclass(frozen=True)
class Estimate:
    """The run's to-do images: ``own`` each one's expected build seconds, ``below`` the
    heaviest to-do path strictly below it, ``measured`` those whose ``own`` is a past
    build's duration; ``slots`` how many build at once."""

    own: Mapping[str, float]
    below: Mapping[str, float]
    measured: frozenset[str]
    slots: int

    @classmethod
    def of(cls, schedule: Schedule, slots: int, durations: Mapping[str, float]) -> Estimate:
        """From a fresh ``schedule``'s weights and priorities; ``durations``: the past
        builds' times the schedule was weighted with."""
        own = {name: schedule.weight(name) for name in schedule.statuses()}
        below = {name: schedule.priority(name) - weight for name, weight in own.items()}
        return cls(own, below, frozenset(own).intersection(durations), max(slots, 1))

    def left(self, settled: Collection[str], running: Mapping[str, float]) -> TimeLeft:
        """The time left once ``settled`` images are done (built, failed, blocked or
        cancelled: none of them runs again) while ``running`` ones (image -> seconds
        since they started) go on: the longest of the remaining critical path (over every
        unfinished image: what is left of its own time plus the heaviest path below it)
        and the remaining work shared by the slots."""
        critical = work = 0.0
        unmeasured = 0
        known = False
        for name, own in self.own.items():
            if name in settled:
                continue
            rest = max(own - running.get(name, 0.0), 0.0)  # an overrun build: any moment now
            critical = max(critical, rest + self.below[name])
            work += rest
            if name in self.measured:
                known = True
            else:
                unmeasured += 1
        return TimeLeft(max(critical, work / self.slots), unmeasured, known)
