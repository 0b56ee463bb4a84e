"""What the commands share: the context object, the options several take, warnings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stackbuild.analyze import read_dockerfiles
from stackbuild.graph import StackGraph, build_graph
from stackbuild.manifest import MAX_SLOTS, load_stack

if TYPE_CHECKING:
    from stackbuild.since import Changes


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
    "--backend", "backend_kind", type=click.Choice(["auto", "buildkit", "docker"]),
    default=None,
    help="Build with auto: BuildKit where the engine and a BuildKit-capable docker client "
         "answer, else the classic builder (with a warning saying why); buildkit; or docker: "
         "the docker SDK's classic builder. [default: stack.yaml's `backend:`, else auto]",
)
NO_WAIT = click.option(
    "--no-wait", is_flag=True,
    help="Refuse, instead of waiting, when another run is building this stack.",
)
PUSH = click.option(
    "--push", is_flag=True,
    help="Push each built image's fingerprint tag to the stack's registry (and up-to-date "
    "images' the registry lacks), then move the release tags of those that passed "
    "(--promote).",
)
PROMOTE = click.option(
    "--promote", type=click.Choice(["subtree", "all"]), default=None,
    help="With --push, when release tags (latest, the manifest's tags) move onto what was "
    "built: subtree, an image whose ancestors all passed too; all, only when every image "
    "passed. Fingerprint tags are pushed either way. [default: subtree]",
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
SINCE = click.option(
    "--since", metavar="REF", default=None,
    help="Only the images whose inputs changed in `git diff REF...HEAD` (commits, not "
    "uncommitted changes), and everything built on them.",
)


def select_since(
    stack_file: Path, ref: str, targets: tuple[str, ...], with_descendants: bool
) -> tuple[tuple[str, ...], Changes]:
    """``--since REF``: the changed images among the selection the targets make (all
    images without targets), as targets, and why each changed; () when none did."""
    from stackbuild.analyze import load_graph, read_dockerfile_bytes
    from stackbuild.since import changes_since, since_targets
    from stackbuild.state import StateDir

    stack = load_stack(stack_file)
    graph = load_graph(stack, read_dockerfile_bytes(stack), StateDir(stack.root))
    allowed = graph.select(targets, with_descendants) if targets else None
    changes = changes_since(stack, ref, graph)
    return since_targets(changes, allowed), changes


def read_graph(ctx: Context) -> StackGraph:
    """The stack's graph, for the commands that show or lock it."""
    stack = load_stack(ctx.stack_file)
    _raw, parsed = read_dockerfiles(stack)
    return build_graph(stack, parsed)


def warn(message: str) -> None:
    click.echo(message, err=True)
