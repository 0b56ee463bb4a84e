"""backends.auto: BuildKit where it answers, else the classic builder (no engine here)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from stackbuild.backends import auto
from stackbuild.backends.contract import BuildRequest, BuildResult
from stackbuild.errors import BuildKitUnavailable


def request(image: str) -> BuildRequest:
    return BuildRequest(image, image, "sha256:" + "0" * 64, (), (), b"", "Dockerfile")


def test_without_buildkit_it_builds_classic_but_not_a_platform_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_buildkit(self: object, engine: object) -> None:
        raise BuildKitUnavailable("no docker client here builds with BuildKit")

    built: list[str] = []

    def classic(self: object, engine: object, req: BuildRequest, log: object,
                cancel: object) -> BuildResult:  # fmt: skip
        built.append(req.image)
        return BuildResult(ok=True, image_id="sha256:x")

    monkeypatch.setattr(auto.BuildKitBuilder, "cli", no_buildkit)
    monkeypatch.setattr(auto.ClassicBuilder, "build", classic)
    builder = auto.AutoBuilder()
    lines: list[str] = []
    engine: object = SimpleNamespace(name="unix:///var/run/docker.sock")
    first = builder.build(engine, request("base"), lines.append, threading.Event())  # type: ignore[arg-type]
    assert first.ok and first.builder == "docker"
    # the fallback is said once, naming why, in the result and the image's log
    (warning,) = first.warnings
    assert "classic builder" in warning and "no docker client here builds" in warning
    assert any(warning in line for line in lines)
    second = builder.build(engine, request("app"), lines.append, threading.Event())  # type: ignore[arg-type]
    assert second.ok and second.builder == "docker" and second.warnings == ()
    refused = builder.build(engine, request("base[linux/arm64]"), lines.append,  # type: ignore[arg-type]
                            threading.Event())  # fmt: skip
    assert not refused.ok and "needs BuildKit: no docker client here" in (refused.error or "")
    assert built == ["base", "app"]
