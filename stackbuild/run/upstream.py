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

from stackbuild.analyze import Analysis, analyze
from stackbuild.backends.contract import Backend, ManifestUnreachable
from stackbuild.errors import RegistryError, RegistryNotFound
from stackbuild.graph import StackGraph
from stackbuild.lockfile import lock_path, read_lock, write_lock
from stackbuild.manifest import Stack
from stackbuild.plan import Plan, make_plan, short
from stackbuild.platforms import multi_platforms, node_name, split_node, with_nodes
from stackbuild.refs import registry_host, split_reference
from stackbuild.run.existing import CHECK_THREADS, Existing, find_existing, registry_existing

Warn = Callable[[str], None]
# ref -> (the manifest's bytes, its Content-Type, the registry's Docker-Content-Digest header)
# None: nothing to fetch it with (a backend that reaches no registry itself)
FetchManifest = Callable[[str], "tuple[bytes, str, str | None] | None"]

def upstream_refs(graph: StackGraph, names: Iterable[str]) -> list[str]:
    """The upstream references the images ``names`` build on, sorted, each once; for a
    multi-platform image (or one of its nodes) also ``ref[platform]`` for each of its
    platforms: that platform's manifest in the upstream's index (stackbuild.platforms)."""
    refs: set[str] = set()
    for name in names:
        for ref in graph.upstream(name):
            refs.add(ref)
            refs.update(node_name(ref, p) for p in multi_platforms(graph.stack.images[name]))
    return sorted(refs)


def _uses(graph: StackGraph, name: str, key: str) -> bool:
    """Whether image (or node) ``name``'s fingerprint takes the pin ``key`` (a reference,
    or ``ref[platform]``): a per-platform node takes its platform's, others the index's."""
    ref, platform = split_node(key)
    return ref in graph.upstream(name) and split_node(name)[1] == platform


def platform_digest(
    ref: str, digest: str, platform: str, fetch: FetchManifest
) -> str:
    """The digest of ``platform``'s manifest in the index ``ref`` resolves to (``digest``);
    ``digest`` itself when it is one platform's manifest (or cannot be fetched). Read
    from the registry: nothing is pulled. RegistryError when the index lacks it."""
    repository = split_reference(ref)[0]
    fetched = fetch(f"{repository}@{digest}")
    if fetched is None:
        return digest
    try:
        document = json.loads(fetched[0])
    except ValueError:
        return digest
    if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
        return digest  # one platform's image: the same for every platform
    offered = []
    for entry in document["manifests"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("platform"), dict):
            continue
        wanted = entry["platform"]
        parts = [wanted.get("os", ""), wanted.get("architecture", "")]
        if wanted.get("variant"):
            parts.append(wanted["variant"])
        name = "/".join(parts)
        offered.append(name)
        # linux/arm64 matches linux/arm64/v8, as the engine picks it
        if name == platform or "/".join(parts[:2]) == platform:
            return str(entry["digest"])
    raise RegistryError(
        f"upstream {ref} offers no {platform} image (its index has {', '.join(offered)}); "
        f"build this image for those platforms only, or choose an upstream that has {platform}"
    )


def verify_digest(ref: str, digest: str, fetch: FetchManifest) -> str:
    """``digest`` when ``ref``'s manifest, as its registry serves it, hashes to it; else a
    RegistryError saying what the registry claimed and what its bytes are. Unchecked
    when ``fetch`` has no way to get the manifest (None)."""
    fetched = fetch(ref)
    if fetched is None:
        return digest
    body, content_type, header = fetched
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


def resolve(
    backend: Backend, ref: str, *, strict: bool, warn: Warn, fetch: FetchManifest | None = None
) -> str:
    """The digest ``ref`` should be pinned to (see the module docstring). ``fetch``
    gets the manifest a registry's digest is checked against (default: the backend's).
    ``ref[platform]`` resolves to that platform's manifest in ``ref``'s index."""
    base, platform = split_node(ref)
    if platform:
        index = resolve(backend, base, strict=strict, warn=warn, fetch=fetch)
        local = backend.local_digest(base)
        if local is not None and index == local and local == backend.image_id(base):
            return index  # exists only on this engine: one platform, no index
        try:
            return platform_digest(base, index, platform, fetch or backend.registry_manifest)
        except ManifestUnreachable as error:
            warn(f"warning: cannot fetch the index of {base} ({error}); pinning its "
                 f"{platform} side to the index {short(index)}")  # fmt: skip
            return index
    digest = split_reference(ref)[2]
    if digest:
        return digest
    local = backend.local_digest(ref)
    if local is not None and local == backend.image_id(ref):
        return local  # exists only here: no registry knows it
    try:
        claimed = backend.registry_digest(ref)
        try:
            return verify_digest(ref, claimed, fetch or backend.registry_manifest)
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
    backend: Backend, refs: Iterable[str], *, strict: bool, warn: Warn, lenient: bool = False
) -> dict[str, str]:
    """``resolve`` every reference, several at once; the first failure is raised, or with
    ``lenient`` reported by ``warn`` and the reference left out."""
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
    backend: Backend,
    *,
    write: bool,
    warn: Warn,
) -> Analysis:
    """``analyze`` on stack.lock, with upstreams the lock lacks resolved first, so
    fingerprints use the digests the build will use. ``write`` (a build) adds them to
    the lock and fails when one cannot be resolved; without it (a plan, a save) such an
    upstream is only warned about and stays unpinned."""
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
            if _uses(graph, name, ref) or any(p in above for p in graph.parents(name)):
                above.add(name)
        moved.append(Moved(ref, old.get(ref, ""), new[ref],
                           tuple(n for n in selected if n in above)))
    return moved


MOVED_AND_PROMOTED = "moved-and-promoted"
HELD_BACK_UPSTREAM = "held-back"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class UpstreamGate:
    """What ``refresh --push`` did with one upstream's pin (``Refresh.save_gated``)."""

    ref: str
    old: str  # the pin before ("" when there was none)
    new: str  # the registry's digest now
    status: str  # MOVED_AND_PROMOTED | HELD_BACK_UPSTREAM | UNCHANGED
    held_back: tuple[tuple[str, str], ...] = ()  # (image, why) that kept the old pin

    def to_json(self) -> dict:
        return {"ref": self.ref, "old": self.old or None, "new": self.new or None,
                "status": self.status,
                "held_back": [{"image": name, "reason": why} for name, why in self.held_back]}

    def __str__(self) -> str:
        if self.status != HELD_BACK_UPSTREAM:
            return f"{self.ref}: {self.status}"
        images = "; ".join(f"{name} ({why})" for name, why in self.held_back)
        return (f"{self.ref}: held back at {short(self.old) or 'unpinned'} (not "
                f"{short(self.new)}) in stack.lock: {images}")  # fmt: skip


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

    def save_gated(self, held_back: Mapping[str, str]) -> list[UpstreamGate]:
        """``refresh --push``: write each moved upstream's new digest only when no image
        built on it is in ``held_back`` (image -> why its release tags did not move);
        such an upstream keeps its old pin, so the next refresh moves it again. What
        happened to every selected upstream, sorted by reference."""
        moved = {m.ref: m for m in self.moved}
        pins = dict(self.pins)
        gates = []
        for ref in upstream_refs(self.locked.graph, self.locked.selected):
            if ref not in moved:
                gates.append(UpstreamGate(ref, pins.get(ref, ""), pins.get(ref, ""), UNCHANGED))
                continue
            item = moved[ref]
            stuck = tuple((name, held_back[name]) for name in item.images if name in held_back)
            if stuck:
                if item.old:
                    pins[ref] = item.old
                else:  # it was not pinned: it stays so
                    pins.pop(ref, None)
                gates.append(UpstreamGate(ref, item.old, item.new, HELD_BACK_UPSTREAM, stuck))
            else:
                gates.append(UpstreamGate(ref, item.old, item.new, MOVED_AND_PROMOTED))
        write_lock(self.lock_file, pins)
        return gates

    def plan(
        self, existing: Existing, backend: Backend, force: Iterable[str], warn: Warn
    ) -> Plan:
        """The plan on the fresh digests. An affected image with no build record here whose
        locked build exists (a fresh CI runner with a registry) is explained against its
        locked inputs, so it reads "upstream moved", not "never built here"."""
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
            with_nodes(analysis.stack, force),
            analysis.tests,
            analysis.tested,
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
    stack_file: str | Path | Stack,
    targets: Iterable[str],
    with_descendants: bool,
    backend: Backend,
    warn: Warn,
) -> Refresh:
    """Re-resolve every upstream of the selected images (pulls, builds and writes nothing)."""
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
    graph: StackGraph, open_backend: Callable[[], Backend], *, refresh: bool, warn: Warn
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
