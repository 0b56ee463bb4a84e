"""Carry out a plan: schedule the builds, run them on a backend, record them.

The glue between the pure stages and the engine: it turns plan steps into
``BuildRequest``s (tags, labels, parent pins), runs them through the
scheduler, writes each image's log and, after every successful build, its
record in ``.stackbuild/`` at once, so an interrupted or failed run keeps
everything it finished and a rerun picks up where it stopped.

An image with checks (``tests:``) runs them right after its build, in the same
slot (``run.checks``): only then does it count as built. A failing check makes it
``test-failed``: it blocks its descendants, keeps only its fingerprint tag and is not
recorded, so the next run tests it again (without building it: it exists). An
image built already whose checks changed (or never passed) is only tested.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import (
    FINGERPRINT_LABEL,
    IMAGE_LABEL,
    Backend,
    BuildRequest,
    LocalImage,
)
from stackbuild.logs import BUILD_MARKER, RunLogs
from stackbuild.manifest import Stack, render_tag
from stackbuild.plan import BUILD, TEST, Plan
from stackbuild.platforms import node_platform, platform_tag
from stackbuild.refs import fingerprint12
from stackbuild.render import counts_line
from stackbuild.run.attest import Attestor
from stackbuild.run.checks import CheckRun, ImageChecks, checked_result, record_tested
from stackbuild.run.history import duration_label
from stackbuild.run.pool import EnginePool, EngineSlot
from stackbuild.run.registry import RegistryHooks
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import RetryElsewhere, Schedule, SchedulerEvent, Status, run_threaded
from stackbuild.state import BuildRecord, StateWriteError


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = 1
    fail_fast: bool = False
    no_cache: bool = False
    pull: bool = False
    test: bool = True  # run each built image's checks (--no-test: False)


def git_revision(root: Path) -> str | None:
    """The commit the stack is built from, for {git_sha} and the OCI revision label."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def image_tags(repository: str, fingerprint: str, templates: tuple[str, ...],
               git_sha: str | None, platform: str | None = None) -> list[str]:
    """Every full reference an image is tagged with: fingerprint12, latest, the manifest's.

    ``platform``: a node of a multi-platform image, whose own tags (all but its
    fingerprint12, which is its platform's) end in ``-os-arch``: the engine holds one
    platform per tag, and the tags proper go to the image index (stackbuild.run.publish).
    """
    values = {
        "fingerprint12": fingerprint12(fingerprint),
        "git_sha": git_sha or "nogit",
        "date": time.strftime("%Y%m%d", time.gmtime()),
    }
    tags = [values["fingerprint12"], "latest"] + [render_tag(t, values) for t in templates]
    if platform:
        # {fingerprint12} is the platform's own tag already, the first one
        tags = [tags[0]] + [platform_tag(t, platform) for t in tags[1:] if t != tags[0]]
    return [f"{repository}:{tag}" for tag in dict.fromkeys(tags)]


def node_tags(stack: Stack, name: str, fingerprint: str, git_sha: str | None) -> list[str]:
    """``image_tags`` of image (or platform node) ``name`` of ``stack``: its repository,
    its manifest's tag templates, its platform's suffix."""
    spec = stack.images[name]
    return image_tags(stack.reference(name), fingerprint, spec.tags, git_sha,
                      node_platform(spec))  # fmt: skip


def located_warning(stack: Stack, name: str, warning: str) -> str:
    """A build's warning about one of image ``name``'s ``cache_from`` references, led by
    where stack.yaml writes it (``stack.yaml:5:16: cache_from ... cannot be used``);
    any other warning as it is."""
    spec = stack.images.get(name)
    for ref, at in (spec.cache_locations if spec else {}).items():
        if warning.startswith(f"cache_from {ref} "):
            return f"{stack.display_path}:{at.line}:{at.col}: {warning}"
    return warning


class Reporter(Protocol):
    """What a build run tells the person watching (``ui.PlainReporter`` and its live view)."""

    def start(self, to_build: int, up_to_date: int, to_test: int = 0) -> None:
        """The run begins: images to build, up to date, and only to re-test (built)."""

    def scheduled(self, schedule: Schedule, slots: int, durations: Mapping[str, float]) -> None:
        """The run's schedule, before it starts (read it now: only the run's thread may,
        later): on ``slots`` at once, weighted by the past builds' ``durations``."""
        ...

    def image_started(self, image: str, engine: str | None = None) -> None: ...

    def image_output(self, image: str, line: str) -> None: ...

    def image_requeued(self, image: str, why: str) -> None: ...

    def image_finished(self, result: ImageResult) -> None: ...

    def message(self, text: str) -> None: ...


class BuildRun:
    """One ``stackbuild build``: a plan, a backend, a reporter, a stop switch."""

    def __init__(
        self,
        analysis: Analysis,
        plan: Plan,
        backend: Backend,
        reporter: Reporter,
        options: BuildOptions,
        local_images: Mapping[str, LocalImage],
        stop: threading.Event | None = None,
        registry_hooks: RegistryHooks | None = None,
        pool: EnginePool | None = None,
        attestor: Attestor | None = None,
    ) -> None:
        self.analysis = analysis
        self.stack = analysis.stack
        self.plan = plan
        self.backend = backend
        self.reporter = reporter
        self.options = options
        # image name -> local image id of each image that already exists (skipped)
        self.local_images = dict(local_images)
        self.image_ids: dict[str, str] = {n: i.id for n, i in local_images.items()}
        self.stop = stop or threading.Event()
        self.results: dict[str, ImageResult] = {}
        self.git_sha = git_revision(self.stack.root)
        self.lock = threading.Lock()
        # pinned upstreams, registry-only parents and pushes (stackbuild.run.registry)
        self.registry_hooks = registry_hooks
        # several engines (stackbuild.run.pool): its slots replace -j
        self.pool = pool
        self.attestor = attestor  # provenance and SBOM of each built image (run.attest)
        self.test_only: set[str] = set()  # the plan's TEST images: only their checks run

    def request_for(self, name: str) -> BuildRequest:
        spec = self.stack.images[name]
        inputs = self.analysis.inputs[name]
        fingerprint = inputs.fingerprint
        repository = self.stack.reference(name)
        labels = {
            **spec.labels,
            FINGERPRINT_LABEL: fingerprint,
            IMAGE_LABEL: name,
            "org.opencontainers.image.created": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
            ),
            **duration_label(self.analysis.durations, name),  # history that travels
        }
        if self.git_sha:
            labels["org.opencontainers.image.revision"] = self.git_sha
        node = self.analysis.graph.nodes[name]
        with self.lock:
            pins = {ref: self.image_ids[parent] for ref, parent in node.parent_refs.items()}
        return BuildRequest(
            image=name,
            repository=repository,
            fingerprint=fingerprint,
            tags=tuple(node_tags(self.stack, name, fingerprint, self.git_sha)),
            context_files=tuple(self.analysis.files[name]),
            context_entries=inputs.files,
            dockerfile_bytes=self.analysis.dockerfiles[name],
            dockerfile_name=self.analysis.dockerfile_name(name),
            build_args=dict(spec.build_args),
            labels=labels,
            target=spec.target,
            platform=spec.platform,
            no_cache=self.options.no_cache,
            pull=self.options.pull,
            pins=pins,
            secrets=dict(spec.secrets),
            cache_from=spec.cache_from,
        )

    def job(self, name: str, slot: EngineSlot | None = None) -> Status:
        """What the scheduler runs for ``name``: its build (and checks), or only its checks."""
        if name in self.test_only:
            return self.test_one(name, slot)
        return self.build_one(name, slot)

    def run_checks(self, name: str, backend: Backend, image_id: str | None) -> CheckRun | None:
        """The checks of a just-built image; None when it has none or --no-test."""
        if not (image_id and self.options.test and self.stack.images[name].tests):
            return None
        return self.checks.run(name, backend, image_id)

    def tests_recorded(self, name: str, checks: CheckRun | None) -> str | None:
        """The tests hash the build's record keeps: None when its checks did not run."""
        if checks is None and self.stack.images[name].tests:
            return None  # --no-test: the next run tests it
        return self.analysis.tests[name]

    def test_one(self, name: str, slot: EngineSlot | None = None) -> Status:
        """Run the checks of ``name``, built already (the plan's TEST): its checks changed
        or never passed at this fingerprint. Passed: recorded, tagged, pushed if missing."""
        fingerprint = self.analysis.inputs[name].fingerprint
        copies = self.pool.local_copies(name) if self.pool else []
        if not self.pool and name in self.local_images:
            copies = [(self.backend, self.local_images[name])]
        if slot:  # the slot's own engine first, when it holds a copy
            copies.sort(key=lambda copy: copy[0] is not slot.backend)
        tags = node_tags(self.stack, name, fingerprint, self.git_sha)
        if not copies:
            with self.lock:
                self.results[name] = ImageResult(name, Status.FAILED, fingerprint,
                                                 error="no engine holds it any more")  # fmt: skip
            return Status.FAILED
        backend, local = copies[0]
        started = time.monotonic()
        checks = self.checks.run(name, backend, local.id)
        result = checked_result(self.analysis, name, checks, Status.TESTED, tags=tags,
                                engine=backend.name,
                                duration_s=time.monotonic() - started)  # fmt: skip
        if result.status is Status.TESTED:
            try:
                for tag in tags:  # e.g. latest moved to another build since: point back
                    if tag not in local.tags:
                        backend.tag(local.id, tag)
                record_tested(self.analysis, name, local.id, tags, backend.name)
            except Exception as error:  # a full disk, the engine gone
                result.status, result.error = Status.FAILED, str(error)
        if result.status is Status.TESTED and self.registry_hooks:
            self.registry_hooks.built_earlier(name, tags)
        with self.lock:
            self.results[name] = result
        return result.status

    def build_one(self, name: str, slot: EngineSlot | None = None) -> Status:
        """Build ``name``; with a builder pool on ``slot``'s engine. Raises RetryElsewhere
        when the build failed because that engine stopped answering."""
        backend = slot.backend if slot else self.backend
        # pulls happen on the engine that builds
        registry = slot.registry_hooks if slot else self.registry_hooks
        request = self.request_for(name)
        log = self.logs.open_image(name)
        self.logs.run.info("build %s %s on %s", name, request.fingerprint, backend.name)
        log(f"{BUILD_MARKER}{name} {request.fingerprint} on {backend.name} ===")

        def sink(line: str) -> None:
            log(line)
            self.reporter.image_output(name, line)

        started, started_at = time.monotonic(), time.time()
        message: str | None  # the error of a failed build, one line
        builder: str | None = None  # the builder that ran it (auto's choice)
        warnings: tuple[str, ...] = ()
        try:
            if slot:  # parents built on other engines are pulled onto this one
                request = slot.prepare(request, sink)
            if registry:  # upstreams at their locked digests, registry-only parents pulled
                request = registry.prepare(name, request, sink)
            result = backend.build(request, sink, self.stop)
            if slot and result.ok and result.image_id:  # pushed first if others need it
                slot.built(request, result.image_id, sink)
        except Exception as error:  # the engine went away mid-build, a tar error, ...
            log(f"=== stackbuild: error: {error} ===")
            result_ok, message, image_id = False, str(error), None
        else:
            result_ok, message, image_id = result.ok, result.error, result.image_id
            builder, warnings = result.builder, result.warnings
            # e.g. a cache_from registry out of reach, auto's fallback to the classic builder
            warnings = tuple(located_warning(self.stack, name, w) for w in warnings)
            for warning in warnings:
                self.logs.run.warning("%s: %s", name, warning)
                self.reporter.message(f"warning: {name}: {warning}")
        duration = time.monotonic() - started
        if slot and not result_ok and not self.stop.is_set() and slot.broken():
            log(f"=== stackbuild: {backend.name} stopped answering; retrying elsewhere ===")
            log.close()
            raise RetryElsewhere(f"engine {backend.name} stopped answering")  # details: its log
        log(f"=== stackbuild: {'built' if result_ok else 'failed'} in {duration:.1f}s ===")
        log.close()
        checks = self.run_checks(name, backend, image_id) if result_ok else None
        if checks is not None and not checks.passed:  # kept, under its fingerprint tag only
            result_ok = False
            with contextlib.suppress(Exception):  # untagging is tidying: never worse than that
                backend.remove_images(request.tags[1:])
        if result_ok and image_id:
            record = BuildRecord(
                image=name,
                fingerprint=request.fingerprint,
                inputs=self.analysis.inputs[name],
                duration_s=duration,
                built_at=time.time(),
                tags=list(request.tags),
                image_id=image_id,
                engine=backend.name,
                tests=self.tests_recorded(name, checks),
            )
            try:
                self.analysis.state.save_record(record)
            except StateWriteError as error:  # a full disk: the image is built, not recorded
                result_ok, message = False, str(error)
        if result_ok and image_id:
            with self.lock:
                self.image_ids[name] = image_id
                parent_ids = {p: self.image_ids[p] for p in self.analysis.inputs[name].parents}
            if self.attestor:  # before the push below, which attaches what it writes
                self.attestor.built(name, backend, image_id, parent_ids, started_at, time.time(),
                                    builder=builder)  # fmt: skip
            if self.registry_hooks:  # pushed on the registry's own threads; children go on
                self.registry_hooks.built(name, list(request.tags))
        with self.lock:
            self.results[name] = ImageResult(
                image=name,
                status=Status.BUILT if result_ok else Status.FAILED,
                fingerprint=request.fingerprint,
                duration_s=duration,
                tags=list(request.tags),
                log=str(log.path),
                error=None if result_ok else (message or "build failed"),
                engine=backend.name,
                builder=builder,
                warnings=list(warnings),
                log_tail=[] if result_ok else log.tail(),
                tests_skipped=not self.options.test and bool(self.stack.images[name].tests),
            )
            if checks is not None:
                outcome = self.results[name]
                outcome.checks, outcome.test_log = checks.results, checks.log
                if not checks.passed:
                    outcome.status, outcome.error = Status.TEST_FAILED, checks.error()
                    outcome.log_tail = checks.tail
            return self.results[name].status

    def on_event(self, event: SchedulerEvent) -> None:
        name = event.name
        if event.kind == "started":
            if self.pool:
                self.reporter.image_started(name, event.slot.engine.name)
            else:
                self.reporter.image_started(name)
            return
        if event.kind == "requeued":  # its engine stopped answering; it builds again elsewhere
            self.logs.run.info("requeued %s %s", name, event.error or "")
            self.reporter.image_requeued(name, f"{event.error}; {name} goes back to the queue")
            return
        if event.kind == "finished":
            result = self.results.get(name)
            if result is None:  # the job raised before recording anything
                result = ImageResult(name, Status.FAILED, self.analysis.inputs[name].fingerprint,
                                     error=event.error)
                self.results[name] = result
            if event.status is Status.CANCELLED:
                result.status = Status.CANCELLED
                result.error = "interrupted"
        else:
            culprit = self.results.get(event.blocked_by or "")
            what = "test-failed" if culprit and culprit.status is Status.TEST_FAILED else "failed"
            reason = f"parent {what}: {event.blocked_by}" if event.blocked_by else None
            result = ImageResult(
                name, event.status, self.analysis.inputs[name].fingerprint, error=reason
            )
            self.results[name] = result
        self.logs.run.info("%s %s %s", result.status, name, result.error or "")
        self.reporter.image_finished(result)

    def run(self) -> list[ImageResult]:
        """Build what the plan says; return one result per planned image, in plan order."""
        todo = [s.image for s in self.plan.steps
                if s.action == BUILD or (s.action == TEST and self.options.test)]  # fmt: skip
        self.test_only = {s.image for s in self.plan.steps if s.action == TEST}
        scheduled = set(todo)
        up_to_date = [s for s in self.plan.steps if s.image not in scheduled]
        for step in up_to_date:
            tags = node_tags(self.stack, step.image, step.fingerprint, self.git_sha)
            local = self.local_images.get(step.image)
            copies = [(self.backend, local)] if local else []
            if self.pool:  # every engine's copy: a child may build on any of them
                copies = self.pool.local_copies(step.image)
            for backend, copy in copies:  # e.g. latest moved to another build since: point back
                for tag in tags:
                    if tag not in copy.tags:
                        backend.tag(copy.id, tag)
            self.results[step.image] = ImageResult(
                step.image, Status.UP_TO_DATE, step.fingerprint, tags=tags,
                tests_skipped=step.action == TEST,  # --no-test: its checks did not run
            )
        if self.registry_hooks:
            # children of registry-only images pin to the registry tag (pulled before use)
            with self.lock:
                for name, ref in self.registry_hooks.remote.items():
                    self.image_ids.setdefault(name, ref)
            for step in up_to_date:
                if step.image in self.local_images:
                    self.registry_hooks.built_earlier(step.image, self.results[step.image].tags)
        retest = sum(name in self.test_only for name in todo)
        self.reporter.start(len(todo) - retest, len(up_to_date), retest)
        if todo:
            self.logs = RunLogs(self.analysis.state)
            self.checks = ImageChecks(self.analysis, self.logs, self.stop)
            self.logs.run.info("run: %s", counts_line(len(todo) - retest, len(up_to_date), retest))
            try:
                schedule = Schedule(
                    {name: self.analysis.graph.parents(name) for name in self.analysis.selected},
                    todo,
                    weights=self.analysis.weights(),  # durations, else estimates
                    fail_fast=self.options.fail_fast,
                )
                slots = self.pool if self.pool is not None else self.options.jobs
                capacity = slots if isinstance(slots, int) else slots.capacity
                self.reporter.scheduled(schedule, capacity, self.analysis.durations)
                run_threaded(schedule, slots, self.job, self.stop, self.on_event)
            finally:
                self.checks.sweep()  # a check container an interrupt left behind
                self.logs.close()
        if self.attestor:
            self.attestor.wait()
        if self.registry_hooks:  # waits for the pushes; a failed one fails its image
            self.registry_hooks.finish(self.results)
        return [self.results[step.image] for step in self.plan.steps]
