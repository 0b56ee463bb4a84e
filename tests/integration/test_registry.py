"""stack.lock, refresh, push, registry up-to-date checks, save/load: real engine, real registry.

Every command runs as ``python3 -m stackbuild -f <tmp>/stack.yaml ...`` in a subprocess,
as a user or CI job would. Stacks live in tmp_path; every image reference starts with
the registry address and the test's ``unique`` prefix (or the prefix alone), and carries
the ``stackbuild.test`` label, so cleanup finds exactly this test's images.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends import open_backend
from stackbuild.backends.engine import DockerEngine
from stackbuild.plan import short
from tests.helpers import BASE_DOCKERFILE, TEST_LABEL, busybox_rootfs, make_request
from tests.integration.conftest import remove_test_images

pytestmark = [pytest.mark.docker, pytest.mark.registry]

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(stack_dir: Path, *args: str, env: Mapping[str, str] | None = None,
            popen: bool = False) -> Any:
    command = [sys.executable, "-m", "stackbuild", "-f", str(stack_dir / "stack.yaml"), *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    if popen:
        return subprocess.Popen(command, cwd=stack_dir, env=full_env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, cwd=stack_dir, env=full_env, text=True, capture_output=True,
                          timeout=300)


def json_out(proc: subprocess.CompletedProcess, code: int = 0) -> dict:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def by_image(document: dict, key: str = "results") -> dict[str, dict]:
    return {item["image"]: item for item in document[key]}


def write_stack(directory: Path, unique: str, dockerfiles: Mapping[str, str],
                registry: str | None = None) -> Path:
    """stack.yaml + one context per image; a Dockerfile that COPYs rootfs/ gets busybox."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["version: 1"]
    if registry:
        lines.append(f"registry: {registry}")
    lines += ["defaults:", "  labels:", f"    {TEST_LABEL}: {unique}", "images:"]
    for name, dockerfile in dockerfiles.items():
        context = directory / name
        context.mkdir()
        (context / "Dockerfile").write_text(dockerfile)
        (context / f"{name}.txt").write_text(f"{name}\n")
        if "COPY rootfs/" in dockerfile:
            busybox_rootfs(context)
        lines += [f"  {name}:", f"    context: {name}"]
    (directory / "stack.yaml").write_text("\n".join(lines) + "\n")
    return directory


def publish_upstream(backend: DockerEngine, ref: str, unique: str, marker: str,
                     directory: Path) -> str:
    """Build a busybox image whose /marker says ``marker``, push it as ``ref``, then drop
    it locally (only the registry has it, as on a CI runner); its registry digest."""
    directory.mkdir(parents=True)
    busybox_rootfs(directory)
    (directory / "Dockerfile").write_text(BASE_DOCKERFILE + f"RUN echo {marker} > /marker\n")
    request = make_request(directory, ref.rpartition(":")[0], unique=unique, tags=(ref,))
    result = backend.build(request, lambda line: None, threading.Event())
    assert result.ok, result.error
    digest = backend.push(ref, lambda line: None)
    backend.remove_images([ref])
    return digest


def test_refresh_rebuilds_and_pushes_exactly_the_images_above_a_moved_upstream(
    registry: Any, docker_backend: DockerEngine, docker_client: Any, unique: str,
    cleanup_images: set[str], tmp_path: Path,
) -> None:
    prefix = f"{registry.address}/{unique}"
    upstream = f"{prefix}/upstream:1"
    old = publish_upstream(docker_backend, upstream, unique, "v1", tmp_path / "up1")
    stack = write_stack(tmp_path / "stack", unique, {
        "base": BASE_DOCKERFILE,
        "tool": f"FROM {prefix}/base\nRUN echo tool > /tool\n",
        "app": f"FROM {upstream}\nCOPY app.txt /app.txt\n",
        "app-child": f"FROM {prefix}/app\nCOPY app-child.txt /child.txt\n",
    }, registry=prefix)

    # `lock` pins the upstream without building or pulling anything
    locked = json_out(run_cli(stack, "lock", "--json"))
    assert locked["upstream"] == [{"ref": upstream, "digest": old, "old": None, "status": "added"}]
    assert f"{upstream}: {old}" in (stack / "stack.lock").read_text()

    # the first build pulls the upstream by its locked digest, and pushes every tag
    first = by_image(json_out(run_cli(stack, "build", "--push", "--json", "-j", "4")))
    assert {name: r["status"] for name, r in first.items()} == dict.fromkeys(first, "built")
    for name, result in first.items():
        assert sorted(result["pushed"]) == sorted(result["tags"])
        assert registry.tags(f"{unique}/{name}") == sorted(
            t.rpartition(":")[2] for t in result["tags"]
        )

    # overnight, the upstream is republished under the same tag
    new = publish_upstream(docker_backend, upstream, unique, "v2", tmp_path / "up2")
    assert new != old
    lock_before = (stack / "stack.lock").read_text()

    # the dry run names exactly the images above it, with both digests; changes nothing
    planned = json_out(run_cli(stack, "plan", "--refresh", "--json"))
    assert planned["moved"] == [
        {"ref": upstream, "old": old, "new": new, "images": ["app", "app-child"]}
    ]
    steps = by_image(planned, "steps")
    assert {name: s["action"] for name, s in steps.items()} == {
        "base": "skip", "tool": "skip", "app": "build", "app-child": "build"
    }
    app_reasons = [r["detail"] for r in steps["app"]["reasons"]]
    assert f"upstream moved: {upstream} {short(old)} -> {short(new)}" in app_reasons
    assert [r["detail"] for r in steps["app-child"]["reasons"]] == ["parent rebuilt: app"]
    assert (stack / "stack.lock").read_text() == lock_before
    assert docker_backend.image_id(f"{prefix}/upstream@{new}") is None  # nothing pulled

    # until the refresh, builds stay on the locked digest, though the tag has moved
    forced = by_image(json_out(run_cli(stack, "build", "--force", "app", "--json")))
    assert forced["app"]["status"] == "built"
    marker = docker_client.containers.run(f"{prefix}/app:latest", ["cat", "/marker"], remove=True)
    assert marker == b"v1\n"

    # the refresh rebuilds and pushes exactly those, and moves the lock
    refreshed = run_cli(stack, "refresh", "--push", "--json")
    document = json_out(refreshed)
    assert refreshed.stderr.startswith("refresh: 1 upstream(s) moved, 2 image(s) affected")
    assert document["moved"] == planned["moved"]
    results = by_image(document)
    assert {name: r["status"] for name, r in results.items()} == {
        "base": "up-to-date", "tool": "up-to-date", "app": "built", "app-child": "built"
    }
    assert results["base"]["pushed"] == [] and results["tool"]["pushed"] == []
    for name in ("app", "app-child"):
        assert sorted(results[name]["pushed"]) == sorted(results[name]["tags"])
        assert results[name]["fingerprint"] == steps[name]["fingerprint"]
    assert f"{upstream}: {new}" in (stack / "stack.lock").read_text()

    # the rebuilt images stand on the new upstream layer
    marker = docker_client.containers.run(
        f"{prefix}/app-child:latest", ["cat", "/marker"], remove=True
    )
    assert marker == b"v2\n"
    # a second refresh has nothing to do, and says so first
    again = run_cli(stack, "refresh")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("refresh: no upstream moved; 0 image(s) affected")

    # a fresh CI runner: no local images, the registry has every fingerprint
    remove_test_images(docker_client, unique)
    fresh = by_image(json_out(run_cli(stack, "plan", "--json")), "steps")
    assert {name: s["action"] for name, s in fresh.items()} == dict.fromkeys(fresh, "skip")
    assert all(
        s["reasons"][0]["detail"] == "up to date: this fingerprint exists (registry)"
        for s in fresh.values()
    )
    # a change to the leaf builds it on its parent pulled from the registry
    (stack / "app-child" / "app-child.txt").write_text("changed\n")
    rebuilt = by_image(json_out(run_cli(stack, "build", "--json")))
    assert {name: r["status"] for name, r in rebuilt.items()} == {
        "base": "up-to-date", "tool": "up-to-date", "app": "up-to-date", "app-child": "built"
    }
    assert docker_backend.image_id(results["app"]["tags"][0])  # pulled, fingerprint tag
    marker = docker_client.containers.run(
        f"{prefix}/app-child:latest", ["cat", "/marker", "/child.txt"], remove=True
    )
    assert marker == b"v2\nchanged\n"


def test_registry_down_mid_push_fails_that_image_and_a_rerun_pushes_the_rest(
    registry: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    prefix = f"{registry.address}/{unique}"
    stack = write_stack(tmp_path, unique, {
        "base": BASE_DOCKERFILE,
        "slow": f"FROM {prefix}/base\nRUN sleep 4 && echo slow > /slow\n",
    }, registry=prefix)
    env = {"STACKBUILD_PUSH_RETRY_SECONDS": "2"}  # a short retry budget, for the test's sake
    proc = run_cli(stack, "build", "--push", "--json", "-j", "1", "--push-jobs", "1",
                   env=env, popen=True)
    # base is pushed while slow builds; once stackbuild reports that push, the registry
    # goes away (stackbuild's own report, not the registry's tag list, is the moment
    # the outcome is decided)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if " base" in line and line.split()[1] in ("pushed", "push"):
            break
    registry.stop()
    stdout, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 1, stderr
    results = by_image(json.loads(stdout))
    # base's fingerprint tag went in; its release tags, moved after the run, could not
    base = results["base"]
    assert base["pushed"] == base["tags"][:1], (results, stderr)
    assert base["status"] == "failed" and base["promotion"]["state"] == "failed"
    assert base["error"].startswith(f"promote failed: the registry {registry.address} is "
                                    "unavailable")  # fmt: skip
    slow = results["slow"]
    assert slow["status"] == "failed" and slow["pushed"] == [], (results, stderr)
    assert slow["error"].startswith(f"push failed: the registry {registry.address} is unavailable")
    assert "gave up after" in slow["error"]
    assert "1 push(es) failed: slow" in stderr

    registry.start()  # back, with what it had
    rerun = by_image(json_out(run_cli(stack, "build", "--push", "--json", env=env)))
    assert rerun["base"]["status"] == rerun["slow"]["status"] == "up-to-date"
    # base's fingerprint tag is not pushed twice; its release tags are moved onto it
    assert rerun["base"]["pushed"] == rerun["base"]["tags"][1:]
    assert sorted(rerun["slow"]["pushed"]) == sorted(rerun["slow"]["tags"])
    assert registry.tags(f"{unique}/slow") == sorted(
        t.rpartition(":")[2] for t in rerun["slow"]["tags"]
    )


def test_registry_credentials_come_from_the_docker_config(
    auth_registry: Any, unique: str, cleanup_images: set[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (user, password), = auth_registry.users.items()
    good = {"DOCKER_CONFIG": str(auth_registry.docker_config(tmp_path / "good", user, password))}
    bad = {"DOCKER_CONFIG": str(auth_registry.docker_config(tmp_path / "bad", user, "wrong"))}
    prefix = f"{auth_registry.address}/{unique}"
    upstream = f"{prefix}/upstream:1"
    monkeypatch.setenv("DOCKER_CONFIG", good["DOCKER_CONFIG"])
    publish_upstream(open_backend("docker"), upstream, unique, "v1", tmp_path / "up")
    stack = write_stack(tmp_path / "stack", unique, {
        "app": f"FROM {upstream}\nCOPY app.txt /app.txt\n",
    }, registry=prefix)

    refused = run_cli(stack, "lock", env=bad)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith(
        f"stackbuild: the registry {auth_registry.address} refused the credentials to "
        f"look up {upstream}"
    )
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (stack / "stack.lock").exists()

    # good credentials: the digest look-ups, the pull by digest and the push all use them
    built = by_image(json_out(run_cli(stack, "build", "--push", "--json", env=good)))
    assert built["app"]["status"] == "built"
    assert sorted(built["app"]["pushed"]) == sorted(built["app"]["tags"])

    # bad credentials: the image is up to date here, but its push check is refused
    pushed = run_cli(stack, "build", "--push", "--json", env=bad)
    result = by_image(json_out(pushed, code=1))["app"]
    assert result["status"] == "failed" and result["pushed"] == []
    assert result["error"].startswith(
        f"push failed: the registry {auth_registry.address} refused the credentials"
    )


def test_save_then_load_gives_a_no_op_plan(
    docker_client: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    # no registry: image names carry the prefix, so every tag is this test's
    base, child = f"{unique}-base", f"{unique}-child"
    stack = write_stack(tmp_path / "stack", unique, {
        base: BASE_DOCKERFILE,
        child: f"FROM {base}\nCOPY {child}.txt /child.txt\n",
    })
    json_out(run_cli(stack, "build", "--json"))
    archive = tmp_path / "out" / "images.tar"
    saved = json_out(run_cli(stack, "save", "-o", str(archive), "--json"))
    assert [s["image"] for s in saved["images"]] == [base, child]
    assert all(len(s["tags"]) == 2 for s in saved["images"])

    # into a FIFO (a pipe to a compressor, say): streamed, the FIFO stays one
    fifo = tmp_path / "out" / "pipe"
    os.mkfifo(fifo)
    streamed: list[bytes] = []
    reader = threading.Thread(target=lambda: streamed.append(fifo.read_bytes()), daemon=True)
    reader.start()
    json_out(run_cli(stack, "save", "-o", str(fifo), child, "--json"))
    reader.join(60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with tarfile.open(fileobj=io.BytesIO(streamed[0])) as tar:
        assert "manifest.json" in tar.getnames()

    # another engine, another checkout: no images, no .stackbuild/
    remove_test_images(docker_client, unique)
    subprocess.run(["rm", "-rf", str(stack / ".stackbuild")], check=True)
    before = by_image(json_out(run_cli(stack, "plan", "--json")), "steps")
    assert {s["action"] for s in before.values()} == {"build"}

    loaded = json_out(run_cli(stack, "load", str(archive), "--json"))
    assert sorted(loaded["loaded"]) == sorted(t for s in saved["images"] for t in s["tags"])
    after = by_image(json_out(run_cli(stack, "plan", "--json")), "steps")
    assert {s["action"] for s in after.values()} == {"skip"}
    labels = docker_client.api.inspect_image(f"{child}:latest")["Config"]["Labels"]
    assert labels["stackbuild.fingerprint"] == after[child]["fingerprint"]
