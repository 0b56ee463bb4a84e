"""Staged publishing: release tags move only onto images that passed; refresh --push moves
a pin only once the images on it were promoted. Real engine, real registry, the CLI as a
subprocess (helpers of test_registry.py).

An image is made to fail by a check of its own (``tests:``) that a change below it
breaks, or by a build step that fails on what its upstream holds.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends.engine import DockerEngine
from tests.helpers import BASE_DOCKERFILE
from tests.integration.test_registry import (
    by_image,
    json_out,
    publish_upstream,
    run_cli,
    write_stack,
)

pytestmark = [pytest.mark.docker, pytest.mark.registry]

RELEASE = ("latest", "stable")  # every image's release tags: latest and `tags: [stable]`


def stack_with_tags(directory: Path, unique: str, prefix: str, dockerfiles: dict[str, str]
                    ) -> Path:  # fmt: skip
    """``write_stack``, every image also tagged ``stable``."""
    stack = write_stack(directory, unique, dockerfiles, registry=prefix)
    manifest = stack / "stack.yaml"
    text = manifest.read_text()
    for name in dockerfiles:
        text = text.replace(f"    context: {name}\n", f"    context: {name}\n    tags: [stable]\n")
    manifest.write_text(text)
    return stack


def digests(registry: Any, unique: str, names: list[str]) -> dict[str, dict[str, str | None]]:
    """image -> tag -> its digest in the registry, for the release tags."""
    return {name: {tag: registry.digest(f"{unique}/{name}", tag) for tag in RELEASE}
            for name in names}  # fmt: skip


def fingerprint_digest(registry: Any, unique: str, result: dict) -> str | None:
    return registry.digest(f"{unique}/{result['image']}", result["tags"][0].rpartition(":")[2])


def statuses(results: dict[str, dict]) -> dict[str, str]:
    return {name: result["status"] for name, result in results.items()}


def set_manifest(stack: Path, old: str, new: str) -> None:
    path = stack / "stack.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_failing_mid_image_holds_back_its_subtree_until_it_is_fixed(
    registry: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    """Issue 12's "done when": base moves and mid's check fails on the new base; mid's
    and leaf's release tags stay exactly where they were while tool's move, --promote all
    moves nothing, and once the check is fixed, mid is only tested (not rebuilt) and
    promoted."""
    prefix = f"{registry.address}/{unique}"
    #   base ─┬─ mid ── leaf
    #         └─ tool
    stack = stack_with_tags(tmp_path, unique, prefix, {
        "base": BASE_DOCKERFILE + "COPY base.txt /base.txt\n",
        "mid": f"FROM {prefix}/base\nCOPY mid.txt /mid.txt\n",
        "leaf": f"FROM {prefix}/mid\nCOPY leaf.txt /leaf.txt\n",
        "tool": f"FROM {prefix}/base\nCOPY tool.txt /tool.txt\n",
    })
    set_manifest(stack, "    context: mid\n", "    context: mid\n    tests:\n"
                 "      - {name: base is v1, run: [cat, /base.txt], expect: {stdout: v1}}\n")
    (stack / "base" / "base.txt").write_text("base v1\n")
    names = ["base", "mid", "leaf", "tool"]

    # all green: every image's release tags point at its fingerprint tag's manifest
    first = by_image(json_out(run_cli(stack, "build", "--push", "--json", "-j", "2")))
    for name, result in first.items():
        assert result["promotion"]["state"] == "promoted", result
        assert sorted(result["pushed"]) == sorted(result["tags"])
        want = fingerprint_digest(registry, unique, result)
        assert digests(registry, unique, [name])[name] == dict.fromkeys(RELEASE, want)
    # only the fingerprint tag was pushed; the release tags were re-pointed in the registry
    push_log = (stack / ".stackbuild" / "logs" / "base.push.log").read_text()
    assert f"push {first['base']['tags'][0]} ===" in push_log
    assert f"push {prefix}/base:latest" not in push_log
    before = digests(registry, unique, names)

    # base changes and mid's check fails on it; with --promote all, nothing moves at all
    (stack / "base" / "base.txt").write_text("base v2\n")
    proc = run_cli(stack, "build", "--push", "--promote", "all", "--json", "-j", "2")
    held = by_image(json_out(proc, code=1))
    assert statuses(held) == {"base": "built", "mid": "test-failed", "leaf": "blocked",
                              "tool": "built"}  # fmt: skip
    assert digests(registry, unique, names) == before
    assert held["mid"]["pushed"] == []  # not even its fingerprint tag: it did not pass
    for name in ("base", "tool"):  # their fingerprint tags are in, for later
        assert held[name]["pushed"] == held[name]["tags"][:1]
        assert fingerprint_digest(registry, unique, held[name]) is not None
        assert held[name]["promotion"]["state"] == "held-back"
        assert held[name]["promotion"]["reason"] == (
            "--promote all: mid test-failed, leaf blocked")
    assert "held back 4 image(s)" in proc.stderr

    # the plan sees base and tool up to date with release tags behind, mid to test again
    steps = by_image(json_out(run_cli(stack, "plan", "--push", "--json")), "steps")
    assert {name: s["action"] for name, s in steps.items()} == {
        "base": "promote", "mid": "test", "leaf": "build", "tool": "promote"}
    assert steps["base"]["reasons"][0]["code"] == "release-tags-behind"

    # --promote subtree: base and tool promoted without a rebuild; mid and leaf stay put
    proc = run_cli(stack, "build", "--push", "--json", "-j", "2")
    subtree = by_image(json_out(proc, code=1))
    assert statuses(subtree) == {"base": "up-to-date", "mid": "test-failed",
                                 "leaf": "blocked", "tool": "up-to-date"}  # fmt: skip
    after = digests(registry, unique, names)
    for name in ("mid", "leaf"):
        assert after[name] == before[name]
    for name in ("base", "tool"):
        want = fingerprint_digest(registry, unique, subtree[name])
        assert after[name] == dict.fromkeys(RELEASE, want) and want != before[name]["latest"]
        assert subtree[name]["promotion"]["promoted"] == [f"{prefix}/{name}:{t}" for t in RELEASE]
    assert subtree["mid"]["promotion"]["reason"].startswith(
        "mid test-failed: check 'base is v1' failed")
    assert subtree["leaf"]["promotion"]["reason"] == "ancestor mid test-failed"
    assert subtree["leaf"]["promotion"]["held_back"] == [f"{prefix}/leaf:{t}" for t in RELEASE]
    assert "mid: latest, stable (mid test-failed: check 'base is v1' failed" in proc.stderr

    # the check fixed: mid is only tested (not rebuilt), leaf built on it, all promoted
    set_manifest(stack, "expect: {stdout: v1}", "expect: {stdout: v2}")
    fixed = by_image(json_out(run_cli(stack, "build", "--push", "--json", "-j", "2")))
    assert statuses(fixed) == {"base": "up-to-date", "mid": "tested", "leaf": "built",
                               "tool": "up-to-date"}  # fmt: skip
    assert fixed["mid"]["log"] is None  # tested, not built
    for name, result in fixed.items():
        assert result["promotion"]["state"] == "promoted"
        want = fingerprint_digest(registry, unique, result)
        assert want is not None, name
        assert digests(registry, unique, [name])[name] == dict.fromkeys(RELEASE, want)
    assert digests(registry, unique, ["mid"])["mid"] != before["mid"]


def test_a_run_interrupted_before_promotion_is_promoted_by_the_next_without_rebuilding(
    registry: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    prefix = f"{registry.address}/{unique}"
    stack = stack_with_tags(tmp_path, unique, prefix, {
        "base": BASE_DOCKERFILE,
        "quick": f"FROM {prefix}/base\nCOPY quick.txt /quick.txt\n",
        "slow": f"FROM {prefix}/base\nCOPY slow.txt /slow.txt\nRUN sleep $(cat /slow.txt)\n",
    })
    (stack / "slow" / "slow.txt").write_text("0\n")
    json_out(run_cli(stack, "build", "--push", "--json", "-j", "2"))
    before = digests(registry, unique, ["quick", "slow"])

    # quick is built and its fingerprint tag pushed while slow still builds: Ctrl-C
    (stack / "quick" / "quick.txt").write_text("quick v2\n")
    (stack / "slow" / "slow.txt").write_text("120\n")
    proc = run_cli(stack, "build", "--push", "--json", "-j", "2", popen=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.split()[1:3] == ["pushed", "quick"]:
            break
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    interrupted = by_image(json.loads(stdout))
    assert interrupted["quick"]["status"] == "built"
    assert interrupted["quick"]["pushed"] == interrupted["quick"]["tags"][:1]
    assert interrupted["quick"]["promotion"]["reason"] == "interrupted: the next run promotes it"
    assert digests(registry, unique, ["quick", "slow"]) == before

    # the next run finds quick up to date with its release tags behind, and promotes it
    steps = by_image(json_out(run_cli(stack, "plan", "--push", "--json")), "steps")
    assert steps["quick"]["action"] == "promote"
    (stack / "slow" / "slow.txt").write_text("1\n")  # a short sleep, a new fingerprint
    rerun = by_image(json_out(run_cli(stack, "build", "--push", "--json", "-j", "2")))
    assert statuses(rerun) == {"base": "up-to-date", "quick": "up-to-date", "slow": "built"}
    for name in ("quick", "slow"):
        want = fingerprint_digest(registry, unique, rerun[name])
        assert digests(registry, unique, [name])[name] == dict.fromkeys(RELEASE, want)
    assert rerun["quick"]["pushed"] == [f"{prefix}/quick:{t}" for t in RELEASE]


def test_refresh_push_keeps_the_old_pin_when_an_image_on_it_fails(
    registry: Any, docker_backend: DockerEngine, unique: str, cleanup_images: set[str],
    tmp_path: Path,
) -> None:
    """Issue 12's refresh gate: the upstream moves to something app's build and checked's
    check reject; stack.lock keeps the old pin, exit 1, naming each image (and the check).
    Once it moves to something good, all is rebuilt, promoted, and only then pinned."""
    prefix = f"{registry.address}/{unique}"
    upstream, other = f"{prefix}/upstream:1", f"{prefix}/other:1"
    old = publish_upstream(docker_backend, upstream, unique, "v1", tmp_path / "up1")
    publish_upstream(docker_backend, other, unique, "o1", tmp_path / "other")
    stack = stack_with_tags(tmp_path / "stack", unique, prefix, {
        "app": f"FROM {upstream}\nRUN if grep -q bad /marker; then echo bad; exit 1; fi\n",
        "app-child": f"FROM {prefix}/app\nCOPY app-child.txt /child.txt\n",
        "checked": f"FROM {upstream}\nCOPY checked.txt /checked.txt\n",
        "side": f"FROM {other}\nCOPY side.txt /side.txt\n",
    })
    set_manifest(stack, "    context: checked\n", "    context: checked\n    tests:\n"
                 "      - {name: marker is a version, run: [cat, /marker],"
                 " expect: {regex: '^v[0-9]+$'}}\n")
    json_out(run_cli(stack, "build", "--push", "--json"))
    lock = (stack / "stack.lock").read_text()
    assert f"{upstream}: {old}" in lock
    on_upstream = ["app", "app-child", "checked"]
    before = digests(registry, unique, on_upstream)

    # overnight the upstream moves to something that breaks app and checked: the pin stays
    bad = publish_upstream(docker_backend, upstream, unique, "bad", tmp_path / "up2")
    proc = run_cli(stack, "refresh", "--push", "--json")
    document = json_out(proc, code=1)
    assert (stack / "stack.lock").read_text() == lock
    assert statuses(by_image(document)) == {"app": "failed", "app-child": "blocked",
                                            "checked": "test-failed",
                                            "side": "up-to-date"}  # fmt: skip
    gates = {g["ref"]: g for g in document["upstreams"]}
    assert gates[other]["status"] == "unchanged" and gates[other]["held_back"] == []
    assert gates[upstream]["status"] == "held-back"
    assert (gates[upstream]["old"], gates[upstream]["new"]) == (old, bad)
    held_back = {h["image"]: h["reason"] for h in gates[upstream]["held_back"]}
    assert set(held_back) == {"app", "app-child", "checked"}
    assert held_back["app"] == "app failed"
    assert held_back["app-child"] == "ancestor app failed"
    assert "check 'marker is a version' failed" in held_back["checked"]
    assert f"refresh: {upstream}: held back at" in proc.stderr
    assert "app (app failed)" in proc.stderr
    assert "checked (checked test-failed: check 'marker is a version' failed" in proc.stderr
    assert digests(registry, unique, on_upstream) == before  # release tags untouched

    # it moves again, to something good: rebuilt, promoted, and then pinned
    good = publish_upstream(docker_backend, upstream, unique, "v2", tmp_path / "up3")
    document = json_out(run_cli(stack, "refresh", "--push", "--json"))
    gates = {g["ref"]: g for g in document["upstreams"]}
    assert gates[upstream]["status"] == "moved-and-promoted"
    assert (gates[upstream]["old"], gates[upstream]["new"]) == (old, good)
    assert f"{upstream}: {good}" in (stack / "stack.lock").read_text()
    for name, result in by_image(document).items():
        want = fingerprint_digest(registry, unique, result)
        assert digests(registry, unique, [name])[name] == dict.fromkeys(RELEASE, want)
