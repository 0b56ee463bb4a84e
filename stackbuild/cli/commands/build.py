"""``stackbuild build`` and ``stackbuild refresh``: one run, a refresh re-resolving first."""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from stackbuild.cli.common import (
    BACKEND,
    BUILDER,
    JOBS,
    JSON,
    KEEP_GOING,
    NO_PROVENANCE,
    NO_WAIT,
    PROMOTE,
    PUSH,
    PUSH_JOBS,
    SINCE,
    TARGETS,
    WITH_DESCENDANTS,
    Context,
    pass_context,
    select_since,
)
from stackbuild.cli.engines import existing_on, open_engine, open_engine_pool
from stackbuild.cli.reports import JUNIT, started_at, write_reports
from stackbuild.cli.signals import raise_interrupt
from stackbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    UsageError,
)
from stackbuild.manifest import load_stack
from stackbuild.platforms import check_backend
from stackbuild.run.attest import Attestor
from stackbuild.run.build import BuildOptions, BuildRun, git_revision
from stackbuild.run.history import fill_from_registry
from stackbuild.run.pool import PoolPushes, attach_registry, pool_builders
from stackbuild.run.promote import SUBTREE, Promoter, held_back, promotion_summary
from stackbuild.run.publish import publish_indexes
from stackbuild.run.registry import Pusher, RegistryHooks, push_summary
from stackbuild.run.upstream import HELD_BACK_UPSTREAM, UpstreamGate, pinned_analysis
from stackbuild.run.upstream import refresh as refresh_upstreams
from stackbuild.scheduler import Status
from stackbuild.state import StateDir
from stackbuild.ui import make_reporter, summary

NO_TEST = click.option(
    "--no-test", "no_test", is_flag=True,
    help="Do not run the images' checks (tests: in stack.yaml); the summary says so.",
)  # fmt: skip


def _install_stop_handlers(stop: threading.Event, notice: Callable[[str], None]) -> None:
    """Ctrl-C and SIGTERM: start nothing new, cancel running builds, keep what finished.
    ``notice``: the reporter's, which a live view writes above its block."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: the user really means it
            raise_interrupt(signum, frame)  # (and a third ends at once)
        stop.set()
        notice("stopping: cancelling running builds (Ctrl-C again to abort)")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@click.command()
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
@PROMOTE
@BUILDER
@NO_TEST
@SINCE
@JUNIT
@NO_PROVENANCE
@pass_context
def build(
    ctx: Context,
    targets: tuple[str, ...],
    with_descendants: bool,
    as_json: bool,
    jobs: int | None,
    keep_going: bool,
    no_cache: bool,
    pull: bool,
    backend_kind: str | None,
    force: tuple[str, ...],
    no_wait: bool,
    push: bool,
    push_jobs: int,
    promote: str | None,
    builder_urls: tuple[str, ...],
    no_test: bool,
    since: str | None,
    junit: Path | None,
    no_provenance: bool,
) -> int:
    """Build what changed, and everything built on it, in parallel.

    Upstream images are built on their stack.lock digests; an upstream the
    lock lacks is resolved and added to it. Each built image runs its checks
    (tests: in stack.yaml) before it counts as built. With --push, each image's
    fingerprint tag is pushed once built (and tested), and its release tags (latest,
    the manifest's tags) are moved onto it after the run (see --promote); an
    image whose release tags lag is promoted without being rebuilt.

    \b
    Exit codes: 0 nothing failed, 1 a build, check, push or promotion failed,
    2 bad manifest or usage, 3 engine unreachable, 130 interrupted.
    """
    return _run_build(
        ctx, targets=targets, with_descendants=with_descendants, as_json=as_json, jobs=jobs,
        keep_going=keep_going, no_cache=no_cache, pull=pull, backend_kind=backend_kind,
        force=force, no_wait=no_wait, push=push, push_jobs=push_jobs, refresh=False,
        builder_urls=builder_urls, promote=promote, since=since, junit=junit,
        provenance=not no_provenance, no_test=no_test,
    )


@click.command(name="refresh")
@TARGETS
@WITH_DESCENDANTS
@JSON
@JOBS
@KEEP_GOING
@BACKEND
@NO_WAIT
@PUSH
@PUSH_JOBS
@PROMOTE
@BUILDER
@NO_TEST
@JUNIT
@NO_PROVENANCE
@pass_context
def refresh_command(
    ctx: Context,
    targets: tuple[str, ...],
    with_descendants: bool,
    as_json: bool,
    jobs: int | None,
    keep_going: bool,
    backend_kind: str | None,
    no_wait: bool,
    push: bool,
    push_jobs: int,
    promote: str | None,
    builder_urls: tuple[str, ...],
    no_test: bool,
    junit: Path | None,
    no_provenance: bool,
) -> int:
    """Re-resolve every upstream digest, update stack.lock, rebuild what moved.

    Exactly the images above a moved upstream (and their descendants) are
    rebuilt; --push pushes them. The output begins with the moved upstreams;
    --json adds "moved": [{"ref", "old", "new", "images"}] to build's JSON.
    With --push, an upstream's new digest is written to stack.lock only once
    every image built on it was rebuilt and promoted; --json adds "upstreams":
    [{"ref", "old", "new", "status", "held_back"}], status moved-and-promoted,
    held-back or unchanged; a held-back upstream is exit 1.

    \b
    Exit codes: as build; 3 also when a registry does not answer.
    """
    return _run_build(
        ctx, targets=targets, with_descendants=with_descendants, as_json=as_json, jobs=jobs,
        keep_going=keep_going, no_cache=False, pull=False, backend_kind=backend_kind,
        force=(), no_wait=no_wait, push=push, push_jobs=push_jobs, refresh=True,
        builder_urls=builder_urls, promote=promote, junit=junit, no_test=no_test,
        provenance=not no_provenance,
    )


def _run_build(
    ctx: Context,
    *,
    targets: tuple[str, ...],
    with_descendants: bool,
    as_json: bool,
    jobs: int | None,
    keep_going: bool,
    no_cache: bool,
    pull: bool,
    backend_kind: str | None,
    force: tuple[str, ...],
    no_wait: bool,
    push: bool,
    push_jobs: int,
    refresh: bool,
    builder_urls: tuple[str, ...] = (),
    promote: str | None = None,
    since: str | None = None,
    no_test: bool = False,
    junit: Path | None = None,
    provenance: bool = True,
) -> int:
    """``build`` and ``refresh``: the same run; a refresh re-resolves the upstreams first."""
    started = started_at()
    stack = load_stack(ctx.stack_file)
    if since:  # the changed images become the targets
        targets, _changes = select_since(ctx.stack_file, since, targets, with_descendants)
        with_descendants = False
        changed = ", ".join(targets) if targets else "none: nothing to build"
        click.echo(f"changed since {since}: {changed}", err=True)
        if not targets:
            write_reports(stack, {}, [], junit, started)  # CI still finds its (empty) report
            if as_json:
                click.echo(json.dumps({"results": [], "interrupted": False}, indent=2))
            return EXIT_OK
    unknown = [name for name in force if name not in stack.images]
    if unknown:
        raise UsageError(f"--force names unknown image(s): {', '.join(unknown)}")
    if push and not stack.registry:
        raise UsageError(
            f"--push needs a registry to push to: set `registry:` in {stack.display_path} "
            "(e.g. registry: 127.0.0.1:5000/acme)"
        )
    if promote and not push:
        raise UsageError("--promote says when --push moves release tags; add --push")
    if push and no_test and any(spec.tests for spec in stack.images.values()):
        click.echo(
            f"warning: --push --no-test: the images pushed to {stack.registry} skip their "
            "checks, and every machine that finds them there takes them as tested",
            err=True,
        )
    check_backend(stack, backend_kind or stack.backend)  # the classic builder: one platform
    stop = threading.Event()
    jobs = jobs or os.cpu_count() or 1
    pool = None  # several engines (builders: or --builder), else the one of docker.from_env()
    builders = pool_builders(stack, builder_urls, jobs)
    if builders:
        pool = open_engine_pool(stack, builders, backend_kind or stack.backend, bool(builder_urls))
        pool.stop = stop
        backend = pool.alive[0].backend  # for registry look-ups, which any engine can do
    else:
        backend = open_engine(backend_kind or stack.backend)
    reporter = make_reporter(live=not as_json)
    fresh = None
    gates: list[UpstreamGate] = []  # refresh --push: what became of each upstream's pin
    # Ctrl-C while waiting for the lock simply ends the wait (KeyboardInterrupt, exit
    # 130): the stop handlers, which let a run finish cleanly, only apply once it builds
    with StateDir(stack.root).run_lock(wait=not no_wait, notify=reporter.message):
        _install_stop_handlers(stop, reporter.notice)
        # analysed under the lock: a run we waited for may have built some of it
        if refresh:
            fresh = refresh_upstreams(stack, targets, with_descendants, backend, reporter.message)
            if not push:  # with --push, an upstream's pin moves once its images are promoted
                fresh.save()
            click.echo(fresh.header(), err=as_json)  # the output begins with what moved
            analysis = fresh.analysis
        else:
            analysis = pinned_analysis(
                stack, targets, with_descendants, backend, write=True, warn=reporter.message
            )
        existing = existing_on(analysis, backend, pool, reporter.message)
        if fresh:
            plan_ = fresh.plan(existing, backend, force, reporter.message)
        else:
            plan_ = analysis.plan(existing.where(), force)
        # a fresh runner has no .stackbuild/: the registry's images tell the durations
        fill_from_registry(analysis, plan_.to_build, backend, reporter.message)
        options = BuildOptions(
            jobs=jobs,
            fail_fast=not keep_going,
            no_cache=no_cache,
            pull=pull,
            test=not no_test,
        )
        pusher = None
        # provenance and SBOM of each built image, attached to it when pushed
        attestor = (Attestor(analysis, backend_kind or stack.backend, reporter.message)
                    if provenance else None)  # fmt: skip
        if push:
            # a pool pushes each image from an engine that holds it
            pusher = Pusher(PoolPushes(pool) if pool else backend, push_jobs,
                            analysis.state.logs, stop, reporter.message,
                            after_push=functools.partial(attestor.attach, backend=backend)
                            if attestor else None)  # fmt: skip
        hooks = RegistryHooks(backend, analysis, existing.remote, pusher, stop)
        if pool:
            attach_registry(pool, lambda engine_backend: RegistryHooks(
                engine_backend, analysis, existing.remote, pusher, stop))  # fmt: skip
        try:
            results = BuildRun(
                analysis, plan_, backend, reporter, options, existing.local, stop,
                registry_hooks=hooks, pool=pool, attestor=attestor,
            ).run()
            if pusher:  # the fingerprint tags are in; the release tags move on what passed
                promoter = Promoter(analysis, backend, stop, reporter.message,
                                    policy=pusher.policy, deadlines=pusher.deadlines,
                                    jobs=push_jobs)  # fmt: skip
                promoter.run({r.image: r for r in results}, promote or SUBTREE, stop.is_set())
                # multi-platform images: one index per tag over their platforms; its
                # release tags only where every platform was promoted
                publish_indexes(backend, analysis.stack, analysis.selected,
                                {r.image: r for r in results}, git_revision(stack.root),
                                reporter.message)  # fmt: skip
                if fresh:
                    gates = fresh.save_gated(held_back(results))
        finally:
            reporter.close()
    failed = any(r.status in (Status.FAILED, Status.TEST_FAILED) for r in results)
    interrupted = stop.is_set()
    text = summary(results, engines=pool is not None)
    if push:
        text += "\n" + push_summary(results, stack.registry)
        text += "\n" + promotion_summary(results)
    stuck = [gate for gate in gates if gate.status == HELD_BACK_UPSTREAM]
    text += "".join(f"\nrefresh: {gate}" for gate in stuck)
    if pool:
        text += "".join(f"\n{note}" for note in pool.notes())
    if as_json:
        click.echo(text, err=True)
        document = {"results": [r.to_json() for r in results], "interrupted": interrupted}
        if fresh:
            document["moved"] = fresh.moved_json()
        if gates:
            document["upstreams"] = [gate.to_json() for gate in gates]
        if pool:
            document["pool"] = pool.to_json()
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(text)
    # CI's reports; under --json the annotations go to stderr, leaving stdout JSON
    write_reports(stack, analysis.dockerfiles, results, junit, started, engines=pool is not None,
                  echo=lambda line: click.echo(line, err=as_json))  # fmt: skip
    if interrupted:
        return EXIT_INTERRUPTED
    if failed and pool and not pool.alive:
        return EXIT_UNREACHABLE  # every engine of the pool stopped answering
    return EXIT_BUILD_FAILED if failed or stuck else EXIT_OK
