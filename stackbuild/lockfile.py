"""``stack.lock``: the digest every upstream image is pinned to, committed next to stack.yaml.

    # stack.lock -- written by stackbuild; commit it.
    # ...
    version: 1
    upstream:
      debian:bookworm-slim: sha256:1a2b...

One line per upstream reference, sorted, so a refresh shows up as a diff of
exactly the references that moved. Pure: reads and writes the file, never
asks an engine or a registry (see ``stackbuild.upstream`` for resolving).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from stackbuild.errors import EXIT_USAGE, StackbuildError
from stackbuild.state import atomic_write

LOCK_NAME = "stack.lock"
LOCK_VERSION = 1

HEADER = """\
# stack.lock -- written by stackbuild; commit it.
# Pins every upstream image the stack builds on to a digest, so builds are
# reproducible and a refresh is a reviewable diff. Update it with
# `stackbuild refresh` (re-resolve, rebuild what moved) or `stackbuild lock`.
"""

_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


class LockfileError(StackbuildError):
    """stack.lock cannot be read as a lock: a person has to fix or regenerate it."""

    exit_code = EXIT_USAGE


def lock_path(stack_path: Path) -> Path:
    """Where the lock of the stack whose manifest is ``stack_path`` lives."""
    return Path(stack_path).parent / LOCK_NAME


def read_lock(path: Path) -> dict[str, str]:
    """Upstream reference -> digest; ``{}`` when there is no lock yet."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise LockfileError(f"cannot read {path}: {error.strerror}") from None
    fix = "fix it, or delete it and run `stackbuild lock`"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the lock is read on every plan
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        raise LockfileError(f"{path} is not valid YAML ({error}); {fix}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise LockfileError(f"{path} is not a version {LOCK_VERSION} stackbuild lock; {fix}")
    upstream = data.get("upstream") or {}
    if not isinstance(upstream, dict):
        raise LockfileError(f"{path}: 'upstream' must map references to digests; {fix}")
    pins: dict[str, str] = {}
    for ref, digest in upstream.items():
        if not isinstance(ref, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
            raise LockfileError(
                f"{path}: upstream {ref!r} is pinned to {digest!r}, which is not a digest "
                f"like sha256:<hex>; {fix}"
            )
        pins[ref] = digest
    return pins


def render_lock(pins: Mapping[str, str]) -> str:
    """The file's text: header, version, references sorted."""
    import yaml

    body = {"version": LOCK_VERSION, "upstream": {ref: pins[ref] for ref in sorted(pins)}}
    return HEADER + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=1000)


def write_lock(path: Path, pins: Mapping[str, str]) -> bool:
    """Write ``pins`` atomically; leaves an identical file alone. True when it changed."""
    text = render_lock(pins)
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    atomic_write(Path(path), text.encode("utf-8"))
    return True
