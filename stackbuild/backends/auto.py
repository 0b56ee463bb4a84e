"""``--backend auto``, the default: BuildKit where the engine and a BuildKit-capable
docker client answer, else the classic builder.

The choice is made on an engine's first build (``BuildKitBuilder.cli`` probes the
clients once; a working choice is remembered for a day in ~/.cache/stackbuild), so
commands that build nothing (plan, ls, why) pay nothing for it. The classic builder is
deprecated upstream since Docker 23; it stays as the fallback, and falling back is never
silent: the build that made the choice carries a warning naming why (the run prints it
once per engine, and ``build --json`` lists it in that image's ``warnings``). Every
result names the builder that ran it (``BuildResult.builder``). A per-platform node of
a multi-platform image (``base[linux/arm64]``) needs BuildKit: with the classic
fallback it fails with the reason BuildKit is not there. ``--backend docker`` (or
``backend: docker``) still picks the classic builder without asking.
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
        self._warned = False  # the fallback's warning went out with a result

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
            return BuildResult(ok=False, error=error, builder=builder.kind)
        warning = self._fallback_warning(engine) if isinstance(builder, ClassicBuilder) else None
        if warning:
            log(f"=== stackbuild: warning: {warning} ===")
        result = builder.build(engine, request, log, cancel)
        result.builder = builder.kind
        if warning:
            result.warnings = (warning, *result.warnings)
        return result

    def _fallback_warning(self, engine: DockerEngine) -> str | None:
        """Why the classic builder builds on ``engine``: once, for the first build there."""
        with self._lock:
            if self._warned:
                return None
            self._warned = True
        return (f"BuildKit is not available on {engine.name}, so the classic builder "
                f"(deprecated upstream) builds there: {self.why_classic} "
                "(--backend docker or `backend: docker` in stack.yaml picks the classic "
                "builder without this warning)")  # fmt: skip
