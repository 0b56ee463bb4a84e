"""SBOMs: the package databases parsed, the CycloneDX document valid."""

from __future__ import annotations

import json

from stackbuild.sbom import (
    Package,
    document,
    packages,
    parse_apk_installed,
    python_dirs,
    wanted,
)

DPKG = b"""Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9
Description: GNU C Library
 multi-line description

Package: removed
Status: deinstall ok config-files
Version: 1
"""
APK = b"P:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n"
METADATA = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\nName: not-a-header\n"


def test_the_databases_are_wanted_and_nothing_else() -> None:
    assert wanted("var/lib/dpkg/status") and wanted("lib/apk/db/installed")
    assert wanted("usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA")
    assert wanted("etc/os-release")
    assert not wanted("var/lib/dpkg/status-old") and not wanted("etc/passwd")


def test_site_directories_follow_the_images_python3() -> None:
    assert python_dirs({}) == []
    assert python_dirs({"usr/bin/python3": b"symlink:python3.11",
                        "usr/local/bin/python3": b"symlink:/usr/local/bin/python3.12"}) == [
        "usr/lib/python3/dist-packages",
        "usr/lib/python3.11/site-packages", "usr/local/lib/python3.11/site-packages",
        "usr/local/lib/python3.11/dist-packages",
        "usr/lib/python3.12/site-packages", "usr/local/lib/python3.12/site-packages",
        "usr/local/lib/python3.12/dist-packages",
    ]
    assert wanted("usr/bin/python3")


def test_packages_of_every_database() -> None:
    found = packages({
        "var/lib/dpkg/status": DPKG,
        "lib/apk/db/installed": APK,
        "usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA": METADATA,
    })
    assert found == sorted([
        Package("deb", "libc6", "2.36-9", "amd64"),
        Package("apk", "musl", "1.2.4-r2", "x86_64"),
        Package("apk", "busybox", "1.36.1-r5", "x86_64"),
        Package("pypi", "requests", "2.31.0"),
    ])
    assert parse_apk_installed("") == []


def test_the_document_is_valid_cyclonedx_with_parents_and_upstreams() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = document(
        "app", "reg/app", "sha256:" + "a" * 64, [Package("deb", "libc6", "2.36-9", "amd64")],
        "debian", {"base": ("sha256:" + "b" * 64, "sha256:" + "c" * 64)},
        {"debian:12": "sha256:" + "d" * 64}, "0b6f8a3e-0000-4000-8000-000000000000",
        "2026-01-01T00:00:00Z",
    )
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["metadata"]["component"]["name"] == "app"
    names = {c["name"]: c for c in bom["components"]}
    assert names["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9?arch=amd64"
    assert names["base"]["version"] == "sha256:" + "b" * 64
    assert names["debian:12"]["type"] == "container"
