"""Load and validate stack.yaml into a ``Stack`` of frozen dataclasses.

Pure: reads stack.yaml and checks that contexts and Dockerfiles exist, never
talks to Docker. Every user mistake raises ``ManifestError`` located at
``stack.yaml:LINE:COL`` with what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """1-based line and column of a node in stack.yaml."""

    line: int
    col: int


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
    tags: tuple[str, ...] = ()  # templates: {fingerprint12} {git_sha} {date}
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> "env:NAME" | "file:PATH"
    location: Location = Location(1, 1)  # the image's key under images:
    # where individual keys sit, for errors found later (unknown depends_on, cycles)
    key_locations: Mapping[str, Location] = field(default_factory=dict)


@dataclass(frozen=True)
class Builder:
    """One Docker engine of the builder pool."""

    url: str
    slots: int = 1
    name: str | None = None
    tls: Mapping[str, str] = field(default_factory=dict)  # ca_cert, client_cert, client_key, verify


@dataclass(frozen=True)
class Stack:
    """The whole validated manifest."""

    path: Path  # absolute path of stack.yaml
    root: Path  # its directory; nothing may escape it
    version: int
    registry: str | None
    images: Mapping[str, ImageSpec]  # in file order
    builders: tuple[Builder, ...] = ()
    backend: str = "docker"  # "docker" (SDK, classic builder) | "buildkit"
    locations: Mapping[str, Location] = field(default_factory=dict)  # top-level keys

    def reference(self, name: str) -> str:
        """The repository name image ``name`` is built as: ``<registry>/name`` or ``name``."""
        return f"{self.registry}/{name}" if self.registry else name

    @property
    def display_path(self) -> str:
        """How errors name the file: relative to the working directory when possible."""
        try:
            return str(self.path.relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)


def load_stack(path: str | Path) -> Stack:
    """Read, validate and return the manifest at ``path``; raise ``ManifestError``."""
    raise NotImplementedError
