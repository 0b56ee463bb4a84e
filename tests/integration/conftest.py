"""Shared fixtures for tests against a real Docker engine.

- ``docker_client`` (session): a pinged ``docker.DockerClient``; without an engine
  the test is skipped, or fails when ``STACKBUILD_REQUIRE_DOCKER=1`` (CI).
- ``docker_backend`` (session): the engine with the classic builder (``open_backend``).
- ``buildkit_backend`` (session): the engine with the BuildKit builder; skipped without a
  docker CLI that can drive BuildKit.
- ``base``: a busybox base image built by the test module's ``backend`` fixture
  (once per backend and session, see ``base_image``); its reference.
- ``unique``: a short prefix (``sbt-<8 hex>``) for the names of one test's images.
- ``cleanup_images``: removes, at teardown, the images and containers of that test
  only (see ``remove_test_images``); other tests' and users' images are never touched.
- ``example_run`` (session): the repository's example stack plus one image that fails,
  built once for the tests that only read what that run left (report, layers, checks).
- ``registry`` / ``auth_registry``: Debian's docker-registry on 127.0.0.1:<free port>
  (plain, or htpasswd auth), stoppable and restartable mid-test, removed at teardown
  with everything pushed to it (see tests/local_registry.py).

Image-building helpers (busybox rootfs, base context, requests) are in tests/helpers.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from stackbuild.backends import open_backend
from stackbuild.errors import BuildKitUnavailable
from tests.helpers import TEST_LABEL, example_stack, make_request, write_base_context


def _no_engine(reason: str) -> NoReturn:
    message = f"no Docker engine answers ({reason}); run scripts/ensure-docker.sh"
    if os.environ.get("STACKBUILD_REQUIRE_DOCKER") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as e:  # any failure here means "no usable engine"
        _no_engine(str(e).splitlines()[0] if str(e) else type(e).__name__)
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_backend(docker_client: Any) -> Iterator[Any]:
    backend = open_backend("docker")
    backend.ping()
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def buildkit_backend(docker_client: Any) -> Iterator[Any]:
    backend = open_backend("buildkit")
    try:
        backend.builder.cli(backend)
    except BuildKitUnavailable as e:
        pytest.skip(str(e))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def base_image(
    docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[Any], str]]:
    """``base_image(backend)``: a busybox base image built by ``backend``; its reference.

    Built once per backend class and session; removed at the end of the session.
    """
    built: dict[type, str] = {}

    def get(backend: Any) -> str:
        if type(backend) not in built:
            prefix = new_unique()
            ref = f"{prefix}/base:latest"
            ctx = write_base_context(tmp_path_factory.mktemp("base"))
            request = make_request(ctx, f"{prefix}/base", unique=prefix, tags=(ref,))
            result = backend.build(request, lambda line: None, threading.Event())
            assert result.ok, result.error
            built[type(backend)] = ref
        return built[type(backend)]

    yield get
    for ref in built.values():
        remove_test_images(docker_client, ref.partition("/")[0])


@pytest.fixture
def base(backend: Any, base_image: Callable[[Any], str]) -> str:
    """The base image built by the module's (or parametrized) ``backend`` fixture."""
    return base_image(backend)


def new_unique() -> str:
    return f"sbt-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique() -> str:
    """A prefix for this test's image repositories, e.g. ``sbt-1a2b3c4d``."""
    return new_unique()


def remove_test_images(client: Any, prefix: str, extra_ids: Iterable[str] = ()) -> None:
    """Remove what one test made: its containers first, then its images.

    Images labelled ``stackbuild.test=<prefix>`` (which catches ones that lost
    their tags) or in ``extra_ids`` are force-removed; tags in a repository
    starting with ``prefix`` are untagged, so an image the test did not build
    only loses the test's tag. Untagged images built on one of the test's own
    images (the committed steps of a failed or cancelled build, a child that
    lost its tags) are force-removed too: found through ``ParentId``, so only
    the classic builder's chains. Containers: named ``<prefix>...``, whose
    command mentions ``prefix`` (build steps), or created from one of those images.
    """
    import docker.errors

    api = client.api
    images = api.images(all=True)
    ids = set(extra_ids)
    tags: list[tuple[str, str]] = []  # (image id, tag)
    parent_of: dict[str, str] = {}
    foreign: set[str] = set()  # images that also carry someone else's tags
    for image in images:
        if (image.get("Labels") or {}).get(TEST_LABEL) == prefix:
            ids.add(image["Id"])
        parent_of[image["Id"]] = image.get("ParentId") or ""
        for tag in image.get("RepoTags") or ():
            if tag.startswith(prefix):
                tags.append((image["Id"], tag))
            elif tag != "<none>:<none>":
                foreign.add(image["Id"])
    ours = (ids | {i for i, _ in tags}) - foreign
    for image in images:
        if image["Id"] in ours or image["Id"] in foreign:
            continue
        seen: set[str] = set()
        parent = parent_of.get(image["Id"], "")
        while parent and parent not in seen:
            if parent in ours:
                ids.add(image["Id"])
                break
            seen.add(parent)
            parent = parent_of.get(parent, "")
    tagged = {i for i, _ in tags}
    for container in api.containers(all=True):
        names = container.get("Names") or ()
        if (
            container.get("ImageID") in ids | tagged
            or prefix in str(container.get("Command", ""))
            or any(n.lstrip("/").startswith(prefix) for n in names)
        ):
            try:
                api.remove_container(container["Id"], force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                if error.status_code != 409:  # 409: the engine is removing it already
                    raise
    # children before parents: an image with children cannot be removed, even by force,
    # and untagging one only leaves it dangling
    tags_of: dict[str, list[str]] = {}
    for image_id, tag in tags:
        tags_of.setdefault(image_id, []).append(tag)
    for image_id in sorted(ids | tagged, key=lambda i: _depth(api, i), reverse=True):
        for tag in tags_of.get(image_id, ()):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(tag)
        if image_id in ids:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(image_id, force=True)


def _depth(api: Any, image_id: str) -> int:
    import docker.errors

    try:
        return len(api.history(image_id))
    except docker.errors.NotFound:
        return 0


@pytest.fixture
def cleanup_images(docker_client: Any, unique: str) -> Iterator[set[str]]:
    """Removes this test's images and containers at teardown.

    Yields a set: add image ids the prefix and label would not find.
    """
    extra: set[str] = set()
    yield extra
    remove_test_images(docker_client, unique, extra)


def _registry(tmp_path_factory: pytest.TempPathFactory, users: dict[str, str] | None) -> Any:
    from tests.local_registry import LocalRegistry, RegistryUnavailable

    try:
        registry = LocalRegistry(tmp_path_factory.mktemp("registry"), users)
    except RegistryUnavailable as e:
        message = f"{e}; run scripts/ensure-docker.sh as root"
        if os.environ.get("STACKBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    registry.start()
    return registry


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running ``tests.local_registry.LocalRegistry`` on 127.0.0.1 (``.address``), no auth.

    ``stop()``/``start()`` take it down and back mid-test (same port, same data);
    teardown stops it and deletes everything pushed to it.
    """
    local = _registry(tmp_path_factory, None)
    yield local
    local.close()


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Like ``registry``, with htpasswd auth for ``.users`` ({"stackbuild": "s3cret"});
    ``docker_config(dir, user, password)`` writes a DOCKER_CONFIG directory for it."""
    local = _registry(tmp_path_factory, {"stackbuild": "s3cret"})
    yield local
    local.close()


@dataclass(frozen=True)
class ExampleRun:
    """One ``build -j 2 --json`` of the example stack plus ``<prefix>/broken`` (FROM base,
    ``RUN exit 1``): exit 1, six images built (their checks passed), broken failed."""

    stack: Path  # its stack.yaml
    prefix: str  # every image is <prefix>/<name>
    results: dict[str, dict]  # by short name (base, ..., broken), from --json
    stderr: str


@pytest.fixture(scope="session")
def example_run(docker_client: Any, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ExampleRun]:  # fmt: skip
    """Built once per session: the tests using it only read what the run left (the
    engine's images, ``.stackbuild/``); none of them builds in it again."""
    prefix = new_unique()
    root = tmp_path_factory.mktemp("example")
    stack = example_stack(root, prefix)
    broken = root / "images" / "broken"
    broken.mkdir()
    (broken / "Dockerfile").write_text(f"FROM {prefix}/base\nRUN exit 1\n")
    with stack.open("a") as manifest:
        manifest.write(f"  {prefix}/broken:\n    context: images/broken\n")
    repo = Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "stackbuild", "-f", str(stack), "build", "-j", "2", "--json"],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr + proc.stdout
        results = {r["image"].partition("/")[2]: r for r in json.loads(proc.stdout)["results"]}
        yield ExampleRun(stack, prefix, results, proc.stderr)
    finally:
        remove_test_images(docker_client, prefix)
