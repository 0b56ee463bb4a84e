"""The interface every backend implements, and the plain data it exchanges."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from stackbuild.context import ContextFile

FINGERPRINT_LABEL = "stackbuild.fingerprint"
IMAGE_LABEL = "stackbuild.image"


@dataclass(frozen=True)
class BuildRequest:
    """Everything a backend needs to build one image; no graph knowledge."""

    image: str  # name in stack.yaml
    repository: str  # stack.reference(image), e.g. "127.0.0.1:5000/acme/base"
    fingerprint: str  # "sha256:<hex>"
    tags: tuple[str, ...]  # full references to tag the result with, "repo:tag"
    context_files: tuple[ContextFile, ...]  # exactly what was hashed
    dockerfile_bytes: bytes  # sent inside the context tar
    dockerfile_name: str  # its path inside the tar
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # incl. stackbuild.fingerprint
    target: str | None = None
    platform: str | None = None
    no_cache: bool = False
    pull: bool = False
    # reference exactly as the Dockerfile writes it -> local image to pin it to
    # (a parent's "<repository>:<fingerprint12>" or an upstream "name@sha256:...")
    pins: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> "env:NAME" | "file:PATH"
    # path -> its entry in the fingerprint (context.context_entry); the tar writer checks
    # every file it sends against it. None: not checked (a request made by hand)
    context_entries: Mapping[str, str] | None = None


@dataclass
class BuildResult:
    ok: bool
    image_id: str | None = None
    error: str | None = None  # one line for a person
    cancelled: bool = False


LogSink = Callable[[str], None]


class Backend(Protocol):
    """What the scheduler and plan need from a Docker engine."""

    name: str  # for logs and summaries, e.g. "unix:///var/run/docker.sock"

    def ping(self) -> None:
        """Raise EngineUnreachable with one clear sentence when the engine does not answer."""

    def fingerprinted_images(self) -> dict[str, list[LocalImage]]:
        """Every local image with a fingerprint label, by fingerprint."""

    def build(self, request: BuildRequest, log: LogSink, cancel: threading.Event) -> BuildResult:
        """Build, tag and label one image, streaming its output lines to ``log``."""


@dataclass(frozen=True)
class LocalImage:
    """An image an engine holds: its id and the references it is tagged with."""

    id: str
    tags: tuple[str, ...] = ()
