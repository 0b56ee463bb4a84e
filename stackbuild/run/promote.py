"""Staged publishing: release tags move only onto images that passed, once the run ends.

With ``--push`` an image's fingerprint tag ``<repository>:<fingerprint12>`` is pushed as
soon as it is built (``registry.RegistryHooks``): it names that one build only, so
pushing it early is safe and lets other runners reuse it. Its release tags (``latest``
and the manifest's ``tags``) are moved here, after the run, by re-pointing each at the
manifest the fingerprint tag already names (``Backend.registry_retag``: the same bytes
under another tag, so no layer is uploaded, no engine is needed, the digest stays).

Which images are promoted (``decide``, pure):

- ``--promote subtree`` (the default): an image that passed, whose every ancestor in
  this run passed too;
- ``--promote all``: every selected image, but only when every one of them passed;
- none when the run was interrupted (the next run finishes it).

"Passed" is one predicate, ``passed``. Release tags are compared with the fingerprint
tag's digest in the registry, so an image that is up to date but whose release tags lag
(a run interrupted between push and promotion, a ``--promote all`` that held it back)
is promoted by the next run without being rebuilt; ``lagging`` finds those for
``plan --push``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Backend
from stackbuild.errors import RegistryError, RegistryNotFound
from stackbuild.plan import short
from stackbuild.refs import split_reference
from stackbuild.run.build import git_revision, node_tags
from stackbuild.run.existing import CHECK_THREADS, fingerprint_ref
from stackbuild.run.registry import RegistryDeadlines, RetryPolicy, T, with_logged_retries
from stackbuild.run.results import (
    HELD_BACK,
    PROMOTE_FAILED,
    PROMOTED,
    ImageResult,
    Promotion,
)
from stackbuild.scheduler import Status

SUBTREE = "subtree"
ALL = "all"
PROMOTE_MODES = (SUBTREE, ALL)
INTERRUPTED = "interrupted: the next run promotes it"


def passed(result: ImageResult) -> bool:
    """Whether an image passed in this run: the one test release tags move on
    (``ImageResult.passed``: built, tested or up to date, and its checks passed)."""
    return result.passed


def decide(
    order: Sequence[str],
    parents: Mapping[str, Iterable[str]],
    results: Mapping[str, ImageResult],
    mode: str = SUBTREE,
    interrupted: bool = False,
) -> dict[str, str | None]:
    """For each image of ``order`` (topological): None when its release tags may move,
    else why they stay where they are. A parent without a result is not in this run."""
    failing = [name for name in order if not passed(results[name])]
    root_cause: dict[str, str | None] = {}  # image -> the first failing image below it
    decision: dict[str, str | None] = {}
    for name in order:
        cause = None
        for parent in parents.get(name, ()):
            if parent not in results:
                continue
            cause = root_cause.get(parent) or (None if passed(results[parent]) else parent)
            if cause:
                break
        root_cause[name] = cause
        if interrupted:
            decision[name] = INTERRUPTED
        elif cause:
            decision[name] = f"ancestor {cause} {results[cause].status}"
        elif not passed(results[name]):
            decision[name] = _failure(results[name])
        elif mode == ALL and failing:
            named = ", ".join(f"{n} {results[n].status}" for n in failing[:3])
            decision[name] = f"--promote all: {named}" + (" ..." if len(failing) > 3 else "")
        else:
            decision[name] = None
    return decision


def _failure(result: ImageResult) -> str:
    """Why a failing image holds its release tags back: its status, and for a failed
    check which one (``check 'name' failed: ...``), so a held-back refresh names it."""
    if result.status is Status.TEST_FAILED and result.error:
        return f"{result.image} {result.status}: {result.error}"
    return f"{result.image} {result.status}"


def release_refs(analysis: Analysis, name: str, tags: Sequence[str] = (),
                 git_sha: str | None = None) -> tuple[str, list[str]]:
    """``(fingerprint ref, release refs)`` of an image: of ``tags`` (its result's), or as
    a build would tag it now."""
    fingerprint = fingerprint_ref(analysis, name)
    if not tags:
        tags = node_tags(analysis.stack, name, analysis.inputs[name].fingerprint, git_sha)
    return fingerprint, [ref for ref in tags if ref != fingerprint]


def _levels(order: Sequence[str], parents: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """``order`` in waves: each image after every wave holding one of its parents."""
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[p] for p in parents.get(name, ()) if p in depth),
                              default=-1)  # fmt: skip
    waves: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in order:
        waves[depth[name]].append(name)
    return waves


class Promoter:
    """Moves the release tags of a run's images (see the module docstring)."""

    def __init__(
        self,
        analysis: Analysis,
        backend: Backend,
        stop: threading.Event,
        notify: Callable[[str], None],
        *,
        policy: RetryPolicy | None = None,
        deadlines: RegistryDeadlines | None = None,
        jobs: int = 2,
        git_sha: str | None = None,
    ) -> None:
        self.analysis = analysis
        self.backend = backend
        self.stop = stop
        self.notify = notify
        self.policy = policy or RetryPolicy.from_env()
        # shared with the run's pushes: a registry that stays down costs one budget
        self.deadlines = deadlines or RegistryDeadlines()
        self.jobs = jobs
        # for the tags of images that have no result's tags (blocked): as a build names them
        self.git_sha = git_sha if git_sha is not None else git_revision(analysis.stack.root)

    def _retrying(self, call: Callable[[], T], ref: str, image: str) -> T:
        def log(line: str) -> None:
            self.notify(f"promote {image}: {line}")

        return with_logged_retries(call, self.policy, self.stop, log,
                                   self.deadlines.for_ref(ref))  # fmt: skip

    def move(self, name: str, fingerprint: str, release: Sequence[str]) -> Promotion:
        """Point every ref of ``release`` at the manifest of ``fingerprint``."""
        promotion = Promotion(PROMOTED)
        todo = list(release)
        try:
            want = self._retrying(
                functools.partial(self.backend.registry_digest, fingerprint), fingerprint, name
            )
            while todo:
                ref = todo[0]
                if self.stop.is_set():
                    promotion.state, promotion.reason = HELD_BACK, INTERRUPTED
                    break
                try:
                    have: str | None = self._retrying(
                        functools.partial(self.backend.registry_digest, ref), ref, name
                    )
                except RegistryNotFound:
                    have = None
                if have == want:
                    promotion.current.append(ref)
                else:
                    tag = split_reference(ref)[1] or "latest"
                    self._retrying(functools.partial(
                        self.backend.registry_retag, fingerprint, tag), ref, name)  # fmt: skip
                    promotion.promoted.append(ref)
                todo.pop(0)
        except Exception as error:  # a registry or engine failure: this image's, not the run's
            promotion.state, promotion.reason = PROMOTE_FAILED, str(error)
        promotion.held_back = todo
        return promotion

    def run(
        self, results: Mapping[str, ImageResult], mode: str = SUBTREE, interrupted: bool = False
    ) -> dict[str, Promotion]:
        """Promote what ``decide`` lets through, parents before children (a child is held
        back when moving its parent's tags failed); record it in ``results``."""
        order = [name for name in self.analysis.selected if name in results]
        parents = {name: self.analysis.graph.parents(name) for name in order}
        verdict = decide(order, parents, results, mode, interrupted)
        promotions: dict[str, Promotion] = {}
        with ThreadPoolExecutor(max_workers=self.jobs,
                                thread_name_prefix="stackbuild-promote") as pool:  # fmt: skip
            for wave in _levels(order, parents):
                futures = {}
                for name in wave:
                    result = results[name]
                    fingerprint, release = release_refs(
                        self.analysis, name, result.tags, self.git_sha
                    )
                    failed_parent = next((p for p in parents[name] if p in promotions and
                                          promotions[p].state != PROMOTED), None)  # fmt: skip
                    reason = verdict[name]
                    if reason is None and failed_parent:
                        reason = f"ancestor {failed_parent}'s release tags did not move"
                    if reason is not None:
                        promotions[name] = Promotion(HELD_BACK, held_back=release, reason=reason)
                    else:
                        futures[name] = pool.submit(self.move, name, fingerprint, release)
                for name, future in futures.items():
                    promotions[name] = future.result()
        for name, promotion in promotions.items():
            result = results[name]
            result.promotion = promotion
            result.pushed += promotion.promoted
            if promotion.state == PROMOTE_FAILED:
                result.status, result.error = Status.FAILED, f"promote failed: {promotion.reason}"
                self.notify(f"promote {name} failed: {promotion.reason}")
            elif promotion.promoted:
                self.notify(f"promoted {name}: {_tag_names(promotion.promoted)}")
        return promotions


def held_back(results: Iterable[ImageResult]) -> dict[str, str]:
    """The images whose release tags did not all move: image -> why."""
    return {r.image: r.promotion.reason or r.promotion.state for r in results
            if r.promotion is not None and r.promotion.state != PROMOTED}  # fmt: skip


def _tag_names(refs: Iterable[str]) -> str:
    return ", ".join(split_reference(ref)[1] or ref for ref in refs)


def promotion_summary(results: Iterable[ImageResult]) -> str:
    """What happened to the release tags: one line, then one per image held back."""
    results = [r for r in results if r.promotion is not None]
    promoted = [r for r in results if r.promotion and r.promotion.promoted]
    moved = sum(len(r.promotion.promoted) for r in promoted if r.promotion)
    line = f"release tags: moved {moved} tag(s) of {len(promoted)} image(s)"
    stayed = [r for r in results if r.promotion and r.promotion.state != PROMOTED]
    if not stayed:
        return line
    lines = [f"{line}; held back {len(stayed)} image(s):"]
    for r in stayed:
        assert r.promotion is not None
        what = _tag_names(r.promotion.held_back) or "-"
        lines.append(f"  {r.image}: {what} ({r.promotion.reason})")
    return "\n".join(lines)


def lagging(
    analysis: Analysis,
    names: Iterable[str],
    backend: Backend,
    warn: Callable[[str], None],
    git_sha: str | None = None,
) -> dict[str, str]:
    """Of ``names`` (up-to-date images), those whose release tags in the registry do not
    point at their fingerprint's manifest: name -> what lags, for the plan. A registry
    that cannot answer is one warning; those images count as current."""
    names = list(names)
    if not analysis.stack.registry or not names:
        return {}

    def check(name: str) -> tuple[str, str | None]:
        fingerprint, release = release_refs(analysis, name, git_sha=git_sha)
        try:
            want = backend.registry_digest(fingerprint)
        except RegistryNotFound:
            return name, (f"its fingerprint tag is not in the registry yet: pushed, then "
                          f"{_tag_names(release)} moved onto it")  # fmt: skip
        behind = []
        for ref in release:
            try:
                if backend.registry_digest(ref) != want:
                    behind.append(ref)
            except RegistryNotFound:
                behind.append(ref)
        if not behind:
            return name, None
        return name, (f"release tags behind: {_tag_names(behind)} not at {short(want)} "
                      "(a run ended before promoting it)")  # fmt: skip

    problems: list[RegistryError] = []

    def safe(name: str) -> tuple[str, str | None]:
        try:
            return check(name)
        except RegistryError as error:
            problems.append(error)
            return name, None

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        answers = dict(pool.map(safe, names))
    if problems:
        warn(f"warning: cannot check the release tags of {len(problems)} image(s) in the "
             f"registry: {problems[0]}")  # fmt: skip
    return {name: detail for name, detail in answers.items() if detail}
