"""Fingerprints: a content hash of every input that decides an image.

An image's ``ImageInputs`` hold its Dockerfile digest, every context file
Docker would send (path, mode, content digest; ``.dockerignore`` applied with
Docker's own semantics), build args, labels, target, platform, the
fingerprints of its in-stack parents and its upstream references (pinned
digest where known). The fingerprint is the sha256 of their canonical JSON.
Reads files, never Docker. A ``HashCache`` keyed on (path, size, mtime_ns,
inode) makes a second run over an unchanged tree reread nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageInputs:
    """Everything that decides one image's content; ``.fingerprint`` hashes it."""

    dockerfile: str  # sha256 hex of the Dockerfile's bytes
    files: Mapping[str, str]  # context-relative posix path -> "<kind><mode>:<digest>"
    build_args: Mapping[str, str]
    labels: Mapping[str, str]
    target: str | None
    platform: str | None
    parents: Mapping[str, str]  # in-stack parent name -> its fingerprint
    upstream: Mapping[str, str]  # upstream reference -> pinned digest, or "" when unpinned
