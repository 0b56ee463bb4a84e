"""BuildKitBackend on a real engine: client choice, streaming, failure, secrets, cancel, pins."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends.base import FINGERPRINT_LABEL, BuildResult
from stackbuild.backends.buildkit import (
    CLI_ENV,
    BuildKitBackend,
    BuildKitUnavailable,
    DockerCli,
    _Masker,
    error_line,
    find_cli,
)
from stackbuild.backends.docker_api import DockerBackend
from stackbuild.errors import EngineUnreachable
from tests.helpers import fake_fingerprint, make_request, write_base_context
from tests.integration.conftest import new_unique, remove_test_images

pytestmark = pytest.mark.docker

SECRET = "s3cret-value"
FILE_SECRET = "file-s3cret\n"


@pytest.fixture(scope="module")
def backend(docker_client: Any) -> Iterator[BuildKitBackend]:
    backend = BuildKitBackend()
    try:
        backend.cli()
    except BuildKitUnavailable as e:
        pytest.skip(str(e))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def base(
    backend: BuildKitBackend, docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A busybox base image shared by this module's tests; its reference."""
    prefix = new_unique()
    ref = f"{prefix}/base:latest"
    ctx = write_base_context(tmp_path_factory.mktemp("base"))
    request = make_request(ctx, f"{prefix}/base", unique=prefix, tags=(ref,))
    result = backend.build(request, lambda line: None, threading.Event())
    assert result.ok, result.error
    yield ref
    remove_test_images(docker_client, prefix)


def _context(directory: Path, dockerfile: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    return directory


def _wait_until(predicate: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


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


def _output(lines: list[str], text: str) -> bool:
    """Whether a RUN step printed exactly ``text`` (plain progress: "#7 0.123 text")."""
    return any(re.fullmatch(rf"#\d+ \d+\.\d+ {re.escape(text)}", line) for line in lines)


def test_a_working_client_is_chosen_and_an_override_is_obeyed(
    backend: BuildKitBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = backend.cli()
    assert os.access(cli.path, os.X_OK)
    # this machine: the newer client on PATH has no buildx and refuses DOCKER_BUILDKIT=1
    if Path("/usr/local/bin/docker").exists() and Path("/usr/bin/docker").exists():
        assert cli.path != "/usr/local/bin/docker" or cli.buildx
        env = {**os.environ, CLI_ENV: "/usr/local/bin/docker"}
        env["DOCKER_HOST"] = backend.docker_host()
        try:
            chosen = find_cli(env)
        except BuildKitUnavailable as e:
            assert "/usr/local/bin/docker" in str(e) and CLI_ENV in str(e)
            assert "\n" not in str(e)
        else:
            assert chosen.path == "/usr/local/bin/docker" and chosen.buildx
    monkeypatch.setenv(CLI_ENV, "/nonexistent/docker")
    with pytest.raises(BuildKitUnavailable, match="/nonexistent/docker"):
        BuildKitBackend().cli()


def test_builds_tags_labels_and_streams_the_exact_context(
    backend: BuildKitBackend, docker_client: Any, unique: str, tmp_path: Path, cleanup_images
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
    assert any(re.match(rf"#\d+ \[\d+/\d+\] RUN .*echo {unique}-marker", line) for line in lines)
    assert _output(lines, f"{unique}-marker")
    assert all("\n" not in line and line.strip() for line in lines)
    for tag in request.tags:
        assert docker_client.api.inspect_image(tag)["Id"] == result.image_id
    labels = backend.image_labels(result.image_id)
    assert labels is not None
    assert labels[FINGERPRINT_LABEL] == fingerprint
    assert labels["stackbuild.image"] == "base"
    assert labels["org.example.team"] == "infra"
    assert backend.find_fingerprint(repository, fingerprint) == result.image_id
    output = docker_client.containers.run(
        result.image_id, ["ls", "/ctx"], name=f"{unique}-ls", remove=True
    )
    assert output == b"sent.txt\n"


def test_failing_run_fails_with_the_error_line(
    backend: BuildKitBackend,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    ctx = _context(tmp_path / "bad", f"FROM {base}\nRUN echo {unique}-failing && false\n")
    request = make_request(ctx, f"{unique}/bad", unique=unique)
    lines: list[str] = []

    result = backend.build(request, lines.append, threading.Event())

    assert not result.ok and not result.cancelled
    assert result.error and "false" in result.error and "exit code: 1" in result.error
    assert "\n" not in result.error
    assert _output(lines, f"{unique}-failing")
    assert result.error in lines  # the error reaches the log too
    assert docker_client.api.images(name=f"{unique}/bad") == []


def test_secrets_reach_the_build_and_nothing_else(
    backend: BuildKitBackend,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STACKBUILD_TEST_TOKEN", SECRET)
    secret_file = tmp_path / "secret.txt"  # outside the context
    secret_file.write_text(FILE_SECRET)
    ctx = _context(
        tmp_path / "secret",
        f"FROM {base}\n"
        "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null"
        f' && test "$(cat /run/secrets/tok)" = "{SECRET}"\n'
        # a careless step that prints both: the log must show *** instead
        "RUN --mount=type=secret,id=tok --mount=type=secret,id=key"
        " cat /run/secrets/tok; echo; cat /run/secrets/key\n",
    )
    request = make_request(
        ctx,
        f"{unique}/secret",
        unique=unique,
        secrets={"tok": "env:STACKBUILD_TEST_TOKEN", "key": f"file:{secret_file}"},
        no_cache=True,  # a cached step would print nothing there is to mask
    )
    lines: list[str] = []

    result = backend.build(request, lines.append, threading.Event())

    assert result.ok, (result.error, lines[-20:])
    assert not any(SECRET in line or FILE_SECRET.strip() in line for line in lines)
    assert _output(lines, "***")  # the careless step's output, masked
    labels = backend.image_labels(result.image_id or "")
    assert labels is not None
    assert not any(SECRET in k + v or FILE_SECRET.strip() in k + v for k, v in labels.items())
    config = docker_client.api.inspect_image(result.image_id)["Config"]
    assert SECRET not in " ".join(config.get("Env") or ())


def test_env_secret_without_client_support_uses_a_private_file_removed_after(
    backend: BuildKitBackend,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STACKBUILD_TEST_TOKEN", SECRET)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    cli = backend.cli()
    old_client = BuildKitBackend(cli=DockerCli(cli.path, cli.buildx, secret_env=False))
    ctx = _context(
        tmp_path / "secret",
        f'FROM {base}\nRUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = "{SECRET}"'
        " && false\n",
    )
    request = make_request(
        ctx, f"{unique}/secret", unique=unique, secrets={"tok": "env:STACKBUILD_TEST_TOKEN"}
    )
    lines: list[str] = []

    result = old_client.build(request, lines.append, threading.Event())

    # the test passed, so the secret arrived; "false" fails the step on purpose: its
    # error quotes the command, which holds the value
    assert not result.ok and result.error
    assert "false" in result.error and SECRET not in result.error and "***" in result.error
    assert not any(SECRET in line for line in lines)
    assert list(scratch.iterdir()) == []  # the secret file and its directory are gone


def test_bad_secrets_fail_without_showing_values(
    backend: BuildKitBackend, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACKBUILD_TEST_MISSING", raising=False)
    ctx = _context(tmp_path / "any", "FROM scratch\n")
    for secrets, expected in (
        ({"tok": "env:STACKBUILD_TEST_MISSING"}, "STACKBUILD_TEST_MISSING is not set"),
        ({"tok": f"file:{tmp_path}/missing"}, "cannot read"),
        ({"tok": SECRET}, 'expected "env:NAME" or "file:PATH"'),
        ({"a,b": "env:HOME"}, "secret id"),
    ):
        request = make_request(ctx, f"{unique}/any", unique=unique, secrets=secrets)
        result = backend.build(request, lambda line: None, threading.Event())
        assert not result.ok and result.error and expected in result.error
        assert SECRET not in result.error


def test_cancel_returns_quickly_and_leaves_nothing_running(
    backend: BuildKitBackend,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    marker = f"{unique}-sleeping"
    # not "&& sleep 60" last: busybox sh would exec sleep, and no process would show the marker
    ctx = _context(
        tmp_path / "slow", f"FROM {base}\nRUN echo {marker} && sleep 60 && echo {marker}-done\n"
    )
    request = make_request(ctx, f"{unique}/slow", unique=unique)
    cancel = threading.Event()
    started = threading.Event()
    results: list[BuildResult] = []

    def log(line: str) -> None:
        if line.endswith(f" {marker}"):
            started.set()

    thread = threading.Thread(
        target=lambda: results.append(backend.build(request, log, cancel)), daemon=True
    )
    thread.start()
    assert started.wait(30), "the RUN step never started"
    cli = _processes_with(f"{unique}/slow")
    assert cli, "the docker CLI is not running"
    # the engine runs on this machine: the RUN's shell and its sleep must end as well
    assert _wait_until(lambda: len(_processes_with(marker)) >= 2, 5), "no RUN shell and sleep"
    run = _processes_with(marker)

    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(15)
    took = time.monotonic() - cancelled_at

    assert not thread.is_alive(), "build() did not return within 15 s of cancel"
    assert took < 5, took
    assert results and results[0].cancelled and not results[0].ok
    assert _still_running(cli) == set()  # the CLI (and any plugin) is gone
    assert _wait_until(lambda: not _still_running(run), 5), "the RUN step still runs"


def test_pins_make_from_use_exactly_the_pinned_parent(
    backend: BuildKitBackend,
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
            ctx, f"{unique}/parent-{letter}", unique=unique, tags=(f"{unique}/parent-{letter}:1",)
        )
        result = backend.build(request, lambda line: None, threading.Event())
        assert result.ok, result.error
        parents[letter] = result.image_id
    # without the pin, FROM <unique>/parent would resolve to b
    backend.tag(f"{unique}/parent-b:1", f"{unique}/parent")

    ctx = _context(tmp_path / "child", f"FROM {unique}/parent\nRUN cat /marker && echo {unique}\n")
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
    assert _output(lines, "a") and not _output(lines, "b")  # RUN cat /marker
    assert docker_client.api.inspect_image(f"{unique}/parent")["Id"] == parents["a"]
    output = docker_client.containers.run(
        result.image_id, ["cat", "/marker"], name=f"{unique}-check", remove=True
    )
    assert output == b"a\n"

    missing = make_request(
        ctx, f"{unique}/orphan", unique=unique, pins={f"{unique}/parent": f"{unique}/gone:1"}
    )
    result = backend.build(missing, lambda line: None, threading.Event())
    assert not result.ok and result.error and "no such image" in result.error


def test_sdk_and_buildkit_give_the_same_tags_and_labels(
    backend: BuildKitBackend,
    docker_backend: DockerBackend,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    ctx = _context(tmp_path / "same", f"FROM {base}\nARG GREETING\nRUN echo $GREETING > /g\n")
    fingerprint = fake_fingerprint(unique, "same")
    request = make_request(
        ctx,
        f"{unique}/same",
        unique=unique,
        fingerprint=fingerprint,
        tags=(f"{unique}/same:{fingerprint[7:19]}", f"{unique}/same:latest"),
        build_args={"GREETING": "hi"},
    )
    request = dataclasses.replace(request, labels={**request.labels, "org.example.team": "infra"})

    def built(result: BuildResult) -> tuple[set[str], dict[str, str], bytes]:
        assert result.ok, result.error
        info = docker_client.api.inspect_image(result.image_id)
        cleanup_images.add(result.image_id)
        out = docker_client.containers.run(
            result.image_id, ["cat", "/g"], name=f"{unique}-g", remove=True
        )
        return set(info["RepoTags"]), info["Config"]["Labels"], out

    sdk = built(docker_backend.build(request, lambda line: None, threading.Event()))
    buildkit_result = backend.build(request, lambda line: None, threading.Event())
    bk = built(buildkit_result)

    assert sdk == bk
    assert sdk[0] == set(request.tags)
    assert sdk[1][FINGERPRINT_LABEL] == fingerprint
    assert docker_backend.find_fingerprint(request.repository, fingerprint) == (
        buildkit_result.image_id
    )
    found = backend.fingerprinted_images()[fingerprint]
    assert set(request.tags) <= {t for image in found for t in image.tags}


def test_unreachable_engine_raises_one_clear_error(tmp_path: Path) -> None:
    backend = BuildKitBackend(base_url="unix:///nonexistent.sock")
    with pytest.raises(EngineUnreachable) as info:
        backend.ping()
    assert "unix:///nonexistent.sock" in str(info.value) and "\n" not in str(info.value)
    ctx = _context(tmp_path / "any", "FROM scratch\n")
    with pytest.raises(EngineUnreachable):
        backend.build(
            make_request(ctx, "x/any", unique="sbt-none"), lambda line: None, threading.Event()
        )


def test_error_line_and_masking() -> None:
    # docker 20.10 with DOCKER_BUILDKIT=1
    tail = [
        "#6 [2/2] RUN false",
        "#6 ERROR: executor failed running [/bin/sh -c false]: exit code: 1",
        "------",
        " > [2/2] RUN false:",
        "------",
        "executor failed running [/bin/sh -c false]: exit code: 1",
    ]
    assert error_line(tail, 1) == "executor failed running [/bin/sh -c false]: exit code: 1"
    # buildx, with a Dockerfile excerpt
    tail = [
        "------",
        " > [2/2] RUN false:",
        "------",
        "Dockerfile:2",
        "--------------------",
        "   1 |     FROM scratch",
        "   2 | >>> RUN false",
        "--------------------",
        'ERROR: failed to solve: process "/bin/sh -c false" did not complete successfully',
    ]
    assert error_line(tail, 1).startswith("ERROR: failed to solve: process")
    assert error_line(["#3 ERROR: boom"], 1) == "ERROR: boom"
    assert error_line([], 7) == "docker build failed with exit code 7"

    mask = _Masker([b"abc", b"line-one\nline-two\n", b"   "])
    assert mask("x abc y line-one z line-two") == "x *** y *** z ***"
    assert mask("   spaces stay") == "   spaces stay"


def test_importing_the_backend_does_not_import_docker() -> None:
    code = (
        "import sys; from stackbuild.backends.buildkit import BuildKitBackend; "
        "BuildKitBackend(); assert 'docker' not in sys.modules, 'docker imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
