"""``stackbuild schema``: the JSON Schema of stack.yaml."""

from __future__ import annotations

from importlib.resources import files

import click


@click.command()
def schema() -> None:
    """Print the JSON Schema of stack.yaml (point your editor at it)."""
    click.echo(files("stackbuild").joinpath("schema/stack.schema.json").read_text())
