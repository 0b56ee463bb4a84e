"""How long a build run has left: the critical path of what remains.

Pure: a snapshot of the scheduler's numbers taken when the run starts (each to-do
image's weight: its last build duration, else the estimate ``Analysis.weights``
gives the scheduler (``stackbuild.estimate``); and its critical-path priority, the
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
    weighed as the scheduler weighs them (``Analysis.weights``: a guess from the
    Dockerfile and context, ``stackbuild.estimate``, in the seconds of the measured
    images); ``known``: whether ``seconds`` are seconds: some image of the run has a
    past build, measured or calibrating the guesses (with none, the guesses are work
    units, only their order means something)."""

    seconds: float
    unmeasured: int
    known: bool


@dataclass(frozen=True)
class Estimate:
    """The run's to-do images: ``own`` each one's expected build seconds, ``below`` the
    heaviest to-do path strictly below it, ``measured`` those whose ``own`` is a past
    build's duration; ``slots`` how many build at once; ``calibrated`` whether some
    duration was known (the others' estimates are then in seconds too)."""

    own: Mapping[str, float]
    below: Mapping[str, float]
    measured: frozenset[str]
    slots: int
    calibrated: bool

    @classmethod
    def of(cls, schedule: Schedule, slots: int, durations: Mapping[str, float]) -> Estimate:
        """From a fresh ``schedule``'s weights and priorities; ``durations``: the past
        builds' times the schedule was weighted with (``Analysis.weights``: those, and
        for the other images estimates calibrated on them)."""
        own = {name: schedule.weight(name) for name in schedule.statuses()}
        below = {name: schedule.priority(name) - weight for name, weight in own.items()}
        calibrated = any(seconds > 0 for seconds in durations.values())
        return cls(own, below, frozenset(own).intersection(durations), max(slots, 1), calibrated)

    def left(self, settled: Collection[str], running: Mapping[str, float]) -> TimeLeft:
        """The time left once ``settled`` images are done (built, failed, blocked or
        cancelled: none of them runs again) while ``running`` ones (image -> seconds
        since they started) go on: the longest of the remaining critical path (over every
        unfinished image: what is left of its own time plus the heaviest path below it)
        and the remaining work shared by the slots."""
        critical = work = 0.0
        unmeasured = 0
        for name, own in self.own.items():
            if name in settled:
                continue
            rest = max(own - running.get(name, 0.0), 0.0)  # an overrun build: any moment now
            critical = max(critical, rest + self.below[name])
            work += rest
            if name not in self.measured:
                unmeasured += 1
        # once the measured images are done, the rest's estimates are still in seconds
        return TimeLeft(max(critical, work / self.slots), unmeasured, self.calibrated)
