"""Multi-platform images in the registry: one OCI image index per tag.

After a ``build --push``, each platform's image of a multi-platform image is in the
registry under its own fingerprint12 tag (pushed like any image, so by digest from
there on). For each image whose platforms all built (or were up to date) and pushed,
this puts one index listing each platform's manifest by digest, with its platform,
under every tag of the image: its image fingerprint12 (of the platforms'
fingerprints), and, when every platform's release tags were promoted
(``run.promote``), ``latest`` and stack.yaml's ``tags``; a tag that already holds this
very index (its registry digest) is left alone, so an up-to-date rerun puts
nothing. The engine cannot push an index, so the backend puts it through the
registry API (``Backend.put_index``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence

from stackbuild.backends.contract import Backend
from stackbuild.errors import RegistryNotFound
from stackbuild.manifest import Stack
from stackbuild.platforms import group_by_image
from stackbuild.refs import fingerprint12
from stackbuild.run.build import image_tags
from stackbuild.run.promote import PROMOTED, passed
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import Status

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def image_fingerprint(fingerprints: Sequence[str]) -> str:
    """The fingerprint of a multi-platform image: of its platforms' fingerprints, in order."""
    blob = json.dumps(list(fingerprints), separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def platform_of(platform: str) -> dict[str, str]:
    """``linux/arm64/v8`` as an index descriptor's ``platform``."""
    parts = platform.split("/")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def index_body(descriptors: Sequence[Mapping[str, object]]) -> bytes:
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": list(descriptors)}
    return json.dumps(index, indent=2).encode()


def _holds(backend: Backend, ref: str, digest: str) -> bool:
    """Whether the registry's ``ref`` is already this index (then it is left alone)."""
    try:
        return backend.registry_digest(ref) == digest
    except RegistryNotFound:
        return False


def publish_indexes(
    backend: Backend,
    stack: Stack,
    selected: Sequence[str],
    results: Mapping[str, ImageResult],
    git_sha: str | None,
    notify: Callable[[str], None],
) -> list[str]:
    """Put the index of every multi-platform image whose platforms are all pushed; the
    references put. A failure is the image's: its platforms' results become failed."""
    put: list[str] = []
    for image, nodes in group_by_image(stack, selected).items():
        specs = [stack.images[node] for node in nodes]
        if not specs[0].image:
            continue  # a single-platform image: its push is its publication
        done = [results.get(node) for node in nodes]
        # every platform in the registry: pushed now, or found there up to date
        if not all(r is not None and passed(r) and (r.status is Status.UP_TO_DATE or r.pushed)
                   for r in done):
            continue
        # release tags move with promotion (stackbuild.run.promote): only when every
        # platform's were allowed to; the fingerprint12 tag is immutable, always put
        promoted = all(r is not None and r.promotion is not None
                       and r.promotion.state == PROMOTED for r in done)
        repository = stack.reference(nodes[0])
        try:
            descriptors = []
            for spec, result in zip(specs, done, strict=True):
                assert result is not None and spec.platform
                tag = fingerprint12(result.fingerprint)
                digest = backend.registry_digest(f"{repository}:{tag}")
                manifest = backend.registry_manifest(f"{repository}@{digest}")
                body, media_type = (manifest[0], manifest[1]) if manifest else (b"", "")
                descriptors.append({
                    "mediaType": media_type.split(";")[0].strip() or DOCKER_MANIFEST,
                    "digest": digest,
                    "size": len(body),
                    "platform": platform_of(spec.platform),
                })
            fingerprint = image_fingerprint([r.fingerprint for r in done if r is not None])
            body = index_body(descriptors)
            refs = image_tags(repository, fingerprint, specs[0].tags, git_sha)
            if not promoted:
                refs = refs[:1]
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            refs = [ref for ref in refs if not _holds(backend, ref, digest)]
            for ref in refs:
                backend.put_index(ref, body, INDEX_TYPE)
        except Exception as error:  # the registry refused it: this image's failure
            for result in done:
                if result is not None:
                    result.status, result.error = Status.FAILED, f"image index: {error}"
            notify(f"index   {image} failed: {error}")
            continue
        for result in done:
            if result is not None:
                result.pushed += refs
        if refs:
            notify(f"index   {image}: {', '.join(refs)} ({len(descriptors)} platforms)")
        put += refs
    return put
