"""Fetching a manifest from its registry directly, as digests are checked against."""

from __future__ import annotations

import pytest

from stackbuild.backends.contract import ManifestUnreachable
from stackbuild.backends.manifests import fetch_manifest


def test_fetch_from_a_port_that_refuses_is_manifest_unreachable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ManifestUnreachable):
        fetch_manifest(f"127.0.0.1:{port}/a/b:1")
