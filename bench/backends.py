"""The fixed cost of one small build on each backend, side by side (BENCHMARKS.md).

One image: FROM scratch, COPY of Debian's static busybox, one RUN. Built by
``stackbuild build --no-cache --force`` with ``--backend docker`` (classic) and
``--backend buildkit``, and by the docker CLI itself both ways (``docker build``
and ``DOCKER_BUILDKIT=1 docker build``), alternately, ``--runs`` times each; the
median wall time of whole commands. Run: ``python3 bench/backends.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "true"]\n'


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=300)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    name = f"bench-backends-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="stackbuild-bench-") as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        shutil.copy("/usr/bin/busybox", root / "img" / "busybox")
        (root / "img" / "Dockerfile").write_text(DOCKERFILE)
        (root / "stack.yaml").write_text(f"version: 1\nimages:\n  {name}:\n    context: img\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        stackbuild = [sys.executable, "-m", "stackbuild", "-f", str(root / "stack.yaml"),
                      "build", "--no-cache", "--force", name]  # fmt: skip
        commands = {
            "stackbuild --backend docker": (stackbuild + ["--backend", "docker"], env),
            "stackbuild --backend buildkit": (stackbuild + ["--backend", "buildkit"], env),
            "docker build (classic)": (
                [DOCKER, "build", "-q", "--no-cache", "-t", f"{name}:cli", str(root / "img")],
                {**os.environ, "DOCKER_BUILDKIT": "0"},
            ),
            "DOCKER_BUILDKIT=1 docker build": (
                [DOCKER, "build", "-q", "--no-cache", "-t", f"{name}:cli", str(root / "img")],
                {**os.environ, "DOCKER_BUILDKIT": "1"},
            ),
        }
        times: dict[str, list[float]] = {label: [] for label in commands}
        try:
            for command, command_env in commands.values():  # warm-up, not counted
                timed(command, command_env)
            for _ in range(runs):
                for label, (command, command_env) in commands.items():
                    times[label].append(timed(command, command_env))
        finally:
            listed = subprocess.run([DOCKER, "images", "-q", name], capture_output=True,
                                    text=True).stdout.split()  # fmt: skip
            if listed:
                subprocess.run([DOCKER, "rmi", "-f", *set(listed)], capture_output=True)
    print(f"| command | median of {runs} (s) | min (s) |")
    print("|---|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
