"""How stackbuild names images: fingerprint tags and exact (pin) tags.

One module for the naming rules every stage shares, so a tag is spelled one way.
"""

from __future__ import annotations

from stackbuild.dockerfile import split_reference

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
