"""A layer cache that travels: ``cache_from: registry`` on a fresh engine, real registry.

A 3-step image (COPY, RUN, RUN) is built and pushed from the main engine; then, from a
fresh checkout (no ``.stackbuild/``) on a new, empty engine, its last step is changed and
the image rebuilt: the build log shows Docker reusing the unchanged steps from the
registry's image ("Using cache" for the classic builder, "CACHED" for BuildKit) and only
the last step running. A ``cache_from`` whose registry cannot be reached is a warning and
the build goes on without it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackbuild.state import StateDir
from tests.engines import ExtraEngine, engines_or_skip
from tests.helpers import TEST_LABEL, write_base_context
from tests.integration.test_build import run_cli

docker = pytest.mark.docker

APP = "FROM scratch\nCOPY rootfs/ /\nRUN echo one > /one\nRUN echo {last} > /two\n"


@pytest.fixture(scope="module")
def fresh_engines() -> Iterator[dict[str, ExtraEngine]]:
    """An empty engine per backend: a fresh CI runner each (removed with all it holds),
    started and stopped together."""
    with engines_or_skip(2) as engines:
        yield dict(zip(("docker", "buildkit"), engines, strict=True))


def write_app(root: Path, prefix: str, registry: str, last: str, cache_from: str) -> Path:
    write_base_context(root / "app")  # busybox rootfs; its Dockerfile is replaced below
    (root / "app" / "Dockerfile").write_text(APP.format(last=last))
    (root / "stack.yaml").write_text(
        "version: 1\n"
        f"registry: {registry}\n"
        "defaults:\n"
        f"  labels: {{{TEST_LABEL}: {prefix}}}\n"
        f"  cache_from: {cache_from}\n"
        "images:\n"
        f"  {prefix}/app:\n"
        "    context: app\n"
    )
    return root


def build_log(root: Path, prefix: str) -> list[str]:
    text = StateDir(root).log_path(f"{prefix}/app").read_text()
    return text.splitlines()


def check(proc: Any, code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr}\n{proc.stdout}"
    assert "Traceback" not in proc.stderr


@docker
@pytest.mark.parametrize("backend", ["docker", "buildkit"])
def test_a_fresh_engine_rebuilds_only_the_changed_last_step(
    tmp_path: Path, unique: str, cleanup_images: set[str], registry: Any,
    fresh_engines: dict[str, ExtraEngine], backend: str, request: pytest.FixtureRequest,
) -> None:
    fresh_engine = fresh_engines[backend]  # used by this test only: still empty
    if backend == "buildkit":
        request.getfixturevalue("buildkit_backend")  # skips where BuildKit cannot build
    address = f"{registry.address}/{unique}"
    first = write_app(tmp_path / "ci-1", unique, address, "two", "registry")
    check(run_cli(first, "build", "--backend", backend, "--push"))
    assert "latest" in registry.tags(f"{unique}/{unique}/app")

    # a new runner: a fresh checkout (no .stackbuild/) on an empty engine, last step changed
    second = tmp_path / "ci-2"
    shutil.copytree(first, second, symlinks=True, ignore=shutil.ignore_patterns(".stackbuild"))
    (second / "app" / "Dockerfile").write_text(APP.format(last="three"))
    proc = run_cli(second, "build", "--backend", backend, DOCKER_HOST=fresh_engine.url)
    check(proc)
    log = build_log(second, unique)
    text = "\n".join(log)
    if backend == "docker":
        # Step 2/4 COPY and 3/4 RUN echo one from the cache, 4/4 runs
        steps = [i for i, line in enumerate(log) if " Step " in line or "Step " in line[:30]]
        assert sum("Using cache" in line for line in log) == 2, text
        last = next(i for i in steps if "RUN echo three" in log[i])
        assert "Running in" in log[last + 1], text
        assert not any("Running in" in line for line in log[:last]), text
    else:
        cached = [line for line in log if line.endswith(" CACHED")]
        assert len(cached) == 2, text  # COPY and RUN echo one
        assert any("[3/3] RUN echo three" in line for line in log), text
        assert not any("[2/3] RUN echo one" in line and "DONE" in line for line in log)


@docker
def test_an_unreachable_cache_registry_is_a_warning_and_the_build_runs(
    tmp_path: Path, unique: str, cleanup_images: set[str], registry: Any,
) -> None:
    root = write_app(tmp_path, unique, f"{registry.address}/{unique}", "two",
                     "[127.0.0.1:1/nowhere/app:latest]")
    proc = run_cli(root, "build")
    check(proc)
    # led by where stack.yaml names it: line 5, `  cache_from: [127.0.0.1:1/...]`
    where = f"{root / 'stack.yaml'}:5:16"  # run_cli names it by its absolute path
    assert (f"warning: {unique}/app: {where}: cache_from 127.0.0.1:1/nowhere/app:latest"
            in proc.stderr)  # fmt: skip
    assert "building without it" in proc.stderr
