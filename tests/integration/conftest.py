"""Shared fixtures for tests against a real Docker engine.

- ``docker_client`` (session): a pinged ``docker.DockerClient``; without an engine
  the test is skipped, or fails when ``STACKBUILD_REQUIRE_DOCKER=1`` (CI).
- ``docker_backend`` (session): a ``DockerBackend`` on the same engine.
- ``unique``: a short prefix (``sbt-<8 hex>``) for the names of one test's images.
- ``cleanup_images``: removes, at teardown, the images and containers of that test
  only (see ``remove_test_images``); other tests' and users' images are never touched.

Image-building helpers (busybox rootfs, base context, requests) are in tests/helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import pytest

from tests.helpers import TEST_LABEL


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
    from stackbuild.backends.docker_api import DockerBackend

    backend = DockerBackend()
    backend.ping()
    yield backend
    backend.close()


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
    only loses the test's tag. Containers: named ``<prefix>...``, whose command
    mentions ``prefix`` (build steps), or created from one of those images.
    """
    import docker.errors

    api = client.api
    ids = set(extra_ids)
    tags: list[tuple[str, str]] = []  # (image id, tag)
    for image in api.images(all=True):
        if (image.get("Labels") or {}).get(TEST_LABEL) == prefix:
            ids.add(image["Id"])
        tags.extend((image["Id"], t) for t in image.get("RepoTags") or () if t.startswith(prefix))
    for container in api.containers(all=True):
        names = container.get("Names") or ()
        if (
            container.get("ImageID") in ids | {i for i, _ in tags}
            or prefix in str(container.get("Command", ""))
            or any(n.lstrip("/").startswith(prefix) for n in names)
        ):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True)
    # children before parents: an image with children cannot be removed, even by force
    for _, tag in sorted(tags, key=lambda it: _depth(api, it[0]), reverse=True):
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image(tag)
    for image_id in sorted(ids, key=lambda i: _depth(api, i), reverse=True):
        with contextlib.suppress(docker.errors.NotFound):
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
