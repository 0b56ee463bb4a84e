"""A registry's manifests, fetched by stackbuild itself rather than through the engine.

Used to check a digest the registry reports (through the engine) against the bytes
it serves (``run.upstream.verify_digest``). Asks as the engine would: the same
credentials (the Docker config and credential helpers, through the docker SDK's
``auth``), Basic or Bearer token auth, plain HTTP for a loopback registry.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping

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


def registry_path(ref: str) -> tuple[str, str, str]:
    """``(scheme://host, what the engine calls the registry, repository path)`` of ``ref``."""
    host = registry_host(ref)
    repository = split_reference(ref)[0]
    path = repository.split("/", 1)[1] if "/" in repository and repository.split("/")[0] == host \
        else repository
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    base, config_name = _registry_base(host)
    return base, config_name, path


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    # header names are case-insensitive, and Go servers send OCI-Subject as Oci-Subject
    return {name.lower(): value for name, value in headers}


def registry_request(
    ref: str, method: str, endpoint: str, *, data: bytes | None = None,
    headers: Mapping[str, str] | None = None, push: bool = False,
) -> tuple[int, Mapping[str, str], bytes]:
    """One request to ``/v2/<ref's repository>/<endpoint>`` (or an absolute URL the
    registry gave, e.g. an upload's Location), as the engine would ask (same credentials,
    Basic or Bearer token auth; ``push`` asks for a push token). ``(status, headers
    with lower-case names, body)``, error statuses included; ManifestUnreachable when
    there is no answer."""
    # urllib.request pulls in http.client, email and ssl (~15 ms): only lock, refresh and
    # attestations talk to registries themselves, so only they pay for it
    import urllib.error
    import urllib.parse
    import urllib.request

    base, config_name, path = registry_path(ref)
    url = endpoint if "://" in endpoint else f"{base}/v2/{path}/{endpoint}"

    def send(extra: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        request = urllib.request.Request(
            url, data=data, method=method, headers={**(headers or {}), **extra})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as answer:  # noqa: S310
                return answer.status, _lower(answer.headers.items()), answer.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _lower(error.headers.items()), error.read()

    try:
        status, answer_headers, body = send({})
        if status != 401:
            return status, answer_headers, body
        scheme, params = _challenge(answer_headers.get("www-authenticate", ""))
        credentials = _credentials(config_name)
        basic = {}
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            basic = {"Authorization": f"Basic {token}"}
        if scheme == "bearer" and params.get("realm"):
            query = {"scope": f"repository:{path}:{'pull,push' if push else 'pull'}"}
            if params.get("service"):
                query["service"] = params["service"]
            realm = f"{params['realm']}?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(  # noqa: S310 - the registry's token service
                urllib.request.Request(realm, headers=basic), timeout=FETCH_TIMEOUT
            ) as answer:
                grant = json.loads(answer.read())
            bearer = grant.get("token") or grant.get("access_token") or ""
            return send({"Authorization": f"Bearer {bearer}"})
        return send(basic)
    except (OSError, ValueError) as error:  # URLError is an OSError
        raise ManifestUnreachable(f"{url}: {error}") from None


def fetch_manifest(ref: str) -> tuple[bytes, str, str | None]:
    """GET ``ref``'s manifest from its registry, as the engine would (same credentials,
    Basic or Bearer token auth). Raises ManifestUnreachable when it cannot be had."""
    _, tag, digest = split_reference(ref)
    endpoint = f"manifests/{digest or tag or 'latest'}"
    status, headers, body = registry_request(
        ref, "GET", endpoint, headers={"Accept": ", ".join(MANIFEST_TYPES)})
    if status != 200:
        raise ManifestUnreachable(f"{ref}: HTTP {status} {body[:200]!r}")
    return body, headers.get("content-type", ""), headers.get("docker-content-digest")
