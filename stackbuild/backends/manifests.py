"""A registry's manifests, fetched (and image indexes put) by stackbuild itself rather
than through the engine, which can neither read a manifest's bytes nor push an index.

Used to check a digest the registry reports (through the engine) against the bytes
it serves (``run.upstream.verify_digest``). Asks as the engine would: the same
credentials (the Docker config and credential helpers, through the docker SDK's
``auth``), Basic or Bearer token auth, plain HTTP for a loopback registry.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Mapping

from stackbuild.backends.contract import ManifestUnreachable
from stackbuild.refs import registry_host, split_reference

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


def fetch_manifest(ref: str) -> tuple[bytes, str, str | None]:
    """GET ``ref``'s manifest from its registry, as the engine would (same credentials,
    Basic or Bearer token auth). Raises ManifestUnreachable when it cannot be had."""
    return _manifest_request("GET", ref, {"Accept": ", ".join(MANIFEST_TYPES)}, None, "pull")


def put_manifest(ref: str, body: bytes, media_type: str) -> str:
    """PUT ``body`` (an image index, or any manifest) under ``ref``'s tag or digest; the
    digest the registry stored it as. Raises ManifestUnreachable when it is refused."""
    _body, _type, digest = _manifest_request(
        "PUT", ref, {"Content-Type": media_type}, body, "pull,push"
    )
    if digest:
        return digest
    import hashlib

    return "sha256:" + hashlib.sha256(body).hexdigest()


def _manifest_request(
    method: str, ref: str, headers: Mapping[str, str], data: bytes | None, scope: str
) -> tuple[bytes, str, str | None]:
    """One request to ``ref``'s manifest URL, answering a 401 with Basic or Bearer auth
    for ``scope`` (``pull``, ``pull,push``): (body, Content-Type, Docker-Content-Digest)."""
    # urllib.request pulls in http.client, email and ssl (~15 ms): only lock and refresh
    # fetch manifests, so only they pay for it
    import urllib.error
    import urllib.parse
    import urllib.request

    host = registry_host(ref)
    repository, tag, digest = split_reference(ref)
    path = repository.split("/", 1)[1] if "/" in repository and repository.split("/")[0] == host \
        else repository
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    base, config_name = _registry_base(host)
    url = f"{base}/v2/{path}/manifests/{digest or tag or 'latest'}"

    def send(target: str, extra: Mapping[str, str]) -> http.client.HTTPResponse:
        request = urllib.request.Request(
            target, data=data, headers={**headers, **extra}, method=method
        )
        return urllib.request.urlopen(request, timeout=FETCH_TIMEOUT)  # noqa: S310 - http(s)

    try:
        try:
            response = send(url, {})
        except urllib.error.HTTPError as error:
            if error.code != 401:
                raise
            scheme, params = _challenge(error.headers.get("WWW-Authenticate", ""))
            credentials = _credentials(config_name)
            basic = {}
            if credentials:
                token = base64.b64encode(":".join(credentials).encode()).decode()
                basic = {"Authorization": f"Basic {token}"}
            if scheme == "bearer" and params.get("realm"):
                query = {"scope": f"repository:{path}:{scope}"}
                if params.get("service"):
                    query["service"] = params["service"]
                realm = f"{params['realm']}?{urllib.parse.urlencode(query)}"
                with urllib.request.urlopen(  # noqa: S310 - the registry's token service
                    urllib.request.Request(realm, headers=basic), timeout=FETCH_TIMEOUT
                ) as answer:
                    grant = json.loads(answer.read())
                bearer = grant.get("token") or grant.get("access_token") or ""
                response = send(url, {"Authorization": f"Bearer {bearer}"})
            else:
                response = send(url, basic)
        with response:
            body = response.read()
            return body, response.headers.get("Content-Type", ""), response.headers.get(
                "Docker-Content-Digest")  # fmt: skip
    except (OSError, ValueError) as error:  # HTTPError and URLError are OSErrors
        raise ManifestUnreachable(f"{method} {url}: {error}") from None
