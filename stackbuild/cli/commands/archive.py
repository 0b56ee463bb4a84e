"""``stackbuild save`` and ``stackbuild load``: images without a registry."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stackbuild.cli.common import JSON, TARGETS, Context, pass_context, warn
from stackbuild.cli.engines import open_engine
from stackbuild.run import archive
from stackbuild.run.upstream import pinned_analysis


@click.command(name="save")
@TARGETS
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The tar file to write.",
)
@JSON
@pass_context
def save_command(ctx: Context, targets: tuple[str, ...], output: Path, as_json: bool) -> None:
    """Save built images with all their tags into one tar (no registry needed).

    Saves the named images and their ancestors (default: all). Load it on
    another engine with `stackbuild load FILE`; plan then finds them up to date.
    Exit code 1 when an image is not built on this engine.
    """

    backend = open_engine()
    analysis = pinned_analysis(ctx.stack_file, targets, False, backend, write=False, warn=warn)
    saved = archive.save(analysis, backend, output)
    if as_json:
        click.echo(json.dumps({"file": str(output), "images": [s.to_json() for s in saved]},
                              indent=2))
    else:
        tags = sum(len(s.tags) for s in saved)
        click.echo(f"saved {len(saved)} image(s), {tags} tag(s) to {output}")


@click.command(name="load")
@click.argument("archive_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@JSON
def load_command(archive_file: Path, as_json: bool) -> None:
    """Load images saved by `stackbuild save` (or `docker save`) into the engine."""

    loaded = archive.load(open_engine(), archive_file)
    if as_json:
        click.echo(json.dumps({"file": str(archive_file), "loaded": loaded}, indent=2))
    else:
        click.echo("\n".join([f"loaded {len(loaded)} reference(s) from {archive_file}"]
                             + [f"  {ref}" for ref in loaded]))
