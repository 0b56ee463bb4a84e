"""The BuildKit client choice is remembered between runs until what it depends on changes."""

from __future__ import annotations

import os
from pathlib import Path

from stackbuild.backends.buildkit import CACHE_TTL, DockerCli, cached_cli, remember_cli

CLI = DockerCli("/somewhere/docker", buildx=False, secret_env=True)


def _env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    return {"PATH": str(bin_dir), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "DOCKER_HOST": "unix:///run/test.sock"}  # fmt: skip


def test_a_remembered_choice_is_used_again(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert cached_cli(env, "20.10.24", 1000.0) is None
    remember_cli(env, "20.10.24", CLI, 1000.0)
    assert cached_cli(env, "20.10.24", 1000.0 + 60) == CLI


def test_another_engine_version_host_or_client_probes_again(tmp_path: Path) -> None:
    env = _env(tmp_path)
    remember_cli(env, "20.10.24", CLI, 1000.0)
    assert cached_cli(env, "24.0.7", 1000.0) is None
    assert cached_cli({**env, "DOCKER_HOST": "unix:///run/other.sock"}, "20.10.24", 1000.0) is None
    docker = tmp_path / "bin" / "docker"
    docker.write_text("#!/bin/sh\n# a new client\n")
    os.utime(docker, ns=(1, 1))
    assert cached_cli(env, "20.10.24", 1000.0) is None


def test_a_choice_expires(tmp_path: Path) -> None:
    env = _env(tmp_path)
    remember_cli(env, "20.10.24", CLI, 1000.0)
    assert cached_cli(env, "20.10.24", 1000.0 + CACHE_TTL + 1) is None


def test_an_unreadable_cache_is_no_choice(tmp_path: Path) -> None:
    env = _env(tmp_path)
    cache = tmp_path / "cache" / "stackbuild" / "buildkit-clients.json"
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert cached_cli(env, "20.10.24", 1000.0) is None
    remember_cli(env, "20.10.24", CLI, 1000.0)  # replaces it
    assert cached_cli(env, "20.10.24", 1000.0) == CLI
