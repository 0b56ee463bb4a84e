"""What a run says about each image: its status, where its log is, what was pushed.

One ``ImageResult`` per planned image, in plan order; the summary, ``--json``, the
registry's push outcomes and the promotion of release tags (``run.promote``) all read
and write these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackbuild.scheduler import Status

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
    log_tail: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)  # confirmed by the registry
    promotion: Promotion | None = None  # with --push: where its release tags went

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
            "pushed": self.pushed,
            "promotion": self.promotion.to_json() if self.promotion else None,
        }
