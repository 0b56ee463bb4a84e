"""How stackbuild names images: tag templates filled in, the registry of a reference."""

from __future__ import annotations

import pytest

from stackbuild.refs import registry_host, render_tag


def test_render_tag_fills_placeholders() -> None:
    values = {"fingerprint12": "0123456789ab", "git_sha": "f" * 40, "date": "20240131"}
    assert render_tag("{fingerprint12}-{date}", values) == "0123456789ab-20240131"


@pytest.mark.parametrize(
    ("ref", "host"),
    [("debian:12", "docker.io"), ("acme/base", "docker.io"), ("localhost/a", "localhost"),
     ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000"), ("ghcr.io/o/i@sha256:ab", "ghcr.io")],
)
def test_registry_host(ref: str, host: str) -> None:
    assert registry_host(ref) == host
