"""DockerBackend against a real engine: streaming, failure, cancellation, fingerprints, pins."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from stackbuild.backends.base import BuildResult, ContextFile
from stackbuild.backends.docker_api import DockerBackend
from stackbuild.errors import EngineUnreachable
from tests.helpers import fake_fingerprint, make_request, write_base_context
from tests.integration.conftest import new_unique, remove_test_images

pytestmark = pytest.mark.docker


def _stand_in_write_context_tar(
    files: Sequence[ContextFile], dockerfile_bytes: bytes, dockerfile_name: str, fileobj: BinaryIO
) -> None:
    # only used while stackbuild/context.py does not exist yet
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for f in files:
            tar.add(f.source, arcname=f.path, recursive=False)
        info = tarfile.TarInfo(dockerfile_name)
        info.size = len(dockerfile_bytes)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(dockerfile_bytes))


@pytest.fixture(scope="module", autouse=True)
def _context_module() -> Iterator[None]:
    try:
        import stackbuild.context  # noqa: F401
    except ImportError:
        module = types.ModuleType("stackbuild.context")
        module.write_context_tar = _stand_in_write_context_tar  # type: ignore[attr-defined]
        sys.modules["stackbuild.context"] = module
        yield
        sys.modules.pop("stackbuild.context", None)
    else:
        yield


@pytest.fixture(scope="module")
def base(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A busybox base image shared by this module's tests; its reference."""
    prefix = new_unique()
    ref = f"{prefix}/base:latest"
    ctx = write_base_context(tmp_path_factory.mktemp("base"))
    request = make_request(ctx, f"{prefix}/base", unique=prefix, tags=(ref,))
    result = DockerBackend().build(request, lambda line: None, threading.Event())
    assert result.ok, result.error
    yield ref
    remove_test_images(docker_client, prefix)


def _context(directory: Path, dockerfile: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    return directory


def _containers_of(client: Any, marker: str, running_only: bool = False) -> list[dict]:
    """Containers whose command mentions ``marker`` (build steps echo it)."""
    return [
        c
        for c in client.api.containers(all=not running_only)
        if marker in str(c.get("Command", ""))
    ]


def _wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_base_image_builds_streams_and_is_found_by_fingerprint(
    docker_backend: DockerBackend, docker_client: Any, unique: str, tmp_path: Path, cleanup_images
) -> None:
    ctx = write_base_context(tmp_path / "base", extra="RUN echo marker-xyz\n")
    repository = f"{unique}/base"
    fingerprint = fake_fingerprint(unique, "base")
    request = make_request(
        ctx,
        repository,
        unique=unique,
        fingerprint=fingerprint,
        tags=(f"{repository}:{fingerprint[7:19]}", f"{repository}:latest"),
    )
    lines: list[str] = []

    result = docker_backend.build(request, lines.append, threading.Event())

    assert result.ok, result.error
    assert result.image_id and result.image_id.startswith("sha256:")
    assert "marker-xyz" in lines  # the RUN's output, as its own line
    assert any(line.startswith("Step 1/") for line in lines)
    assert all("\n" not in line for line in lines)
    for tag in request.tags:
        assert docker_client.api.inspect_image(tag)["Id"] == result.image_id
    labels = docker_backend.image_labels(result.image_id)
    assert labels is not None
    assert labels["stackbuild.fingerprint"] == fingerprint
    assert labels["stackbuild.image"] == "base"

    assert docker_backend.find_fingerprint(repository, fingerprint) == result.image_id
    assert docker_backend.find_fingerprint(repository, fake_fingerprint("unknown")) is None
    # labelled, but not tagged where a child would look for it
    assert docker_backend.find_fingerprint(f"{unique}/other", fingerprint) is None
    assert docker_backend.image_labels(f"{unique}/nothing:here") is None


def test_failing_step_fails_the_build_and_leaves_no_container(
    docker_backend: DockerBackend,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    ctx = _context(tmp_path / "bad", f"FROM {base}\nRUN echo {unique}-failing && false\n")
    request = make_request(ctx, f"{unique}/bad", unique=unique)
    lines: list[str] = []

    result = docker_backend.build(request, lines.append, threading.Event())

    assert not result.ok and not result.cancelled
    assert result.error and "false" in result.error
    assert "returned a non-zero code: 1" in result.error
    assert f"{unique}-failing" in lines
    assert any(result.error in line for line in lines)  # the error reaches the log too
    assert _wait_until(lambda: not _containers_of(docker_client, unique), 5)
    assert docker_client.api.images(name=f"{unique}/bad") == []


def test_cancel_stops_the_build_on_the_engine(
    docker_backend: DockerBackend,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    marker = f"{unique}-sleeping"
    ctx = _context(tmp_path / "slow", f"FROM {base}\nRUN echo {marker} && sleep 60\n")
    request = make_request(ctx, f"{unique}/slow", unique=unique)
    cancel = threading.Event()
    started = threading.Event()
    results: list[BuildResult] = []

    def log(line: str) -> None:
        if line == marker:
            started.set()

    thread = threading.Thread(
        target=lambda: results.append(docker_backend.build(request, log, cancel)), daemon=True
    )
    thread.start()
    assert started.wait(30), "the RUN step never started"
    # the engine may still list the step's container as "created" right after its output
    assert _wait_until(lambda: _containers_of(docker_client, marker, running_only=True), 5)

    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(10)

    assert not thread.is_alive(), "build() did not return within 10 s of cancel"
    assert time.monotonic() - cancelled_at < 10
    assert results and results[0].cancelled and not results[0].ok
    # the engine aborted the step and forcerm removed its container
    assert _wait_until(lambda: not _containers_of(docker_client, marker), 10)


def test_pins_make_from_use_exactly_the_pinned_parent(
    docker_backend: DockerBackend,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    parents = {}
    for letter in "ab":
        ctx = _context(tmp_path / letter, f"FROM {base}\nRUN echo {letter} > /marker\n")
        request = make_request(
            ctx,
            f"{unique}/parent-{letter}",
            unique=unique,
            tags=(f"{unique}/parent-{letter}:1",),
        )
        result = docker_backend.build(request, lambda line: None, threading.Event())
        assert result.ok, result.error
        parents[letter] = result.image_id
    # without the pin, FROM <unique>/parent would resolve to b
    docker_backend.tag(f"{unique}/parent-b:1", f"{unique}/parent")

    ctx = _context(tmp_path / "child", f"FROM {unique}/parent\nRUN cat /marker\n")
    digest_ref = "busybox@sha256:" + "0" * 64
    request = make_request(
        ctx,
        f"{unique}/child",
        unique=unique,
        pins={f"{unique}/parent": f"{unique}/parent-a:1", digest_ref: "ignored"},
    )
    lines: list[str] = []
    result = docker_backend.build(request, lines.append, threading.Event())

    assert result.ok, result.error
    assert any(digest_ref in line and "nothing to tag" in line for line in lines)
    assert "a" in lines and "b" not in lines  # the output of RUN cat /marker
    assert docker_client.api.inspect_image(f"{unique}/parent")["Id"] == parents["a"]
    output = docker_client.containers.run(
        result.image_id, ["cat", "/marker"], name=f"{unique}-check", remove=True
    )
    assert output == b"a\n"


def test_pin_to_a_missing_image_fails_clearly(
    docker_backend: DockerBackend, base: str, unique: str, tmp_path: Path, cleanup_images
) -> None:
    ctx = _context(tmp_path / "orphan", f"FROM {unique}/parent:1\n")
    request = make_request(
        ctx, f"{unique}/orphan", unique=unique, pins={f"{unique}/parent:1": f"{unique}/gone:1"}
    )
    result = docker_backend.build(request, lambda line: None, threading.Event())

    assert not result.ok and not result.cancelled
    assert result.error and f"{unique}/gone:1" in result.error and "no such image" in result.error


def test_unreachable_engine_raises_one_clear_error(tmp_path: Path) -> None:
    backend = DockerBackend(base_url="unix:///nonexistent.sock")
    with pytest.raises(EngineUnreachable) as info:
        backend.ping()
    message = str(info.value)
    assert "unix:///nonexistent.sock" in message and "DOCKER_HOST" in message
    assert "\n" not in message
    assert info.value.exit_code == 3
    # every other call says the same, never a traceback from the SDK
    with pytest.raises(EngineUnreachable):
        backend.find_fingerprint("x/base", fake_fingerprint("x"))
    ctx = _context(tmp_path / "any", "FROM scratch\n")
    with pytest.raises(EngineUnreachable):
        backend.build(
            make_request(ctx, "x/any", unique="sbt-none", pins={"x/p": "x/q"}),
            lambda line: None,
            threading.Event(),
        )


def test_importing_the_backend_does_not_import_docker() -> None:
    code = (
        "import sys; from stackbuild.backends.docker_api import DockerBackend; "
        "DockerBackend(); assert 'docker' not in sys.modules, 'docker imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
