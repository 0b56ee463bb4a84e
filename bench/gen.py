"""Synthetic stacks for the benchmarks: a DAG of images written as stack.yaml + contexts.

Two halves:

``make_graph``
    A ``Graph`` in memory: image names in topological order, each image's
    in-stack parents and its build duration (seconds of ``RUN sleep``). Shapes:

    ``chain-leaves``  a root, a chain of ``depth`` long images hanging off it,
                      and every other image a short leaf of the root (the case
                      where critical-path-first matters most);
    ``diamond``       a root, ``n - 2`` images in the middle, one image built on
                      all of them;
    ``layered``       ``depth`` levels of equal width, each image built on 1 to
                      ``fanout`` images of the level above;
    ``random``        a random DAG: each image picks 1 to ``fanout`` parents
                      among the ``window`` images generated just before it
                      (``window=0``: among all earlier ones).

``write_stack``
    Writes ``stack.yaml`` and one context directory per image: a Dockerfile
    (``FROM`` its first parent; further parents through ``COPY --from`` or
    ``depends_on``), ``files`` data files of ``context_bytes`` in total, and
    ``RUN echo <name> && sleep ...`` when the duration is not zero (one ``sleep``
    per ``SLEEP_STEP`` seconds: a longer image has a longer RUN, as real ones do). The root is a
    busybox image ``FROM scratch`` (``base="busybox"``, buildable), a tiny
    ``FROM scratch`` image (``base="scratch"``, for plan-only stacks), or
    built on an existing image (``base="<reference>"``, which stackbuild
    sees as upstream).

Usage as a script (one stack per call)::

    python3 bench/gen.py OUT --images 100 --shape random --fanout 3 --files 5 \\
        --context-bytes 20000 --sleep 0.5 --skew 1.0 --prefix demo
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SHAPES = ("chain-leaves", "diamond", "layered", "random")
BUSYBOX = Path("/usr/bin/busybox")


@dataclass
class Graph:
    """A generated DAG: ``names`` in topological order, root first."""

    names: list[str]
    parents: dict[str, list[str]]
    durations: dict[str, float] = field(default_factory=dict)  # seconds; missing = 0

    def __len__(self) -> int:
        return len(self.names)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs."""
        return [(p, n) for n in self.names for p in self.parents[n]]

    def levels(self) -> list[list[str]]:
        """Topological generations, in name order within a level (what CI stages do)."""
        level: dict[str, int] = {}
        for name in self.names:
            level[name] = 1 + max((level[p] for p in self.parents[name]), default=-1)
        out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in self.names:
            out[level[name]].append(name)
        return out

    def critical_path(self, cost: Mapping[str, float] | None = None) -> float:
        """Longest weighted path; ``cost`` defaults to the durations."""
        cost = cost if cost is not None else self.durations
        finish: dict[str, float] = {}
        for name in self.names:
            start = max((finish[p] for p in self.parents[name]), default=0.0)
            finish[name] = start + cost.get(name, 0.0)
        return max(finish.values(), default=0.0)


def skewed(rng: random.Random, median: float, sigma: float) -> float:
    """A log-normal duration: most images quick, a few very slow (sigma 0 = constant)."""
    if sigma <= 0:
        return median
    return median * math.exp(rng.gauss(0.0, sigma))


def make_graph(
    n: int,
    shape: str = "random",
    *,
    depth: int = 4,
    fanout: int = 2,
    window: int = 0,
    prefix: str = "sbgen",
    sleep: float = 0.0,
    long_sleep: float | None = None,
    skew: float = 0.0,
    seed: int = 0,
) -> Graph:
    """A DAG of ``n`` images named ``<prefix>-<role><index>``.

    ``sleep`` is the median duration of an image; ``skew`` the sigma of its
    log-normal spread. ``chain-leaves`` gives its chain ``long_sleep`` each
    (default 4 x ``sleep``) and ``diamond`` its root and sink ``sleep``.
    The root always takes ``sleep`` (no skew).
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; use one of {', '.join(SHAPES)}")
    if n < 1:
        raise ValueError("a stack needs at least one image")
    rng = random.Random(seed)
    width = len(str(n))
    root = f"{prefix}-base"
    names = [root]
    parents: dict[str, list[str]] = {root: []}
    durations = {root: sleep}

    def add(role: str, index: int, ps: Sequence[str], duration: float) -> str:
        name = f"{prefix}-{role}{index:0{width}d}"
        names.append(name)
        parents[name] = list(ps)
        durations[name] = round(duration, 3)
        return name

    if shape == "chain-leaves":
        long = 4 * sleep if long_sleep is None else long_sleep
        links = min(depth, n - 1)
        previous = root
        for i in range(links):
            previous = add("chain", i + 1, [previous], long)
        for i in range(n - 1 - links):
            add("leaf", i + 1, [root], skewed(rng, sleep, skew))
    elif shape == "diamond":
        middle = [add("mid", i + 1, [root], skewed(rng, sleep, skew)) for i in range(n - 2)]
        if n >= 2:
            add("sink", 1, middle or [root], sleep)
    elif shape == "layered":
        levels = max(1, min(depth, n - 1))
        per_level = [(n - 1) // levels + (1 if i < (n - 1) % levels else 0) for i in range(levels)]
        above = [root]
        index = 0
        for count in per_level:
            current = []
            for _ in range(count):
                index += 1
                k = rng.randint(1, min(fanout, len(above)))
                current.append(add("n", index, rng.sample(above, k), skewed(rng, sleep, skew)))
            above = current or above
    else:  # random
        for i in range(1, n):
            low = max(0, i - window) if window else 0
            k = rng.randint(1, min(fanout, i - low))
            # the first parent (FROM) is the newest of them
            picked = sorted(rng.sample(range(low, i), k), reverse=True)
            add("n", i, [names[j] for j in picked], skewed(rng, sleep, skew))
    return Graph(names, parents, durations)


SLEEP_STEP = 0.5  # s, the longest single sleep command of a generated RUN


def sleep_commands(seconds: float) -> str:
    """``sleep`` commands adding up to ``seconds``, ``SLEEP_STEP`` at most each, joined
    with ``&&``: as in real stacks, an image that takes longer asks for more work in its
    Dockerfile (longer command chains), which a first build's estimate can see."""
    steps = max(1, math.ceil(round(seconds / SLEEP_STEP, 6)))
    last = seconds - SLEEP_STEP * (steps - 1)
    sleeps = [_sleep_text(SLEEP_STEP)] * (steps - 1) + [_sleep_text(last)]
    return " && ".join(f"sleep {s}" for s in sleeps)


def _sleep_text(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def dockerfile(
    name: str,
    parents: Sequence[str],
    duration: float,
    *,
    base: str,
    files: bool,
    extra_parents: str,
    salt: str,
) -> str:
    lines: list[str] = []
    if not parents:
        if base == "busybox":
            lines += ["FROM scratch", "COPY rootfs/ /"]
        elif base == "scratch":
            lines += ["FROM scratch", "COPY root.txt /"]
        else:
            lines.append(f"FROM {base}")
    else:
        lines.append(f"FROM {parents[0]}")
        if extra_parents == "copy":
            lines += [f"COPY --from={p} /etc/passwd /tmp/from-{p}" for p in parents[1:]]
    if files:
        lines.append(f"COPY files/ /data/{name}/")
    if duration > 0 or salt:
        # the image's name in the command: two images never share a cached RUN layer
        tag = f"{name}-{salt}" if salt else name
        lines.append(f"RUN echo {tag} >/dev/null && {sleep_commands(duration)}")
    if not parents and base == "busybox":
        lines.append('CMD ["sh"]')
    return "\n".join(lines) + "\n"


def _busybox_rootfs(directory: Path) -> None:
    # tests/helpers.busybox_rootfs, without importing the test package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from tests.helpers import busybox_rootfs
    finally:
        sys.path.pop(0)
    busybox_rootfs(directory)


def write_stack(
    out: str | os.PathLike[str],
    graph: Graph,
    *,
    base: str = "busybox",
    files: int = 0,
    context_bytes: int = 0,
    extra_parents: str = "copy",
    salt: str = "",
    labels: Mapping[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``out/stack.yaml`` and ``out/ctx/<image>/``; returns the stack.yaml path.

    ``files`` data files per context (under ``files/``), ``context_bytes`` of
    random content per context in total, split evenly. ``extra_parents``:
    ``copy`` (``COPY --from``; needs a busybox root to build) or
    ``depends_on``. ``salt`` goes into every ``RUN``, so two stacks with
    different salts share no layer cache. ``labels`` go to ``defaults``.
    """
    if extra_parents not in ("copy", "depends_on"):
        raise ValueError("extra_parents must be 'copy' or 'depends_on'")
    out = Path(out)
    ctx = out / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    per_file = context_bytes // files if files else 0
    block = rng.randbytes(per_file) if per_file else b""
    busybox_dir: Path | None = None
    lines = ["# generated by bench/gen.py", "version: 1"]
    if labels:
        lines += ["defaults:", "  labels:"]
        lines += [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in labels.items()]
    lines.append("images:")
    for name in graph.names:
        ps = graph.parents[name]
        directory = ctx / name
        directory.mkdir(exist_ok=True)
        (directory / "Dockerfile").write_text(
            dockerfile(
                name,
                ps,
                graph.durations.get(name, 0.0),
                base=base,
                files=files > 0,
                extra_parents=extra_parents,
                salt=salt,
            )
        )
        if not ps and base == "busybox":
            if busybox_dir is None:
                _busybox_rootfs(directory)
                busybox_dir = directory
            else:
                shutil.copytree(busybox_dir / "rootfs", directory / "rootfs", symlinks=True)
        elif not ps and base == "scratch":
            (directory / "root.txt").write_text(f"{name}\n")
        if files:
            data = directory / "files"
            data.mkdir(exist_ok=True)
            for i in range(files):
                # distinct content per file: its name, then the shared random block
                header = f"{name}/{i}\n".encode()
                (data / f"f{i:04d}.dat").write_bytes(header + block[len(header) :])
        lines.append(f"  {name}:")
        lines.append(f"    context: ctx/{name}")
        if extra_parents == "depends_on" and len(ps) > 1:
            lines.append(f"    depends_on: [{', '.join(ps[1:])}]")
    stack = out / "stack.yaml"
    stack.write_text("\n".join(lines) + "\n")
    return stack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write stack.yaml and ctx/ into")
    parser.add_argument("--images", "-n", type=int, default=100)
    parser.add_argument("--shape", choices=SHAPES, default="random")
    parser.add_argument("--depth", type=int, default=4, help="chain length / number of levels")
    parser.add_argument("--fanout", type=int, default=2, help="most parents per image")
    parser.add_argument("--window", type=int, default=0, help="random: parents among the last K")
    parser.add_argument("--files", type=int, default=0, help="data files per context")
    parser.add_argument("--context-bytes", type=int, default=0, help="data bytes per context")
    parser.add_argument("--sleep", type=float, default=0.0, help="median RUN sleep, seconds")
    parser.add_argument("--long-sleep", type=float, default=None, help="chain-leaves: chain")
    parser.add_argument("--skew", type=float, default=0.0, help="log-normal sigma of durations")
    parser.add_argument("--base", default="busybox", help="busybox | scratch | <reference>")
    parser.add_argument("--extra-parents", choices=("copy", "depends_on"), default="copy")
    parser.add_argument("--salt", default="")
    parser.add_argument("--prefix", default="sbgen")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    graph = make_graph(
        args.images,
        args.shape,
        depth=args.depth,
        fanout=args.fanout,
        window=args.window,
        prefix=args.prefix,
        sleep=args.sleep,
        long_sleep=args.long_sleep,
        skew=args.skew,
        seed=args.seed,
    )
    stack = write_stack(
        args.out,
        graph,
        base=args.base,
        files=args.files,
        context_bytes=args.context_bytes,
        extra_parents=args.extra_parents,
        salt=args.salt,
        seed=args.seed,
    )
    print(f"{stack}: {len(graph)} images, {len(graph.edges)} edges, "
          f"critical path {graph.critical_path():.1f}s, "
          f"total work {sum(graph.durations.values()):.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
