"""How images are named: references, repositories, registries, fingerprint and pin tags,
and the tag templates of stack.yaml.

One module for the naming rules every stage shares, so a reference is read and a tag
spelled one way. Pure and at the bottom: it imports nothing of stackbuild.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping

# docker/distribution's reference grammar (digest length relaxed): anything else
# left after substitution (":latest", "/x", "x:") cannot be pulled
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # ASCII only: Python's \w would take "täg"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
_DOMAIN = rf"(?:{_HOST}(?:\.{_HOST})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*(?::{TAG})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]+)?"
)
_NAME_MAX = 255  # distribution's reference grammar: "repository name must not be more than 255"


def is_reference(value: str) -> bool:
    """Whether ``value`` is a pullable image reference (distribution's grammar)."""
    if not _REFERENCE.fullmatch(value):
        return False
    return len(value) <= _NAME_MAX or len(split_reference(value)[0]) <= _NAME_MAX


def split_reference(ref: str) -> tuple[str, str | None, str | None]:
    """Split an image reference into (repository, tag, digest).

    ``127.0.0.1:5000/acme/base:1.0@sha256:ab`` -> ``("127.0.0.1:5000/acme/base",
    "1.0", "sha256:ab")``. A colon before the last ``/`` is a registry port.
    """
    name, at, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, (digest if at else None)


def repository_of(ref: str) -> str:
    """The repository of a reference as the engine reports it: Docker Hub names short
    (``docker.io/library/base:1`` -> ``base``, ``docker.io/acme/base`` -> ``acme/base``)."""
    repository = split_reference(ref)[0]
    for prefix in ("docker.io/", "index.docker.io/"):
        if repository.startswith(prefix):
            repository = repository[len(prefix) :]
            break
    return repository.removeprefix("library/") if repository.count("/") == 1 else repository


def registry_host(ref: str) -> str:
    """The registry a reference points at (``docker.io`` for Docker Hub names)."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"

# the tag prefix of exact references (see exact_reference): internal, never published
EXACT_TAG_PREFIX = "sbid-"


def fingerprint12(fingerprint: str) -> str:
    """The short form of ``sha256:<hex>`` used as an image's fingerprint tag."""
    return fingerprint.partition(":")[2][:12]


def exact_reference(ref: str, image_id: str) -> str:
    """``ref``'s repository tagged ``sbid-<image id hex>``: a tag that, by its name, can only
    ever mean that one image, so no other run can move it between pinning and building."""
    return f"{split_reference(ref)[0]}:{EXACT_TAG_PREFIX}{image_id.removeprefix('sha256:')}"


def is_exact_reference(ref: str) -> bool:
    """Whether ``ref`` is a tag made by ``exact_reference`` (left out of save and summaries)."""
    return (split_reference(ref)[1] or "").startswith(EXACT_TAG_PREFIX)


# --- tag templates (images[].tags of stack.yaml) --------------------------------------

TAG_PLACEHOLDERS: Mapping[str, str] = {
    "fingerprint12": "first 12 hex digits of the image's fingerprint",
    "git_sha": "the full 40-hex commit of the stack's git checkout",
    "date": "the UTC build date as YYYYMMDD",
}
# Worst-case values (longest) for checking that a template expands to a valid tag.
_TAG_SAMPLES = {"fingerprint12": "0" * 12, "git_sha": "0" * 40, "date": "20240131"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DOCKER_TAG = re.compile(TAG)


def render_tag(template: str, values: Mapping[str, str]) -> str:
    """Fill the ``{placeholders}`` of a tag template (``values`` keyed like TAG_PLACEHOLDERS)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@functools.lru_cache(maxsize=4096)  # stacks repeat the same few templates
def tag_template_problem(template: str) -> str | None:
    """What is wrong with a tag template and how to fix it, or None if it is valid."""
    for placeholder in _PLACEHOLDER.findall(template):
        if placeholder not in TAG_PLACEHOLDERS:
            close = difflib.get_close_matches(placeholder, list(TAG_PLACEHOLDERS), n=1)
            known = ", ".join("{" + p + "}" for p in TAG_PLACEHOLDERS)
            fix = f"did you mean {{{close[0]}}}?" if close else f"use {known}"
            return f"unknown placeholder {{{placeholder}}}; {fix}"
    sample = render_tag(template, _TAG_SAMPLES)
    if _DOCKER_TAG.fullmatch(sample):
        return None
    return (
        f"it does not make a valid Docker tag (filled in: {sample!r}); a tag starts with a "
        "letter, digit or '_', then holds letters, digits, '_', '.', '-', 128 characters at most"
    )
