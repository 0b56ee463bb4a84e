"""What a run says about each image: its status, where its log is, what was pushed.

One ``ImageResult`` per planned image, in plan order; the summary, ``--json``, the
registry's push outcomes and the promotion of release tags (``run.promote``) all read
and write these. ``ImageResult.passed`` is the one answer to "is this image good":
built (or up to date) and its checks passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackbuild.checks import CheckResult
from stackbuild.scheduler import Status

# the statuses of an image that may be used, pushed and promoted
PASSED = frozenset({Status.BUILT, Status.TESTED, Status.UP_TO_DATE})

PROMOTED = "promoted"  # every release tag points at this build's manifest
HELD_BACK = "held-back"  # the release tags were left where they were, on purpose
PROMOTE_FAILED = "failed"  # the registry failed while they were moved


@dataclass
class Promotion:
    """What ``--push`` did with an image's release tags (``latest``, the manifest's tags)."""

    state: str  # PROMOTED | HELD_BACK | PROMOTE_FAILED
    promoted: list[str] = field(default_factory=list)  # moved by this run
    current: list[str] = field(default_factory=list)  # pointed at it already
    held_back: list[str] = field(default_factory=list)  # left where they were
    reason: str | None = None  # why held back, or what failed

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "promoted": self.promoted, "current": self.current,
                "held_back": self.held_back, "reason": self.reason}


@dataclass
class ImageResult:
    image: str
    status: Status
    fingerprint: str
    duration_s: float = 0.0
    tags: list[str] = field(default_factory=list)
    log: str | None = None
    error: str | None = None
    engine: str | None = None
    builder: str | None = None  # "buildkit" | "docker" (classic): what built it, if it built
    warnings: list[str] = field(default_factory=list)  # what its build warned about
    log_tail: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)  # confirmed by the registry
    promotion: Promotion | None = None  # with --push: where its release tags went
    checks: list[CheckResult] = field(default_factory=list)  # the checks run on it, in order
    tests_skipped: bool = False  # it has checks, not run (--no-test)
    test_log: str | None = None  # .stackbuild/logs/<image>.test.log, when checks ran

    @property
    def passed(self) -> bool:
        """Built (or up to date, or only re-tested) with every check run passing: the one
        predicate for "this image is good" (checks skipped with --no-test count as the
        user's choice). Test-failed, failed, blocked and cancelled images are not."""
        return self.status in PASSED and all(check.passed for check in self.checks)

    @property
    def tests(self) -> str | None:
        """What became of its checks in this run: passed, failed, skipped, or None (none ran)."""
        if self.tests_skipped:
            return "skipped"
        if not self.checks:
            return None
        return "passed" if all(check.passed for check in self.checks) else "failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "status": str(self.status),
            "fingerprint": self.fingerprint,
            "duration_s": round(self.duration_s, 3),
            "tags": self.tags,
            "log": self.log,
            "error": self.error,
            "engine": self.engine,
            "builder": self.builder,
            "warnings": self.warnings,
            "pushed": self.pushed,
            "promotion": self.promotion.to_json() if self.promotion else None,
            "tests": self.tests,
            "checks": [check.to_json() for check in self.checks],
            "test_log": self.test_log,
        }
