"""``stackbuild graph`` and ``stackbuild ls``: the hierarchy."""

from __future__ import annotations

import json

import click

from stackbuild import render
from stackbuild.cli.common import JSON, Context, pass_context, read_graph


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "dot", "mermaid", "json", "svg", "png"]),
    default="text",
    show_default=True,
)
@pass_context
def graph(ctx: Context, fmt: str) -> None:
    """Show the hierarchy: a text tree, Graphviz DOT, Mermaid or JSON; or SVG / PNG
    drawn by Graphviz, coloured by plan action and sized by each image's own bytes."""

    if fmt in ("svg", "png"):
        from stackbuild.cli.commands.report import graph_picture  # the engine side, lazily

        graph_picture(ctx.stack_file, fmt)
        return
    stack_graph = read_graph(ctx)
    if fmt == "json":
        click.echo(json.dumps(render.graph_json(stack_graph), indent=2))
    elif fmt == "dot":
        click.echo(render.graph_dot(stack_graph))
    elif fmt == "mermaid":
        click.echo(render.graph_mermaid(stack_graph))
    else:
        click.echo(render.graph_text(stack_graph))


@click.command(name="ls")
@JSON
@pass_context
def ls_command(ctx: Context, as_json: bool) -> None:
    """List the images with their parents, upstream images and contexts."""

    stack_graph = read_graph(ctx)
    if as_json:
        click.echo(json.dumps(render.graph_json(stack_graph)["nodes"], indent=2))
    else:
        click.echo(
            render.table(render.ls_rows(stack_graph), ["IMAGE", "PARENTS", "UPSTREAM", "CONTEXT"])
        )
