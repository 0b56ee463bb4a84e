"""History that travels: build durations written into images, read back from the registry.

The scheduler orders ready images by their longest remaining path, weighted by each
image's last build duration (``Analysis.durations``, from ``.stackbuild/``). A fresh CI
runner has no ``.stackbuild/``: without this, its first build guesses the critical path.

Writing. A build cannot contain its own duration, so every image built carries two
things a later runner can turn into one:

- ``org.opencontainers.image.created`` (set by ``BuildRun`` when the build starts) and
  the image config's own ``created`` (set by the engine when it is committed): their
  difference is this build's real duration (to the second). It is what is read first.
- the ``stackbuild.duration`` label: the last known duration of the image before this
  build (from ``.stackbuild/``, else itself read from the registry), in seconds. The
  fallback for configs whose ``created`` says nothing about the build: a reproducible
  build pins it (``SOURCE_DATE_EPOCH``), some tools zero it.

Reading. On a run whose plan builds images with no local record, the configs of their
release tag (``<registry>/<image>:latest``) are fetched from the registry, at most
``LOOKUPS`` at once and ``TIMEOUT`` s a request; any failure (no registry, no such tag,
a registry that does not answer, a config without the labels) just leaves that image
without a duration, as before. A registry host that fails to answer is not asked again
in the same run. Local records always win: they are this machine's own measurements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import DURATION_LABEL, Backend, ManifestUnreachable
from stackbuild.refs import registry_host

LOOKUPS = 8  # registry requests at once
TIMEOUT = 5.0  # s per request: a slow registry costs little, the build does not wait long
CREATED_LABEL = "org.opencontainers.image.created"
MAX_DURATION = 24 * 3600.0  # s: a longer "duration" is two unrelated clocks, not a build


def _time(value: object) -> float | None:
    """Unix time of an RFC 3339 string (``2026-12-02T14:00:00.123456789Z``), else None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most 6 fractional digits; Go writes up to 9
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def duration_of(config: Mapping[str, Any]) -> float | None:
    """The build duration an image config tells (see the module docstring), or None."""
    labels = (config.get("config") or {}).get("Labels") or {}
    if not isinstance(labels, Mapping):
        return None
    started, created = _time(labels.get(CREATED_LABEL)), _time(config.get("created"))
    if started is not None and created is not None and 0 <= created - started <= MAX_DURATION:
        return created - started
    try:
        value = float(labels.get(DURATION_LABEL, ""))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= MAX_DURATION else None


def duration_label(durations: Mapping[str, float], image: str) -> dict[str, str]:
    """The ``stackbuild.duration`` label of a build of ``image``: its last known duration
    ({} when none is known)."""
    known = durations.get(image)
    return {DURATION_LABEL: f"{known:.1f}"} if known is not None and known >= 0 else {}


def registry_durations(
    backend: Backend, refs: Mapping[str, str], lookups: int = LOOKUPS,
    timeout: float = TIMEOUT,
) -> dict[str, float]:
    """image -> the duration its registry image (``refs[image]``) tells; images whose
    config cannot be had or tells none are left out."""
    dead: set[str] = set()  # registry hosts that did not answer
    lock = threading.Lock()

    def one(item: tuple[str, str]) -> tuple[str, float | None]:
        image, ref = item
        host = registry_host(ref)
        with lock:
            if host in dead:
                return image, None
        try:
            config = backend.registry_config(ref, timeout)
        except ManifestUnreachable as error:
            if error.status is None:  # no answer at all: no point asking that host again
                with lock:
                    dead.add(host)
            return image, None
        except Exception:  # a history is a hint: nothing about it may fail a build
            return image, None
        return image, duration_of(config)

    if not refs:
        return {}
    with ThreadPoolExecutor(min(lookups, len(refs)), thread_name_prefix="history") as pool:
        found = list(pool.map(one, refs.items()))
    return {image: seconds for image, seconds in found if seconds is not None}


def fill_from_registry(
    analysis: Analysis, images: Iterable[str], backend: Backend,
    note: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Give ``analysis.durations`` the registry's duration of each of ``images`` that has
    no local one (the fresh runner's case); returns what was added."""
    stack = analysis.stack
    if not stack.registry:
        return {}
    missing = {name: f"{stack.reference(name)}:latest" for name in images
               if name not in analysis.durations}  # fmt: skip
    if not missing:
        return {}
    found = registry_durations(backend, missing)
    analysis.durations.update(found)
    if note is not None and found:
        note(f"build durations of {len(found)} of {len(missing)} image(s) without history "
             "read from the registry")  # fmt: skip
    return found
