"""What a run says about each image: its status, where its log is, what was pushed.

One ``ImageResult`` per planned image, in plan order; the summary, ``--json`` and the
registry's push outcomes all read and write these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackbuild.scheduler import Status


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
        }
