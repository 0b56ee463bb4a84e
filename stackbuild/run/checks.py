"""Run an image's checks (``tests:`` of stack.yaml) on a backend, log them, record them.

``ImageChecks.run`` runs every check of one image, one fresh container each, through
``Backend.run_check``, writes their output to ``.stackbuild/logs/<image>.test.log`` and
judges each (``stackbuild.checks.judge``). A build runs them right after a successful
build in the same scheduler slot (``BuildRun``); ``stackbuild test`` runs them on images
already built (``check_images``). ``record_tested`` writes what passed to ``.stackbuild/``:
the checks are not in the fingerprint, the tests hash beside it says which passed.
Every check container carries the run's id, and ``sweep`` removes whatever a run left
(an interrupt between create and remove), so no container of a check survives the run.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Backend, CheckRequest
from stackbuild.checks import CheckOutcome, CheckResult, judge
from stackbuild.logs import TEST_MARKER, RunLogs
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import Schedule, SchedulerEvent, Status, run_threaded
from stackbuild.state import BuildRecord, StateWriteError

TEST_LOG = ".test.log"


@dataclass
class CheckRun:
    """The checks of one image in one run: each result, and where their output went."""

    results: list[CheckResult] = field(default_factory=list)
    log: str | None = None
    tail: list[str] = field(default_factory=list)  # of the log, when one failed

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    def error(self) -> str | None:
        """One line for the summary: the first failed check and why; None if all passed."""
        failed = [r for r in self.results if not r.passed]
        if not failed:
            return None
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"check {first.name!r} {first.status}: {first.detail}{more}"


class ImageChecks:
    """Runs checks for one run (a build or ``stackbuild test``): its id labels them."""

    def __init__(self, analysis: Analysis, logs: RunLogs, stop: threading.Event) -> None:
        self.analysis = analysis
        self.logs = logs
        self.stop = stop
        self.run_id = uuid.uuid4().hex  # the CHECK_LABEL of this run's containers
        self.backends: dict[int, Backend] = {}  # every backend a check ran on, for sweep
        self.lock = threading.Lock()

    def has_checks(self, name: str) -> bool:
        return bool(self.analysis.stack.images[name].tests)

    def run(self, name: str, backend: Backend, ref: str) -> CheckRun:
        """Every check of ``name`` on ``backend``'s local image ``ref``, in order; all run
        (a failure does not hide the next one's) unless the run is stopped."""
        spec = self.analysis.stack.images[name]
        with self.lock:
            self.backends[id(backend)] = backend
        log = self.logs.open_image(name, TEST_LOG)
        out = CheckRun(log=str(log.path))
        log(f"{TEST_MARKER}{name} {ref} on {backend.name}: {len(spec.tests)} check(s) ===")
        try:
            for check in spec.tests:
                if self.stop.is_set():
                    out.results.append(CheckResult(check.name, "failed", 0.0, "interrupted"))
                    continue
                log(f"=== stackbuild: check {check.name} ({check.kind}) ===")
                started = time.monotonic()
                outcome = self._outcome(name, check.name, backend, ref, log)
                result = judge(check, outcome, time.monotonic() - started)
                detail = f": {result.detail}" if result.detail else ""
                log(f"=== stackbuild: {result.status} in {result.duration_s:.1f}s{detail} ===")
                out.results.append(result)
        finally:
            log.close()
        if not out.passed:
            out.tail = log.tail(since=TEST_MARKER)  # this run's checks, not the last run's
        return out

    def _outcome(
        self, name: str, check_name: str, backend: Backend, ref: str, log: Callable[[str], None]
    ) -> CheckOutcome:
        check = next(c for c in self.analysis.stack.images[name].tests if c.name == check_name)
        script = None
        if check.script_path is not None:
            try:
                script = check.script_path.read_bytes()
            except OSError as error:
                return CheckOutcome(error=f"cannot read the script {check.script}: "
                                          f"{error.strerror or error}")  # fmt: skip
        request = CheckRequest(
            image=name, ref=ref, run_id=self.run_id, name=check.name, argv=check.argv,
            script=script, script_name=check.script_path.name if check.script_path else "check",
            port=check.port, path=check.path, timeout=check.timeout, network=check.network,
        )  # fmt: skip
        try:
            return backend.run_check(request, log, self.stop)
        except Exception as error:  # the engine went away mid-check, ...
            log(f"=== stackbuild: error: {error} ===")
            return CheckOutcome(error=str(error))

    def sweep(self) -> None:
        """Remove any container of this run's checks still there (best effort)."""
        for backend in list(self.backends.values()):
            with contextlib.suppress(Exception):
                backend.remove_check_containers(self.run_id)


def record_tested(
    analysis: Analysis, name: str, image_id: str, tags: Iterable[str], engine: str,
    duration_s: float | None = None,
) -> None:  # fmt: skip
    """Write that ``name``'s checks passed at its current fingerprint (``tests`` hash),
    keeping the build's record when it is of this fingerprint. StateWriteError on a full
    disk."""
    state = analysis.state
    fingerprint = analysis.inputs[name].fingerprint
    record = state.load_record(name)
    if record is not None and record.fingerprint == fingerprint:
        record = replace(record, tests=analysis.tests[name])
    else:
        record = BuildRecord(
            image=name, fingerprint=fingerprint, inputs=analysis.inputs[name],
            duration_s=duration_s if duration_s is not None else analysis.durations.get(name, 0.0),
            built_at=time.time(), tags=list(tags), image_id=image_id, engine=engine,
            tests=analysis.tests[name],
        )  # fmt: skip
    state.save_record(record)


def checked_result(
    analysis: Analysis, name: str, checks: CheckRun, ok_status: Status, **fields: object
) -> ImageResult:
    """The ``ImageResult`` of an image whose checks ran: ``ok_status`` when they passed,
    ``test-failed`` (with the first failure and the log's tail) when not."""
    passed = checks.passed
    return ImageResult(
        image=name,
        status=ok_status if passed else Status.TEST_FAILED,
        fingerprint=analysis.inputs[name].fingerprint,
        checks=checks.results,
        test_log=checks.log,
        error=checks.error(),
        log_tail=[] if passed else checks.tail,
        **fields,  # type: ignore[arg-type]  # the rest of ImageResult's fields, by name
    )


def check_images(
    analysis: Analysis,
    backend: Backend,
    images: dict[str, str],
    jobs: int,
    stop: threading.Event,
    on_result: Callable[[ImageResult], None] | None = None,
) -> list[ImageResult]:
    """``stackbuild test``: run the checks of ``images`` (name -> local image id, built
    at their current fingerprint) ``jobs`` at a time; record the ones that passed."""
    logs = RunLogs(analysis.state)
    checks = ImageChecks(analysis, logs, stop)
    results: dict[str, ImageResult] = {}
    lock = threading.Lock()

    def job(name: str) -> Status:
        started = time.monotonic()
        run = checks.run(name, backend, images[name])
        result = checked_result(analysis, name, run, Status.TESTED, engine=backend.name,
                                duration_s=time.monotonic() - started)  # fmt: skip
        if result.status is Status.TESTED:
            try:
                record_tested(analysis, name, images[name], [], backend.name)
            except StateWriteError as error:
                result.status, result.error = Status.FAILED, str(error)
        with lock:
            results[name] = result
        return result.status

    def on_event(event: SchedulerEvent) -> None:
        if event.kind == "finished" and event.name not in results:  # it raised, or stopped
            error = "interrupted" if stop.is_set() else event.error
            results[event.name] = ImageResult(event.name, Status.CANCELLED if stop.is_set()
                                              else Status.FAILED,
                                              analysis.inputs[event.name].fingerprint,
                                              error=error)  # fmt: skip
        elif event.kind == "finished" and event.status is Status.CANCELLED:
            # its checks were cut short by Ctrl-C: cancelled, as in a build, not test-failed
            results[event.name].status = Status.CANCELLED
            results[event.name].error = "interrupted"
        elif event.kind == "cancelled":
            results[event.name] = ImageResult(event.name, Status.CANCELLED,
                                              analysis.inputs[event.name].fingerprint,
                                              error="interrupted")  # fmt: skip
        if event.kind in ("finished", "cancelled") and on_result:
            on_result(results[event.name])

    try:
        if images:
            schedule = Schedule({name: () for name in images}, list(images))
            run_threaded(schedule, max(1, jobs), job, stop, on_event)
    finally:
        checks.sweep()
        logs.close()
    return [results[name] for name in images]
