"""``stackbuild plan``: what a build would do for each image, and why."""

from __future__ import annotations

import json
from typing import Any

import click

from stackbuild import render
from stackbuild.analyze import analyze
from stackbuild.cli import commands
from stackbuild.cli.common import (
    JSON,
    SINCE,
    TARGETS,
    WITH_DESCENDANTS,
    Context,
    pass_context,
    select_since,
    warn,
)
from stackbuild.errors import UsageError
from stackbuild.manifest import cyclic_gc_paused, load_stack
from stackbuild.plan import Plan


@click.command()
@TARGETS
@WITH_DESCENDANTS
@JSON
@click.option("--offline", is_flag=True, help="Ask no engine; every image is planned as build.")
@click.option("--force", multiple=True, metavar="IMAGE", help="Plan IMAGE as build regardless.")
@click.option(
    "--refresh", is_flag=True,
    help="Plan a refresh: re-resolve every upstream digest first (pulls and writes nothing).",
)
@click.option(
    "--push", is_flag=True,
    help="Plan what --push would do: up-to-date images whose release tags in the registry "
    "do not point at their fingerprint are planned as promote.",
)
@SINCE
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "matrix"]), default=None,
    help="text (the default), json (as --json), or matrix: the images to build as one "
    "GitHub strategy.matrix per level, on one line.",
)
@pass_context
@cyclic_gc_paused()
def plan(
    ctx: Context,
    targets: tuple[str, ...],
    with_descendants: bool,
    as_json: bool,
    offline: bool,
    force: tuple[str, ...],
    refresh: bool,
    push: bool,
    since: str | None,
    output_format: str | None,
) -> None:
    """Say what a build would do for each image, and why. Builds nothing.

    With builders: in stack.yaml, an image on any of their engines is up to date.

    Exit code 0; 1 a registry refused the credentials; 2 for a bad manifest;
    3 when the engine (or, with --refresh, a registry) is unreachable
    (use --offline to plan without one); 2 also for a --since REF git does not know.
    """
    output_format = output_format or ("json" if as_json else "text")
    as_json = output_format == "json"
    changes = None
    if since:  # the changed images become the targets
        targets, changes = select_since(ctx.stack_file, since, targets, with_descendants)
        with_descendants = False
        if not targets:
            _show(Plan(()), output_format, f"nothing changed since {since}: no image to plan")
            return

    if force:  # as build refuses them, before any engine is asked

        unknown = [name for name in force if name not in load_stack(ctx.stack_file).images]
        if unknown:
            raise UsageError(f"--force names unknown image(s): {', '.join(unknown)}")
    if push and offline:
        raise UsageError("plan --push asks the registry about release tags; drop --offline")
    fresh: Any = None  # plan_online's Refresh, when it made one
    if offline:

        if refresh:
            raise UsageError("plan --refresh asks the registries for digests; drop --offline")
        analysis = analyze(ctx.stack_file, targets, with_descendants)
        result = analysis.plan(None, force)
    else:
        # the engine side, imported only when a plan asks the engines (plan_online)
        engine_plan = commands.load("plan_online", "engine_plan")
        analysis, result, fresh = engine_plan(
            ctx.stack_file, targets, with_descendants, force, refresh, push
        )
    if changes:
        result = changes.annotate(result)
    if output_format == "matrix":
        _show(result, output_format, "")
    elif as_json and fresh:
        click.echo(json.dumps({**result.to_json(), "moved": fresh.moved_json()}, indent=2))
    elif as_json:
        click.echo(render.plan_json(result))
    else:
        if fresh:
            click.echo(fresh.header())
        click.echo(render.plan_text(result, analysis.stack.display_path))
        warnings = render.plan_warnings(result)
        if warnings:  # on stderr: stdout stays the table
            warn(warnings)


def _show(result: Plan, output_format: str, text: str) -> None:
    if output_format == "matrix":
        from stackbuild import cigen  # networkx: only for this format

        big = [len(level) for level in cigen.levels(result) if len(level) > cigen.GITHUB_LIMIT]
        document = cigen.matrix_json(result)
        if big:  # on stderr: stdout is the JSON for $GITHUB_OUTPUT
            levels = json.loads(document)["levels"]
            warn(f"note: a GitHub matrix holds at most {cigen.GITHUB_LIMIT} jobs: a level of "
                 f"{' and '.join(map(str, big))} images is split into consecutive entries, "
                 f"so there are {levels} levels to run, one after another (a job for each)")
        click.echo(document)
    elif output_format == "json":
        click.echo(render.plan_json(result))
    else:
        click.echo(text)
