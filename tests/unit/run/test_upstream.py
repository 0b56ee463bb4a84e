"""Upstream digests: resolving a reference (the registry's digest, checked against the
manifest it serves, or the engine's own image), what a refresh moves, lock entries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackbuild.backends.contract import ManifestUnreachable
from stackbuild.backends.manifests import fetch_manifest
from stackbuild.errors import (
    EXIT_BUILD_FAILED,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
)
from stackbuild.run.upstream import lock_entries, moved_upstreams, resolve, verify_digest
from tests.fakes import FakeBackend, FakeRegistry
from tests.lying_registry import LIE, MANIFEST, TRUE_DIGEST, LyingRegistry

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
ID = "sha256:" + "1" * 64


def relaying(ref: str, registry: LyingRegistry) -> FakeBackend:
    """An engine that holds no image of its own and relays the digest in the registry's
    header, as dockerd's distribution inspect does."""
    header = fetch_manifest(ref)[2]
    assert header is not None
    assert header == (LIE if registry.lie else TRUE_DIGEST)
    return FakeBackend(registry=FakeRegistry({ref: header}))


@pytest.fixture
def lying() -> Iterator[LyingRegistry]:
    registry = LyingRegistry(lie=True)
    yield registry
    registry.close()


def test_a_digest_the_manifest_does_not_hash_to_is_a_clear_registry_error(
    lying: LyingRegistry,
) -> None:
    ref = f"{lying.address}/acme/base:1"
    with pytest.raises(RegistryError) as caught:
        resolve(relaying(ref, lying), ref, strict=True, warn=print, fetch=fetch_manifest)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_BUILD_FAILED
    assert f"claims the digest {LIE} for {ref}" in message
    assert f"hashes to {TRUE_DIGEST}" in message
    assert "not pinning" in message


def test_an_honest_registry_digest_is_pinned(lying: LyingRegistry) -> None:
    lying.lie = False
    ref = f"{lying.address}/acme/base:1"
    assert resolve(relaying(ref, lying), ref, strict=True, warn=print,
                   fetch=fetch_manifest) == TRUE_DIGEST  # fmt: skip
    assert "GET /v2/acme/base/manifests/1" in lying.requests  # the bytes were fetched


def test_verify_compares_the_engine_digest_and_the_header_with_the_bytes() -> None:
    def serving(header: str | None):
        return lambda ref: (MANIFEST, "application/vnd.docker.distribution.manifest.v2+json",
                            header)  # fmt: skip

    assert verify_digest("r:5000/a:1", TRUE_DIGEST, serving(TRUE_DIGEST)) == TRUE_DIGEST
    assert verify_digest("r:5000/a:1", TRUE_DIGEST, serving(None)) == TRUE_DIGEST
    with pytest.raises(RegistryError, match="claims the digest"):
        verify_digest("r:5000/a:1", LIE, serving(None))  # the engine's digest is wrong
    with pytest.raises(RegistryError, match="claims the digest"):
        verify_digest("r:5000/a:1", TRUE_DIGEST, serving(LIE))  # the header is
    with pytest.raises(RegistryError, match="cannot check"):
        verify_digest("r:5000/a:1", "md99:" + "0" * 32, serving(None))


def test_a_manifest_stackbuild_cannot_fetch_is_pinned_with_a_warning() -> None:
    def unreachable(ref: str):
        raise ManifestUnreachable("http://10.0.0.1/v2/a/manifests/1: timed out")

    engine = FakeBackend(registry=FakeRegistry({"10.0.0.1/a:1": TRUE_DIGEST}))
    warnings: list[str] = []
    assert resolve(engine, "10.0.0.1/a:1", strict=True, warn=warnings.append,
                   fetch=unreachable) == TRUE_DIGEST  # fmt: skip
    assert len(warnings) == 1 and "cannot fetch the manifest of 10.0.0.1/a:1" in warnings[0]


def test_resolving_asks_the_registry_and_falls_back_to_local_only_images() -> None:
    backend = FakeBackend(registry=FakeRegistry({"up:1": A}))
    # pulled:1 came from a registry (its RepoDigest); mine:1 is the same image, only here
    backend.add_image(ID, ["mine:1", "pulled:1"], repo_digests=[f"pulled@{B}"])
    warnings: list[str] = []
    assert resolve(backend, "up:1", strict=True, warn=warnings.append) == A
    assert resolve(backend, "x@" + B, strict=True, warn=warnings.append) == B
    assert resolve(backend, "mine:1", strict=True, warn=warnings.append) == ID  # only here
    assert "mine:1" not in backend.attempts("registry_digest")
    assert resolve(backend, "pulled:1", strict=True, warn=warnings.append) == B  # gone there
    with pytest.raises(RegistryNotFound):
        resolve(backend, "nowhere:1", strict=True, warn=warnings.append)
    assert warnings == []


def test_an_unavailable_registry_is_fatal_only_when_strict() -> None:
    backend = FakeBackend()
    backend.add_image(ID, ["pulled:1"], repo_digests=[f"pulled@{B}"])
    down = RegistryUnavailable("the registry docker.io is unavailable")
    backend.fail_always("registry_digest", down)
    with pytest.raises(RegistryUnavailable):
        resolve(backend, "pulled:1", strict=True, warn=print)
    warnings: list[str] = []
    assert resolve(backend, "pulled:1", strict=False, warn=warnings.append) == B
    assert warnings and "pinning pulled:1 to the local image" in warnings[0]


class FakeGraph:
    def __init__(self, parents: dict[str, tuple[str, ...]],
                 upstream: dict[str, tuple[str, ...]]) -> None:
        self._parents, self._upstream = parents, upstream

    def parents(self, name: str) -> tuple[str, ...]:
        return self._parents[name]

    def upstream(self, name: str) -> tuple[str, ...]:
        return self._upstream[name]


def test_a_moved_upstream_affects_exactly_the_images_above_it() -> None:
    graph = FakeGraph(
        parents={"base": (), "tool": ("base",), "app": (), "child": ("app",), "mix": ("tool",)},
        upstream={"base": (), "tool": (), "app": ("up:1",), "child": (), "mix": ("py:3",)},
    )
    order = ["base", "tool", "app", "child", "mix"]
    moved = moved_upstreams(graph, order, {"up:1": A, "py:3": A}, {"up:1": B, "py:3": A})  # type: ignore[arg-type]
    assert [(m.ref, m.old, m.new, m.images) for m in moved] == [("up:1", A, B, ("app", "child"))]
    assert str(moved[0]) == "up:1  sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb"


def test_lock_entries_name_every_change() -> None:
    entries = lock_entries({"a:1": A, "b:1": A, "c:1": A}, {"a:1": A, "b:1": B, "d:1": B})
    assert [(e.ref, e.status) for e in entries] == [
        ("a:1", "unchanged"), ("b:1", "updated"), ("c:1", "removed"), ("d:1", "added")
    ]
