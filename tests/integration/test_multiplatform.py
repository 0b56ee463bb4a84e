"""The example stack for linux/amd64 and linux/arm64: real engine (BuildKit, QEMU for
arm64), real registry. Skips, with the reason, where arm64 cannot be emulated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends.manifests import fetch_manifest
from tests.integration.conftest import remove_test_images

pytestmark = [pytest.mark.docker, pytest.mark.registry]

REPO = Path(__file__).resolve().parents[2]
ARM_BUSYBOX = REPO / "images" / "base" / "arch" / "arm64" / "bin" / "busybox"
PLATFORMS = ["linux/amd64", "linux/arm64"]
IMAGES = ["base", "httpd", "tools", "site-hello", "site-ops", "runner"]


def _arm64_or_skip() -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("these tests emulate arm64 on an amd64 host")
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("no QEMU for arm64 (binfmt_misc qemu-aarch64): run scripts/emulation.sh "
                    "as root")
    if not ARM_BUSYBOX.exists():
        pytest.skip(f"{ARM_BUSYBOX} missing: run scripts/prepare-example.sh as root")


def stackbuild(stack: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(stack), *args],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def built(run: subprocess.CompletedProcess[str]) -> list[str]:
    assert run.returncode == 0, run.stdout + run.stderr
    return [r["image"] for r in json.loads(run.stdout)["results"] if r["status"] == "built"]


@pytest.fixture
def example(tmp_path: Path, registry: Any, unique: str, docker_client: Any) -> Iterator[Path]:
    _arm64_or_skip()
    shutil.copytree(REPO / "images", tmp_path / "images", symlinks=True)
    text = (REPO / "stack.yaml").read_text()
    text = text.replace(
        "version: 1\n", f"version: 1\nregistry: {registry.address}/{unique}\nbackend: buildkit\n"
    ).replace("defaults:\n", "defaults:\n  platforms: [linux/amd64, linux/arm64]\n")
    text = text.replace(
        '      GREETING: "Hello, Docker!"\n',
        '      GREETING: "Hello, Docker!"\n'
        "    platform_build_args:\n      linux/arm64: {ARM_NOTE: one}\n",
    )
    (tmp_path / "stack.yaml").write_text(text)
    yield tmp_path / "stack.yaml"
    remove_test_images(docker_client, f"{registry.address}/{unique}")


def test_two_platforms_under_one_tag(example: Path, registry: Any, unique: str) -> None:
    first = stackbuild(example, "build", "--push", "--json")
    assert sorted(built(first)) == sorted(f"{i}[{p}]" for i in IMAGES for p in PLATFORMS)
    results = json.loads(first.stdout)["results"]
    for image in IMAGES:
        # beyond each platform's own tags, the index's
        index_refs = {ref for r in results if r["image"].startswith(f"{image}[")
                      for ref in r["pushed"] if ref not in r["tags"]}  # fmt: skip
        assert any(ref.endswith(":latest") for ref in index_refs), (image, index_refs)
        for ref in index_refs:
            body, media_type, _ = fetch_manifest(ref)
            index = json.loads(body)
            assert media_type.startswith("application/vnd.oci.image.index.v1+json"), ref
            assert sorted(f"{m['platform']['os']}/{m['platform']['architecture']}"
                          for m in index["manifests"]) == PLATFORMS, ref  # fmt: skip

    hello = f"{registry.address}/{unique}/site-hello:latest"
    subprocess.run(["docker", "pull", "-q", "--platform", "linux/arm64", hello], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    served = subprocess.run(
        ["docker", "run", "--rm", "--platform", "linux/arm64", hello,
         "sh", "-c", "uname -m; cat /www/index.html"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert served[0] == "aarch64"
    assert "<h1>Hello, Docker!</h1>" in served[1]

    assert built(stackbuild(example, "build", "--push", "--json")) == []

    example.write_text(example.read_text().replace("ARM_NOTE: one", "ARM_NOTE: two"))
    assert built(stackbuild(example, "build", "--push", "--json")) == ["site-hello[linux/arm64]"]


def test_the_classic_backend_refuses_two_platforms(example: Path) -> None:
    run = stackbuild(example, "build", "--backend", "docker")
    assert run.returncode == 2
    assert "the classic backend (docker) builds one platform" in run.stderr


def _upstream(tmp_path: Path, repository: str, note: str) -> dict[str, str]:
    """Build ``repository`` for both platforms (arm64's content carries ``note``), push
    each under its own tag and put an index under ``:1``; each platform's digest.
    COPY only: no emulation needed, and an unchanged side is BuildKit's cached image."""
    from stackbuild.backends.buildkit import find_cli
    from stackbuild.backends.manifests import put_manifest
    from stackbuild.run.publish import INDEX_TYPE, index_body, platform_of

    context = tmp_path / "upstream"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY note /note\n")
    cli = find_cli(os.environ)  # a client that builds with BuildKit (--platform)
    descriptors, digests = [], {}
    for platform in PLATFORMS:
        (context / "note").write_text(note if platform.endswith("arm64") else "same")
        tag = f"{repository}:1-{platform.replace('/', '-')}"
        subprocess.run([*cli.build_command(), "-q", "--platform", platform, "-t", tag,
                        str(context)], check=True, capture_output=True, timeout=300,
                       env=cli.environment(os.environ))  # fmt: skip
        subprocess.run(["docker", "push", "-q", tag], check=True, capture_output=True,
                       timeout=300)  # fmt: skip
        body, media_type, digest = fetch_manifest(tag)
        assert digest
        digests[platform] = digest
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(body),
                            "platform": platform_of(platform)})  # fmt: skip
    put_manifest(f"{repository}:1", index_body(descriptors), INDEX_TYPE)
    return digests


def test_an_upstream_whose_arm64_side_moved_rebuilds_only_the_arm64_side(
    registry: Any, unique: str, tmp_path: Path, docker_client: Any
) -> None:
    """Two levels above a two-platform upstream, and an image beside it that does not use
    it. COPY-only images: the nodes, not emulated RUN steps, are what is counted."""
    prefix = f"{registry.address}/{unique}"
    upstream = f"{prefix}-up/os"  # removed with the test's images
    stack = tmp_path / "stack.yaml"
    for name, dockerfile in {
        "base": f"FROM {upstream}:1\nCOPY f /base\n",
        "child": f"FROM {prefix}/base\nCOPY f /child\n",
        "other": "FROM scratch\nCOPY f /other\n",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(dockerfile)
        (tmp_path / name / "f").write_text(name)
    stack.write_text(
        f"version: 1\nregistry: {prefix}\nbackend: buildkit\n"
        "defaults:\n  platforms: [linux/amd64, linux/arm64]\n"
        "images:\n  base:\n    context: base\n  child:\n    context: child\n"
        "  other:\n    context: other\n"
    )
    try:
        first = _upstream(tmp_path, upstream, "one")
        assert sorted(built(stackbuild(stack, "build", "--json"))) == sorted(
            f"{image}[{p}]" for image in ("base", "child", "other") for p in PLATFORMS
        )
        lock = (tmp_path / "stack.lock").read_text()
        assert f"{upstream}:1[linux/arm64]: {first['linux/arm64']}" in lock
        assert f"{upstream}:1[linux/amd64]: {first['linux/amd64']}" in lock

        moved = _upstream(tmp_path, upstream, "two")
        assert moved["linux/amd64"] == first["linux/amd64"]
        assert moved["linux/arm64"] != first["linux/arm64"]
        plan = stackbuild(stack, "plan", "--refresh")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert f"{upstream}:1[linux/arm64]" in plan.stdout
        assert "(base[linux/arm64], child[linux/arm64])" in plan.stdout
        assert f"{upstream}:1[linux/amd64]" not in plan.stdout
        assert sorted(built(stackbuild(stack, "refresh", "--json"))) == [
            "base[linux/arm64]", "child[linux/arm64]"
        ]
    finally:
        remove_test_images(docker_client, prefix)


def test_auto_builds_with_buildkit_here_and_copy_only_images_need_no_emulation(
    tmp_path: Path, unique: str, docker_client: Any
) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
    (tmp_path / "img" / "f").write_text("x")
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"version: 1\nimages:\n  {unique}/img:\n    context: img\n"
                     "    platforms: [linux/amd64, linux/arm64, linux/s390x]\n")  # fmt: skip
    try:
        run = stackbuild(stack, "build", "--backend", "auto", "--json")
        assert sorted(built(run)) == sorted(
            f"{unique}/img[{p}]" for p in ("linux/amd64", "linux/arm64", "linux/s390x")
        )
    finally:
        remove_test_images(docker_client, unique)
