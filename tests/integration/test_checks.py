"""Image checks (``tests:``) end to end: ``stackbuild build`` and ``stackbuild test`` as
subprocesses against a real Docker engine, with the stacks of ``test_build``.

What a user sees: each check's status and duration in ``--json``, the test log, a
test-failed image kept under its fingerprint tag and blocking its descendants, a rerun
that tests again without building, and no check container left behind.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from stackbuild.state import StateDir
from tests.helpers import TEST_LABEL, wait_until
from tests.integration.test_build import (
    build,
    by_short_name,
    child,
    recorded,
    run_cli,
    start_cli,
    statuses,
    write_stack,
)

docker = pytest.mark.docker

CHECK_LABEL = "stackbuild.check"


def check_containers(client: Any, image_ids: set[str]) -> list[dict]:
    """Check containers (any run's) made from one of ``image_ids``."""
    found = client.api.containers(all=True, filters={"label": CHECK_LABEL})
    return [c for c in found if c.get("ImageID") in image_ids]


def image_ids(results: dict[str, dict], client: Any) -> set[str]:
    """Ids of the images the results' fingerprint tags name (the ones still there)."""
    tags = [tag for result in results.values() for tag in result["tags"][:1]]
    return {client.api.inspect_image(tag)["Id"] for tag in tags if _exists(client, tag)}


def checks_of(result: dict) -> dict[str, dict]:
    return {check["name"]: check for check in result["checks"]}


def check_log(root: Path, prefix: str, name: str) -> str:
    return StateDir(root).log_path(f"{prefix}/{name}", ".test.log").read_text()


def set_manifest(root: Path, old: str, new: str) -> None:
    path = root / "stack.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@docker
def test_a_failing_check_blocks_descendants_keeps_the_image_and_a_rerun_only_tests(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path,
        unique,
        {"mid": child("base", "mid"), "leaf": child("mid", "leaf"), "sib": child("base", "sib")},
        manifest={
            "mid": "tests:\n"
            "  - {name: marker, run: [cat, /m-mid], expect: {stdout: mid}}\n"
            "  - {name: broken, run: 'echo it broke >&2; exit 3'}",
            "sib": "tests:\n  - {run: [cat, /m-sib], expect: {regex: '^sib$'}}",
        },
    )

    results, proc = build(tmp_path, "-j", "2", expect=1)

    assert statuses(results) == {"base": "built", "mid": "test-failed", "leaf": "blocked",
                                 "sib": "built"}  # fmt: skip
    assert results["leaf"]["error"] == f"parent test-failed: {unique}/mid"
    mid = results["mid"]
    assert {n: c["status"] for n, c in checks_of(mid).items()} == {
        "marker": "passed", "broken": "failed"}  # fmt: skip
    assert "exit code 3, expected 0" in checks_of(mid)["broken"]["detail"]
    assert all(c["duration_s"] > 0 for c in mid["checks"])
    assert checks_of(results["sib"])["cat /m-sib"]["status"] == "passed"
    assert results["sib"]["tests"] == "passed" and mid["tests"] == "failed"
    log = check_log(tmp_path, unique, "mid")
    assert "stderr| it broke" in log and "stdout| mid" in log
    assert mid["test_log"].endswith(".test.log")
    assert "mid test-failed: check 'broken' failed" in proc.stderr
    # kept for inspection under its fingerprint tag only; not recorded as built
    fingerprint_tag, latest = mid["tags"][0], f"{unique}/mid:latest"
    kept = docker_client.api.inspect_image(fingerprint_tag)["Id"]
    assert latest not in (docker_client.api.inspect_image(kept).get("RepoTags") or [])
    assert recorded(tmp_path) == ["base", "sib"]
    assert check_containers(docker_client, image_ids(results, docker_client)) == []

    # the rerun only tests mid again: no build
    plan = json.loads(run_cli(tmp_path, "plan", "--json").stdout)
    actions = {s["image"].partition("/")[2]: s["action"] for s in plan["steps"]}
    assert actions == {"base": "skip", "mid": "test", "sib": "skip", "leaf": "build"}
    again, _ = build(tmp_path, expect=1)
    assert statuses(again)["mid"] == "test-failed"
    assert again["mid"]["duration_s"] < 60 and not again["mid"]["log"]  # not built
    assert docker_client.api.inspect_image(fingerprint_tag)["Id"] == kept

    # fixed: tested (not rebuilt), recorded; its child builds on the same image
    set_manifest(tmp_path, "exit 3'}", "exit 0'}")
    fixed, _ = build(tmp_path)
    assert statuses(fixed) == {"base": "up-to-date", "mid": "tested", "leaf": "built",
                               "sib": "up-to-date"}  # fmt: skip
    assert docker_client.api.inspect_image(f"{unique}/mid:latest")["Id"] == kept
    assert recorded(tmp_path) == ["base", "leaf", "mid", "sib"]


@docker
def test_no_test_skips_the_checks_the_next_build_runs_them_and_a_changed_check_reruns(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    """One stack through ``--no-test``, the build after it, and a changed check: only that
    image's checks run again (its child is not rebuilt)."""
    write_stack(
        tmp_path, unique, {"app": child("base", "app"), "top": child("app", "top")},
        manifest={"app": "tests:\n  - {name: marker, run: [cat, /m-app]}"},
    )  # fmt: skip

    results, proc = build(tmp_path, "--no-test")
    assert results["app"]["status"] == "built" and results["app"]["tests"] == "skipped"
    assert "checks skipped (--no-test)" in proc.stderr

    results, _ = build(tmp_path)
    assert results["app"]["status"] == "tested"

    set_manifest(tmp_path, "run: [cat, /m-app]}", "run: [cat, /m-app], expect: {stdout: app}}")
    plan = json.loads(run_cli(tmp_path, "plan", "--json").stdout)
    steps = by_short_name(plan["steps"])
    assert steps["app"]["action"] == "test"
    assert [r["code"] for r in steps["app"]["reasons"]] == ["tests-changed"]
    assert steps["top"]["action"] == "skip"
    results, _ = build(tmp_path)
    assert statuses(results) == {"base": "up-to-date", "app": "tested", "top": "up-to-date"}
    assert checks_of(results["app"])["marker"]["status"] == "passed"
    plan = json.loads(run_cli(tmp_path, "plan", "--json").stdout)
    assert {s["action"] for s in plan["steps"]} == {"skip"}


@docker
def test_a_hanging_check_a_missing_command_and_a_serve_check_each_end_as_they_should(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    """Three images of one stack, one run (they share nothing but base): a check that
    hangs is killed at its timeout, a command the image lacks is a clear failure, and a
    serve check fetches a busybox httpd's pages; a script of the context runs, a check
    has no network unless it asks for a bridge; no check container survives."""
    web = (
        "FROM {r}/base\nRUN mkdir -p /www && echo '<p>served</p>' > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    write_stack(
        tmp_path, unique, {"hangs": child("base", "hangs"), "lacks": child("base", "lacks"),
                           "web": web},
        manifest={
            "hangs": "tests:\n  - {name: hangs, run: [sleep, '600'], timeout: 2}",
            "lacks": "tests:\n  - {run: [no-such-tool, --version]}",
            "web": "tests:\n"
            "  - {name: page, serve: {port: 8080}, expect: {stdout: '<p>served</p>'}}\n"
            "  - {name: missing, serve: {port: 8080, path: /nope}, expect: {status: 404}}\n"
            "  - {script: checks/smoke.sh, expect: {stdout: 'smoke in /.stackbuild-check'}}\n"
            "  - {name: offline, run: '! grep -q eth0 /proc/net/dev'}\n"
            "  - {name: online, run: 'grep -q eth0 /proc/net/dev', network: bridge}",
        },
        files={"web/checks/smoke.sh": '#!/bin/sh\necho "smoke in $(dirname "$0")"\n'},
    )  # fmt: skip

    started = time.monotonic()
    results, proc = build(tmp_path, "-j", "2", expect=1)

    # the hanging check: killed at its timeout, reported as timed out
    assert time.monotonic() - started < 120
    hangs = results["hangs"]
    assert hangs["status"] == "test-failed"
    assert checks_of(hangs)["hangs"]["status"] == "timed-out"
    assert "timed out after 2s" in checks_of(hangs)["hangs"]["detail"]
    assert "killed after 2s" in check_log(tmp_path, unique, "hangs")

    # a command not in the image: a clear failure
    check = checks_of(results["lacks"])["no-such-tool --version"]
    assert results["lacks"]["status"] == "test-failed"
    assert check["status"] == "failed"
    assert check["detail"].startswith("command not found in the image: 'no-such-tool'")
    assert "command not found in the image" in proc.stderr

    # the serve checks: the page, and a 404 where one is expected
    assert results["web"]["status"] == "built"
    assert {n: c["status"] for n, c in checks_of(results["web"]).items()} == {
        "page": "passed", "missing": "passed", "checks/smoke.sh": "passed",
        "offline": "passed", "online": "passed"}  # fmt: skip
    assert "HTTP 200" in check_log(tmp_path, unique, "web")

    assert check_containers(docker_client, image_ids(results, docker_client)) == []


@docker
def test_the_test_command_runs_the_checks_of_built_images(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path, unique, {"app": child("base", "app"), "other": child("base", "other")},
        manifest={"app": "tests:\n  - {name: marker, run: [cat, /m-app]}",
                  "other": "tests:\n  - {name: marker, run: [cat, /m-other]}"},
    )  # fmt: skip
    build(tmp_path, f"{unique}/app")

    proc = run_cli(tmp_path, "test", "--json", f"{unique}/app")
    assert proc.returncode == 0, proc.stderr
    results = by_short_name(json.loads(proc.stdout)["results"])
    assert statuses(results) == {"app": "tested"}
    assert checks_of(results["app"])["marker"]["status"] == "passed"

    proc = run_cli(tmp_path, "test", "--json")  # other is not built
    assert proc.returncode == 1
    assert f"{unique}/other is not built at its current fingerprint" in proc.stderr
    assert f"stackbuild build {unique}/other" in proc.stderr
    assert json.loads(proc.stdout)["not_built"] == [f"{unique}/other"]

    set_manifest(tmp_path, "run: [cat, /m-app]}", "run: [cat, /m-app], expect: {exit: 1}}")
    proc = run_cli(tmp_path, "test", f"{unique}/app")
    assert proc.returncode == 1
    assert "test-failed" in proc.stdout and "exit code 0, expected 1" in proc.stdout


@docker
def test_ctrl_c_during_a_check_leaves_no_check_container(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path, unique, {"app": child("base", "app")},
        manifest={"app": "tests:\n  - {name: hangs, run: [sleep, '600']}"},
    )  # fmt: skip
    # this test's check containers only (they carry its images' labels): another run's
    # "sleep 600" on the same engine neither starts the interrupt nor fails the test
    mine = {"label": [CHECK_LABEL, f"{TEST_LABEL}={unique}"]}
    proc = start_cli(tmp_path, "build", "--json")
    try:
        def running() -> bool:
            return any(c.get("Command", "").startswith("sleep 600")
                       for c in docker_client.api.containers(filters=mine))  # fmt: skip

        assert wait_until(running, 120), "the check never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert json.loads(out)["results"][-1]["status"] == "cancelled"
    assert docker_client.api.containers(all=True, filters=mine) == []


def _exists(client: Any, ref: str) -> bool:
    try:
        client.api.inspect_image(ref)
    except Exception:
        return False
    return True


@docker
def test_the_example_stack_passes_its_checks(example_run: Any) -> None:
    """The repository's own stack.yaml (the session's build of it, beside an image that
    fails): every image built, its checks passed."""
    results = example_run.results
    assert {n: r["status"] for n, r in results.items() if n != "broken"} == dict.fromkeys(
        ("base", "httpd", "tools", "site-hello", "site-ops", "runner"), "built")
    assert results["broken"]["status"] == "failed"
    assert checks_of(results["site-hello"])["serves the greeting"]["status"] == "passed"
    assert checks_of(results["runner"])["run-job prints its version"]["status"] == "passed"
    log = StateDir(example_run.stack.parent).log_path(f"{example_run.prefix}/runner", ".test.log")
    assert "stdout| run-job 1.0.0" in log.read_text()
