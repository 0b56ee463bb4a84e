"""Makespan of one wide stack on one engine against a pool of two (same slots per engine).

    python3 bench/pool.py                       # 8 leaves of `RUN sleep 3`, 2 slots/engine
    python3 bench/pool.py --leaves 8 --sleep 3 --slots 2 --repeat 3

The stack: a busybox base and ``--leaves`` independent images on it, each
``RUN sleep``-ing (work that does not compete for this machine's 2 cores, like
builds spread over real build hosts would not). Two test engines of our own
(tests/engines.py: own sockets, data roots and bridges; the main engine is not
touched) and Debian's docker-registry on 127.0.0.1 (tests/local_registry.py),
all removed at the end.

Each round builds a fresh copy of the stack (a new busybox rootfs, so no layer
cache helps) with ``stackbuild build``, first with ``builders:`` naming one
engine, then naming both; a warm-up build on each engine comes first. The
makespan is read from the run log: from "run: N to build" to the last
"built" line. Printed: each round's two makespans, the median of each and
their ratio (target: at least 1.7). Needs root, dockerd and docker-registry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO)]

from tests.engines import ExtraEngine, extra_engines  # noqa: E402
from tests.helpers import BASE_DOCKERFILE, busybox_rootfs  # noqa: E402
from tests.local_registry import LocalRegistry  # noqa: E402

LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def write_stack(root: Path, registry: str, leaves: int, sleep: float,
                engines: list[ExtraEngine], slots: int) -> Path:  # fmt: skip
    """A base and ``leaves`` sleeping images on it, built on ``engines``."""
    (root / "base").mkdir(parents=True)
    busybox_rootfs(root / "base")  # a new random id inside: nothing is cached from before
    (root / "base" / "Dockerfile").write_text(BASE_DOCKERFILE)
    lines = ["version: 1", f"registry: {registry}", "builders:"]
    lines += [f"  - {{url: '{e.url}', name: e{i}, slots: {slots}}}" for i, e in enumerate(engines)]
    lines += ["images:", "  base:", "    context: base"]
    for i in range(leaves):
        (root / f"leaf{i}").mkdir()
        (root / f"leaf{i}" / "Dockerfile").write_text(
            f"FROM {registry}/base\nRUN sleep {sleep} && echo {i} > /leaf\n"
        )
        lines += [f"  leaf{i}:", f"    context: leaf{i}"]
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root


def build(root: Path) -> tuple[float, float, dict[str, str]]:
    """``stackbuild build``: (makespan from the run log, wall seconds, image -> engine)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(root / "stack.yaml"), "build", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{proc.stderr}")
    results = json.loads(proc.stdout)["results"]
    lines = (root / ".stackbuild" / "logs" / "stackbuild.log").read_text().splitlines()

    def at(line: str) -> datetime:
        return datetime.strptime(line[:23], LOG_TIME)

    begin = at(next(line for line in lines if " run: " in line))
    end = max(at(line) for line in lines if line[24:].startswith("built "))
    return (end - begin).total_seconds(), wall, {r["image"]: r["engine"] for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=3.0)
    parser.add_argument("--slots", type=int, default=2, help="slots per engine")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sbbench-pool-"))
    registry = LocalRegistry(work / "registry")
    registry.start()
    try:
        with extra_engines(2) as engines:
            prefix = f"{registry.address}/sbbench-{uuid.uuid4().hex[:8]}"
            for i, engine in enumerate(engines):  # first builds on a fresh engine are slower
                build(write_stack(work / f"warm{i}", f"{prefix}-warm{i}", 2, 0, [engine], 1))
            one, two = [], []
            for round_ in range(args.repeat):
                for label, used, out in (("1 engine ", engines[:1], one),
                                         ("2 engines", engines, two)):  # fmt: skip
                    name = f"r{round_}-{len(used)}"
                    root = write_stack(work / name, f"{prefix}-{name}", args.leaves, args.sleep,
                                       used, args.slots)  # fmt: skip
                    makespan, wall, where = build(root)
                    out.append(makespan)
                    spread = {e: list(where.values()).count(e) for e in sorted(set(where.values()))}
                    print(f"round {round_ + 1} {label}: makespan {makespan:6.2f}s "
                          f"(command {wall:5.2f}s) images per engine {spread}")  # fmt: skip
    finally:
        registry.close()
        subprocess.run(["rm", "-rf", str(work)])
    single, pool = statistics.median(one), statistics.median(two)
    print(f"\n{args.leaves} leaves x `RUN sleep {args.sleep:g}` on a base, {args.slots} slots "
          f"per engine: 1 engine {single:.2f}s, 2 engines {pool:.2f}s -> "
          f"{single / pool:.2f}x faster (target >= 1.7x)")  # fmt: skip


if __name__ == "__main__":
    main()
