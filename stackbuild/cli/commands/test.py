"""``stackbuild test``: run the checks (``tests:``) of images already built."""

from __future__ import annotations

import json
import os
import threading

import click

from stackbuild.cli.commands.build import _install_stop_handlers
from stackbuild.cli.common import JSON, MAX_JOBS, NO_WAIT, TARGETS, Context, pass_context
from stackbuild.cli.engines import open_engine
from stackbuild.errors import EXIT_BUILD_FAILED, EXIT_INTERRUPTED, EXIT_OK
from stackbuild.manifest import load_stack
from stackbuild.plan import short
from stackbuild.run.checks import check_images
from stackbuild.run.existing import find_existing
from stackbuild.run.upstream import pinned_analysis
from stackbuild.state import StateDir
from stackbuild.ui import make_reporter, summary

JOBS = click.option(
    "-j", "--jobs", type=click.IntRange(min=1, max=MAX_JOBS), default=None,
    help="Images tested at once. [default: CPU count]",
)  # fmt: skip


@click.command(name="test")
@TARGETS
@JSON
@JOBS
@NO_WAIT
@pass_context
def test_command(
    ctx: Context, targets: tuple[str, ...], as_json: bool, jobs: int | None, no_wait: bool
) -> int:
    """Run the checks of images already built (all with tests:, or IMAGE...).

    Each image is tested as it is built now: at its current fingerprint, on the
    engine of DOCKER_HOST. An image not built at that fingerprint is named, not
    built; `stackbuild build` builds and tests it. Checks that pass are recorded,
    so the next build does not run them again.

    \b
    Exit codes: 0 every check passed, 1 a check failed or an image is not built,
    2 bad manifest or usage, 3 engine unreachable, 130 interrupted.
    """
    stack = load_stack(ctx.stack_file)
    backend = open_engine(stack.backend)
    reporter = make_reporter()
    stop = threading.Event()
    with StateDir(stack.root).run_lock(wait=not no_wait, notify=reporter.message):
        _install_stop_handlers(stop, reporter.notice)
        analysis = pinned_analysis(
            stack, targets, False, backend, write=False, warn=reporter.message
        )
        chosen = [name for name in analysis.selected if stack.images[name].tests]
        for name in targets:
            if not stack.images[name].tests:
                reporter.message(f"{name} has no tests: in {stack.display_path}; nothing to run")
        local = find_existing(analysis, backend)
        not_built = [name for name in chosen if name not in local]
        for name in not_built:
            fingerprint = short(analysis.inputs[name].fingerprint)
            reporter.message(
                f"{name} is not built at its current fingerprint {fingerprint} on "
                f"{backend.name}; build it first: stackbuild build {name}"
            )
        images = {name: local[name].id for name in chosen if name in local}
        reporter.message(f"{len(images)} image(s) to test")
        try:
            results = check_images(
                analysis, backend, images, jobs or os.cpu_count() or 1, stop,
                on_result=reporter.image_finished,
            )  # fmt: skip
        finally:
            reporter.close()
    text = summary(results) if results else "nothing tested"
    if as_json:
        click.echo(text, err=True)
        document = {
            "results": [r.to_json() for r in results],
            "not_built": not_built,
            "interrupted": stop.is_set(),
        }
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(text)
    if stop.is_set():
        return EXIT_INTERRUPTED
    failed = not_built or any(not r.passed for r in results)
    return EXIT_BUILD_FAILED if failed else EXIT_OK
