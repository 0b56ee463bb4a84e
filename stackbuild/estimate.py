"""Estimated build durations for images that have never been built here.

The scheduler runs the longest remaining path first, weighted by each image's
last build duration. A first build (a fresh checkout, a new CI runner) knows
none, and with every image weighing the same the long ones start late. This
module guesses a duration from what the Dockerfile asks the builder to do:

- every build pays a fixed part (``FROM``, the commit, the tag);
- a ``RUN`` weighs most, and more the more shell commands it chains
  (``apt-get update && apt-get install ... && make``);
- ``COPY`` and ``ADD`` less (``ADD`` of a URL downloads), every other
  instruction (``ENV``, ``LABEL``, ...) little;
- the context size (upload and copy), per MiB.

Those are work units, not seconds. ``estimated_weights`` calibrates them
against the images of the same stack whose durations are known (one factor:
their seconds over their units), so an estimate sits on the same scale as the
real durations it is ranked against; with none known the units are used as
they are (only their order matters then). Pure: the caller reads the
Dockerfiles and sizes the contexts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stackbuild.dockerfile import Instruction, instructions
from stackbuild.errors import DockerfileError

BUILD_UNITS = 1.0  # the fixed part of every build: FROM, commit, tag
RUN_UNITS = 2.0  # one RUN: a container started and committed
COMMAND_UNITS = 1.0  # each further shell command chained in a RUN
COPY_UNITS = 0.5  # COPY / ADD of context files
URL_UNITS = 1.0  # ADD of a URL: a download on top
OTHER_UNITS = 0.1  # ENV, LABEL, WORKDIR, ...: a commit of metadata
MIB_UNITS = 0.25  # per MiB of build context: tar, upload, copy

# what separates one shell command from the next in a RUN line
_COMMAND_SEPARATOR = re.compile(r"&&|\|\||;|\||\n")


@dataclass(frozen=True)
class ImageShape:
    """What an estimate looks at: the Dockerfile's text and the context's size."""

    dockerfile: str
    context_bytes: int = 0


def work_units(shape: ImageShape) -> float:
    """The work ``shape`` asks for, in units (see the module's docstring)."""
    try:
        steps = instructions(shape.dockerfile)
    except DockerfileError:  # unreadable here: the build reports it; weigh one RUN
        steps = [Instruction("run", "", 1, 0)]
    units = BUILD_UNITS + MIB_UNITS * max(shape.context_bytes, 0) / 2**20
    for step in steps:
        keyword, arguments = step.keyword, step.arguments
        if keyword == "run":
            commands = [c for c in _COMMAND_SEPARATOR.split(_command(arguments)) if c.strip()]
            units += RUN_UNITS + COMMAND_UNITS * max(len(commands) - 1, 0)
        elif keyword in ("copy", "add"):
            units += COPY_UNITS
            if keyword == "add" and "://" in arguments:
                units += URL_UNITS
        elif keyword != "from":
            units += OTHER_UNITS
    return units


def estimated_weights(
    shapes: Mapping[str, ImageShape], known: Mapping[str, float]
) -> dict[str, float]:
    """``known`` durations, plus an estimate for every image of ``shapes`` without one.

    The estimate is the image's work units times the stack's seconds per unit:
    the known durations over the units of those same images (those that have a
    shape), or 1 when none is known.
    """
    units = {name: work_units(shape) for name, shape in shapes.items() if name not in known}
    calibration = [(known[name], work_units(shapes[name])) for name in known if name in shapes]
    seconds = sum(d for d, _ in calibration)
    per_unit = seconds / sum(u for _, u in calibration) if calibration and seconds > 0 else 1.0
    weights = {name: float(duration) for name, duration in known.items()}
    weights.update({name: u * per_unit for name, u in units.items()})
    return weights


def _command(arguments: str) -> str:
    """A RUN's shell command without its flags (``--mount=...``, ``--network=...``)."""
    rest = arguments.lstrip()
    while rest.startswith("--"):
        _flag, _, rest = rest.partition(" ")
        rest = rest.lstrip()
    return rest
