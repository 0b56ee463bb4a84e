"""What the commands share: the context object, the options several take, warnings."""

from __future__ import annotations

from pathlib import Path

import click

from stackbuild.analyze import read_dockerfiles
from stackbuild.graph import StackGraph, build_graph
from stackbuild.manifest import MAX_SLOTS, load_stack


class Context:
    def __init__(self, stack_file: Path) -> None:
        self.stack_file = stack_file


pass_context = click.make_pass_decorator(Context)

TARGETS = click.argument("targets", nargs=-1, metavar="[IMAGE]...")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
WITH_DESCENDANTS = click.option(
    "--with-descendants",
    is_flag=True,
    help="Also select every image built on the named images.",
)
MAX_JOBS = MAX_SLOTS  # the most builds (or pushes) at once
JOBS = click.option(
    "-j", "--jobs", type=click.IntRange(min=1, max=MAX_JOBS), default=None,
    help="Builds at once. [default: CPU count]",
)
KEEP_GOING = click.option(
    "--keep-going/--fail-fast", default=True, show_default=True,
    help="After a failure, go on with independent images, or start nothing new.",
)
BACKEND = click.option(
    "--backend", "backend_kind", type=click.Choice(["docker", "buildkit"]), default=None,
    help="Build with the docker SDK (classic builder) or BuildKit. [default: stack.yaml's]",
)
NO_WAIT = click.option(
    "--no-wait", is_flag=True,
    help="Refuse, instead of waiting, when another run is building this stack.",
)
PUSH = click.option(
    "--push", is_flag=True,
    help="Push every tag of each built image to the stack's registry (and up-to-date images "
    "the registry lacks).",
)
PUSH_JOBS = click.option(
    "--push-jobs", type=click.IntRange(min=1, max=MAX_JOBS), default=2, show_default=True,
    help="Pushes at once (they run alongside the builds).",
)
NO_PROVENANCE = click.option(
    "--no-provenance", is_flag=True,
    help="Write no provenance or SBOM (.stackbuild/provenance, .stackbuild/sbom) and attach "
    "none to pushed images.",
)
BUILDER = click.option(
    "--builder", "builder_urls", multiple=True, metavar="URL[=SLOTS]",
    help="Build on this Docker engine (repeat for a pool; replaces stack.yaml's builders). "
    "SLOTS defaults to -j.",
)


def read_graph(ctx: Context) -> StackGraph:
    """The stack's graph, for the commands that show or lock it."""
    stack = load_stack(ctx.stack_file)
    _raw, parsed = read_dockerfiles(stack)
    return build_graph(stack, parsed)


def warn(message: str) -> None:
    click.echo(message, err=True)
