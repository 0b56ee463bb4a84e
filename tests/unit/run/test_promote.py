"""Staged publishing without an engine: which images' release tags move (``decide``), the
promoter re-pointing them in the registry, the plan's lagging tags, and the refresh gate
on stack.lock. The stack is real (files in tmp_path); ``tests.fakes.FakeBackend`` and its
``FakeRegistry`` stand in for the engine and the registry."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stackbuild.analyze import Analysis, analyze
from stackbuild.errors import RegistryAuthError
from stackbuild.lockfile import read_lock, write_lock
from stackbuild.plan import PROMOTE, SKIP, with_promotions
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.existing import existing_images, fingerprint_ref
from stackbuild.run.promote import ALL, SUBTREE, Promoter, decide, held_back, lagging, passed
from stackbuild.run.registry import Pusher, RegistryHooks, RetryPolicy
from stackbuild.run.results import HELD_BACK, PROMOTE_FAILED, PROMOTED, ImageResult
from stackbuild.run.upstream import refresh
from stackbuild.scheduler import Status
from stackbuild.ui import PlainReporter
from tests.fakes import FakeBackend, FakeRegistry
from tests.helpers import fake_stack

UP = "up/stream:1"
OLD = "sha256:" + "0" * 64
NEW = "sha256:" + "1" * 64

#   base ─┬─ mid ── leaf
#         └─ tool
DOCKERFILES = {
    "base": f"FROM {UP}\nCOPY f /f\n",
    "mid": "FROM reg/base\nCOPY f /f\n",
    "leaf": "FROM reg/mid\nCOPY f /f\n",
    "tool": "FROM reg/base\nCOPY f /f\n",
}
ORDER = list(DOCKERFILES)
PARENTS = {"base": (), "mid": ("base",), "leaf": ("mid",), "tool": ("base",)}


def results(**statuses: Status) -> dict[str, ImageResult]:
    every = dict.fromkeys(ORDER, Status.BUILT) | statuses
    return {name: ImageResult(name, status, "sha256:x") for name, status in every.items()}


# -- the decision ------------------------------------------------------------------------


def test_an_image_passes_when_built_tested_or_up_to_date_only() -> None:
    assert [s for s in Status if passed(ImageResult("a", s, "f"))] == [
        Status.BUILT, Status.TESTED, Status.UP_TO_DATE
    ]


def test_a_test_failed_image_and_a_built_one_with_a_failed_check_do_not_pass() -> None:
    from stackbuild.checks import CheckResult

    assert not passed(ImageResult("a", Status.TEST_FAILED, "f"))
    failed = ImageResult("a", Status.BUILT, "f", checks=[CheckResult("c", "failed")])
    assert not passed(failed)
    verdict = decide(ORDER, PARENTS, results(mid=Status.TEST_FAILED, leaf=Status.BLOCKED))
    assert verdict["mid"] == "mid test-failed" and verdict["leaf"] == "ancestor mid test-failed"
    assert verdict["tool"] is None
    named = results(mid=Status.TEST_FAILED)
    named["mid"].error = "check 'prints its version' failed: exit 1, wanted 0"
    assert decide(ORDER, PARENTS, named)["mid"] == (
        "mid test-failed: check 'prints its version' failed: exit 1, wanted 0"
    )


def test_subtree_holds_back_a_failed_image_and_everything_built_on_it() -> None:
    verdict = decide(ORDER, PARENTS, results(mid=Status.FAILED, leaf=Status.BLOCKED))
    assert verdict == {
        "base": None,
        "mid": "mid failed",
        "leaf": "ancestor mid failed",  # the cause, not "leaf blocked"
        "tool": None,  # a sibling subtree is promoted
    }


def test_subtree_holds_back_an_up_to_date_child_of_a_failed_image() -> None:
    verdict = decide(ORDER, PARENTS, results(mid=Status.FAILED, leaf=Status.UP_TO_DATE))
    assert verdict["leaf"] == "ancestor mid failed"


def test_all_moves_nothing_unless_everything_passed() -> None:
    verdict = decide(ORDER, PARENTS, results(tool=Status.FAILED), mode=ALL)
    assert verdict == {
        "base": "--promote all: tool failed",
        "mid": "--promote all: tool failed",
        "leaf": "--promote all: tool failed",
        "tool": "tool failed",
    }
    assert set(decide(ORDER, PARENTS, results(), mode=ALL).values()) == {None}


def test_an_interrupted_run_moves_nothing() -> None:
    verdict = decide(ORDER, PARENTS, results(), interrupted=True)
    assert set(verdict.values()) == {"interrupted: the next run promotes it"}


def test_a_parent_outside_the_run_counts_as_passed() -> None:
    verdict = decide(["leaf"], PARENTS, {"leaf": ImageResult("leaf", Status.BUILT, "f")})
    assert verdict == {"leaf": None}


# -- a run on the fake engine and registry -----------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    write_lock(tmp_path / "stack.lock", {UP: OLD})
    return fake_stack(tmp_path, DOCKERFILES, each=("tags: [stable]",))


def engine(registry: FakeRegistry | None = None, fail: tuple[str, ...] = ()) -> FakeBackend:
    backend = FakeBackend(registry=registry, fail=fail, id_format="sha256:{image}-{fingerprint12}")
    backend.add_image("sha256:upstream", repo_digests=[f"up/stream@{OLD}", f"up/stream@{NEW}"])
    return backend


def build_and_push(analysis: Analysis, backend: FakeBackend, tmp_path: Path,
                   mode: str = SUBTREE, interrupted: bool = False) -> dict[str, ImageResult]:
    """What ``build --push`` does: build, push the fingerprint tags, then promote."""
    stop = threading.Event()
    existing = existing_images(analysis, backend, print)
    pusher = Pusher(backend, 2, tmp_path / "logs", stop, lambda message: None,
                    RetryPolicy(budget=0))  # fmt: skip
    hooks = RegistryHooks(backend, analysis, existing.remote, pusher, stop)
    run = BuildRun(analysis, analysis.plan(existing.where()), backend,
                   PlainReporter(open("/dev/null", "w")), BuildOptions(jobs=2),  # noqa: SIM115
                   existing.local, stop, registry_hooks=hooks)  # fmt: skip
    by_name = {r.image: r for r in run.run()}
    Promoter(analysis, backend, stop, lambda message: None, policy=pusher.policy,
             deadlines=pusher.deadlines).run(by_name, mode, interrupted)  # fmt: skip
    return by_name


def release_digests(registry: FakeRegistry) -> dict[str, str]:
    return {ref: m.digest for ref, m in registry.items() if ref.endswith((":latest", ":stable"))}


def test_a_failed_mid_image_keeps_its_and_its_descendants_release_tags(
    stack: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    first = build_and_push(analyze(stack), engine(registry), tmp_path)
    assert {r.promotion.state for r in first.values() if r.promotion} == {PROMOTED}
    assert sorted(first["base"].pushed) == sorted(first["base"].tags)  # all four tags
    before = release_digests(registry)
    assert len(before) == 8

    for name in ("base", "mid"):  # base changes, mid breaks
        (stack.parent / name / "f").write_text(f"{name} v2")
    analysis = analyze(stack)
    backend = engine(registry, fail=("mid",))
    second = build_and_push(analysis, backend, tmp_path)

    assert {n: r.status for n, r in second.items()} == {
        "base": Status.BUILT, "mid": Status.FAILED, "leaf": Status.BLOCKED, "tool": Status.BUILT
    }
    # only fingerprint tags were pushed; release tags were re-pointed in the registry
    assert backend.done("push") == [fingerprint_ref(analysis, "base"),
                                    fingerprint_ref(analysis, "tool")]  # fmt: skip
    assert sorted(backend.done("registry_retag")) == [
        "reg/base:latest", "reg/base:stable", "reg/tool:latest", "reg/tool:stable"
    ]
    after = release_digests(registry)
    for name in ("mid", "leaf"):
        for tag in ("latest", "stable"):
            assert after[f"reg/{name}:{tag}"] == before[f"reg/{name}:{tag}"]
    for name in ("base", "tool"):
        fingerprint = registry[fingerprint_ref(analysis, name)].digest
        assert after[f"reg/{name}:latest"] == after[f"reg/{name}:stable"] == fingerprint
        assert second[name].promotion.promoted == [f"reg/{name}:latest", f"reg/{name}:stable"]
    assert second["mid"].promotion.state == HELD_BACK
    assert second["leaf"].promotion.held_back == ["reg/leaf:latest", "reg/leaf:stable"]
    assert held_back(second.values()) == {"mid": "mid failed", "leaf": "ancestor mid failed"}


def test_promote_all_moves_nothing_and_the_next_run_promotes_without_building(
    stack: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    build_and_push(analyze(stack), engine(registry), tmp_path)
    before = release_digests(registry)
    (stack.parent / "tool" / "f").write_text("tool v2")
    (stack.parent / "mid" / "f").write_text("mid v2")
    backend = engine(registry, fail=("mid",))
    held = build_and_push(analyze(stack), backend, tmp_path, mode=ALL)
    assert release_digests(registry) == before
    assert held["tool"].promotion.reason == "--promote all: mid failed, leaf blocked"
    assert held["tool"].pushed == [fingerprint_ref(analyze(stack), "tool")]

    # the plan of the next run: tool is up to date, but its release tags lag
    analysis = analyze(stack)
    plan = analysis.plan(existing_images(analysis, backend, print).where())
    skipped = [step.image for step in plan if step.action == SKIP]
    behind = lagging(analysis, skipped, backend, print)
    assert list(behind) == ["tool"] and behind["tool"].startswith(
        "release tags behind: latest, stable not at sha256:"
    )
    assert with_promotions(plan, behind).step("tool").action == PROMOTE

    # mid fixed: the rerun builds mid and leaf only, and promotes tool too
    backend.fail.clear()
    rerun = build_and_push(analysis, backend, tmp_path)
    assert {n: r.status for n, r in rerun.items()} == {
        "base": Status.UP_TO_DATE, "mid": Status.BUILT, "leaf": Status.BUILT,
        "tool": Status.UP_TO_DATE,
    }
    assert rerun["tool"].promotion.promoted == ["reg/tool:latest", "reg/tool:stable"]
    assert rerun["base"].promotion.current == ["reg/base:latest", "reg/base:stable"]
    assert rerun["base"].pushed == []  # nothing to push, nothing to move
    assert lagging(analysis, ORDER, backend, print) == {}


def test_an_interrupted_promotion_is_finished_by_the_next_run(
    stack: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    backend = engine(registry)
    first = build_and_push(analyze(stack), backend, tmp_path, interrupted=True)
    assert {r.promotion.reason for r in first.values() if r.promotion} == {
        "interrupted: the next run promotes it"
    }
    assert release_digests(registry) == {}
    assert len(registry) == 4  # the fingerprint tags, pushed as each was built
    builds = len(backend.done("build"))
    again = build_and_push(analyze(stack), backend, tmp_path)
    assert {r.status for r in again.values()} == {Status.UP_TO_DATE}
    assert len(backend.done("build")) == builds  # nothing rebuilt
    assert {r.promotion.state for r in again.values() if r.promotion} == {PROMOTED}
    assert len(release_digests(registry)) == 8


def test_a_registry_that_refuses_a_retag_fails_that_image_and_holds_its_children(
    stack: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    backend = engine(registry)
    backend.fail_always("registry_retag", RegistryAuthError("denied"), ref="reg/mid:latest")
    done = build_and_push(analyze(stack), backend, tmp_path)
    assert done["mid"].status == Status.FAILED
    assert done["mid"].error == "promote failed: denied"
    assert done["mid"].promotion.state == PROMOTE_FAILED
    assert done["mid"].promotion.held_back == ["reg/mid:latest", "reg/mid:stable"]
    assert done["leaf"].promotion.reason == "ancestor mid's release tags did not move"
    assert done["tool"].promotion.state == PROMOTED


# -- the refresh gate --------------------------------------------------------------------


def test_refresh_moves_a_pin_only_when_every_image_on_it_was_promoted(
    stack: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry({UP: NEW})
    fresh = refresh(stack, (), False, engine(registry), print)
    assert [m.ref for m in fresh.moved] == [UP]
    [gate] = fresh.save_gated({"mid": "mid failed", "leaf": "ancestor mid failed"})
    assert gate.to_json() == {
        "ref": UP, "old": OLD, "new": NEW, "status": "held-back",
        "held_back": [{"image": "mid", "reason": "mid failed"},
                      {"image": "leaf", "reason": "ancestor mid failed"}],
    }  # fmt: skip
    assert read_lock(stack.parent / "stack.lock") == {UP: OLD}
    assert "held back at sha256:000000000000 (not sha256:111111111111)" in str(gate)

    [gate] = fresh.save_gated({})
    assert gate.status == "moved-and-promoted"
    assert read_lock(stack.parent / "stack.lock") == {UP: NEW}
    [gate] = refresh(stack, (), False, engine(registry), print).save_gated({})
    assert gate.status == "unchanged"
