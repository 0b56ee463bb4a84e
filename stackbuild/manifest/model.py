"""The validated stack.yaml as frozen dataclasses: ``Stack``, ``ImageSpec``, ``EngineSpec``.

The bottom of ``stackbuild.manifest``: no I/O and no stackbuild imports, so every stage
can use these types without paying for YAML or JSON Schema. ``load.load_stack`` makes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# builders[].tls: ca_cert, client_cert, client_key (absolute paths) and verify (a bool)
TlsSettings = Mapping[str, str | bool]

MAX_SLOTS = 1024  # the most builds one engine (or -j, or --push-jobs) runs at once


@dataclass(frozen=True)
class Location:
    """1-based line and column of a node in stack.yaml."""

    line: int
    col: int


DEFAULT_CHECK_TIMEOUT = 60.0  # s, a check that runs longer is killed and reported timed out
CHECK_KINDS = ("run", "script", "serve")


@dataclass(frozen=True)
class CheckSpec:
    """One entry of ``tests:``: a check run in a fresh container of the just-built image.

    ``kind`` says which of ``run`` (an argv; a shell string is ``("sh", "-c", text)``),
    ``script`` (a file of the context, copied into the container and run) or ``serve``
    (the container's ``port`` published on 127.0.0.1, ``path`` fetched over HTTP) it is.
    ``expect_*``: the exit code (``run``/``script``) or HTTP status (``serve``) wanted,
    substrings of stdout (the body for ``serve``) and stderr, a regex stdout (the body)
    must match.
    """

    name: str
    kind: str  # one of CHECK_KINDS
    argv: tuple[str, ...] = ()  # run: the command; script: empty (the script is the command)
    script: str | None = None  # script: posix path relative to the image's context
    script_path: Path | None = None  # script: absolute, resolved
    port: int | None = None  # serve: the container port
    path: str = "/"  # serve: what to fetch
    expect_exit: int = 0  # run/script: the exit code
    expect_status: int = 200  # serve: the HTTP status
    expect_stdout: str | None = None  # a substring of stdout (serve: of the body)
    expect_stderr: str | None = None
    expect_regex: str | None = None  # re.search over stdout (serve: the body)
    timeout: float = DEFAULT_CHECK_TIMEOUT
    network: str = "none"  # "none" | "bridge"; serve always has a bridge
    location: Location = Location(1, 1)

    def definition(self) -> dict[str, object]:
        """What the check is, for its hash: everything but where it is written."""
        return {
            "name": self.name, "kind": self.kind, "argv": list(self.argv),
            "script": self.script, "port": self.port, "path": self.path,
            "exit": self.expect_exit, "status": self.expect_status, "stdout": self.expect_stdout,
            "stderr": self.expect_stderr, "regex": self.expect_regex,
            "timeout": self.timeout, "network": self.network,
        }  # fmt: skip


@dataclass(frozen=True)
class ImageSpec:
    """One entry of ``images:``, with ``defaults`` already merged in."""

    name: str
    context: Path  # absolute, resolved
    dockerfile: Path  # absolute, resolved
    context_rel: str  # posix path relative to the stack root, as written
    dockerfile_rel: str  # posix path relative to the stack root
    depends_on: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)  # defaults overlaid
    labels: Mapping[str, str] = field(default_factory=dict)  # defaults overlaid
    target: str | None = None
    platform: str | None = None
    # two or more: a multi-platform image (``platform`` is then None); one given is
    # ``platform``. Each builds as a node of its own (stackbuild.platforms)
    platforms: tuple[str, ...] = ()
    platform_build_args: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # templates: {fingerprint12} {git_sha} {date}
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> "env:NAME" | "file:PATH"
    # images whose layers a build may reuse, full references (``registry`` resolved to the
    # image's own repository at latest), in order, each with where it is written (the
    # image's own list or defaults': the warning naming a cache stackbuild cannot reach);
    # not part of the fingerprint
    cache_locations: Mapping[str, Location] = field(default_factory=dict)
    location: Location = Location(1, 1)  # the image's key under images:
    tests: tuple[CheckSpec, ...] = ()  # defaults.tests, then its own (same name: its own)
    # where individual keys sit, for errors found later (unknown depends_on, cycles)
    key_locations: Mapping[str, Location] = field(default_factory=dict)
    # the stack.yaml image a per-platform node builds (stackbuild.platforms); None: itself
    image: str | None = None

    @property
    def cache_from(self) -> tuple[str, ...]:
        """The ``cache_from`` references, in the order written."""
        return tuple(self.cache_locations)


@dataclass(frozen=True)
class EngineSpec:
    """One entry of ``builders:``: a Docker engine of the builder pool, and its slots."""

    url: str
    slots: int = 1
    name: str | None = None
    tls: TlsSettings = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    """The whole validated manifest."""

    path: Path  # absolute path of stack.yaml
    root: Path  # its directory; nothing may escape it
    version: int
    registry: str | None
    images: Mapping[str, ImageSpec]  # in file order
    builders: tuple[EngineSpec, ...] = ()
    backend: str = "auto"  # "auto" (BuildKit, else classic) | "buildkit" | "docker" (classic)
    locations: Mapping[str, Location] = field(default_factory=dict)  # top-level keys
    given_path: str = ""  # stack.yaml as the user named it (for messages); "" if unknown

    def reference(self, name: str) -> str:
        """The repository name image ``name`` is built as: ``<registry>/name`` or ``name``."""
        spec = self.images.get(name)
        if spec is not None and spec.image:  # a per-platform node: its image's repository
            name = spec.image
        return f"{self.registry}/{name}" if self.registry else name

    @property
    def display_path(self) -> str:
        """How errors name the file: as the user gave it, else relative to the cwd if possible."""
        if self.given_path:
            return self.given_path
        try:
            return str(self.path.relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)
