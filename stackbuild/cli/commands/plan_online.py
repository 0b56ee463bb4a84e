"""``stackbuild plan`` without ``--offline``: the half that asks the engines and registries.

Its own module, loaded by ``plan`` only when it asks (``commands.load``), so an offline
plan imports no backend, engine pool or registry client.
"""

from __future__ import annotations

from pathlib import Path

from stackbuild.analyze import Analysis
from stackbuild.cli.common import warn
from stackbuild.cli.engines import existing_on, plan_engines, plan_now
from stackbuild.manifest import load_stack
from stackbuild.plan import SKIP, Plan, with_promotions
from stackbuild.run.promote import lagging
from stackbuild.run.upstream import Refresh
from stackbuild.run.upstream import refresh as refresh_upstreams


def engine_plan(
    stack_file: Path,
    targets: tuple[str, ...],
    with_descendants: bool,
    force: tuple[str, ...],
    refresh: bool,
    push: bool,
) -> tuple[Analysis, Plan, Refresh | None]:
    """The plan against what the engines and the registry hold, and the refresh it was
    made after (``refresh``: every upstream digest re-resolved first), else None.

    ``push``: up-to-date images whose release tags in the registry lag are planned as
    promote.
    """
    fresh = None
    if refresh:
        stack = load_stack(stack_file)
        backend, pool = plan_engines(stack)
        fresh = refresh_upstreams(stack, targets, with_descendants, backend, warn)
        analysis = fresh.analysis
        result = analysis.annotate(
            fresh.plan(existing_on(analysis, backend, pool), backend, force, warn)
        )
    else:
        analysis, result = plan_now(stack_file, targets, with_descendants, force)
    if push:  # the release tags of what is up to date: one more question to the registry
        skipped = [step.image for step in result if step.action == SKIP]
        backend, _pool = plan_engines(analysis.stack)
        result = with_promotions(result, lagging(analysis, skipped, backend, warn))
    return analysis, result, fresh
