"""The contract of a backend: what orchestration may ask of a Docker engine, and the
plain data they exchange. A leaf of ``backends/``: it imports no implementation.

``Backend`` names every call orchestration makes; ``backends.open_backend`` builds the
one implementation (an engine client with a classic or a BuildKit builder) and
``tests/fakes.py`` holds the one fake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from stackbuild.checks import CheckOutcome
from stackbuild.context import ContextFile
from stackbuild.layers import ImageLayers

FINGERPRINT_LABEL = "stackbuild.fingerprint"
IMAGE_LABEL = "stackbuild.image"
CHECK_LABEL = "stackbuild.check"  # on every check container: the id of the run that made it
SCRIPT_DIR = "/.stackbuild-check"  # where a script check's file is copied in its container
# seconds the last build of the image took before this one (see run/history.py)
DURATION_LABEL = "stackbuild.duration"


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
    # images whose layers the build may reuse (stack.yaml's cache_from, resolved); not
    # part of the fingerprint: a cache changes how fast an image is built, not what it is
    cache_from: tuple[str, ...] = ()


@dataclass
class BuildResult:
    ok: bool
    image_id: str | None = None
    error: str | None = None  # one line for a person
    cancelled: bool = False
    # what the person should hear although the build went on, e.g. a cache_from registry
    # that cannot be reached (the build ran without that cache), or ``--backend auto``
    # building with the classic builder because BuildKit is not there
    warnings: tuple[str, ...] = ()
    # the builder that ran it, as --backend names it: "buildkit" | "docker" (classic);
    # None when unknown (a fake backend)
    builder: str | None = None


@dataclass(frozen=True)
class CheckRequest:
    """One check to run in a fresh container of a local image (``Backend.run_check``)."""

    image: str  # ``ref`` as the stack names it, for messages
    ref: str  # the local image: an id or a reference
    run_id: str  # the CHECK_LABEL value: ``remove_check_containers(run_id)`` finds them
    name: str = ""  # the check's name, for messages
    argv: tuple[str, ...] = ()  # the command; empty: the image's own (serve)
    script: bytes | None = None  # copied to SCRIPT_DIR/script_name and run as the command
    script_name: str = "check"
    port: int | None = None  # serve: published on 127.0.0.1, then ``path`` is fetched
    path: str = "/"
    timeout: float = 60.0  # s, then the container is killed: ``CheckOutcome.timed_out``
    network: str = "none"  # "none" | "bridge"


LogSink = Callable[[str], None]


class ByteWriter(Protocol):
    """Where ``Backend.save`` writes: a binary file, or anything else with its ``write``."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Attachment:
    """A document attached to an image in its registry: an OCI artifact whose ``subject``
    is the image's manifest (found through the referrers API, or where a registry has
    none, the tag ``sha256-<hex>.<tag_suffix>`` as cosign names them)."""

    artifact_type: str  # media type of the document, e.g. application/vnd.in-toto+json
    payload: bytes
    tag_suffix: str  # "att" | "sbom"


class Cancelled(Exception):
    """A streaming call (build, push, pull) was aborted because its cancel event was set."""


class ManifestUnreachable(Exception):
    """stackbuild itself cannot fetch a manifest (the engine could): not verifiable.
    ``status``: the registry's HTTP status when it answered (404: no such tag), None
    when it did not (refused, timed out)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    """One Docker engine, as orchestration (``run/``) uses it.

    Engine failures raise ``EngineUnreachable``; registry failures the ``RegistryError``
    family of ``stackbuild.errors`` (``RegistryNotFound`` when a tag is not there).
    """

    name: str  # for logs and summaries, e.g. "unix:///var/run/docker.sock"

    def ping(self) -> None:
        """Raise EngineUnreachable with one clear sentence when the engine does not answer."""

    def close(self) -> None:
        """Close the connections; the backend reconnects when used again."""

    def engine_platform(self) -> str | None:
        """The engine's own platform from ``docker info`` (``linux/arm64``); None when it
        does not say. A foreign platform builds there under emulation."""

    def build(self, request: BuildRequest, log: LogSink, cancel: threading.Event) -> BuildResult:
        """Build, tag and label one image, streaming its output lines to ``log``; a set
        ``cancel`` aborts it (``BuildResult.cancelled``)."""

    def run_check(
        self, request: CheckRequest, log: LogSink, cancel: threading.Event
    ) -> CheckOutcome:
        """Run one check in a fresh container labelled ``CHECK_LABEL=run_id``, streaming its
        output to ``log``; kill it after ``timeout`` or once ``cancel`` is set. The container
        is removed before this returns, however it ends."""

    def remove_check_containers(self, run_id: str) -> list[str]:
        """Force-remove every container labelled ``CHECK_LABEL=run_id``; their ids."""

    # -- what the engine holds

    def fingerprinted_images(self) -> dict[str, list[LocalImage]]:
        """Every local image with a fingerprint label, by fingerprint, in one listing."""

    def image_id(self, ref: str) -> str | None:
        """Id of the local image ``ref`` (a reference, ``repo@digest`` or an id), else None."""

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """Labels of a local image ({} when it has none), None when there is no such image."""

    def local_digest(self, ref: str) -> str | None:
        """``ref``'s registry digest as this engine knows it (else its image id), or None."""

    def image_layers(self, ref: str) -> ImageLayers | None:
        """The local image's layers (inspect's RootFS with history's sizes and
        instructions) and full size; None when there is no such image."""

    def tag(self, image: str, ref: str) -> None:
        """Tag ``image`` (id or reference) as ``ref`` ("repo[:tag]")."""

    def remove_images(self, refs_or_ids: Iterable[str]) -> list[str]:
        """Force-remove images (already gone: skipped); returns the ones removed."""

    # -- registries

    def registry_digest(self, ref: str) -> str:
        """The digest ``ref`` has in its registry; pulls nothing."""

    def has_tag(self, ref: str) -> bool:
        """Whether ``ref``'s registry has this tag."""

    def registry_manifest(self, ref: str) -> tuple[bytes, str, str | None] | None:
        """``ref``'s manifest as its registry serves it: (bytes, Content-Type, the
        Docker-Content-Digest header), to check the digest ``registry_digest`` reported.
        ManifestUnreachable when it cannot be had; None when this backend has no way
        of its own to fetch one (then there is nothing to check against)."""

    def registry_retag(self, source: str, tag: str) -> str:
        """Point ``tag`` of ``source``'s repository, in its registry, at the manifest
        ``source`` names (same bytes, same digest: no layer is uploaded, nothing local is
        needed); the digest the tag now has."""

    def registry_config(self, ref: str, timeout: float) -> Mapping[str, Any]:
        """The image config ``ref`` has in its registry (``created``, ``config.Labels``),
        fetched by stackbuild itself within ``timeout`` s a request; ManifestUnreachable
        when it cannot be had."""
    def put_index(self, ref: str, body: bytes, media_type: str) -> str:
        """Put an image index (``body``, of ``media_type``) under ``ref``'s tag in its
        registry; the digest it is stored as. The manifests it lists must be there."""

    def push(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        """Push one tag; the manifest digest the registry stored. Cancelled when cancelled."""

    def pull(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        """Pull ``ref``; the local image id. Cancelled when cancelled."""

    # -- attestations (provenance, SBOM)

    def engine_version(self) -> str:
        """The engine's version ("20.10.24"), for the provenance's builder."""

    def read_image_files(self, ref: str, paths: Iterable[str],
                         wanted: Callable[[str], bool]) -> dict[str, bytes]:
        """The regular files at or under ``paths`` (files or directories, relative to /) of
        local image ``ref``'s filesystem whose path (relative to /, no leading slash)
        ``wanted`` accepts, read without running the image; missing paths are skipped.
        A wanted symlink maps to ``b"symlink:" + its target``."""

    def attach(self, subject_ref: str, attachment: Attachment) -> str:
        """Attach ``attachment`` to the manifest ``subject_ref`` ("repo@sha256:...") names
        in its registry; the artifact manifest's digest. RegistryError when refused."""

    def fetch_attachment(self, subject_ref: str, artifact_type: str,
                         tag_suffix: str) -> bytes | None:
        """The newest document of ``artifact_type`` attached to ``subject_ref``, found from
        that digest alone; None when there is none. RegistryError when unreachable."""

    def registry_labels(self, ref: str) -> dict[str, str] | None:
        """The labels of ``ref``'s image as its registry holds it (its config), without
        pulling; None when the registry has no such image."""

    # -- moving images without a registry

    def save(self, refs: Iterable[str], fileobj: ByteWriter) -> None:
        """Write ``docker save`` of ``refs`` (every tag kept) as one tar into ``fileobj``."""

    def load(self, fileobj: IO[bytes], size: int, log: LogSink) -> list[str]:
        """``docker load`` a tar; what the engine says it loaded."""


# docker info's Architecture (the kernel's name) -> the platform's, as BuildKit names it
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "armv6l": "arm/v6",
                 "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
                 "riscv64": "riscv64"}  # fmt: skip


def engine_platform_of(os_type: str | None, architecture: str | None) -> str | None:
    """``linux/amd64`` from docker info's OSType and Architecture; None without them."""
    if not os_type or not architecture:
        return None
    return f"{os_type}/{ARCHITECTURES.get(architecture, architecture)}"


@dataclass(frozen=True)
class LocalImage:
    """An image an engine holds: its id and the references it is tagged with."""

    id: str
    tags: tuple[str, ...] = ()
