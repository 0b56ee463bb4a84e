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


def _existing(analysis, backend) -> dict[str, str]:
    from stackbuild.build import find_existing

    return {name: "local engine" for name in find_existing(analysis, backend)}


@cli.command()
@TARGETS
@WITH_DESCENDANTS
@JSON
@click.option("--offline", is_flag=True, help="Ask no engine; every image is planned as build.")
@click.option("--force", multiple=True, metavar="IMAGE", help="Plan IMAGE as build regardless.")
@pass_context
def plan(ctx: Context, targets, with_descendants, as_json, offline, force) -> None:
    """Say what a build would do for each image, and why. Builds nothing.

    Exit code 0; 2 for a bad manifest; 3 when the engine is unreachable
    (use --offline to plan without one).
    """
    from stackbuild import render
    from stackbuild.analyze import analyze

    analysis = analyze(ctx.stack_file, targets, with_descendants)
    existing = None if offline else _existing(analysis, _open_backend())
    result = analysis.plan(existing, force)
    if as_json:
        click.echo(render.plan_json(result))
    else:
        click.echo(render.plan_text(result, analysis.stack.display_path))


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
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None,
    help="Builds at once. [default: CPU count]",
)
@click.option(
    "--keep-going/--fail-fast", default=True, show_default=True,
    help="After a failure, go on with independent images, or start nothing new.",
)
@click.option("--no-cache", is_flag=True, help="Build without the engine's layer cache.")
@click.option("--pull", is_flag=True, help="Let the engine pull newer upstream images.")
@click.option(
    "--backend", "backend_kind", type=click.Choice(["docker", "buildkit"]), default=None,
    help="Build with the docker SDK (classic builder) or BuildKit. [default: stack.yaml's]",
)
@click.option("--force", multiple=True, metavar="IMAGE", help="Rebuild IMAGE even if up to date.")
@click.option(
    "--no-wait", is_flag=True,
    help="Refuse, instead of waiting, when another run is building this stack.",
)
@pass_context
def build(ctx: Context, targets, with_descendants, as_json, jobs, keep_going, no_cache, pull,
          backend_kind,
          force, no_wait) -> int:
    """Build what changed, and everything built on it, in parallel.

    \b
    Exit codes: 0 nothing failed, 1 a build failed, 2 bad manifest or usage,
    3 engine unreachable, 130 interrupted.
    """
    import os
    import threading

    from stackbuild.analyze import analyze
    from stackbuild.build import BuildOptions, BuildRun, find_existing
    from stackbuild.errors import EXIT_BUILD_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
    from stackbuild.manifest import load_stack
    from stackbuild.state import StateDir
    from stackbuild.ui import make_reporter, summary

    stack = load_stack(ctx.stack_file)
    unknown = [name for name in force if name not in stack.images]
    if unknown:
        raise UsageError(f"--force names unknown image(s): {', '.join(unknown)}")
    backend = _open_backend(backend_kind or stack.backend)
    stop = threading.Event()
    reporter = make_reporter()
    # Ctrl-C while waiting for the lock simply ends the wait (KeyboardInterrupt, exit
    # 130): the stop handlers, which let a run finish cleanly, only apply once it builds
    with StateDir(stack.root).run_lock(wait=not no_wait, notify=reporter.message):
        _install_stop_handlers(stop)
        # analysed under the lock: a run we waited for may have built some of it
        analysis = analyze(ctx.stack_file, targets, with_descendants)
        local = find_existing(analysis, backend)
        plan_ = analysis.plan({name: "local engine" for name in local}, force)
        options = BuildOptions(
            jobs=jobs or os.cpu_count() or 1,
            fail_fast=not keep_going,
            no_cache=no_cache,
            pull=pull,
        )
        try:
            results = BuildRun(analysis, plan_, backend, reporter, options, local, stop).run()
        finally:
            reporter.close()
    failed = any(r.status == "failed" for r in results)
    interrupted = stop.is_set()
    if as_json:
        click.echo(summary(results), err=True)
        click.echo(json.dumps({
            "results": [r.to_json() for r in results],
            "interrupted": interrupted,
        }, indent=2))
    else:
        click.echo(summary(results))
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_BUILD_FAILED if failed else EXIT_OK


@cli.command()
@click.argument("image")
@click.option("--offline", is_flag=True, help="Ask no engine.")
@pass_context
def why(ctx: Context, image: str, offline: bool) -> None:
    """Explain the plan for one IMAGE: what changed since its last build."""
    from stackbuild import render
    from stackbuild.analyze import analyze

    analysis = analyze(ctx.stack_file, [image])
    existing = None if offline else _existing(analysis, _open_backend())
    click.echo(render.why_text(analysis.plan(existing), image))


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
