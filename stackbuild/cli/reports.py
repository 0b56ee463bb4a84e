"""Where a run's CI reports go: ``--junit FILE``, ``$GITHUB_STEP_SUMMARY``, annotations.

The reports are rendered by ``stackbuild.ci_reports``; this module reads what they
need (the failed builds' logs, the Dockerfiles) and writes them. A report that cannot be
written is a warning: the build's own outcome (and exit code) stands.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click

from stackbuild.ci_reports import failed_step, github_annotations, junit_xml, markdown_summary
from stackbuild.errors import StateWriteError
from stackbuild.files import atomic_write
from stackbuild.logs import last_build
from stackbuild.manifest import Stack
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import Status

JUNIT = click.option(
    "--junit", "junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
    metavar="FILE", help="Write a JUnit XML report: one test case per image.",
)


def started_at() -> str:
    """Now, as JUnit's ``timestamp`` wants it (ISO 8601, UTC, no zone)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def write_reports(
    stack: Stack,
    dockerfiles: Mapping[str, bytes],
    results: Sequence[ImageResult],
    junit: Path | None,
    started: str,
    engines: bool = False,
    environ: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = click.echo,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Write the JUnit file (``junit``), append the job summary (``$GITHUB_STEP_SUMMARY``)
    and print the annotations (``GITHUB_ACTIONS=true``) of one run. ``dockerfiles``:
    the text of each built image's Dockerfile (``Analysis.dockerfiles``)."""
    env = os.environ if environ is None else environ
    warn = warn or (lambda message: click.echo(message, err=True))
    base = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    files = {name: _shown(stack.images[name].dockerfile, base) for name in stack.images}
    if junit is not None:
        document = junit_xml(results, stack.path.parent.name or "stack", files, started)
        try:
            atomic_write(junit, document.encode())
        except StateWriteError as error:
            warn(f"warning: --junit: {error}")
    summary_file = env.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        text = markdown_summary(results, f"stackbuild: {stack.display_path}", engines)
        try:
            with open(summary_file, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            warn(f"warning: cannot append the summary to $GITHUB_STEP_SUMMARY "
                 f"({summary_file}): {error.strerror or error}")  # fmt: skip
    if env.get("GITHUB_ACTIONS") == "true":
        steps = {}
        for r in results:
            if r.status == Status.FAILED and r.log:
                text = dockerfiles.get(r.image, b"").decode("utf-8", "replace")
                steps[r.image] = failed_step(last_build(Path(r.log)), text)
        lines = {name: spec.location.line for name, spec in stack.images.items()}
        for r in results:  # a test-failed image: the line of its first failed check
            spec = stack.images.get(r.image)
            if r.status != Status.TEST_FAILED or spec is None:
                continue
            failed = next((c.name for c in r.checks if not c.passed), None)
            check = next((c for c in spec.tests if c.name == failed), None)
            if check is not None:
                lines[r.image] = check.location.line
        for line in github_annotations(results, files, steps, _shown(stack.path, base), lines):
            echo(line)


def _shown(path: Path, base: Path) -> str:
    """``path`` as an annotation names it: relative to the workspace (the repository)."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return os.path.relpath(path, base) if path.is_absolute() else path.as_posix()
