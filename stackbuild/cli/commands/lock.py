"""``stackbuild lock``: resolve upstream digests into stack.lock."""

from __future__ import annotations

import json

import click

from stackbuild import render
from stackbuild.cli.common import JSON, Context, pass_context, read_graph, warn
from stackbuild.cli.engines import open_engine
from stackbuild.run.upstream import update_lock


@click.command(name="lock")
@JSON
@click.option("--refresh", is_flag=True, help="Re-resolve every entry, not only missing ones.")
@pass_context
def lock_command(ctx: Context, as_json: bool, refresh: bool) -> None:
    """Resolve upstream digests into stack.lock. Builds and pulls nothing.

    Adds the upstreams the lock lacks and drops the ones no image uses;
    --refresh re-resolves every entry (`stackbuild refresh` also rebuilds).

    \b
    Exit codes: 0 written or unchanged, 1 a registry refused the credentials,
    2 bad manifest or lock, 3 engine or registry unreachable.
    """

    update = update_lock(read_graph(ctx), open_engine, refresh=refresh, warn=warn)
    if as_json:
        click.echo(json.dumps(update.to_json(), indent=2))
        return
    rows = [[e.ref, e.digest or "-", e.status] for e in update.entries]
    if rows:
        click.echo(render.table(rows, ["UPSTREAM", "DIGEST", "CHANGE"]))
    verdict = "written" if update.changed else "unchanged"
    click.echo(f"{update.path}: {verdict}, {len(update.pins)} upstream(s) pinned")
