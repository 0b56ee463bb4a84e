"""A registry's manifests, fetched by stackbuild itself rather than through the engine.

Used to check a digest the registry reports (through the engine) against the bytes
it serves (``run.upstream.verify_digest``), to move a release tag to a manifest
the registry already holds (``retag_manifest``: GET it, PUT the same bytes), and to
read an image's config (its labels and creation time: the build durations of
``run.history``) without pulling it (``fetch_config``). Asks as
the engine would: the same credentials (the Docker config and credential helpers,
through the docker SDK's ``auth``), Basic or Bearer token auth, plain HTTP for a
loopback registry.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stackbuild.backends.contract import ManifestUnreachable
from stackbuild.errors import RegistryError, registry_error
from stackbuild.refs import registry_host, split_reference

if TYPE_CHECKING:
    import http.client  # ~10-15 ms with email: imported where a manifest is fetched

MANIFEST_TYPES = (  # every kind the engine accepts: a registry would convert to the first
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
FETCH_TIMEOUT = 30  # s, per request to the registry
_LOOPBACK = ("127.", "localhost", "[::1]")


def _registry_base(host: str) -> tuple[str, str]:
    """``(scheme://host, what the engine calls it)`` for a registry host of a reference."""
    if host == "docker.io":
        return "https://registry-1.docker.io", "https://index.docker.io/v1/"
    scheme = "http" if host.startswith(_LOOPBACK) else "https"  # as the engine: insecure
    return f"{scheme}://{host}", host


def _credentials(config_name: str) -> tuple[str, str] | None:
    """(user, password) for a registry from the Docker config, as the SDK reads it."""
    try:
        from docker import auth  # the SDK costs ~160 ms to import: only when asked

        found = auth.resolve_authconfig(auth.load_config(), config_name) or {}
    except Exception:  # an unreadable config: ask without credentials, like the engine would
        return None
    user, password = found.get("username") or found.get("Username"), found.get(
        "password") or found.get("Password")  # fmt: skip
    return (str(user), str(password)) if user and password else None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _manifest_url(ref: str, reference: str | None = None) -> tuple[str, str, str]:
    """``(manifest URL, repository path in the registry, what the engine calls it)``."""
    host = registry_host(ref)
    repository, tag, digest = split_reference(ref)
    path = repository.split("/", 1)[1] if "/" in repository and repository.split("/")[0] == host \
        else repository
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    base, config_name = _registry_base(host)
    return f"{base}/v2/{path}/manifests/{reference or digest or tag or 'latest'}", path, \
        config_name


def _send(
    url: str, path: str, config_name: str, actions: str, *, method: str = "GET",
    data: bytes | None = None, headers: Mapping[str, str] | None = None,
    authorization: dict[str, str] | None = None, timeout: float = FETCH_TIMEOUT,
) -> http.client.HTTPResponse:
    """One request to a registry, answering its 401 challenge as the engine would (the
    Docker config's credentials, Basic or a Bearer token for ``actions`` on ``path``).
    ``authorization``, when given, keeps the header that worked, for the next request.
    HTTPError and URLError (OSErrors) propagate."""
    # urllib.request pulls in http.client, email and ssl (~15 ms): only lock, refresh and
    # promotion talk to registries themselves, so only they pay for it
    import urllib.error
    import urllib.parse
    import urllib.request

    auth = authorization if authorization is not None else {}

    def call(extra: Mapping[str, str]) -> http.client.HTTPResponse:
        request = urllib.request.Request(
            url, data=data, method=method, headers={**(headers or {}), **extra}
        )
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s)

    try:
        return call(auth)
    except urllib.error.HTTPError as error:
        if error.code != 401:
            raise
        challenge = error.headers.get("WWW-Authenticate", "")
    scheme, params = _challenge(challenge)
    credentials = _credentials(config_name)
    basic = {}
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        basic = {"Authorization": f"Basic {token}"}
    if scheme == "bearer" and params.get("realm"):
        query = {"scope": f"repository:{path}:{actions}"}
        if params.get("service"):
            query["service"] = params["service"]
        realm = f"{params['realm']}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(  # noqa: S310 - the registry's token service
            urllib.request.Request(realm, headers=basic), timeout=timeout
        ) as answer:
            grant = json.loads(answer.read())
        bearer = grant.get("token") or grant.get("access_token") or ""
        auth.clear()
        auth["Authorization"] = f"Bearer {bearer}"
    else:
        auth.clear()
        auth.update(basic)
    return call(auth)


def fetch_manifest(ref: str) -> tuple[bytes, str, str | None]:
    """GET ``ref``'s manifest from its registry, as the engine would (same credentials,
    Basic or Bearer token auth). Raises ManifestUnreachable when it cannot be had."""
    url, path, config_name = _manifest_url(ref)
    try:
        with _send(url, path, config_name, "pull",
                   headers={"Accept": ", ".join(MANIFEST_TYPES)}) as response:  # fmt: skip
            body = response.read()
            return body, response.headers.get("Content-Type", ""), response.headers.get(
                "Docker-Content-Digest")  # fmt: skip
    except (OSError, ValueError) as error:  # HTTPError and URLError are OSErrors
        raise ManifestUnreachable(f"{url}: {error}") from None


def fetch_config(ref: str, timeout: float = FETCH_TIMEOUT) -> dict[str, Any]:
    """The image config (``{"created", "config": {"Labels"}, ...}``) of ``ref`` in its
    registry: its manifest, for an index the first linux image's, then the config blob.
    ManifestUnreachable when it cannot be had; its ``status`` is the registry's HTTP
    status when the registry answered (404: no such tag), None when it did not."""
    url, path, config_name = _manifest_url(ref)
    authorization: dict[str, str] = {}  # one token for the three requests
    accept = {"Accept": ", ".join(MANIFEST_TYPES)}

    def get(target: str) -> Any:
        try:
            with _send(target, path, config_name, "pull", headers=accept,
                       authorization=authorization, timeout=timeout) as response:  # fmt: skip
                return json.loads(response.read())
        except ValueError as error:
            raise ManifestUnreachable(f"{target}: not JSON ({error})", 200) from None
        except OSError as error:  # HTTPError (with its code) and URLError are OSErrors
            raise ManifestUnreachable(f"{target}: {error}", getattr(error, "code", None)) \
                from None

    blobs = url.rsplit("/manifests/", 1)[0] + "/blobs/"
    manifest = get(url)
    try:
        if "manifests" in manifest:  # an index: one image of it (they share one build)
            entries = manifest["manifests"]
            linux = [m for m in entries if m.get("platform", {}).get("os") == "linux"]
            manifest = get(_manifest_url(ref, (linux or entries)[0]["digest"])[0])
        config = get(blobs + manifest["config"]["digest"])
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise ManifestUnreachable(f"{url}: not an image manifest ({error})", 200) from None
    if not isinstance(config, dict):
        raise ManifestUnreachable(f"{url}: not an image config", 200)
    return config


def _registry_failure(error: Exception, ref: str, doing: str) -> RegistryError:
    """An HTTP failure talking to ``ref``'s registry, sorted as the engine's words are."""
    detail = str(error)
    read = getattr(error, "read", None)
    if callable(read):  # an HTTPError: the registry's own words say what is wrong
        with contextlib.suppress(OSError, ValueError):
            detail = f"{detail}: {read().decode('utf-8', 'replace')[:300]}"
    return registry_error(detail, ref, doing)


def retag_manifest(source: str, tag: str) -> str:
    """Point ``tag`` of ``source``'s repository at the manifest ``source`` names: GET its
    bytes, PUT the very same bytes under ``tag`` (no layer moves, the digest stays).
    The digest the tag now has. Registry failures are ``RegistryError``s."""
    url, path, config_name = _manifest_url(source)
    target_url, _, _ = _manifest_url(source, tag)
    authorization: dict[str, str] = {}  # one token for both requests: pull and push
    try:
        with _send(url, path, config_name, "pull,push", authorization=authorization,
                   headers={"Accept": ", ".join(MANIFEST_TYPES)}) as response:  # fmt: skip
            body = response.read()
            content_type = response.headers.get("Content-Type", "")
    except (OSError, ValueError) as error:
        raise _registry_failure(error, source, "read the manifest of") from None
    try:
        with _send(target_url, path, config_name, "pull,push", method="PUT", data=body,
                   headers={"Content-Type": content_type},
                   authorization=authorization) as response:  # fmt: skip
            digest = response.headers.get("Docker-Content-Digest")
    except (OSError, ValueError) as error:
        raise _registry_failure(error, f"{split_reference(source)[0]}:{tag}", "retag") from None
    return digest or f"sha256:{hashlib.sha256(body).hexdigest()}"
