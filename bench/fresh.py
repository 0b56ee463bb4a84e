"""A fresh CI runner: what the registry's layer cache and build history are worth.

    python3 bench/fresh.py                 # both benchmarks, ~6 minutes on 2 cores
    python3 bench/fresh.py --only cache    # or --only history
    python3 bench/fresh.py --repeat 3

A fresh runner has an empty engine and no ``.stackbuild/``; only the registry
(Debian's docker-registry on 127.0.0.1, tests/local_registry.py) carries over.

``cache`` (issue 11.4): an image of four steps (COPY a busybox rootfs, ``RUN sleep 4``
standing for a package install, ``RUN sleep 3`` for a compile, a last ``RUN echo``) is
built and pushed from the main engine; then its last step is changed and it is rebuilt
from a fresh checkout on a new, empty engine of its own (tests/engines.py), once with
``cache_from: registry`` and once without, for each builder. Printed: the wall time of
each ``stackbuild build`` (pulling the cache included).

``history`` (issue 11.5): the benchmark 1 diamond (a root, 10 middle images of skewed
``RUN sleep``, a sink; here with a log-normal sigma of 1.0, ``--skew``, instead of 0.6:
the same draws spread wider, where the order matters more) is built and pushed once
(the runner before). Then every image
is changed and the stack built at ``-j 4`` from fresh checkouts on the main engine:
"before", with the registry path empty of earlier images (what a fresh runner knew
before: no durations), and "after", with the registry holding the runner-before's
images, whose durations stackbuild reads back. Printed: each makespan (first build
start to last build end, from the run log) over the DAG lower bound max(critical
path, work / j), build costs being each image's sleep plus the engine's fixed cost per
build c0, measured first (benchmark 1's ``fixed_build_cost``); and the same two
schedules simulated in virtual time with those costs (``scheduler.simulate``), which
this machine's noise cannot move.

Every image is labelled with the run's id and removed at the end, with the engines and
the registry. Needs root, dockerd and docker-registry.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]

from gen import Graph, make_graph, write_stack  # noqa: E402
from run import Context, build_span, fixed_build_cost, say, window_bound  # noqa: E402

from stackbuild.scheduler import Schedule, simulate  # noqa: E402
from tests.engines import extra_engines  # noqa: E402
from tests.local_registry import LocalRegistry  # noqa: E402

APP = """\
FROM scratch
COPY rootfs/ /
RUN echo deps-{salt} > /deps && sleep 4
RUN echo build-{salt} > /build && sleep 3
RUN echo {last} > /last
"""


def with_settings(stack: Path, registry: str, cache_from: str | None = None) -> Path:
    """``stack`` (as gen.write_stack wrote it) with a registry and a defaults.cache_from."""
    text = stack.read_text().replace("version: 1\n", f"version: 1\nregistry: {registry}\n", 1)
    if cache_from:
        text = text.replace("defaults:\n", f"defaults:\n  cache_from: {cache_from}\n", 1)
    stack.write_text(text)
    return stack


def untag_registry(ctx: Context, registry: LocalRegistry) -> None:
    """Drop the run's tags in its registry's name (``ctx``'s clean-up takes only tags
    named after its prefix; these are the run's too: the registry is the run's own)."""
    for image in ctx.engine.images():
        for tag in image.get("RepoTags") or ():
            if tag.startswith(f"{registry.address}/"):
                ctx.engine.remove(tag, force=False)


def fresh_checkout(stack: Path, to: Path) -> Path:
    """A copy of the stack's directory without ``.stackbuild/``: a new CI checkout."""
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(stack.parent, to, symlinks=True, ignore=shutil.ignore_patterns(".stackbuild"))
    return to / "stack.yaml"


# --------------------------------------------------------------------------- cache


def bench_cache(ctx: Context, registry: LocalRegistry, repeat: int) -> list[str]:
    lines = []
    for backend in ("docker", "buildkit"):
        name = f"{ctx.prefix}-app-{backend}"
        graph = Graph([name], {name: []})
        stack = ctx.write(f"cache-{backend}", graph, base="busybox")
        context = stack.parent / "ctx" / name
        (context / "Dockerfile").write_text(APP.format(salt=ctx.run_id, last="one"))
        with_settings(stack, f"{registry.address}/{ctx.prefix}", "registry")
        say(f"cache {backend}: the runner before builds and pushes")
        ctx.stackbuild(stack, "build", "--backend", backend, "--push")
        times: dict[str, list[float]] = {"with cache_from": [], "without": []}
        for round_ in range(repeat):
            for variant in times:
                copy = fresh_checkout(stack, ctx.tmp / f"cache-{backend}-{round_}-{variant[:4]}")
                dockerfile = copy.parent / "ctx" / name / "Dockerfile"
                dockerfile.write_text(APP.format(salt=ctx.run_id, last=f"two-{round_}"))
                if variant == "without":
                    copy.write_text(copy.read_text().replace("  cache_from: registry\n", ""))
                with extra_engines(1, ctx.tmp) as (engine,):
                    env = {**ctx.env, "DOCKER_HOST": engine.url}
                    say(f"cache {backend}: fresh engine, last step changed, {variant}")
                    result = ctx.run(
                        [sys.executable, "-m", "stackbuild", "-f", str(copy), "build",
                         "--backend", backend], cwd=copy.parent, env=env,
                    )  # fmt: skip
                    if result.returncode != 0:
                        raise RuntimeError(f"build failed:\n{result.stderr[-2000:]}")
                    times[variant].append(result.seconds)
        with_, without = (statistics.median(times[v]) for v in times)
        lines.append(
            f"| {backend} | {without:.1f} s | {with_:.1f} s | {without / with_:.2f}x | "
            + "; ".join(f"{v}: " + ", ".join(f"{t:.1f}" for t in ts) for v, ts in times.items())
            + " |"
        )
    return [
        "| builder | rebuild without cache | with `cache_from: registry` | speed-up | runs (s) |",
        "|---|---|---|---|---|",
        *lines,
    ]


# --------------------------------------------------------------------------- history


def bench_history(
    ctx: Context, registry: LocalRegistry, repeat: int, jobs: int, skew: float
) -> list[str]:
    say("history: measuring the engine's fixed cost per build")
    c0, _cli = fixed_build_cost(ctx, 3)
    prefix = f"{ctx.prefix}-dia"
    graph = make_graph(12, "diamond", prefix=prefix, sleep=3.0, skew=skew, seed=5)
    cost = {name: c0 + graph.durations.get(name, 0.0) for name in graph.names}
    schedule = Schedule(graph.parents, graph.names, weights=cost)
    bound = schedule.lower_bound(jobs)
    # the same two orders in virtual time, free of this machine's noise
    simulated = {
        "before": simulate(Schedule(graph.parents, graph.names), jobs, cost).makespan,
        "after": simulate(Schedule(graph.parents, graph.names, weights=cost), jobs,
                          cost).makespan,
    }  # fmt: skip
    tight = max(bound, window_bound(Graph(graph.names, graph.parents, cost), jobs))
    known = f"{registry.address}/{ctx.prefix}-known"
    stack = ctx.write("history", graph, base="busybox", extra_parents="depends_on",
                      salt=f"{ctx.run_id}-0")  # fmt: skip
    with_settings(stack, known)
    say("history: the runner before builds and pushes the diamond")
    ctx.stackbuild(stack, "build", "-j", str(jobs), "--push")
    spans: dict[str, list[float]] = {"before": [], "after": []}
    for round_ in range(repeat):
        for variant in spans:
            # every image changed (a new salt), no .stackbuild/: a fresh runner's build
            copy = ctx.tmp / f"history-{round_}-{variant}"
            write_stack(copy, graph, base="busybox", extra_parents="depends_on",
                        salt=f"{ctx.run_id}-{round_ + 1}-{variant}",
                        labels={"sbbench.run": ctx.run_id})  # fmt: skip
            where = known if variant == "after" else f"{registry.address}/{ctx.prefix}-empty"
            fresh = with_settings(copy / "stack.yaml", where)
            say(f"history: fresh runner, every image changed, {variant}")
            result = ctx.stackbuild(fresh, "build", "-j", str(jobs))
            read = "read from the registry" in result.stderr
            if read != (variant == "after"):  # the figures would not mean what they say
                raise RuntimeError(f"{variant}: durations read from the registry: {read}\n"
                                   f"{result.stderr[-2000:]}")  # fmt: skip
            span = build_span(fresh)
            spans[variant].append(span if span is not None else result.seconds)
    lines = [
        f"- diamond of {len(graph)} images (sigma {skew}), sleeps "
        f"{sum(graph.durations.values()):.1f} s in all, c0 {c0:.2f} s per build, -j {jobs}: "
        f"lower bound max(CP, work/j) {bound:.2f} s"
        + (f", tighter bound {tight:.2f} s" if tight > bound else ""),
        "",
        "| fresh runner | makespan (median) | / bound | runs (s) | simulated / bound |",
        "|---|---|---|---|---|",
    ]
    for variant, values in spans.items():
        label = ("before: no durations (registry without earlier images)" if variant == "before"
                 else "after: durations read back from the registry")  # fmt: skip
        median = statistics.median(values)
        lines.append(f"| {label} | {median:.2f} s | {median / bound:.3f} | "
                     + ", ".join(f"{v:.2f}" for v in values)
                     + f" | {simulated[variant] / bound:.3f} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("cache", "history"), default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("-j", "--jobs", type=int, default=4)
    parser.add_argument("--skew", type=float, default=1.0,
                        help="sigma of the diamond's log-normal durations (benchmark 1: 0.6)")
    args = parser.parse_args(argv)
    ctx = Context(quick=False, keep=False)
    started = time.perf_counter()
    out: list[str] = []
    registry_dir = Path(tempfile.mkdtemp(prefix=f"{ctx.prefix}-registry-"))
    registry = LocalRegistry(registry_dir)
    try:
        registry.start()
        ctx.warm_up()
        if args.only in (None, "cache"):
            out += ["Fresh-runner rebuild, last of 4 steps changed:", ""]
            out += bench_cache(ctx, registry, args.repeat) + [""]
        if args.only in (None, "history"):
            out += ["Fresh-runner makespan:", ""]
            out += bench_history(ctx, registry, args.repeat, args.jobs, args.skew)
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    finally:
        untag_registry(ctx, registry)
        registry.close()
        shutil.rmtree(registry_dir, ignore_errors=True)
        ctx.close()
    command = "python3 bench/fresh.py" + (f" --only {args.only}" if args.only else "")
    command += f" --repeat {args.repeat}" if args.repeat != 2 else ""
    command += f" -j {args.jobs}" if args.jobs != 4 else ""
    command += f" --skew {args.skew}" if args.skew != 1.0 else ""
    print(f"Command: `{command}` ({(time.perf_counter() - started) / 60:.1f} minutes)\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
