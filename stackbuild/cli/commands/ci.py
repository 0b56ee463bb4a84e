"""``stackbuild ci github`` and ``stackbuild ci gitlab``: the plan as the CI's own DAG.

Plans as ``plan`` does, but an image counts as up to date only when the stack's
registry has its fingerprint (a fresh CI runner sees nothing else), then writes the
jobs (``stackbuild.cigen``): one per image to build, or per group under ``--max-jobs``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from stackbuild import cigen
from stackbuild.analyze import Analysis, analyze
from stackbuild.cli.common import (
    SINCE,
    TARGETS,
    WITH_DESCENDANTS,
    Context,
    pass_context,
    select_since,
    warn,
)
from stackbuild.errors import ManifestError
from stackbuild.files import atomic_write
from stackbuild.manifest import Stack, load_stack
from stackbuild.plan import Plan


def _options(command: Callable) -> Callable:
    """The options both CI commands take (applied bottom-up, shown top-down)."""
    for option in reversed([
        TARGETS,
        WITH_DESCENDANTS,
        SINCE,
        click.option(
            "--max-jobs", type=click.IntRange(min=1), default=None, metavar="N",
            help="At most N jobs: images grouped by chains, then by level. [default: "
            f"github: {cigen.GITHUB_LIMIT}, the most one workflow run may have; gitlab: none]",
        ),
        click.option(
            "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
            help="Write the pipeline to this file. [default: stdout]",
        ),
        click.option(
            "--offline", is_flag=True,
            help="Ask no registry: a job for every image (for a pipeline you commit; each "
            "job still skips what the registry holds when it runs).",
        ),
        click.option(
            "--install", default="", metavar="COMMAND",
            help="How a job installs stackbuild. [default: pip, this version]",
        ),
        click.option(
            "--build-option", "build_args", multiple=True, metavar="OPTION",
            help="Add OPTION to each job's `stackbuild build` (repeat; e.g. --backend=buildkit).",
        ),
    ]):
        command = option(command)
    return command


@click.group()
def ci() -> None:
    """Write a CI pipeline that runs the plan as its DAG: a job per image to build.

    Each job runs `stackbuild build IMAGE... --push`; its `needs:` are the jobs of
    its in-stack parents, which it pulls from the registry by fingerprint. Images
    the registry already holds get no job. Needs `registry:` in stack.yaml.

    \b
    Exit codes: 0 written, 2 bad manifest, usage or --since REF, 3 engine unreachable.
    """


@ci.command()
@_options
@click.option("--runs-on", default=cigen.Options.runs_on, show_default=True,
              help="The runner label of every job.")  # fmt: skip
@pass_context
def github(ctx: Context, runs_on: str, **kwargs: Any) -> int:
    """A GitHub Actions workflow (-o .github/workflows/stack.yml)."""
    if kwargs["max_jobs"] is None:  # more jobs than a run may have: GitHub rejects the run
        kwargs["max_jobs"] = cigen.GITHUB_LIMIT
    return _generate(ctx, "github", cigen.github_workflow, runs_on=runs_on, **kwargs)


@ci.command()
@_options
@click.option("--image", default=cigen.Options.image, show_default=True,
              help="The jobs' image (a docker CLI; docker:<version>-dind beside).")  # fmt: skip
@pass_context
def gitlab(ctx: Context, image: str, **kwargs: Any) -> int:
    """A GitLab CI child pipeline (trigger it with include: artifact:)."""
    return _generate(ctx, "gitlab", cigen.gitlab_pipeline, image=image, **kwargs)


def _as_in_checkout(stack_file: Path) -> str:
    """The -f a job passes: relative, as the job runs at the top of its own checkout
    (an absolute path of this machine means nothing on a runner)."""
    if stack_file.is_absolute():
        with contextlib.suppress(ValueError):
            return stack_file.relative_to(Path.cwd()).as_posix()
    return stack_file.as_posix()


def _needs_registry(stack: Stack) -> None:
    if not stack.registry:
        where = stack.locations.get("images") or stack.locations.get("version")
        raise ManifestError(
            "`stackbuild ci` needs a registry: its jobs hand images to each other through "
            "it; add `registry: HOST/NAMESPACE` (e.g. registry: ghcr.io/acme) at the top level",
            stack.display_path, where.line if where else 1, where.col if where else 1,
        )


def ci_plan(
    stack: Stack, targets: tuple[str, ...], with_descendants: bool, offline: bool
) -> tuple[Analysis, Plan]:
    """The plan of a fresh runner: up to date is only what the registry holds."""
    if offline:
        analysis = analyze(stack, targets, with_descendants)
        return analysis, analysis.plan(None)
    from stackbuild.cli.engines import open_engine
    from stackbuild.run.existing import registry_existing
    from stackbuild.run.upstream import pinned_analysis

    backend = open_engine()  # the registry is asked through it, with its credentials
    analysis = pinned_analysis(stack, targets, with_descendants, backend, write=False, warn=warn)
    remote = registry_existing(analysis, backend, analysis.selected, warn)
    return analysis, analysis.plan({name: "registry" for name in remote})


def _generate(
    ctx: Context,
    kind: str,
    pipeline: Callable[[list[cigen.Job], cigen.Options], dict],
    *,
    targets: tuple[str, ...],
    with_descendants: bool,
    since: str | None,
    max_jobs: int | None,
    output: Path | None,
    offline: bool,
    install: str,
    build_args: tuple[str, ...],
    **settings: str,
) -> int:
    stack = load_stack(ctx.stack_file)
    _needs_registry(stack)
    plan = Plan(())
    if since:
        targets, _changes = select_since(ctx.stack_file, since, targets, with_descendants)
        with_descendants = False
    if targets or not since:
        _analysis, plan = ci_plan(stack, targets, with_descendants, offline)
    if kind == "gitlab":  # a job with more needs than GitLab allows: it refuses the pipeline
        jobs, over = cigen.gitlab_jobs(plan, max_jobs)
        if over is not None:
            warn(f"note: job {over.name} would need {len(over.needs)} jobs, more than the "
                 f"{cigen.GITLAB_NEEDS_LIMIT} GitLab allows one job: the images are merged "
                 f"into {len(jobs)} jobs so that none does (a lower --max-jobs merges more)")
    else:
        jobs = cigen.plan_jobs(plan, max_jobs)
    options = cigen.Options(
        stack_file=_as_in_checkout(ctx.stack_file), registry=stack.registry or "", install=install,
        build_args=build_args, command=f"stackbuild ci {kind}", **settings,
    )
    text = cigen.to_yaml(pipeline(jobs, options), options.command)
    images = sum(len(job.images) for job in jobs)
    warn(f"{len(jobs)} job(s) for {images} image(s) to build; "
         f"{len(plan.steps) - images} up to date")  # fmt: skip
    if output is None:
        click.echo(text, nl=False)
        return 0
    atomic_write(output, text.encode())  # a StateWriteError names the file
    return 0
