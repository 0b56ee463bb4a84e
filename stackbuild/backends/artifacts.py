"""Documents attached to images in a registry: OCI artifacts whose ``subject`` is the image.

An attachment is pushed as an OCI image manifest with an ``artifactType``, the empty
config, one layer (the document) and a ``subject`` naming the image's manifest. A
registry with the OCI 1.1 referrers API lists it under the image's digest (it answers
the push with ``OCI-Subject``); one without it (Debian's docker-registry, distribution
2.x) gets the manifest tagged ``sha256-<hex>.<suffix>`` too, the scheme cosign uses, so
either way the document is found from the image digest alone.

Registry HTTP as ``manifests`` does it: the engine's credentials, plain HTTP on loopback.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from stackbuild.backends.contract import Attachment, ManifestUnreachable
from stackbuild.backends.manifests import MANIFEST_TYPES, registry_path, registry_request
from stackbuild.errors import RegistryError, RegistryNotFound
from stackbuild.refs import split_reference

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback_tag(subject: str, suffix: str) -> str:
    """The tag an attachment gets where the registry has no referrers API."""
    return f"{subject.replace(':', '-')}.{suffix}"


def _call(ref: str, method: str, endpoint: str, expect: tuple[int, ...], *,
          data: bytes | None = None, headers: Mapping[str, str] | None = None,
          push: bool = False) -> tuple[int, Mapping[str, str], bytes]:
    try:
        status, answer, body = registry_request(
            ref, method, endpoint, data=data, headers=headers, push=push)
    except ManifestUnreachable as error:
        raise RegistryError(f"registry unreachable: {error}") from None
    if status not in expect:
        text = body[:300].decode("utf-8", "replace").strip()
        kind = RegistryNotFound if status == 404 else RegistryError
        raise kind(f"{method} {endpoint.split('?')[0]} of {ref}: HTTP {status} {text}")
    return status, answer, body


def _upload(ref: str, data: bytes) -> dict[str, Any]:
    """Put ``data`` in the repository's blobs (skipped when there); its descriptor."""
    digest = _digest(data)
    status, _, _ = _call(ref, "HEAD", f"blobs/{digest}", (200, 404))
    if status != 200:
        _, answer, _ = _call(ref, "POST", "blobs/uploads/", (202,), data=b"", push=True)
        location = answer.get("location", "")
        base = _absolute(ref, location)
        glue = "&" if "?" in base else "?"
        _call(ref, "PUT", f"{base}{glue}digest={urllib.parse.quote(digest)}", (201,),
              data=data, headers={"Content-Type": "application/octet-stream"}, push=True)
    return {"digest": digest, "size": len(data)}


def _absolute(ref: str, location: str) -> str:
    if "://" in location:
        return location
    return urllib.parse.urljoin(registry_path(ref)[0] + "/", location)


def attach(subject_ref: str, attachment: Attachment, created: str) -> str:
    """Push ``attachment`` with ``subject_ref``'s manifest as its subject (see the module
    docstring); the artifact manifest's digest."""
    subject = split_reference(subject_ref)[2]
    if not subject:
        raise ValueError(f"attach needs a digest reference, not {subject_ref}")
    _, answer, body = _call(subject_ref, "GET", f"manifests/{subject}", (200,),
                            headers={"Accept": ", ".join(MANIFEST_TYPES)})
    subject_type = answer.get("content-type", OCI_MANIFEST).split(";")[0]
    config = _upload(subject_ref, EMPTY)
    layer = _upload(subject_ref, attachment.payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": attachment.artifact_type,
        "config": {"mediaType": EMPTY_TYPE, **config},
        "layers": [{"mediaType": attachment.artifact_type, **layer}],
        "subject": {"mediaType": subject_type, "digest": subject, "size": len(body)},
        "annotations": {"org.opencontainers.image.created": created},
    }
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    digest = _digest(data)
    headers = {"Content-Type": OCI_MANIFEST}
    _, answer, _ = _call(subject_ref, "PUT", f"manifests/{digest}", (201,), data=data,
                         headers=headers, push=True)
    if not answer.get("oci-subject"):  # no referrers API: the tag scheme
        _call(subject_ref, "PUT", f"manifests/{fallback_tag(subject, attachment.tag_suffix)}",
              (201,), data=data, headers=headers, push=True)
    return digest


def _manifest_json(ref: str, reference: str) -> dict[str, Any] | None:
    status, _, body = _call(ref, "GET", f"manifests/{reference}", (200, 404),
                            headers={"Accept": ", ".join(MANIFEST_TYPES)})
    if status == 404:
        return None
    try:
        found = json.loads(body)
    except ValueError:
        raise RegistryError(f"{ref}: manifest {reference} is not JSON") from None
    return found if isinstance(found, dict) else None


def fetch_attachment(subject_ref: str, artifact_type: str, tag_suffix: str) -> bytes | None:
    """The document of ``artifact_type`` attached to ``subject_ref``: through the referrers
    API, else the fallback tag; None when neither has one."""
    subject = split_reference(subject_ref)[2]
    if not subject:
        raise ValueError(f"fetch_attachment needs a digest reference, not {subject_ref}")
    manifest = None
    query = urllib.parse.urlencode({"artifactType": artifact_type})
    status, answer, body = _call(subject_ref, "GET", f"referrers/{subject}?{query}",
                                 (200, 404, 400, 405))
    if status == 200 and answer.get("content-type", "").startswith(OCI_INDEX):
        listed = [m for m in json.loads(body).get("manifests", ())
                  if m.get("artifactType") == artifact_type]
        listed.sort(key=lambda m: (m.get("annotations") or {}).get(
            "org.opencontainers.image.created", ""))
        if listed:
            manifest = _manifest_json(subject_ref, listed[-1]["digest"])
    if manifest is None:
        manifest = _manifest_json(subject_ref, fallback_tag(subject, tag_suffix))
    if manifest is None or (manifest.get("subject") or {}).get("digest") != subject:
        return None  # none, or a tag of that name that is not an attachment of this image
    layers = [la for la in manifest.get("layers", ()) if la.get("mediaType") == artifact_type]
    if not layers:
        return None
    _, _, payload = _call(subject_ref, "GET", f"blobs/{layers[0]['digest']}", (200,))
    if _digest(payload) != layers[0]["digest"]:
        raise RegistryError(f"{subject_ref}: attachment blob does not match its digest")
    return payload


def registry_labels(ref: str) -> dict[str, str] | None:
    """The labels in ``ref``'s image config, read from the registry; None when not there."""
    _, tag, digest = split_reference(ref)
    manifest = _manifest_json(ref, digest or tag or "latest")
    if manifest is None:
        return None
    config = manifest.get("config") or {}
    if not config.get("digest"):
        raise RegistryError(f"{ref} is an index, not one image: name one platform's digest")
    _, _, body = _call(ref, "GET", f"blobs/{config['digest']}", (200,))
    labels = (json.loads(body).get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}
