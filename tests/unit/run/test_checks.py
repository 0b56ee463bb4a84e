"""Checks inside a BuildRun, on the FakeBackend: test-failed blocks descendants, keeps the
image untagged but for its fingerprint, is not recorded; a changed check re-tests only;
``stackbuild test``'s runner; the summary and the JSON of checks."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from stackbuild.analyze import analyze
from stackbuild.checks import CheckOutcome
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.checks import check_images
from stackbuild.run.existing import find_existing
from stackbuild.ui import PlainReporter, summary
from tests.fakes import FakeBackend
from tests.unit.run.test_build import Events

#   base ── mid ── leaf
#     └──── sib
DOCKERFILES = {
    "base": "FROM scratch\nCOPY f /f\n",
    "mid": "FROM base\n",
    "leaf": "FROM mid\n",
    "sib": "FROM base\n",
}
TESTS = {
    "mid": ["{name: works, run: [mid, --version]}", "{name: page, run: 'cat /f'}"],
    "sib": ["{run: [sib]}"],
}


def write(root: Path, tests: dict[str, list[str]] = TESTS) -> Path:
    lines = ["version: 1", "registry: reg", "images:"]
    for name, dockerfile in DOCKERFILES.items():
        (root / name).mkdir(exist_ok=True)
        (root / name / "Dockerfile").write_text(dockerfile)
        (root / name / "f").write_text(name)
        lines += [f"  {name}:", f"    context: {name}"]
        if tests.get(name):
            lines += ["    tests:"] + [f"      - {check}" for check in tests[name]]
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root / "stack.yaml"


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return write(tmp_path)


def run(stack_file: Path, backend: FakeBackend, test: bool = True, reporter=None):
    analysis = analyze(stack_file)
    local = find_existing(analysis, backend)
    plan = analysis.plan({name: "local engine" for name in local})
    results = BuildRun(
        analysis, plan, backend, reporter or Events(), BuildOptions(jobs=2, test=test), local
    ).run()
    return analysis, plan, {r.image: r for r in results}


FAILED = CheckOutcome(exit_code=1, stderr="mid: unknown option --version")


def test_a_failing_check_makes_the_image_test_failed_and_blocks_its_descendants(
    stack: Path,
) -> None:
    backend = FakeBackend()
    backend.check_outcomes[("mid", "works")] = FAILED

    analysis, _, results = run(stack, backend)

    assert {n: r.status for n, r in results.items()} == {
        "base": "built", "mid": "test-failed",
        "leaf": "blocked", "sib": "built",
    }  # fmt: skip
    mid = results["mid"]
    assert [(c.name, c.status) for c in mid.checks] == [("works", "failed"), ("page", "passed")]
    assert mid.error == (
        "check 'works' failed: exit code 1, expected 0; it said 'mid: unknown option --version'"
    )
    assert results["leaf"].error == "parent test-failed: mid"
    assert "leaf" not in backend.attempts("build")
    assert not mid.passed and results["sib"].passed and results["base"].passed
    # kept under its fingerprint tag only, not recorded: the next run tests it again
    fingerprint_tag = mid.tags[0]
    assert backend.image_id(fingerprint_tag) == "sha256:id-mid"
    assert backend.image_id("reg/mid:latest") is None
    assert analysis.state.load_record("mid") is None
    assert analysis.state.load_record("sib").tests == analysis.tests["sib"]
    assert analysis.state.load_record("base").tests == ""  # no checks
    log = Path(mid.test_log or "").read_text()
    assert "mid: unknown option --version" in log and "failed" in log
    assert mid.test_log == str(analysis.state.log_path("mid", ".test.log"))
    assert any("unknown option" in line for line in mid.log_tail)
    # each check in the JSON, with its status and duration
    data = mid.to_json()
    assert data["tests"] == "failed"
    assert [(c["name"], c["status"]) for c in data["checks"]] == [
        ("works", "failed"), ("page", "passed")]  # fmt: skip
    assert json.dumps(data)


def test_the_rerun_tests_again_without_building_then_builds_the_children(stack: Path) -> None:
    backend = FakeBackend()
    backend.check_outcomes[("mid", "works")] = FAILED
    run(stack, backend)
    builds = list(backend.attempts("build"))

    _, plan, results = run(stack, backend)
    assert plan.step("mid").action == "test"
    assert [r.code for r in plan.step("mid").reasons] == ["tests-not-passed"]
    assert results["mid"].status == "test-failed"
    assert backend.attempts("build") == builds  # nothing built

    del backend.check_outcomes[("mid", "works")]
    analysis, plan, results = run(stack, backend)
    assert results["mid"].status == "tested" and results["mid"].passed
    assert results["leaf"].status == "built"
    assert backend.attempts("build") == builds + ["leaf"]
    assert backend.image_id("reg/mid:latest") == "sha256:id-mid"  # tagged once it passed
    assert analysis.state.load_record("mid").tests == analysis.tests["mid"]
    assert backend.requests["leaf"].pins == {"mid": "sha256:id-mid"}


class MeetingBackend(FakeBackend):
    """mid's check and sib's build each wait for the other to have started: they meet
    only if a check runs while another image builds."""

    def __init__(self) -> None:
        super().__init__()
        self.meeting = threading.Barrier(2, timeout=10)

    def build(self, request, log, cancel):
        if request.image == "sib":
            self.meeting.wait()
        return super().build(request, log, cancel)

    def run_check(self, request, log, cancel):
        if (request.image, request.name) == ("mid", "works"):
            self.meeting.wait()
        return super().run_check(request, log, cancel)


def test_checks_run_in_parallel_with_other_builds_within_jobs(stack: Path) -> None:
    """Issue 12.2: an image's checks take its -j slot, not a phase after every build."""
    backend = MeetingBackend()
    _, _, results = run(stack, backend)  # jobs=2
    assert not backend.meeting.broken
    assert {n: r.status for n, r in results.items()} == dict.fromkeys(
        ("base", "mid", "leaf", "sib"), "built")


def test_a_changed_check_re_runs_only_that_images_checks(tmp_path: Path) -> None:
    stack = write(tmp_path)
    backend = FakeBackend()
    run(stack, backend)
    builds = list(backend.attempts("build"))
    checks = len(backend.check_requests)

    write(tmp_path, {**TESTS, "sib": ["{run: [sib], expect: {stderr: x}}"]})
    backend.check_outcomes[("sib", "sib")] = CheckOutcome(exit_code=0, stderr="x")
    said = io.StringIO()
    _, plan, results = run(stack, backend, reporter=PlainReporter(said))

    assert {s.image: s.action for s in plan.steps} == {
        "base": "skip", "mid": "skip", "leaf": "skip", "sib": "test"}  # fmt: skip
    assert [r.detail for r in plan.step("sib").reasons] == ["tests changed"]
    assert results["sib"].status == "tested"
    assert backend.attempts("build") == builds
    assert [r.image for r in backend.check_requests[checks:]] == ["sib"]
    # as the plan says it: nothing to build, one image to re-test
    assert said.getvalue().splitlines()[0].endswith("0 to build, 1 to test, 3 up to date")


def test_no_test_skips_the_checks_and_says_so(stack: Path) -> None:
    backend = FakeBackend()
    backend.check_outcomes[("mid", "works")] = FAILED

    analysis, _, results = run(stack, backend, test=False)

    assert {r.status for r in results.values()} == {"built"}
    assert backend.check_requests == []
    assert results["mid"].tests_skipped and results["mid"].to_json()["tests"] == "skipped"
    assert not results["base"].tests_skipped  # it has no checks
    assert analysis.state.load_record("mid").tests is None  # the next run tests it
    assert "checks skipped (--no-test): mid, sib" in summary(list(results.values()))

    _, plan, results = run(stack, backend)
    assert plan.step("mid").action == "test"
    assert results["mid"].status == "test-failed"


def test_a_failed_checks_tail_is_of_this_run_not_the_last(stack: Path) -> None:
    """The test log keeps every run's checks; the summary quotes only this run's."""
    backend = FakeBackend()
    backend.check_outcomes[("mid", "works")] = CheckOutcome(exit_code=1, stderr="first try")
    run(stack, backend)
    backend.check_outcomes[("mid", "works")] = CheckOutcome(exit_code=1, stderr="second try")

    _, _, results = run(stack, backend)

    mid = results["mid"]
    assert any("second try" in line for line in mid.log_tail)
    assert not any("first try" in line for line in mid.log_tail)
    assert "first try" in Path(mid.test_log or "").read_text()  # the log keeps it


def test_the_summary_lists_each_check_and_the_failures_log(stack: Path) -> None:
    backend = FakeBackend()
    backend.check_outcomes[("mid", "works")] = CheckOutcome(timed_out=True)

    _, _, results = run(stack, backend)
    text = summary(list(results.values()))

    assert "TESTS" in text.splitlines()[0]
    assert "0/2 passed" not in text and "1/2 passed" in text
    assert "works  timed-out" in text and "timed out after 60s (killed)" in text
    assert "--- mid test-failed: check 'works' timed-out" in text
    assert f"full log: {results['mid'].test_log}" in text


def test_a_stack_without_checks_has_the_summary_it_always_had(tmp_path: Path) -> None:
    _, _, results = run(write(tmp_path, {}), FakeBackend())
    assert summary(list(results.values())).splitlines()[0].split() == [
        "IMAGE", "STATUS", "DURATION", "FINGERPRINT", "TAGS"]  # fmt: skip


def test_the_test_runner_checks_built_images_and_records_what_passed(stack: Path) -> None:
    backend = FakeBackend()
    run(stack, backend, test=False)
    analysis = analyze(stack)
    local = find_existing(analysis, backend)
    backend.check_outcomes[("sib", "sib")] = CheckOutcome(exit_code=2)
    seen = []

    results = check_images(analysis, backend, {n: local[n].id for n in ("mid", "sib")}, 2,
                          threading.Event(), seen.append)  # fmt: skip

    assert {r.image: r.status for r in results} == {"mid": "tested", "sib": "test-failed"}
    assert sorted(r.image for r in seen) == ["mid", "sib"]
    assert analysis.state.load_record("mid").tests == analysis.tests["mid"]
    assert analysis.state.load_record("sib").tests is None
    assert "remove_check_containers" in [c for c, _ in backend.history()]


def test_a_check_of_an_image_the_engine_lost_fails_clearly(stack: Path) -> None:
    backend = FakeBackend()
    analysis = analyze(stack)
    results = check_images(analysis, backend, {"mid": "sha256:gone"}, 1, threading.Event())
    assert results[0].status == "test-failed"
    assert "no such image on the engine" in (results[0].error or "")


def test_ctrl_c_during_stackbuild_test_is_cancelled_not_test_failed(stack: Path) -> None:
    """As in a build: checks cut short by an interrupt are not a verdict on the image."""
    stop = threading.Event()

    class Interrupted(FakeBackend):
        def run_check(self, request, log, cancel):
            stop.set()  # Ctrl-C while the check runs
            return super().run_check(request, log, cancel)

    backend = Interrupted()
    analysis = analyze(stack)
    backend.add_image("sha256:id-mid", ["reg/mid:latest"])
    results = check_images(analysis, backend, {"mid": "sha256:id-mid"}, 1, stop)
    assert [(r.status, r.error) for r in results] == [("cancelled", "interrupted")]
    assert [c.detail for c in results[0].checks] == ["interrupted", "interrupted"]
    assert analysis.state.load_record("mid") is None  # not recorded as tested
