"""What is built already: on the engines, or only in the stack's registry.

An image exists when an image with its fingerprint label is tagged in its own
repository on an engine (children pin ``FROM`` to that repository), or when the
registry has its fingerprint tag ``<registry>/<image>:<fingerprint12>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Backend, LocalImage
from stackbuild.errors import RegistryError
from stackbuild.plan import LOCAL_ENGINE, REGISTRY
from stackbuild.refs import fingerprint12, repository_of

CHECK_THREADS = 8  # registry look-ups at once (up-to-date checks, upstream digests)


def find_existing(analysis: Analysis, backend: Backend) -> dict[str, LocalImage]:
    """The selected images whose fingerprint the engine already holds, tagged in their
    repository (children pin FROM to that repository), from one listing of the engine."""
    by_fingerprint = backend.fingerprinted_images()
    found: dict[str, LocalImage] = {}
    for name in analysis.selected:
        repository = repository_of(analysis.stack.reference(name))
        for image in by_fingerprint.get(analysis.inputs[name].fingerprint, ()):
            if any(repository_of(tag) == repository for tag in image.tags):
                found[name] = image
                break
    return found


def fingerprint_ref(analysis: Analysis, image: str) -> str:
    """``<repository>:<fingerprint12>``: the tag that says "this exact build exists"."""
    return f"{analysis.stack.reference(image)}:{fingerprint12(analysis.inputs[image].fingerprint)}"


def registry_existing(
    analysis: Analysis, backend: Backend, names: Iterable[str], warn: Callable[[str], None]
) -> dict[str, str]:
    """Of ``names``, the images whose fingerprint tag the stack's registry has: name -> ref.

    A registry that cannot answer is not fatal here (a build can always build):
    one warning, and the images count as missing.
    """
    names = list(names)
    if not analysis.stack.registry or not names:
        return {}
    refs = {name: fingerprint_ref(analysis, name) for name in names}

    def check(name: str) -> tuple[str, bool | RegistryError]:
        try:
            return name, backend.has_tag(refs[name])
        except RegistryError as error:
            return name, error

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        answers = dict(pool.map(check, names))
    problems = [a for a in answers.values() if isinstance(a, RegistryError)]
    if problems:
        warn(
            f"warning: cannot check the registry for {len(problems)} image(s), so they count "
            f"as not built: {problems[0]}"
        )
    return {name: refs[name] for name, answer in answers.items() if answer is True}


@dataclass
class Existing:
    """The selected images already built: on this engine, or only in the registry."""

    local: dict[str, LocalImage]
    remote: dict[str, str]  # image -> "<registry>/<image>:<fingerprint12>"

    def where(self) -> dict[str, str]:
        """For ``Analysis.plan``: image -> where its fingerprint exists."""
        found = {name: REGISTRY for name in self.remote}
        found.update({name: LOCAL_ENGINE for name in self.local})
        return found


def existing_images(
    analysis: Analysis,
    backend: Backend,
    warn: Callable[[str], None],
    local: dict[str, LocalImage] | None = None,
) -> Existing:
    """Local images first (``backend``'s one listing, or ``local`` when a pool has
    already looked on every engine), then the registry, asked through ``backend``."""
    if local is None:
        local = find_existing(analysis, backend)
    missing = [name for name in analysis.selected if name not in local]
    return Existing(local, registry_existing(analysis, backend, missing, warn))
