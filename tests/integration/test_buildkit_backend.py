"""The BuildKit builder alone on a real engine: client choice, secrets, parity with the SDK, error
lines. What both backends do (streaming, failure, cancel, pins, ...) is in test_backends.py."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends import open_backend
from stackbuild.backends.buildkit import (
    CLI_ENV,
    BuildKitBuilder,
    DockerCli,
    _Masker,
    error_line,
    find_cli,
)
from stackbuild.backends.contract import FINGERPRINT_LABEL, BuildResult
from stackbuild.backends.engine import DockerEngine
from stackbuild.errors import BuildKitUnavailable
from tests.helpers import buildkit_printed, fake_fingerprint, make_request, write_dockerfile

pytestmark = pytest.mark.docker

SECRET = "s3cret-value"
FILE_SECRET = "file-s3cret\n"


@pytest.fixture
def backend(buildkit_backend: DockerEngine) -> DockerEngine:
    """This module's backend (and so the one that builds ``base``)."""
    return buildkit_backend


def test_a_working_client_is_chosen_and_an_override_is_obeyed(
    backend: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = backend.builder.cli(backend)
    assert os.access(cli.path, os.X_OK)
    # this machine: the newer client on PATH has no buildx and refuses DOCKER_BUILDKIT=1
    if Path("/usr/local/bin/docker").exists() and Path("/usr/bin/docker").exists():
        assert cli.path != "/usr/local/bin/docker" or cli.buildx
        env = {**os.environ, CLI_ENV: "/usr/local/bin/docker"}
        env["DOCKER_HOST"] = BuildKitBuilder.docker_host(backend)
        try:
            chosen = find_cli(env)
        except BuildKitUnavailable as e:
            assert "/usr/local/bin/docker" in str(e) and CLI_ENV in str(e)
            assert "\n" not in str(e)
        else:
            assert chosen.path == "/usr/local/bin/docker" and chosen.buildx
    monkeypatch.setenv(CLI_ENV, "/nonexistent/docker")
    with pytest.raises(BuildKitUnavailable, match="/nonexistent/docker"):
        fresh = open_backend("buildkit")
        fresh.builder.cli(fresh)


@pytest.fixture
def env_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """The secret source of SECRET, set in this test's environment: ``env:NAME``."""
    monkeypatch.setenv("STACKBUILD_TEST_TOKEN", SECRET)
    return "env:STACKBUILD_TEST_TOKEN"


@pytest.mark.usefixtures("cleanup_images")
def test_secrets_reach_the_build_and_nothing_else(
    backend: DockerEngine,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    env_token: str,
) -> None:
    secret_file = tmp_path / "secret.txt"  # outside the context
    secret_file.write_text(FILE_SECRET)
    ctx = write_dockerfile(
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
        secrets={"tok": env_token, "key": f"file:{secret_file}"},
        no_cache=True,  # a cached step would print nothing there is to mask
    )
    lines: list[str] = []

    result = backend.build(request, lines.append, threading.Event())

    assert result.ok, (result.error, lines[-20:])
    assert not any(SECRET in line or FILE_SECRET.strip() in line for line in lines)
    assert buildkit_printed(lines, "***")  # the careless step's output, masked
    labels = backend.image_labels(result.image_id or "")
    assert labels is not None
    assert not any(SECRET in k + v or FILE_SECRET.strip() in k + v for k, v in labels.items())
    config = docker_client.api.inspect_image(result.image_id)["Config"]
    assert SECRET not in " ".join(config.get("Env") or ())


@pytest.mark.usefixtures("cleanup_images")
def test_env_secret_without_client_support_uses_a_private_file_removed_after(
    backend: DockerEngine,
    base: str,
    unique: str,
    tmp_path: Path,
    env_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    cli = backend.builder.cli(backend)
    old_client = open_backend(
        builder=BuildKitBuilder(cli=DockerCli(cli.path, cli.buildx, secret_env=False))
    )
    ctx = write_dockerfile(
        tmp_path / "secret",
        f'FROM {base}\nRUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = "{SECRET}"'
        " && false\n",
    )
    request = make_request(ctx, f"{unique}/secret", unique=unique, secrets={"tok": env_token})
    lines: list[str] = []

    result = old_client.build(request, lines.append, threading.Event())

    # the test passed, so the secret arrived; "false" fails the step on purpose: its
    # error quotes the command, which holds the value
    assert not result.ok and result.error
    assert "false" in result.error and SECRET not in result.error and "***" in result.error
    assert not any(SECRET in line for line in lines)
    assert list(scratch.iterdir()) == []  # the secret file and its directory are gone


def test_bad_secrets_fail_without_showing_values(
    backend: DockerEngine, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACKBUILD_TEST_MISSING", raising=False)
    ctx = write_dockerfile(tmp_path / "any", "FROM scratch\n")
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


def test_sdk_and_buildkit_give_the_same_tags_and_labels(
    backend: DockerEngine,
    docker_backend: DockerEngine,
    docker_client: Any,
    base: str,
    unique: str,
    tmp_path: Path,
    cleanup_images,
) -> None:
    ctx = write_dockerfile(
        tmp_path / "same", f"FROM {base}\nARG GREETING\nRUN echo $GREETING > /g\n"
    )
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
    # the image now tagged in the repository is the later, BuildKit-built one
    found = docker_backend.fingerprinted_images()[fingerprint]
    assert [i.id for i in found if set(request.tags) <= set(i.tags)] == [buildkit_result.image_id]


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
