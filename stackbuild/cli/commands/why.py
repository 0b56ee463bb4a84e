"""``stackbuild why IMAGE``: the plan of one image in full."""

from __future__ import annotations

import click

from stackbuild import render
from stackbuild.analyze import analyze
from stackbuild.cli.common import Context, pass_context
from stackbuild.cli.engines import plan_now
from stackbuild.platforms import group_by_image


@click.command()
@click.argument("image")
@click.option("--offline", is_flag=True, help="Ask no engine.")
@pass_context
def why(ctx: Context, image: str, offline: bool) -> None:
    """Explain the plan for one IMAGE: what changed since its last build."""

    if offline:

        analysis = analyze(ctx.stack_file, [image])
        result = analysis.plan(None)
    else:  # the very plan `plan` shows: same pins, same engines
        analysis, result = plan_now(ctx.stack_file, [image], False)
    # a multi-platform image: one explanation per platform (stackbuild.platforms)
    names = group_by_image(analysis.stack, analysis.selected).get(image, [image])
    click.echo("\n".join(render.why_text(result, n, analysis.notes_of(n)) for n in names))
