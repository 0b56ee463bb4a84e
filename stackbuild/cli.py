"""The ``stackbuild`` command line: plan, build, refresh, lock, graph, ls, why, schema.

Commands import what they need inside their bodies: a no-op run is mostly
interpreter start-up, so ``plan --offline`` never imports the docker SDK and
nothing loads log handlers before the first build.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from stackbuild import __version__
from stackbuild.errors import EXIT_USAGE, StackbuildError


class Context:
    def __init__(self, stack_file: Path) -> None:
        self.stack_file = stack_file


pass_context = click.make_pass_decorator(Context)

TARGETS = click.argument("targets", nargs=-1, metavar="[IMAGE]...")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
WITH_DESCENDANTS = click.option(
    "--with-descendants",
    is_flag=True,
    help="Also select every image built on the named images.",
)
JOBS = click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None,
    help="Builds at once. [default: CPU count]",
)
KEEP_GOING = click.option(
    "--keep-going/--fail-fast", default=True, show_default=True,
    help="After a failure, go on with independent images, or start nothing new.",
)
BACKEND = click.option(
    "--backend", "backend_kind", type=click.Choice(["docker", "buildkit"]), default=None,
    help="Build with the docker SDK (classic builder) or BuildKit. [default: stack.yaml's]",
)
NO_WAIT = click.option(
    "--no-wait", is_flag=True,
    help="Refuse, instead of waiting, when another run is building this stack.",
)
PUSH = click.option(
    "--push", is_flag=True,
    help="Push every tag of each built image to the stack's registry (and up-to-date images "
    "the registry lacks).",
)
PUSH_JOBS = click.option(
    "--push-jobs", type=click.IntRange(min=1), default=2, show_default=True,
    help="Pushes at once (they run alongside the builds).",
)
BUILDER = click.option(
    "--builder", "builder_urls", multiple=True, metavar="URL[=SLOTS]",
    help="Build on this Docker engine (repeat for a pool; replaces stack.yaml's builders). "
    "SLOTS defaults to -j.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "stack_file",
    default="stack.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The manifest to read.",
)
@click.version_option(__version__, prog_name="stackbuild")
@click.pass_context
def cli(ctx: click.Context, stack_file: Path) -> None:
    """Build hierarchies of container images from one stack.yaml.

    \b
    Examples:
      stackbuild plan                 what would be built, and why
      stackbuild build -j 4           build what changed, 4 at a time
      stackbuild build site --with-descendants
      stackbuild graph --format mermaid
    """
    ctx.obj = Context(stack_file)


def _open_backend(kind: str = "docker"):
    """The engine client: the docker SDK (classic builder) or BuildKit through the CLI."""
    if kind == "buildkit":
        from stackbuild.backends.buildkit import BuildKitBackend as Backend
    else:
        from stackbuild.backends.docker_api import DockerBackend as Backend
    backend = Backend()
    backend.ping()
    return backend


def _warn(message: str) -> None:
    click.echo(message, err=True)


def _plan_engines(stack):
    """``(backend, pool)`` for plan: stack.yaml's builders as a pool (an image on any of
    its engines exists), else the engine of docker.from_env() and None."""
    if not stack.builders:
        return _open_backend(), None
    from stackbuild.backends.pool import open_pool

    pool = open_pool(stack, stack.builders, stack.backend, _warn)
    return pool.alive[0].backend, pool


def _existing_on(analysis, backend, pool, warn=_warn):
    """``registry.Existing`` on the pool's engines, or on ``backend``, then the registry."""
    from stackbuild.registry import existing_images

    return existing_images(analysis, backend, warn, pool.discover(analysis) if pool else None)


def _plan_now(stack_file: Path, targets, with_descendants: bool, force=()):
    """The plan a build would follow now: the lock's pins (missing ones resolved, not
    written) and what the engines or the registry already hold."""
    from stackbuild.manifest import load_stack
    from stackbuild.upstream import pinned_analysis

    stack = load_stack(stack_file)
    backend, pool = _plan_engines(stack)
    analysis = pinned_analysis(
        stack, targets, with_descendants, backend, write=False, warn=_warn
    )
    return analysis, analysis.plan(_existing_on(analysis, backend, pool).where(), force)


@cli.command()
@TARGETS
@WITH_DESCENDANTS
@JSON
@click.option("--offline", is_flag=True, help="Ask no engine; every image is planned as build.")
@click.option("--force", multiple=True, metavar="IMAGE", help="Plan IMAGE as build regardless.")
@click.option(
    "--refresh", is_flag=True,
    help="Plan a refresh: re-resolve every upstream digest first (pulls and writes nothing).",
)
@pass_context
def plan(ctx: Context, targets, with_descendants, as_json, offline, force, refresh) -> None:
    """Say what a build would do for each image, and why. Builds nothing.

    With builders: in stack.yaml, an image on any of their engines is up to date.

    Exit code 0; 1 a registry refused the credentials; 2 for a bad manifest;
    3 when the engine (or, with --refresh, a registry) is unreachable
    (use --offline to plan without one).
    """
    from stackbuild import render
    from stackbuild.errors import UsageError

    if force:  # as build refuses them, before any engine is asked
        from stackbuild.manifest import load_stack

        unknown = [name for name in force if name not in load_stack(ctx.stack_file).images]
        if unknown:
            raise UsageError(f"--force names unknown image(s): {', '.join(unknown)}")
    fresh = None
    if offline:
        from stackbuild.analyze import analyze

        if refresh:
            raise UsageError("plan --refresh asks the registries for digests; drop --offline")
        analysis = analyze(ctx.stack_file, targets, with_descendants)
        result = analysis.plan(None, force)
    elif refresh:
        from stackbuild.manifest import load_stack
        from stackbuild.upstream import refresh as refresh_upstreams

        stack = load_stack(ctx.stack_file)
        backend, pool = _plan_engines(stack)
        fresh = refresh_upstreams(stack, targets, with_descendants, backend, _warn)
        analysis = fresh.analysis
        result = analysis.annotate(
            fresh.plan(_existing_on(analysis, backend, pool), backend, force, _warn)
        )
    else:
        analysis, result = _plan_now(ctx.stack_file, targets, with_descendants, force)
    if as_json and fresh:
        click.echo(json.dumps({**result.to_json(), "moved": fresh.moved_json()}, indent=2))
    elif as_json:
        click.echo(render.plan_json(result))
    else:
        if fresh:
            click.echo(fresh.header())
        click.echo(render.plan_text(result, analysis.stack.display_path))
        warnings = render.plan_warnings(result)
        if warnings:  # on stderr: stdout stays the table
            _warn(warnings)


def _install_stop_handlers(stop) -> None:
    """Ctrl-C and SIGTERM: start nothing new, cancel running builds, keep what finished."""
    import signal

    def handler(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: the user really means it
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nstopping: cancelling running builds (Ctrl-C again to abort)", err=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@cli.command()
@TARGETS
@WITH_DESCENDANTS
@JSON
@JOBS
@KEEP_GOING
@click.option("--no-cache", is_flag=True, help="Build without the engine's layer cache.")
@click.option("--pull", is_flag=True, help="Let the engine pull newer upstream images.")
@BACKEND
@click.option("--force", multiple=True, metavar="IMAGE", help="Rebuild IMAGE even if up to date.")
@NO_WAIT
@PUSH
@PUSH_JOBS
@BUILDER
@pass_context
def build(ctx: Context, targets, with_descendants, as_json, jobs, keep_going, no_cache, pull,
          backend_kind, force, no_wait, push, push_jobs, builder_urls) -> int:
    """Build what changed, and everything built on it, in parallel.

    Upstream images are built on their stack.lock digests; an upstream the
    lock lacks is resolved and added to it.

    \b
    Exit codes: 0 nothing failed, 1 a build or push failed, 2 bad manifest or usage,
    3 engine unreachable, 130 interrupted.
    """
    return _run_build(
        ctx, targets=targets, with_descendants=with_descendants, as_json=as_json, jobs=jobs,
        keep_going=keep_going, no_cache=no_cache, pull=pull, backend_kind=backend_kind,
        force=force, no_wait=no_wait, push=push, push_jobs=push_jobs, refresh=False,
        builder_urls=builder_urls,
    )


@cli.command(name="refresh")
@TARGETS
@WITH_DESCENDANTS
@JSON
@JOBS
@KEEP_GOING
@BACKEND
@NO_WAIT
@PUSH
@PUSH_JOBS
@BUILDER
@pass_context
def refresh_command(ctx: Context, targets, with_descendants, as_json, jobs, keep_going,
                    backend_kind, no_wait, push, push_jobs, builder_urls) -> int:
    """Re-resolve every upstream digest, update stack.lock, rebuild what moved.

    Exactly the images above a moved upstream (and their descendants) are
    rebuilt; --push pushes them. The output begins with the moved upstreams;
    --json adds "moved": [{"ref", "old", "new", "images"}] to build's JSON.

    \b
    Exit codes: as build; 3 also when a registry does not answer.
    """
    return _run_build(
        ctx, targets=targets, with_descendants=with_descendants, as_json=as_json, jobs=jobs,
        keep_going=keep_going, no_cache=False, pull=False, backend_kind=backend_kind,
        force=(), no_wait=no_wait, push=push, push_jobs=push_jobs, refresh=True,
        builder_urls=builder_urls,
    )


def _run_build(ctx: Context, *, targets, with_descendants, as_json, jobs, keep_going, no_cache,
               pull, backend_kind, force, no_wait, push, push_jobs, refresh,
               builder_urls=()) -> int:
    """``build`` and ``refresh``: the same run; a refresh re-resolves the upstreams first."""
    import os
    import threading

    from stackbuild.backends.pool import PoolPushes, attach_registry, open_pool, pool_builders
    from stackbuild.build import BuildOptions, BuildRun
    from stackbuild.errors import (
        EXIT_BUILD_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_UNREACHABLE,
        UsageError,
    )
    from stackbuild.manifest import load_stack
    from stackbuild.registry import Pusher, RegistryHooks, push_summary
    from stackbuild.state import StateDir
    from stackbuild.ui import make_reporter, summary
    from stackbuild.upstream import pinned_analysis
    from stackbuild.upstream import refresh as refresh_upstreams

    stack = load_stack(ctx.stack_file)
    unknown = [name for name in force if name not in stack.images]
    if unknown:
        raise UsageError(f"--force names unknown image(s): {', '.join(unknown)}")
    if push and not stack.registry:
        raise UsageError(
            f"--push needs a registry to push to: set `registry:` in {stack.display_path} "
            "(e.g. registry: 127.0.0.1:5000/acme)"
        )
    stop = threading.Event()
    jobs = jobs or os.cpu_count() or 1
    pool = None  # several engines (builders: or --builder), else the one of docker.from_env()
    builders = pool_builders(stack, builder_urls, jobs)
    if builders:
        pool = open_pool(stack, builders, backend_kind or stack.backend, _warn,
                         from_options=bool(builder_urls))  # fmt: skip
        pool.stop = stop
        backend = pool.alive[0].backend  # for registry look-ups, which any engine can do
    else:
        backend = _open_backend(backend_kind or stack.backend)
    reporter = make_reporter()
    fresh = None
    # Ctrl-C while waiting for the lock simply ends the wait (KeyboardInterrupt, exit
    # 130): the stop handlers, which let a run finish cleanly, only apply once it builds
    with StateDir(stack.root).run_lock(wait=not no_wait, notify=reporter.message):
        _install_stop_handlers(stop)
        # analysed under the lock: a run we waited for may have built some of it
        if refresh:
            fresh = refresh_upstreams(stack, targets, with_descendants, backend, reporter.message)
            fresh.save()
            click.echo(fresh.header(), err=as_json)  # the output begins with what moved
            analysis = fresh.analysis
        else:
            analysis = pinned_analysis(
                stack, targets, with_descendants, backend, write=True, warn=reporter.message
            )
        existing = _existing_on(analysis, backend, pool, reporter.message)
        if fresh:
            plan_ = fresh.plan(existing, backend, force, reporter.message)
        else:
            plan_ = analysis.plan(existing.where(), force)
        options = BuildOptions(
            jobs=jobs,
            fail_fast=not keep_going,
            no_cache=no_cache,
            pull=pull,
        )
        pusher = None
        if push:
            # a pool pushes each image from an engine that holds it
            pusher = Pusher(PoolPushes(pool) if pool else backend, push_jobs,
                            analysis.state.logs, stop, reporter.message)  # fmt: skip
        hooks = RegistryHooks(backend, analysis, existing.remote, pusher, stop)
        if pool:
            attach_registry(pool, lambda engine_backend: RegistryHooks(
                engine_backend, analysis, existing.remote, pusher, stop))  # fmt: skip
        try:
            results = BuildRun(
                analysis, plan_, backend, reporter, options, existing.local, stop, registry=hooks,
                pool=pool,
            ).run()
        finally:
            reporter.close()
    failed = any(r.status == "failed" for r in results)
    interrupted = stop.is_set()
    text = summary(results, engines=pool is not None)
    if push:
        text += "\n" + push_summary(results, stack.registry)
    if pool:
        text += "".join(f"\n{note}" for note in pool.notes())
    if as_json:
        click.echo(text, err=True)
        document = {"results": [r.to_json() for r in results], "interrupted": interrupted}
        if fresh:
            document["moved"] = fresh.moved_json()
        if pool:
            document["pool"] = pool.to_json()
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(text)
    if interrupted:
        return EXIT_INTERRUPTED
    if failed and pool and not pool.alive:
        return EXIT_UNREACHABLE  # every engine of the pool stopped answering
    return EXIT_BUILD_FAILED if failed else EXIT_OK


@cli.command()
@click.argument("image")
@click.option("--offline", is_flag=True, help="Ask no engine.")
@pass_context
def why(ctx: Context, image: str, offline: bool) -> None:
    """Explain the plan for one IMAGE: what changed since its last build."""
    from stackbuild import render

    if offline:
        from stackbuild.analyze import analyze

        analysis = analyze(ctx.stack_file, [image])
        result = analysis.plan(None)
    else:  # the very plan `plan` shows: same pins, same engines
        analysis, result = _plan_now(ctx.stack_file, [image], False)
    click.echo(render.why_text(result, image, analysis.notes_of(image)))


def _graph(ctx: Context):
    from stackbuild.analyze import read_dockerfiles
    from stackbuild.graph import build_graph
    from stackbuild.manifest import load_stack

    stack = load_stack(ctx.stack_file)
    _raw, parsed = read_dockerfiles(stack)
    return build_graph(stack, parsed)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "dot", "mermaid", "json"]),
    default="text",
    show_default=True,
)
@pass_context
def graph(ctx: Context, fmt: str) -> None:
    """Show the hierarchy: a text tree, Graphviz DOT, Mermaid or JSON."""
    from stackbuild import render

    stack_graph = _graph(ctx)
    if fmt == "json":
        click.echo(json.dumps(render.graph_json(stack_graph), indent=2))
    elif fmt == "dot":
        click.echo(render.graph_dot(stack_graph))
    elif fmt == "mermaid":
        click.echo(render.graph_mermaid(stack_graph))
    else:
        click.echo(render.graph_text(stack_graph))


@cli.command(name="ls")
@JSON
@pass_context
def ls_command(ctx: Context, as_json: bool) -> None:
    """List the images with their parents, upstream images and contexts."""
    from stackbuild import render

    stack_graph = _graph(ctx)
    if as_json:
        click.echo(json.dumps(render.graph_json(stack_graph)["nodes"], indent=2))
    else:
        click.echo(
            render.table(render.ls_rows(stack_graph), ["IMAGE", "PARENTS", "UPSTREAM", "CONTEXT"])
        )


@cli.command(name="lock")
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
    from stackbuild import render
    from stackbuild.upstream import update_lock

    update = update_lock(_graph(ctx), _open_backend, refresh=refresh, warn=_warn)
    if as_json:
        click.echo(json.dumps(update.to_json(), indent=2))
        return
    rows = [[e.ref, e.digest or "-", e.status] for e in update.entries]
    if rows:
        click.echo(render.table(rows, ["UPSTREAM", "DIGEST", "CHANGE"]))
    verdict = "written" if update.changed else "unchanged"
    click.echo(f"{update.path}: {verdict}, {len(update.pins)} upstream(s) pinned")


@cli.command(name="save")
@TARGETS
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The tar file to write.",
)
@JSON
@pass_context
def save_command(ctx: Context, targets, output: Path, as_json: bool) -> None:
    """Save built images with all their tags into one tar (no registry needed).

    Saves the named images and their ancestors (default: all). Load it on
    another engine with `stackbuild load FILE`; plan then finds them up to date.
    Exit code 1 when an image is not built on this engine.
    """
    from stackbuild import archive
    from stackbuild.upstream import pinned_analysis

    backend = _open_backend()
    analysis = pinned_analysis(ctx.stack_file, targets, False, backend, write=False, warn=_warn)
    saved = archive.save(analysis, backend, output)
    if as_json:
        click.echo(json.dumps({"file": str(output), "images": [s.to_json() for s in saved]},
                              indent=2))
    else:
        tags = sum(len(s.tags) for s in saved)
        click.echo(f"saved {len(saved)} image(s), {tags} tag(s) to {output}")


@cli.command(name="load")
@click.argument("archive_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@JSON
def load_command(archive_file: Path, as_json: bool) -> None:
    """Load images saved by `stackbuild save` (or `docker save`) into the engine."""
    from stackbuild import archive

    loaded = archive.load(_open_backend(), archive_file)
    if as_json:
        click.echo(json.dumps({"file": str(archive_file), "loaded": loaded}, indent=2))
    else:
        click.echo("\n".join([f"loaded {len(loaded)} reference(s) from {archive_file}"]
                             + [f"  {ref}" for ref in loaded]))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of stack.yaml (point your editor at it)."""
    from importlib.resources import files

    click.echo(files("stackbuild").joinpath("schema/stack.schema.json").read_text())


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code if error.exit_code else EXIT_USAGE)
    except StackbuildError as error:
        click.echo(f"stackbuild: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
