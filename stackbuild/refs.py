"""How stackbuild names images: fingerprint tags, exact (pin) tags and tag templates.

One module for the naming rules every stage shares, so a tag is spelled one way.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping

from stackbuild.dockerfile import TAG, split_reference

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
