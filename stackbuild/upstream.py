"""Upstream digests: resolve them, keep ``stack.lock`` filled, and say what a refresh moves.

An upstream reference resolves to the digest its registry has for it, asked
through the engine without pulling (``registry_digest``). An image that
exists only on this engine (never pulled from or pushed to a registry)
resolves to its image id without asking any registry. A reference that
carries a digest resolves to that digest.

A digest the registry reports (a ``Docker-Content-Digest`` header, relayed by
the engine) is checked against the manifest itself before it is pinned: the
manifest is fetched from the registry and its bytes must hash to that digest
(``verify_digest``), else a RegistryError. A registry stackbuild cannot reach
itself (one only a remote engine sees) is pinned unverified, with a warning.

``strict`` (``lock``, ``refresh``, ``plan --refresh``): the registry's answer
is the point, so a registry that fails is an error. Not strict (a ``build``
or ``plan`` that finds an upstream missing from the lock): a registry that
fails falls back, with a warning, to the image the engine already holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackbuild.dockerfile import split_reference
from stackbuild.errors import RegistryError
from stackbuild.lockfile import lock_path, read_lock, write_lock
from stackbuild.plan import Plan, make_plan, short

if TYPE_CHECKING:
    from stackbuild.analyze import Analysis
    from stackbuild.graph import StackGraph
    from stackbuild.manifest import Stack
    from stackbuild.registry import Existing

Warn = Callable[[str], None]
# ref -> (the manifest's bytes, its Content-Type, the registry's Docker-Content-Digest header)
FetchManifest = Callable[[str], "tuple[bytes, str, str | None]"]

MANIFEST_TYPES = (  # every kind the engine accepts: a registry would convert to the first
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
FETCH_TIMEOUT = 30  # s, per request to the registry
_LOOPBACK = ("127.", "localhost", "[::1]")


class ManifestUnreachable(Exception):
    """stackbuild itself cannot fetch the manifest (the engine could): not verifiable."""


def upstream_refs(graph: StackGraph, names: Iterable[str]) -> list[str]:
    """The upstream references the images ``names`` build on, sorted, each once."""
    return sorted({ref for name in names for ref in graph.upstream(name)})


def _registry_base(host: str) -> tuple[str, str]:
    """``(scheme://host, what the engine calls it)`` for a registry host of a reference."""
    if host == "docker.io":
        return "https://registry-1.docker.io", "https://index.docker.io/v1/"
    scheme = "http" if host.startswith(_LOOPBACK) else "https"  # as the engine: insecure
    return f"{scheme}://{host}", host


def _credentials(config_name: str) -> tuple[str, str] | None:
    """(user, password) for a registry from the Docker config, as the SDK reads it."""
    try:
        from docker import auth

        found = auth.resolve_authconfig(auth.load_config(), config_name) or {}
    except Exception:  # an unreadable config: ask without credentials, like the engine would
        return None
    user, password = found.get("username") or found.get("Username"), found.get(
        "password") or found.get("Password")  # fmt: skip
    return (str(user), str(password)) if user and password else None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., "service": ...})."""
    import re

    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def fetch_manifest(ref: str) -> tuple[bytes, str, str | None]:
    """GET ``ref``'s manifest from its registry, as the engine would (same credentials,
    Basic or Bearer token auth). Raises ManifestUnreachable when it cannot be had."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    from stackbuild.registry import registry_host

    host = registry_host(ref)
    repository, tag, digest = split_reference(ref)
    path = repository.split("/", 1)[1] if "/" in repository and repository.split("/")[0] == host \
        else repository
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    base, config_name = _registry_base(host)
    url = f"{base}/v2/{path}/manifests/{digest or tag or 'latest'}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}

    def get(target: str, extra: Mapping[str, str]) -> Any:
        request = urllib.request.Request(target, headers={**headers, **extra})
        return urllib.request.urlopen(request, timeout=FETCH_TIMEOUT)  # noqa: S310 - http(s)

    try:
        try:
            response = get(url, {})
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
                query = {"scope": f"repository:{path}:pull"}
                if params.get("service"):
                    query["service"] = params["service"]
                realm = f"{params['realm']}?{urllib.parse.urlencode(query)}"
                with urllib.request.urlopen(  # noqa: S310 - the registry's token service
                    urllib.request.Request(realm, headers=basic), timeout=FETCH_TIMEOUT
                ) as answer:
                    grant = json.loads(answer.read())
                bearer = grant.get("token") or grant.get("access_token") or ""
                response = get(url, {"Authorization": f"Bearer {bearer}"})
            else:
                response = get(url, basic)
        with response:
            body = response.read()
            return body, response.headers.get("Content-Type", ""), response.headers.get(
                "Docker-Content-Digest")  # fmt: skip
    except (OSError, ValueError) as error:  # HTTPError and URLError are OSErrors
        raise ManifestUnreachable(f"{url}: {error}") from None


def verify_digest(ref: str, digest: str, fetch: FetchManifest = fetch_manifest) -> str:
    """``digest`` when ``ref``'s manifest, as its registry serves it, hashes to it; else a
    RegistryError saying what the registry claimed and what its bytes are."""
    from stackbuild.registry import registry_host

    body, content_type, header = fetch(ref)
    algorithm, _, _hex = digest.partition(":")
    try:
        actual = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
    except (ValueError, TypeError):
        raise RegistryError(
            f"the registry {registry_host(ref)} gave {ref} the digest {digest}, whose "
            f"algorithm {algorithm!r} stackbuild cannot check; not pinning it"
        ) from None
    claims = {digest} | ({header} if header else set())
    if claims == {actual}:
        return digest
    if "prettyjws" in content_type:  # schema 1: signed, its digest is not of these bytes
        return digest
    claimed = " and ".join(sorted(claims))
    raise RegistryError(
        f"the registry {registry_host(ref)} claims the digest {claimed} for {ref}, but the "
        f"manifest it serves hashes to {actual}: not pinning a digest its content does not "
        "have (a misbehaving registry or proxy; if the tag was pushed just now, run again)"
    )


def _engine_fetch(backend: Any) -> FetchManifest | None:
    """How to fetch manifests to verify ``backend``'s digests: a real engine's come from
    real registries; test doubles' and other backends' are left alone."""
    from stackbuild.backends.docker_api import DockerBackend

    return fetch_manifest if isinstance(backend, DockerBackend) else None


def resolve(
    backend: Any, ref: str, *, strict: bool, warn: Warn, fetch: FetchManifest | None = None
) -> str:
    """The digest ``ref`` should be pinned to (see the module docstring). ``fetch``
    verifies a registry's digest against its manifest (default: for a real engine)."""
    from stackbuild.registry import RegistryNotFound

    digest = split_reference(ref)[2]
    if digest:
        return digest
    local = backend.local_digest(ref)
    if local is not None and local == backend.image_id(ref):
        return local  # exists only here: no registry knows it
    try:
        claimed = backend.registry_digest(ref)
        fetch = fetch or _engine_fetch(backend)
        if fetch is None:
            return claimed
        try:
            return verify_digest(ref, claimed, fetch)
        except ManifestUnreachable as error:
            warn(f"warning: cannot fetch the manifest of {ref} to check its digest "
                 f"({error}); pinning {short(claimed)} as the engine reported it")  # fmt: skip
            return claimed
    except RegistryError as error:
        if local is None:
            raise
        if isinstance(error, RegistryNotFound):
            return local  # the registry no longer has it; the engine's copy is all there is
        if strict:
            raise
        warn(f"warning: {error}; pinning {ref} to the local image {short(local)}")
        return local


def resolve_all(
    backend: Any, refs: Iterable[str], *, strict: bool, warn: Warn, lenient: bool = False
) -> dict[str, str]:
    """``resolve`` every reference, several at once; the first failure is raised, or with
    ``lenient`` reported by ``warn`` and the reference left out."""
    from stackbuild.registry import CHECK_THREADS

    refs = list(refs)
    if not refs:
        return {}
    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        futures = {ref: pool.submit(resolve, backend, ref, strict=strict, warn=warn)
                   for ref in refs}
    resolved = {}
    for ref, future in futures.items():
        try:
            resolved[ref] = future.result()
        except RegistryError as error:
            if not lenient:
                raise
            warn(f"warning: cannot pin {ref}, so it is planned unpinned: {error}")
    return resolved


def pinned_analysis(
    stack_file: str | Path | Stack,
    targets: Iterable[str],
    with_descendants: bool,
    backend: Any,
    *,
    write: bool,
    warn: Warn,
) -> Analysis:
    """``analyze`` on stack.lock, with upstreams the lock lacks resolved first, so
    fingerprints use the digests the build will use. ``write`` (a build) adds them to
    the lock and fails when one cannot be resolved; without it (a plan, a save) such an
    upstream is only warned about and stays unpinned."""
    from stackbuild.analyze import analyze

    analysis = analyze(stack_file, targets, with_descendants)
    path = lock_path(analysis.stack.path)
    pins = read_lock(path)
    missing = [ref for ref in upstream_refs(analysis.graph, analysis.selected) if ref not in pins]
    if not missing:
        return analysis
    pins.update(resolve_all(backend, missing, strict=False, warn=warn, lenient=not write))
    if write:
        write_lock(path, pins)
    return analyze(stack_file, targets, with_descendants, pinned=pins)


@dataclass(frozen=True)
class Moved:
    """An upstream whose registry digest is no longer the locked one."""

    ref: str
    old: str  # "" when the lock had no entry
    new: str
    images: tuple[str, ...]  # built on it, directly or through parents (selection order)

    def to_json(self) -> dict:
        return {"ref": self.ref, "old": self.old or None, "new": self.new,
                "images": list(self.images)}

    def __str__(self) -> str:
        return f"{self.ref}  {short(self.old) or 'unpinned'} -> {short(self.new)}"


def moved_upstreams(
    graph: StackGraph, selected: Iterable[str], old: Mapping[str, str], new: Mapping[str, str]
) -> list[Moved]:
    """The references whose digest differs, each with the selected images above it."""
    selected = list(selected)  # topological: a parent comes before its children
    moved = []
    for ref in sorted(r for r in new if old.get(r) != new[r]):
        above: set[str] = set()
        for name in selected:
            if ref in graph.upstream(name) or any(p in above for p in graph.parents(name)):
                above.add(name)
        moved.append(Moved(ref, old.get(ref, ""), new[ref],
                           tuple(n for n in selected if n in above)))
    return moved


@dataclass
class Refresh:
    """Every selected upstream re-resolved: the stack before (locked) and after."""

    locked: Analysis  # fingerprints on stack.lock's digests
    analysis: Analysis  # fingerprints on the fresh digests
    moved: list[Moved]
    pins: dict[str, str]  # stack.lock's content after the refresh
    lock_file: Path

    @property
    def affected(self) -> list[str]:
        """The selected images whose fingerprint the refresh changes."""
        return [
            name for name in self.analysis.selected
            if self.analysis.inputs[name].fingerprint != self.locked.inputs[name].fingerprint
        ]

    def save(self) -> bool:
        """Write the fresh digests to stack.lock; True when it changed."""
        return write_lock(self.lock_file, self.pins)

    def plan(
        self, existing: Existing, backend: Any, force: Iterable[str], warn: Warn
    ) -> Plan:
        """The plan on the fresh digests. An affected image with no build record here whose
        locked build exists (a fresh CI runner with a registry) is explained against its
        locked inputs, so it reads "upstream moved", not "never built here"."""
        from stackbuild.build import find_existing
        from stackbuild.registry import registry_existing

        analysis = self.analysis
        last = dict(analysis.last)
        unrecorded = [name for name in self.affected if last.get(name) is None]
        if unrecorded:
            local = find_existing(self.locked, backend)
            built = {name for name in unrecorded if name in local}
            built |= set(registry_existing(
                self.locked, backend, [n for n in unrecorded if n not in built], warn
            ))
            last.update({name: self.locked.inputs[name] for name in built})
        return make_plan(
            analysis.selected,
            analysis.inputs,
            last,
            {name: spec.context_rel for name, spec in analysis.stack.images.items()},
            existing.where(),
            set(force),
        )

    def header(self) -> str:
        """The lines a refresh begins with: what moved and how many images it affects."""
        count = len(self.affected)
        if not self.moved:
            return f"refresh: no upstream moved; {count} image(s) affected"
        lines = [f"refresh: {len(self.moved)} upstream(s) moved, {count} image(s) affected"]
        for moved in self.moved:
            lines.append(f"  {moved}  ({', '.join(moved.images) or 'no selected image'})")
        return "\n".join(lines)

    def moved_json(self) -> list[dict]:
        return [moved.to_json() for moved in self.moved]


def refresh(
    stack_file: str | Path | Stack, targets: Iterable[str], with_descendants: bool, backend: Any,
    warn: Warn,
) -> Refresh:
    """Re-resolve every upstream of the selected images (pulls, builds and writes nothing)."""
    from stackbuild.analyze import analyze

    locked = analyze(stack_file, targets, with_descendants)
    path = lock_path(locked.stack.path)
    old = read_lock(path)
    fresh = resolve_all(
        backend, upstream_refs(locked.graph, locked.selected), strict=True, warn=warn
    )
    pins = {**old, **fresh}
    analysis = locked
    if pins != old:
        analysis = analyze(stack_file, targets, with_descendants, pinned=pins)
    moved = moved_upstreams(locked.graph, locked.selected, old, fresh)
    return Refresh(locked, analysis, moved, pins, path)


@dataclass(frozen=True)
class LockEntry:
    ref: str
    digest: str  # "" once removed
    old: str  # "" when new
    status: str  # added | updated | unchanged | removed

    def to_json(self) -> dict:
        return {"ref": self.ref, "digest": self.digest or None, "old": self.old or None,
                "status": self.status}


@dataclass
class LockUpdate:
    path: Path
    pins: dict[str, str]
    entries: list[LockEntry]
    changed: bool  # the file was rewritten

    def to_json(self) -> dict:
        return {"lock": str(self.path), "changed": self.changed,
                "upstream": [entry.to_json() for entry in self.entries]}


def lock_entries(old: Mapping[str, str], new: Mapping[str, str]) -> list[LockEntry]:
    """What changes between two locks, entry by entry, sorted by reference."""
    entries = []
    for ref in sorted(set(old) | set(new)):
        before, after = old.get(ref, ""), new.get(ref, "")
        if not before:
            status = "added"
        elif not after:
            status = "removed"
        else:
            status = "unchanged" if before == after else "updated"
        entries.append(LockEntry(ref, after, before, status))
    return entries


def update_lock(
    graph: StackGraph, open_backend: Callable[[], Any], *, refresh: bool, warn: Warn
) -> LockUpdate:
    """``stackbuild lock``: pin every upstream of the stack (all of them re-resolved with
    ``refresh``), drop pins no image uses. Asks no engine when nothing needs resolving."""
    path = lock_path(graph.stack.path)
    old = read_lock(path)
    refs = upstream_refs(graph, graph.order)
    todo = refs if refresh else [ref for ref in refs if ref not in old]
    fresh = resolve_all(open_backend(), todo, strict=True, warn=warn) if todo else {}
    pins = {ref: fresh.get(ref) or old[ref] for ref in refs}
    changed = write_lock(path, pins)
    return LockUpdate(path, pins, lock_entries(old, pins), changed)
