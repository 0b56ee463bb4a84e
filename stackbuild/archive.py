"""``stackbuild save`` / ``load``: move a built hierarchy without a registry.

The tar is ``docker save`` of every selected image (targets plus their
ancestors) with all its tags in its repository, the fingerprint tag among
them. Images carry their fingerprint as a label, which ``docker save``
keeps, so after ``docker load`` (or ``stackbuild load``) on another engine
``plan`` finds every image up to date.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackbuild.dockerfile import repository_of
from stackbuild.errors import StackbuildError
from stackbuild.refs import is_exact_reference
from stackbuild.state import atomic_writer

if TYPE_CHECKING:
    from stackbuild.analyze import Analysis


@dataclass(frozen=True)
class Saved:
    image: str
    fingerprint: str
    tags: tuple[str, ...]

    def to_json(self) -> dict:
        return {"image": self.image, "fingerprint": self.fingerprint, "tags": list(self.tags)}


def images_to_save(analysis: Analysis, backend: Any) -> list[Saved]:
    """Each selected image's local build and its tags; refuses when one is not built."""
    from stackbuild.build import find_existing

    local = find_existing(analysis, backend)
    missing = [name for name in analysis.selected if name not in local]
    if missing:
        raise StackbuildError(
            f"not built on this engine: {', '.join(missing)}; run `stackbuild build` first"
        )
    saved = []
    for name in analysis.selected:
        repository = repository_of(analysis.stack.reference(name))
        tags = sorted(
            t for t in local[name].tags
            if repository_of(t) == repository and not is_exact_reference(t)
        )
        saved.append(Saved(name, analysis.inputs[name].fingerprint, tuple(tags)))
    return saved


def save(analysis: Analysis, backend: Any, output: Path) -> list[Saved]:
    """Write the tar atomically: a failed or interrupted save leaves no half file."""
    saved = images_to_save(analysis, backend)
    with atomic_writer(Path(output)) as handle:
        backend.save([tag for item in saved for tag in item.tags], handle)
    return saved


def load(backend: Any, archive: Path, log: Any = None) -> list[str]:
    """Load a tar written by ``save`` (or ``docker save``); what the engine loaded."""
    archive = Path(archive)
    try:
        handle = archive.open("rb")
    except OSError as error:
        raise StackbuildError(f"cannot read {archive}: {error.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        return backend.load(handle, size, log or (lambda line: None))
