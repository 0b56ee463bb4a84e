"""What the engine with either builder (classic, BuildKit) promises, on a real engine, each test run
once per backend: building, streaming, failure, cancellation, pins, fingerprints, an
unreachable engine. What one backend alone does is in test_buildkit_backend.py."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends import open_backend
from stackbuild.backends.contract import FINGERPRINT_LABEL, BuildResult
from stackbuild.backends.engine import DockerEngine
from stackbuild.errors import EngineUnreachable
from tests.helpers import (
    buildkit_printed,
    containers_mentioning,
    fake_fingerprint,
    make_request,
    wait_until,
    write_base_context,
    write_dockerfile,
)

pytestmark = pytest.mark.docker

BACKENDS = pytest.mark.parametrize(
    "kind", ["docker", "buildkit"], ids=["docker", "buildkit"]
)


@pytest.fixture(params=["docker", "buildkit"])
def backend(request: pytest.FixtureRequest) -> DockerEngine:
    """The backend under test: the SDK's classic builder, then BuildKit through the CLI."""
    return request.getfixturevalue(f"{request.param}_backend")


def _is_buildkit(backend: DockerEngine) -> bool:
    return backend.builder.kind == "buildkit"


def _printed(backend: DockerEngine, lines: list[str], text: str) -> bool:
    """Whether a RUN step printed exactly ``text``: its own line, or BuildKit's "#7 0.1 text"."""
    return buildkit_printed(lines, text) if _is_buildkit(backend) else text in lines


def _processes() -> dict[int, tuple[int, str, str]]:
    """Live processes of this machine: pid -> (parent pid, start time, command line)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # state; a zombie has ended already
            found[int(entry.name)] = (int(fields[1]), fields[19], cmdline.decode(errors="replace"))
    return found


def _processes_with(text: str) -> set[tuple[int, str]]:
    """(pid, start time) of the processes whose command line has ``text``, and their children."""
    procs = _processes()
    found = {pid for pid, (_, _, cmd) in procs.items() if text in cmd and pid != os.getpid()}
    found |= {pid for pid, (ppid, _, _) in procs.items() if ppid in found}
    return {(pid, procs[pid][1]) for pid in found}


def _still_running(seen: set[tuple[int, str]]) -> set[tuple[int, str]]:
    procs = _processes()
    return {(pid, start) for pid, start in seen if pid in procs and procs[pid][1] == start}


@pytest.mark.usefixtures("cleanup_images")
def test_builds_tags_labels_streams_the_exact_context_and_is_found_by_fingerprint(
    backend: DockerEngine, docker_client: Any, unique: str, tmp_path: Path
) -> None:
    ctx = write_base_context(
        tmp_path / "base",
        extra=f"COPY sent.txt /ctx/\nRUN test ! -e /ctx/not-sent.txt && echo {unique}-marker\n",
    )
    (ctx / "sent.txt").write_text("sent\n")
    repository = f"{unique}/base"
    fingerprint = fake_fingerprint(unique, "base")
    request = make_request(
        ctx,
        repository,
        unique=unique,
        fingerprint=fingerprint,
        tags=(f"{repository}:{fingerprint[7:19]}", f"{repository}:latest"),
        build_args={"UNUSED": "1"},
    )
    request = dataclasses.replace(request, labels={**request.labels, "org.example.team": "infra"})
    # on disk, but not in request.context_files: must not reach the engine
    (ctx / "not-sent.txt").write_text("no\n")
    lines: list[str] = []

    result = backend.build(request, lines.append, threading.Event())

    assert result.ok, (result.error, lines[-20:])
    assert result.image_id and result.image_id.startswith("sha256:")
    if _is_buildkit(backend):
        assert any(
            re.match(rf"#\d+ \[\d+/\d+\] RUN .*echo {unique}-marker", line) for line in lines
        )
    else:
        assert any(line.startswith("Step 1/") for line in lines)
    assert _printed(backend, lines, f"{unique}-marker")  # the RUN's output, as its own line
    assert all("\n" not in line and line.strip() for line in lines)
    for tag in request.tags:
        assert docker_client.api.inspect_image(tag)["Id"] == result.image_id
    labels = backend.image_labels(result.image_id)
    assert labels is not None
    assert labels[FINGERPRINT_LABEL] == fingerprint
    assert labels["stackbuild.image"] == "base"
    assert labels["org.example.team"] == "infra"
    output = docker_client.containers.run(
        result.image_id, ["ls", "/ctx"], name=f"{unique}-ls", remove=True
    )
    assert output == b"sent.txt\n"

    found = backend.fingerprinted_images()
    assert [image.id for image in found[fingerprint]] == [result.image_id]
    assert set(request.tags) <= set(found[fingerprint][0].tags)
    assert fake_fingerprint("unknown") not in found
    assert backend.image_labels(f"{unique}/nothing:here") is None


@pytest.mark.usefixtures("cleanup_images")
def test_failing_run_fails_with_the_error_line_and_leaves_nothing(
    backend: DockerEngine, docker_client: Any, base: str, unique: str, tmp_path: Path
) -> None:
    ctx = write_dockerfile(tmp_path / "bad", f"FROM {base}\nRUN echo {unique}-failing && false\n")
    request = make_request(ctx, f"{unique}/bad", unique=unique)
    lines: list[str] = []

    result = backend.build(request, lines.append, threading.Event())

    assert not result.ok and not result.cancelled
    assert result.error and "false" in result.error
    if _is_buildkit(backend):
        assert "exit code: 1" in result.error
        assert "\n" not in result.error
        assert result.error in lines  # the error reaches the log too
    else:
        assert "returned a non-zero code: 1" in result.error
        assert any(result.error in line for line in lines)  # the error reaches the log too
    assert _printed(backend, lines, f"{unique}-failing")
    assert wait_until(lambda: not containers_mentioning(docker_client, unique), 5)
    assert docker_client.api.images(name=f"{unique}/bad") == []


@pytest.mark.usefixtures("cleanup_images")
def test_cancel_returns_quickly_and_stops_the_step_on_the_engine(
    backend: DockerEngine, docker_client: Any, base: str, unique: str, tmp_path: Path
) -> None:
    buildkit = _is_buildkit(backend)
    marker = f"{unique}-sleeping"
    # not "&& sleep 60" last: busybox sh would exec sleep, and no process would show the marker
    ctx = write_dockerfile(
        tmp_path / "slow", f"FROM {base}\nRUN echo {marker} && sleep 60 && echo {marker}-done\n"
    )
    request = make_request(ctx, f"{unique}/slow", unique=unique)
    cancel = threading.Event()
    started = threading.Event()
    results: list[BuildResult] = []

    def log(line: str) -> None:
        if _printed(backend, [line], marker):
            started.set()

    thread = threading.Thread(
        target=lambda: results.append(backend.build(request, log, cancel)), daemon=True
    )
    thread.start()
    assert started.wait(30), "the RUN step never started"
    if buildkit:
        cli = _processes_with(f"{unique}/slow")
        assert cli, "the docker CLI is not running"
        # the engine runs on this machine: the RUN's shell and its sleep must end as well
        assert wait_until(lambda: len(_processes_with(marker)) >= 2, 5), "no RUN shell and sleep"
        run = _processes_with(marker)
    else:
        # the engine may still list the step's container as "created" right after its output
        assert wait_until(lambda: containers_mentioning(docker_client, marker, True), 5)
    join_within, return_within = (15, 5) if buildkit else (10, 10)

    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(join_within)
    took = time.monotonic() - cancelled_at

    assert not thread.is_alive(), f"build() did not return within {join_within} s of cancel"
    assert took < return_within, took
    assert results and results[0].cancelled and not results[0].ok
    if buildkit:
        assert _still_running(cli) == set()  # the CLI (and any plugin) is gone
        assert wait_until(lambda: not _still_running(run), 5), "the RUN step still runs"
    else:
        # the engine aborted the step and forcerm removed its container
        assert wait_until(lambda: not containers_mentioning(docker_client, marker), 10)


@pytest.mark.usefixtures("cleanup_images")
def test_pins_make_from_use_exactly_the_pinned_parent(
    backend: DockerEngine, docker_client: Any, base: str, unique: str, tmp_path: Path
) -> None:
    parents = {}
    for letter in "ab":
        ctx = write_dockerfile(tmp_path / letter, f"FROM {base}\nRUN echo {letter} > /marker\n")
        request = make_request(
            ctx, f"{unique}/parent-{letter}", unique=unique, tags=(f"{unique}/parent-{letter}:1",)
        )
        result = backend.build(request, lambda line: None, threading.Event())
        assert result.ok, result.error
        parents[letter] = result.image_id
    # without the pin, FROM <unique>/parent would resolve to b
    backend.tag(f"{unique}/parent-b:1", f"{unique}/parent")

    ctx = write_dockerfile(
        tmp_path / "child", f"FROM {unique}/parent\nRUN cat /marker && echo {unique}\n"
    )
    digest_ref = "busybox@sha256:" + "0" * 64
    request = make_request(
        ctx,
        f"{unique}/child",
        unique=unique,
        pins={f"{unique}/parent": f"{unique}/parent-a:1", digest_ref: "ignored"},
        pull=True,  # dropped: a pull would replace the pinned parents
    )
    lines: list[str] = []
    result = backend.build(request, lines.append, threading.Event())

    assert result.ok, (result.error, lines[-20:])
    assert any(digest_ref in line and "nothing to tag" in line for line in lines)
    assert any(line.startswith("not pulling") for line in lines)
    assert _printed(backend, lines, "a") and not _printed(backend, lines, "b")  # RUN cat /marker
    # the written name is left alone (another run may use it): the build named a tag
    # that only ever means parent a
    assert docker_client.api.inspect_image(f"{unique}/parent")["Id"] == parents["b"]
    exact = f"{unique}/parent:sbid-{parents['a'].removeprefix('sha256:')}"
    assert docker_client.api.inspect_image(exact)["Id"] == parents["a"]
    output = docker_client.containers.run(
        result.image_id, ["cat", "/marker"], name=f"{unique}-check", remove=True
    )
    assert output == b"a\n"


@pytest.mark.usefixtures("cleanup_images")
def test_pin_to_a_missing_image_fails_clearly(
    backend: DockerEngine, base: str, unique: str, tmp_path: Path
) -> None:
    ctx = write_dockerfile(tmp_path / "orphan", f"FROM {unique}/parent:1\n")
    request = make_request(
        ctx, f"{unique}/orphan", unique=unique, pins={f"{unique}/parent:1": f"{unique}/gone:1"}
    )
    result = backend.build(request, lambda line: None, threading.Event())

    assert not result.ok and not result.cancelled
    assert result.error and f"{unique}/gone:1" in result.error and "no such image" in result.error


@BACKENDS
def test_unreachable_engine_raises_one_clear_error(
    kind: str, tmp_path: Path
) -> None:
    backend = open_backend(kind, "unix:///nonexistent.sock")
    with pytest.raises(EngineUnreachable) as info:
        backend.ping()
    message = str(info.value)
    assert "unix:///nonexistent.sock" in message and "DOCKER_HOST" in message
    assert "\n" not in message
    assert info.value.exit_code == 3
    # every other call says the same, never a traceback from the SDK
    with pytest.raises(EngineUnreachable):
        backend.fingerprinted_images()
    ctx = write_dockerfile(tmp_path / "any", "FROM scratch\n")
    for pins in ({}, {"x/p": "x/q"}):
        with pytest.raises(EngineUnreachable):
            backend.build(
                make_request(ctx, "x/any", unique="sbt-none", pins=pins),
                lambda line: None,
                threading.Event(),
            )


@BACKENDS
def test_importing_the_backend_does_not_import_docker(kind: str) -> None:
    code = (
        "import sys; from stackbuild.backends import open_backend; "
        f"open_backend({kind!r}); assert 'docker' not in sys.modules, 'docker imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
