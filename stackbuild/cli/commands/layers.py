"""``stackbuild layers``: what each built image inherits and adds, and what sharing saves."""

from __future__ import annotations

import json

import click

from stackbuild import render
from stackbuild.analyze import Analysis, analyze, read_dockerfiles
from stackbuild.backends.contract import Backend
from stackbuild.cli.common import JSON, TARGETS, Context, pass_context
from stackbuild.cli.engines import plan_engines
from stackbuild.graph import in_stack_name
from stackbuild.layers import ImageLayers, StackAccount, account
from stackbuild.run.existing import find_existing


def stack_layers(analysis: Analysis, backend: Backend) -> StackAccount:
    """The accounting of the selected images built at their current fingerprint on
    ``backend`` (the ones not built there are ``missing``)."""
    stack, graph = analysis.stack, analysis.graph
    selected = set(analysis.selected)
    built: dict[str, ImageLayers] = {}
    for name, image in find_existing(analysis, backend).items():
        layers = backend.image_layers(image.id)
        if layers is not None:
            built[name] = layers
    _raw, parsed = read_dockerfiles(stack)
    from_parents = {
        name: [p for b in parsed[name].bases if (p := in_stack_name(b.ref, stack)) not in
               (None, name)]
        for name in analysis.selected
    }
    levels = [[n for n in level if n in selected] for level in graph.levels()]
    parents = {name: list(graph.parents(name)) for name in analysis.selected}
    return account([lv for lv in levels if lv], parents, from_parents, built)


@click.command(name="layers")
@TARGETS
@JSON
@pass_context
def layers_command(ctx: Context, targets: tuple[str, ...], as_json: bool) -> int:
    """Each built image's layers: inherited from each parent and its own; and the
    stack's bytes stored once against the sum of the images' full sizes.

    IMAGE selects images (with their ancestors); none: the whole stack. Exit code 0,
    3 when the engine is unreachable.
    """
    analysis = analyze(ctx.stack_file, targets)
    backend, _pool = plan_engines(analysis.stack)
    result = stack_layers(analysis, backend)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(render.layers_text(result))
    return 0
