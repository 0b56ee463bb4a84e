"""``--backend auto``: BuildKit where the engine and a BuildKit-capable docker client
answer, else the classic builder. Not the default yet (``docker`` is: issue 13).

The choice is made on an engine's first build (``BuildKitBuilder.cli`` probes the
clients once), so commands that build nothing (plan, ls, why) pay nothing for it. The
classic builder is deprecated upstream since Docker 23; it stays as the fallback. A
per-platform node of a multi-platform image (``base[linux/arm64]``) needs BuildKit:
with the classic fallback it fails with the reason BuildKit is not there.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from stackbuild.backends.buildkit import BuildKitBuilder
from stackbuild.backends.contract import BuildRequest, BuildResult, LogSink
from stackbuild.backends.docker_api import ClassicBuilder
from stackbuild.errors import BuildKitUnavailable

if TYPE_CHECKING:
    from stackbuild.backends.engine import DockerEngine


class AutoBuilder:
    """BuildKit when it answers on the engine, else the classic builder; chosen once."""

    kind = "auto"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chosen: BuildKitBuilder | ClassicBuilder | None = None
        self.why_classic: str | None = None  # why BuildKit was not chosen

    def chosen(self, engine: DockerEngine) -> BuildKitBuilder | ClassicBuilder:
        """The builder builds on ``engine`` use (probed on the first call)."""
        with self._lock:
            if self._chosen is None:
                buildkit = BuildKitBuilder()
                try:
                    buildkit.cli(engine)
                    self._chosen = buildkit
                except BuildKitUnavailable as error:
                    self.why_classic = str(error)
                    self._chosen = ClassicBuilder()
            return self._chosen

    def build(
        self, engine: DockerEngine, request: BuildRequest, log: LogSink, cancel: threading.Event
    ) -> BuildResult:
        builder = self.chosen(engine)
        if isinstance(builder, ClassicBuilder) and request.image.endswith("]"):
            error = (f"{request.image} is one platform of a multi-platform image, which needs "
                     f"BuildKit: {self.why_classic}")  # fmt: skip
            log(f"ERROR: {error}")
            return BuildResult(ok=False, error=error)
        return builder.build(engine, request, log, cancel)
