"""``stack.lock``: the digest every upstream image is pinned to, committed next to stack.yaml.

    # stack.lock -- written by stackbuild; commit it.
    # ...
    version: 1
    upstream:
      debian:bookworm-slim: sha256:1a2b...

One line per upstream reference, sorted, so a refresh shows up as a diff of
exactly the references that moved. Pure: reads and writes the file, never
asks an engine or a registry (see ``stackbuild.run.upstream`` for resolving).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from stackbuild.errors import LockfileError, ManifestError
from stackbuild.files import atomic_write
from stackbuild.manifest.yaml import load_yaml

LOCK_NAME = "stack.lock"
LOCK_VERSION = 1

HEADER = """\
# stack.lock -- written by stackbuild; commit it.
# Pins every upstream image the stack builds on to a digest, so builds are
# reproducible and a refresh is a reviewable diff. Update it with
# `stackbuild refresh` (re-resolve, rebuild what moved) or `stackbuild lock`.
"""

_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


def lock_path(stack_path: Path) -> Path:
    """Where the lock of the stack whose manifest is ``stack_path`` lives."""
    return Path(stack_path).parent / LOCK_NAME


# stack.lock is written by stackbuild, so the way out of any damage is to write it again.
_FIX = "fix it, or delete it and run `stackbuild lock` to rewrite it"


def read_lock(path: Path) -> dict[str, str]:
    """Upstream reference -> digest; ``{}`` when there is no lock yet."""
    # The strict loader of stack.yaml, not yaml.safe_load: it locates every value, and it
    # never raises anything but a ManifestError, whatever the bytes (safe_load crashed on
    # non-UTF-8 bytes, `version: 2001-02-30`, `!!int x` and 5,000-digit numbers).
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise LockfileError(f"cannot read {path}: {error.strerror}; {_FIX}") from None
    return parse_lock(raw, str(path))


def parse_lock(raw: bytes, display: str) -> dict[str, str]:
    """``read_lock`` of a lock's bytes (another revision's, say); errors name ``display``."""
    try:
        doc = load_yaml(raw, display)
    except ManifestError as error:
        # the loader's own advice (quote it, ...) is for a hand-written file; keep the problem
        problem = error.message.rpartition("; ")[0] or error.message
        raise LockfileError(f"{problem}; {_FIX}", display, error.line, error.col) from None
    data = doc.data
    if data is None:
        return {}

    def fail(message: str, at: tuple[str, ...] = ()) -> LockfileError:
        loc = doc.location(at)
        return LockfileError(f"{message}; {_FIX}", display, loc.line, loc.col)

    if not isinstance(data, dict):
        raise fail(f"this is not a version {LOCK_VERSION} stackbuild lock")
    version = data.get("version")
    # type() and not ==: `version: true` and `version: 1.0` equal 1 in Python
    if type(version) is not int or version != LOCK_VERSION:
        at = ("version",) if "version" in data else ()
        raise fail(f"this is not a version {LOCK_VERSION} stackbuild lock", at)
    upstream = data.get("upstream") or {}
    if not isinstance(upstream, dict):
        raise fail("'upstream' must map references to digests", ("upstream",))
    pins: dict[str, str] = {}
    for ref, digest in upstream.items():  # keys are always strings (see manifest.yaml)
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise fail(
                f"upstream {_brief(ref)} is pinned to {_brief(digest)}, which is not a digest "
                "like sha256:<hex>",
                ("upstream", ref),
            )
        pins[ref] = digest
    return pins


def _brief(value: object) -> str:
    """A value for a message: short, whatever is in the file."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def render_lock(pins: Mapping[str, str]) -> str:
    """The file's text: header, version, references sorted."""
    body = {"version": LOCK_VERSION, "upstream": {ref: pins[ref] for ref in sorted(pins)}}
    return HEADER + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=1000)


def write_lock(path: Path, pins: Mapping[str, str]) -> bool:
    """Write ``pins`` atomically; leaves an identical file alone. True when it changed."""
    text = render_lock(pins)
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return False
    except (OSError, ValueError):  # missing, unreadable or not UTF-8: write it anew
        pass
    atomic_write(Path(path), text.encode("utf-8"))
    return True
