"""BuildRun without an engine: tags, requests, pins, failures, records, results.

The stack is real (files in tmp_path, analysed like ``build`` does); the
backend is ``tests.fakes.FakeBackend``, which records what it was asked and fails on request.
"""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import pytest

from stackbuild.analyze import analyze
from stackbuild.backends.contract import FINGERPRINT_LABEL, IMAGE_LABEL, LocalImage
from stackbuild.eta import Estimate
from stackbuild.live import time_left_text
from stackbuild.refs import fingerprint12
from stackbuild.render import human_duration
from stackbuild.run.build import BuildOptions, BuildRun, image_tags
from stackbuild.run.existing import find_existing
from stackbuild.ui import LiveReporter, PlainReporter
from tests.fakes import FakeBackend, QuietReporter
from tests.helpers import fake_stack
from tests.terminal import FakeTerminal, screen

FP = "sha256:" + "0123456789ab" + "c" * 52


# -- tags --------------------------------------------------------------------------------


def test_fingerprint12() -> None:
    assert fingerprint12(FP) == "0123456789ab"


def test_image_tags_fill_templates() -> None:
    today = time.strftime("%Y%m%d", time.gmtime())
    templates = ("v-{fingerprint12}", "{git_sha}", "{date}", "x{date}y")
    tags = image_tags("reg/app", FP, templates, "c0ffee")
    assert tags[:3] == ["reg/app:0123456789ab", "reg/app:latest", "reg/app:v-0123456789ab"]
    assert tags[3] == "reg/app:c0ffee"
    assert tags[4] in {f"reg/app:{today}", f"reg/app:{time.strftime('%Y%m%d', time.gmtime())}"}
    assert tags[5] == f"reg/app:x{tags[4].split(':')[1]}y"


def test_image_tags_without_git() -> None:
    assert image_tags("app", FP, ("{git_sha}",), None)[-1] == "app:nogit"


def test_image_tags_are_deduplicated_in_order() -> None:
    assert image_tags("app", FP, ("latest", "{fingerprint12}", "stable", "stable"), None) == [
        "app:0123456789ab",
        "app:latest",
        "app:stable",
    ]


def test_image_tags_keep_a_registry_port() -> None:
    tags = image_tags("127.0.0.1:5000/acme/app", FP, (), None)
    assert tags == ["127.0.0.1:5000/acme/app:0123456789ab", "127.0.0.1:5000/acme/app:latest"]


# -- a stack and a fake engine -----------------------------------------------------------

#   base ─┬─ left ─┬─ top
#         ├─ right ┘
#         ├─ bad ── bad-kid ── bad-grandkid
#         └─ solo
DOCKERFILES = {
    "base": "FROM scratch\nCOPY f /f\n",
    "left": "FROM base\n",
    "right": "FROM base\n",
    "top": "FROM left\nCOPY --from=reg/right /x /x\n",
    "bad": "FROM base\n",
    "bad-kid": "FROM bad\n",
    "bad-grandkid": "FROM reg/bad-kid:latest\n",
    "solo": "FROM base\n",
}


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    solo_tags = "tags: ['v-{fingerprint12}', latest]"
    return fake_stack(tmp_path, DOCKERFILES, extra={"solo": (solo_tags,)})


class Events(QuietReporter):
    """A reporter that remembers the order of what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.outputs: list[tuple[str, str]] = []
        self.counts: tuple[int, int] | None = None
        self.closed = False
        self.scheduled_on: tuple[dict, int] | None = None

    def start(self, to_build: int, up_to_date: int, to_test: int = 0) -> None:
        self.counts = (to_build, up_to_date)

    def scheduled(self, schedule, slots: int, durations) -> None:
        assert not self.events, "told the schedule after a build started"
        self.scheduled_on = (schedule.statuses(), slots)


    def image_started(self, image: str, engine: str | None = None) -> None:
        self.events.append(("started", image))

    def image_output(self, image: str, line: str) -> None:
        self.outputs.append((image, line))

    def image_finished(self, result) -> None:
        self.events.append((result.status, result.image))

    def close(self) -> None:
        self.closed = True


def run(stack_file: Path, backend: FakeBackend, reporter=None, existing=(), jobs: int = 3,
        fail_fast: bool = False, stop: threading.Event | None = None):  # fmt: skip
    analysis = analyze(stack_file)
    local = find_existing(analysis, backend)
    assert set(local) == set(existing)
    plan = analysis.plan({name: "local engine" for name in local})
    reporter = reporter or Events()
    results = BuildRun(
        analysis, plan, backend, reporter, BuildOptions(jobs=jobs, fail_fast=fail_fast),
        local, stop,
    ).run()  # fmt: skip
    return analysis, plan, results, reporter


# -- BuildRun ----------------------------------------------------------------------------


def test_a_failure_blocks_exactly_its_descendants(stack: Path) -> None:
    backend = FakeBackend(fail={"bad"})
    analysis, plan, results, reporter = run(stack, backend)

    assert [r.image for r in results] == [s.image for s in plan.steps]  # plan order
    status = {r.image: r.status for r in results}
    assert status == {
        "base": "built", "left": "built", "right": "built", "top": "built",
        "bad": "failed", "bad-kid": "blocked", "bad-grandkid": "blocked", "solo": "built",
    }  # fmt: skip
    assert "bad-kid" not in backend.attempts("build")
    assert "bad-grandkid" not in backend.attempts("build")
    by_name = {r.image: r for r in results}
    assert by_name["bad"].error == "returned a non-zero code: 1"
    assert any("something broke" in line for line in by_name["bad"].log_tail)
    assert by_name["bad"].log == str(analysis.state.log_path("bad"))
    assert by_name["bad-kid"].error == "parent failed: bad"
    assert by_name["bad-grandkid"].error == "parent failed: bad"
    # records only for what was built
    state = analysis.state
    saved = sorted(p.stem for p in state.images.glob("*.json"))
    assert saved == ["base", "left", "right", "solo", "top"]
    top = state.load_record("top")
    assert top.fingerprint == analysis.inputs["top"].fingerprint
    assert top.image_id == "sha256:id-top"
    assert top.inputs == analysis.inputs["top"]
    assert top.engine == "fake://engine"
    # the reporter heard each image start before it finished, parents before children
    events = reporter.events
    for name in backend.attempts("build"):
        assert events.index(("started", name)) < events.index((status[name], name))
    assert events.index(("built", "base")) < events.index(("started", "left"))
    assert events.index(("built", "left")) < events.index(("started", "top"))
    assert events.index(("built", "right")) < events.index(("started", "top"))
    assert reporter.counts == (8, 0)
    # the schedule, for the live view's time left, before anything started
    statuses, slots = reporter.scheduled_on
    assert set(statuses) == set(DOCKERFILES) and slots == 3
    assert ("base", "Step 1/1 : FROM whatever for base") in reporter.outputs


def test_requests_carry_tags_labels_and_pins_to_the_fresh_parents(stack: Path) -> None:
    backend = FakeBackend()
    analysis, _, _, _ = run(stack, backend)

    top = backend.requests["top"]
    fp = analysis.inputs["top"].fingerprint
    assert top.repository == "reg/top"
    assert top.fingerprint == fp
    assert top.tags == (f"reg/top:{fp[7:19]}", "reg/top:latest")
    assert top.labels[FINGERPRINT_LABEL] == fp
    assert top.labels[IMAGE_LABEL] == "top"
    assert "org.opencontainers.image.created" in top.labels
    # exactly the references the Dockerfile writes, pinned to this run's builds
    assert top.pins == {"left": "sha256:id-left", "reg/right": "sha256:id-right"}
    assert backend.requests["bad-grandkid"].pins == {"reg/bad-kid:latest": "sha256:id-bad-kid"}
    assert backend.requests["base"].pins == {}
    assert [f.path for f in top.context_files] == ["Dockerfile", "f"]
    assert top.dockerfile_bytes == DOCKERFILES["top"].encode()
    solo = backend.requests["solo"]
    assert solo.tags == (f"reg/solo:{solo.fingerprint[7:19]}", "reg/solo:latest",
                         f"reg/solo:v-{solo.fingerprint[7:19]}")  # fmt: skip


def test_up_to_date_images_are_skipped_retagged_and_pinned(stack: Path) -> None:
    first = FakeBackend()
    analysis, _, _, _ = run(stack, first)
    base_fp = analysis.inputs["base"].fingerprint
    left_fp = analysis.inputs["left"].fingerprint
    # the engine holds base (but lost its `latest`) and left; a same-fingerprint image
    # tagged only in another repository does not count
    local = {
        base_fp: [LocalImage("sha256:old-base", (f"reg/base:{base_fp[7:19]}",))],
        left_fp: [LocalImage("sha256:look-alike", ("elsewhere/left:1",))],
    }
    backend = FakeBackend(local=local)

    _, plan, results, reporter = run(stack, backend, existing={"base"})

    status = {r.image: r.status for r in results}
    assert status["base"] == "up-to-date"
    assert all(s == "built" for name, s in status.items() if name != "base")
    assert "base" not in backend.attempts("build")
    assert "reg/base:latest" in backend.done("tag")  # latest points back
    assert backend.image_id("reg/base:latest") == "sha256:old-base"
    assert backend.requests["left"].pins == {"base": "sha256:old-base"}
    assert reporter.counts == (7, 1)
    by_name = {r.image: r for r in results}
    assert by_name["base"].tags == [f"reg/base:{base_fp[7:19]}", "reg/base:latest"]
    assert by_name["base"].duration_s == 0


def test_nothing_to_build_opens_no_logs(stack: Path) -> None:
    analysis, _, _, _ = run(stack, FakeBackend())
    local = {
        i.fingerprint: [LocalImage(f"sha256:id-{n}", (f"reg/{n}:{i.fingerprint[7:19]}",))]
        for n, i in analysis.inputs.items()
    }
    log = analysis.state.logs / "stackbuild.log"
    size = log.stat().st_size
    backend = FakeBackend(local=local)

    _, _, results, reporter = run(stack, backend, existing=set(DOCKERFILES))

    assert {r.status for r in results} == {"up-to-date"}
    assert backend.attempts("build") == []
    assert reporter.counts == (0, 8)
    assert log.stat().st_size == size


def test_an_exception_in_the_backend_is_a_failure(stack: Path) -> None:
    backend = FakeBackend()
    backend.fail_always("build", ConnectionError("engine went away"), ref="left")
    analysis, _, results, _ = run(stack, backend)

    by_name = {r.image: r for r in results}
    assert by_name["left"].status == "failed"
    assert "engine went away" in by_name["left"].error
    assert by_name["top"].status == "blocked"
    assert by_name["right"].status == "built"
    assert analysis.state.load_record("left") is None
    assert "engine went away" in (analysis.state.logs / "left.log").read_text()


def test_fail_fast_cancels_what_has_not_started(stack: Path) -> None:
    backend = FakeBackend(fail={"base"})
    _, _, results, _ = run(stack, backend, jobs=1, fail_fast=True)

    status = {r.image: r.status for r in results}
    assert status["base"] == "failed"
    assert {s for n, s in status.items() if n != "base"} == {"blocked"}
    assert backend.attempts("build") == ["base"]


def test_a_set_stop_builds_nothing_and_cancels_everything(stack: Path) -> None:
    stop = threading.Event()
    stop.set()
    backend = FakeBackend()
    analysis, _, results, _ = run(stack, backend, stop=stop)

    assert {r.status for r in results} == {"cancelled"}
    assert backend.attempts("build") == []
    assert not list(analysis.state.images.glob("*.json"))


def test_plain_reporter_and_logs_end_to_end(stack: Path) -> None:
    out = io.StringIO()
    analysis, _, _, _ = run(stack, FakeBackend(fail={"bad"}), reporter=PlainReporter(out))

    lines = out.getvalue().splitlines()
    assert lines[0].endswith("8 to build, 0 up to date")
    assert any(line.endswith("failed    bad after 0.0s: returned a non-zero code: 1")
               for line in lines), lines  # fmt: skip
    run_log = (analysis.state.logs / "stackbuild.log").read_text()
    assert "run: 8 to build, 0 up to date" in run_log
    assert "blocked bad-kid parent failed: bad" in run_log
    base_log = (analysis.state.logs / "base.log").read_text()
    assert "=== stackbuild: build base" in base_log and "=== stackbuild: built in" in base_log
    # every image's handler is closed again: the lock files are all in one place
    assert not list(analysis.state.logs.glob("*.lock"))
    assert list((analysis.state.logs / ".locks").iterdir())


def test_the_live_view_s_time_left_weighs_images_as_the_scheduler_does(stack: Path) -> None:
    """Never-built images weigh their estimate (stackbuild.estimate, calibrated on the
    measured ones), not one second: the time left is the scheduler's critical path."""
    analysis = analyze(stack)
    analysis.durations.update({"base": 4.0, "left": 6.0, "right": 3.0})  # the rest: never built
    plan = analysis.plan({})
    heard: list[Estimate] = []

    class Heard(QuietReporter):
        def scheduled(self, schedule, slots: int, durations) -> None:
            heard.append(Estimate.of(schedule, slots, durations))

    BuildRun(analysis, plan, FakeBackend(), Heard(), BuildOptions(jobs=2), {}).run()
    weights = analysis.weights()
    (estimate,) = heard
    assert dict(estimate.own) == {name: weights[name] for name in DOCKERFILES}
    assert estimate.measured == {"base", "left", "right"}
    assert estimate.own["top"] != 1.0  # an estimate in the measured images' seconds
    left = estimate.left(set(), {})
    assert left.unmeasured == 5 and left.known
    paths = [["base", "left", "top"], ["base", "right", "top"], ["base", "solo"],
             ["base", "bad", "bad-kid", "bad-grandkid"]]
    critical = max(sum(weights[name] for name in path) for path in paths)
    assert left.seconds == pytest.approx(max(critical, sum(weights.values()) / 2))
    assert time_left_text(left) == (
        f"~{human_duration(left.seconds)} left (5 never built: estimated)"
    )


def test_the_live_view_leaves_the_plain_reporters_lines_and_no_block(
    stack: Path, tmp_path: Path
) -> None:
    plain, terminal = io.StringIO(), FakeTerminal()
    run(stack, FakeBackend(fail={"bad"}), reporter=PlainReporter(plain), jobs=1)
    shutil.rmtree(tmp_path / ".stackbuild")  # the same run again, from scratch
    live = LiveReporter(terminal)
    try:
        run(stack, FakeBackend(fail={"bad"}), reporter=live, jobs=1)
    finally:
        live.close()
    assert "[0/8]" in terminal.getvalue()  # it was drawn...
    shown = [row[9:] for row in screen(terminal.getvalue())]  # ...and is gone: just the lines
    assert shown == [line[9:] for line in plain.getvalue().splitlines()]
    assert shown[1] == "start     base" and shown[2].startswith("built     base in ")
    assert any(line.startswith("failed    bad after ") for line in shown)


def test_a_build_whose_record_cannot_be_written_fails_and_keeps_its_log(
    stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from stackbuild.state import StateDir, StateWriteError

    real_save = StateDir.save_record

    def full_disk_for_left(self, record) -> None:
        if record.image == "left":
            raise StateWriteError(self.record_path("left"), OSError(errno.ENOSPC, "No space left"))
        real_save(self, record)

    monkeypatch.setattr(StateDir, "save_record", full_disk_for_left)
    _, _, results, _ = run(stack, FakeBackend())
    by_name = {r.image: r for r in results}
    left = by_name["left"]
    assert left.status == "failed"
    assert "No space left" in (left.error or "") and "left" in (left.error or "")
    assert left.log and left.log.endswith(".log")  # the summary points at the build log
    assert by_name["top"].status == "blocked"  # nothing is built on an unrecorded image
    assert by_name["right"].status == "built"


# -- cache_from ----------------------------------------------------------------------------


def test_cache_from_reaches_the_backend_and_leaves_the_fingerprint_alone(stack: Path) -> None:
    before = analyze(stack).inputs["solo"].fingerprint
    text = stack.read_text().replace("images:\n", "defaults: {cache_from: registry}\nimages:\n")
    stack.write_text(text)
    backend = FakeBackend()
    backend.build_warnings["solo"] = ("cache_from reg/solo:latest cannot be used (refused)",)
    reporter = Events()
    messages: list[str] = []
    reporter.message = messages.append  # type: ignore[method-assign]
    analysis, _, results, _ = run(stack, backend, reporter)

    assert analysis.inputs["solo"].fingerprint == before  # a cache is not an input
    assert backend.requests["solo"].cache_from == ("reg/solo:latest",)
    assert backend.requests["top"].cache_from == ("reg/top:latest",)
    # the build went on without the cache, and the person heard why
    assert {r.image: r.status for r in results}["solo"] == "built"
    # ... and where stack.yaml names that cache (defaults' `registry`)
    line = text.splitlines().index("defaults: {cache_from: registry}") + 1
    where = f"{analysis.stack.display_path}:{line}:24"
    assert messages == [f"warning: solo: {where}: cache_from reg/solo:latest cannot be used "
                        "(refused)"]  # fmt: skip
    solo = next(r for r in results if r.image == "solo")
    assert solo.warnings == [f"{where}: cache_from reg/solo:latest cannot be used (refused)"]
