"""Fetching a manifest from its registry directly, as digests are checked against, and
re-pointing a tag at one."""

from __future__ import annotations

import pytest

from stackbuild.backends.contract import ManifestUnreachable
from stackbuild.backends.manifests import fetch_manifest, retag_manifest
from stackbuild.errors import RegistryUnavailable


def test_fetch_from_a_port_that_refuses_is_manifest_unreachable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ManifestUnreachable):
        fetch_manifest(f"127.0.0.1:{port}/a/b:1")


def test_a_retag_on_a_port_that_refuses_is_a_registry_unavailable_worth_retrying() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RegistryUnavailable) as caught:
        retag_manifest(f"127.0.0.1:{port}/a/b:0123456789ab", "latest")
    assert f"127.0.0.1:{port}/a/b:0123456789ab" in str(caught.value)
