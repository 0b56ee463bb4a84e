"""A digest a registry reports is pinned only when the manifest it serves hashes to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackbuild.backends.contract import ManifestUnreachable
from stackbuild.backends.manifests import fetch_manifest
from stackbuild.errors import EXIT_BUILD_FAILED, RegistryError
from stackbuild.run.upstream import resolve, verify_digest
from tests.lying_registry import LIE, MANIFEST, TRUE_DIGEST, LyingRegistry


class RelayingEngine:
    """An engine that relays the registry's header digest, as dockerd's distribution
    inspect does, and holds no image of its own."""

    def registry_digest(self, ref: str) -> str:
        header = fetch_manifest(ref)[2]
        assert header is not None
        return header

    def local_digest(self, ref: str) -> None:
        return None

    def image_id(self, ref: str) -> None:
        return None


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
        resolve(RelayingEngine(), ref, strict=True, warn=print, fetch=fetch_manifest)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_BUILD_FAILED
    assert f"claims the digest {LIE} for {ref}" in message
    assert f"hashes to {TRUE_DIGEST}" in message
    assert "not pinning" in message


def test_an_honest_registry_digest_is_pinned(lying: LyingRegistry) -> None:
    lying.lie = False
    ref = f"{lying.address}/acme/base:1"
    assert resolve(RelayingEngine(), ref, strict=True, warn=print,
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

    class Engine(RelayingEngine):
        def registry_digest(self, ref: str) -> str:
            return TRUE_DIGEST

    warnings: list[str] = []
    assert resolve(Engine(), "10.0.0.1/a:1", strict=True, warn=warnings.append,
                   fetch=unreachable) == TRUE_DIGEST  # fmt: skip
    assert len(warnings) == 1 and "cannot fetch the manifest of 10.0.0.1/a:1" in warnings[0]


def test_fetch_from_a_port_that_refuses_is_manifest_unreachable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ManifestUnreachable):
        fetch_manifest(f"127.0.0.1:{port}/a/b:1")
