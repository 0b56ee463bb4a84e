"""Find the images a Dockerfile builds on: FROM, COPY --from, RUN --mount=from.

Pure text processing. Returns every reference to an image outside the
Dockerfile itself (stage names, stage numbers and ``scratch`` removed), after
ARG substitution; ``graph`` decides which of them are in-stack parents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageReference:
    """One image a Dockerfile names, e.g. ``FROM debian:bookworm-slim`` at line 3."""

    ref: str  # after ARG substitution, e.g. "127.0.0.1:5000/acme/base:latest"
    instruction: str  # "FROM" | "COPY --from" | "RUN --mount"
    line: int  # 1-based line of the instruction in the Dockerfile


@dataclass(frozen=True)
class DockerfileInfo:
    references: tuple[ImageReference, ...]  # in file order, duplicates kept once
    stages: tuple[str, ...]  # names declared with AS, lower-cased


def parse_dockerfile(text: str, build_args: Mapping[str, str] | None = None) -> DockerfileInfo:
    """Parse Dockerfile ``text``; ``build_args`` override the global ARG defaults."""
    raise NotImplementedError
