"""The ``stackbuild`` command line: plan, build, refresh, lock, graph, ls, why, schema.

The top layer: it picks the implementations (which backend, one engine or a pool,
which reporter), runs the orchestration of ``run/`` and maps every StackbuildError
to its message and exit code. Start-up stays cheap without lazy imports of our own:
the heavy third-party modules (the docker SDK, networkx, concurrent-log-handler,
jsonschema) are imported by the code that uses them, on first use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# -- signals, from the first instruction to the last: Ctrl-C or SIGTERM is exit 130 ----


def _exit_interrupted(signum: int, frame: object) -> None:
    """Before ``main`` runs (imports: nothing to clean up) and once an interrupt is already
    on its way out: end now, with the code a first interrupt gives."""
    with contextlib.suppress(OSError):
        os.write(2, b"\ninterrupted\n")
    os._exit(130)


def _raise_interrupt(signum: int, frame: object) -> None:
    """Inside ``main``: unwind (locks released, temporary files removed). Any further
    signal ends at once: a KeyboardInterrupt raised while the first one unwinds would
    escape every handler and end the process by SIGINT instead of exit 130."""
    _handle_signals(_exit_interrupted)
    raise KeyboardInterrupt


def _handle_signals(handler: object) -> None:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (and only it receives signals)
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup/&: stay ignored
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _ignore_signals_at_exit() -> None:
    """Registered with atexit by ``main``: while the interpreter shuts down after the last
    atexit call it resets handlers to the default, and a signal then would end the
    process by that signal instead of with the exit code decided (130 or another)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is _exit_interrupted:
            signal.signal(signum, signal.SIG_IGN)


def _is_the_program() -> bool:
    """Whether this process is stackbuild (``python -m stackbuild`` or the console
    script), not a program that imports the module (tests, a library user)."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "stackbuild.__main__")
    return os.path.basename(getattr(main_module, "__file__", None) or "") == "stackbuild"


if _is_the_program():
    _handle_signals(_exit_interrupted)  # the imports below take a while

# the rest of the imports come after the handlers above (E402 is off for this file)
import json
import threading
from pathlib import Path

import click

from stackbuild import __version__, render
from stackbuild.analyze import analyze, read_dockerfiles
from stackbuild.backends import open_backend
from stackbuild.backends.contract import Backend
from stackbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    StackbuildError,
    UsageError,
)
from stackbuild.graph import build_graph
from stackbuild.manifest import EngineSpec, Stack, load_stack
from stackbuild.run import archive
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.existing import existing_images
from stackbuild.run.pool import (
    MAX_SLOTS,
    EnginePool,
    PoolPushes,
    attach_registry,
    open_pool,
    pool_builders,
)
from stackbuild.run.registry import Pusher, RegistryHooks, push_summary
from stackbuild.run.upstream import pinned_analysis, update_lock
from stackbuild.run.upstream import refresh as refresh_upstreams
from stackbuild.scheduler import Status
from stackbuild.state import StateDir
from stackbuild.ui import make_reporter, summary


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
MAX_JOBS = MAX_SLOTS  # the most builds (or pushes) at once
JOBS = click.option(
    "-j", "--jobs", type=click.IntRange(min=1, max=MAX_JOBS), default=None,
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
    "--push-jobs", type=click.IntRange(min=1, max=MAX_JOBS), default=2, show_default=True,
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


def _open_backend(kind: str = "docker") -> Backend:
    """The engine of DOCKER_HOST (and its defaults), pinged: it answers, or exit 3."""
    backend = open_backend(kind)
    backend.ping()
    return backend


def _open_pool(stack: Stack, builders, kind: str, from_options: bool = False) -> EnginePool:
    """The pool of ``builders``, each engine building with the ``kind`` builder."""

    def engine(spec: EngineSpec) -> Backend:
        return open_backend(kind, spec.url, spec.tls, spec.name or spec.url)

    return open_pool(stack, builders, engine, _warn, from_options=from_options)


def _warn(message: str) -> None:
    click.echo(message, err=True)


def _plan_engines(stack):
    """``(backend, pool)`` for plan: stack.yaml's builders as a pool (an image on any of
    its engines exists), else the engine of docker.from_env() and None."""
    if not stack.builders:
        return _open_backend(), None

    pool = _open_pool(stack, stack.builders, stack.backend)
    return pool.alive[0].backend, pool


def _existing_on(analysis, backend, pool, warn=_warn):
    """``registry.Existing`` on the pool's engines, or on ``backend``, then the registry."""

    return existing_images(analysis, backend, warn, pool.discover(analysis) if pool else None)


def _plan_now(stack_file: Path, targets, with_descendants: bool, force=()):
    """The plan a build would follow now: the lock's pins (missing ones resolved, not
    written) and what the engines or the registry already hold."""

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

    if force:  # as build refuses them, before any engine is asked

        unknown = [name for name in force if name not in load_stack(ctx.stack_file).images]
        if unknown:
            raise UsageError(f"--force names unknown image(s): {', '.join(unknown)}")
    fresh = None
    if offline:

        if refresh:
            raise UsageError("plan --refresh asks the registries for digests; drop --offline")
        analysis = analyze(ctx.stack_file, targets, with_descendants)
        result = analysis.plan(None, force)
    elif refresh:

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

    def handler(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: the user really means it
            _raise_interrupt(signum, frame)  # (and a third ends at once)
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
        pool = _open_pool(stack, builders, backend_kind or stack.backend, bool(builder_urls))
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
                analysis, plan_, backend, reporter, options, existing.local, stop,
                registry_hooks=hooks, pool=pool,
            ).run()
        finally:
            reporter.close()
    failed = any(r.status == Status.FAILED for r in results)
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

    if offline:

        analysis = analyze(ctx.stack_file, [image])
        result = analysis.plan(None)
    else:  # the very plan `plan` shows: same pins, same engines
        analysis, result = _plan_now(ctx.stack_file, [image], False)
    click.echo(render.why_text(result, image, analysis.notes_of(image)))


def _graph(ctx: Context):

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
    import atexit

    atexit.register(_ignore_signals_at_exit)
    _handle_signals(_raise_interrupt)  # SIGTERM too: both are "interrupted", exit 130
    try:
        code = _main()
        _handle_signals(_exit_interrupted)  # ending: a signal now ends at once, still 130
    except KeyboardInterrupt:  # while an error was being reported
        _handle_signals(_exit_interrupted)
        click.echo("interrupted", err=True)
        code = 130
    sys.exit(code)


def _main() -> int:
    """The command's exit code; every error reported, never a traceback."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:  # click's own KeyboardInterrupt (in a prompt)
        _handle_signals(_exit_interrupted)
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code if error.exit_code else EXIT_USAGE
    except StackbuildError as error:
        click.echo(f"stackbuild: {error}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        _handle_signals(_exit_interrupted)
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    return code if isinstance(code, int) else 0
