"""Backends: the only code that talks to a Docker engine (the docker SDK, the docker CLI).

A backend knows nothing of graphs: it builds one image from a ready request, says
which images exist, tags, pushes, pulls, saves and loads. ``contract.Backend`` names
all of it. There is one implementation, ``engine.DockerEngine``, composed with one of
the builders below; ``open_backend`` is the one place that constructs it, and the CLI
is the one caller that picks which (``--backend``, ``backend:``, ``builders:``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from stackbuild.backends.auto import AutoBuilder
from stackbuild.backends.buildkit import BuildKitBuilder
from stackbuild.backends.docker_api import ClassicBuilder
from stackbuild.backends.engine import API_TIMEOUT, Builder, DockerEngine

if TYPE_CHECKING:
    from docker.tls import TLSConfig

# --backend / backend: -> the builder that builds with it
BUILDERS: dict[str, type[ClassicBuilder] | type[BuildKitBuilder] | type[AutoBuilder]] = {
    ClassicBuilder.kind: ClassicBuilder,
    BuildKitBuilder.kind: BuildKitBuilder,
    AutoBuilder.kind: AutoBuilder,  # BuildKit where it answers, else classic
}


def open_backend(
    kind: str = AutoBuilder.kind,
    url: str | None = None,
    tls: Mapping[str, str | bool] | None = None,
    name: str | None = None,
    *,
    builder: Builder | None = None,
    timeout: float = API_TIMEOUT,
) -> DockerEngine:
    """The engine at ``url`` (None: DOCKER_HOST and its defaults), building with the
    ``kind`` builder (or ``builder``); ``tls`` as stack.yaml's ``tls:`` of a builder.
    Nothing is asked of the engine before the first call that needs it."""
    return DockerEngine(
        builder or BUILDERS[kind](),
        url,
        tls=_tls(tls or {}),
        name=name or url,
        timeout=timeout,
    )


def _tls(settings: Mapping[str, str | bool]) -> TLSConfig | None:
    """A docker SDK TLSConfig from a builder's ``tls:`` (None without one)."""
    if not settings:
        return None
    from docker.tls import TLSConfig

    ca = settings.get("ca_cert")
    cert, key = settings.get("client_cert"), settings.get("client_key")
    verify = settings.get("verify", bool(ca))  # a CA given means: check the server with it
    return TLSConfig(
        client_cert=(str(cert), str(key)) if cert and key else None,
        ca_cert=str(ca) if ca else None,
        verify=bool(verify),
    )
