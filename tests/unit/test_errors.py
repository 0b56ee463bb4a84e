"""Registry failures, as an engine words them, sorted into what a user can do about them."""

from __future__ import annotations

import pytest

from stackbuild.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
    registry_error,
)


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        ("unauthorized: authentication required", RegistryAuthError),
        ('Head "http://h/v2/x/manifests/1": no basic auth credentials', RegistryAuthError),
        ("denied: requested access to the resource is denied", RegistryAuthError),
        ("manifest unknown: manifest unknown", RegistryNotFound),
        ('Get "http://h/v2/": dial tcp h: connect: connection refused', RegistryUnavailable),
        ("received unexpected HTTP status: 503 Service Unavailable", RegistryUnavailable),
        ("toomanyrequests: You have reached your pull rate limit", RegistryUnavailable),
        ("read tcp 1.2.3.4:5: connection reset by peer", RegistryUnavailable),
        ("blob upload invalid", RegistryError),
    ],
)
def test_registry_failures_are_sorted_by_what_to_do_about_them(detail: str, kind: type) -> None:
    error = registry_error(detail, "127.0.0.1:5000/acme/base:1", "push")
    assert type(error) is kind
    assert "127.0.0.1:5000" in str(error) and detail in str(error)


def test_refused_credentials_say_how_to_log_in() -> None:
    error = registry_error("unauthorized: authentication required", "reg.example/a:1", "push")
    assert "\n" not in str(error)  # one sentence, not a stack of messages
    assert "docker login reg.example" in str(error)
    assert error.exit_code == 1
    assert RegistryUnavailable("x").exit_code == 3
