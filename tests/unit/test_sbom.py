"""SBOMs: the package databases parsed, the CycloneDX document valid."""

from __future__ import annotations

import json

from stackbuild.sbom import (
    Package,
    document,
    packages,
    parse_apk_installed,
    purl,
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


def test_package_urls_are_the_purl_libraries() -> None:
    """The hand-written purls equal packageurl-python's (the purl project's own code) for
    the versions real databases hold: epochs, ``+``, ``~``, spaces, pypi's names."""
    from packageurl import PackageURL

    cases = [
        Package("deb", "libc6", "2.36-9+deb12u1", "amd64"),
        Package("deb", "tzdata", "2024a-0+deb12u1", "all"),
        Package("deb", "libgcc-s1", "12.2.0-14~bpo1", "arm64"),
        Package("deb", "bash", "1:5.2.15-2+b2", ""),
        Package("apk", "musl", "1.2.4-r2", "x86_64"),
        Package("pypi", "Foo_Bar", "1.0.post1"),
        Package("pypi", "zope.interface", "6.0"),
        Package("pypi", "weird name", ""),
    ]
    for package in cases:
        namespace = None if package.kind == "pypi" else "ubuntu"  # the os-release ID
        expected = PackageURL(package.kind, namespace, package.name, package.version or None,
                              qualifiers={"arch": package.arch} if package.arch else {})
        assert purl(package, "ubuntu") == expected.to_string(), package


def test_the_document_parses_with_the_cyclonedx_library() -> None:
    from cyclonedx.model.bom import Bom

    text = document(
        "app", "reg/app", "sha256:" + "a" * 64,
        [Package("deb", "libc6", "2.36-9", "amd64"), Package("pypi", "requests", "2.31.0")],
        "debian", {"base": ("sha256:" + "b" * 64, "sha256:" + "c" * 64)}, {},
        "0b6f8a3e-0000-4000-8000-000000000000", "2026-01-01T00:00:00Z",
    )
    bom = Bom.from_json(json.loads(text))  # type: ignore[attr-defined]
    assert bom.metadata.component is not None and bom.metadata.component.name == "app"
    assert {c.name for c in bom.components} == {"libc6", "requests", "base"}
    assert str(bom.serial_number) == "0b6f8a3e-0000-4000-8000-000000000000"
