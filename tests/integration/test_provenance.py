"""Provenance, SBOM and ``verify``: real engine, real registry (Debian's docker-registry).

Everything is fetched from the registry with plain HTTP, starting from the image's
digest alone (the referrers API, else the ``sha256-<hex>.att``/``.sbom`` tags), so the
test checks what any other client would find, not what stackbuild's own code reads.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TEST_LABEL
from tests.integration.test_registry import by_image, json_out, run_cli, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.registry]

DPKG_STATUS = """\
Package: libfake1
Status: install ok installed
Architecture: amd64
Version: 1.2-3

Package: gone
Status: deinstall ok config-files
Version: 0.1

Package: fake-tools
Status: install ok installed
Architecture: all
Version: 4.5
Description: a package only this test has
 with a continuation line
"""
METADATA = "Metadata-Version: 2.1\nName: demo-dist\nVersion: 1.2.0\n\nA description.\n"


def make_stack(directory: Path, unique: str, registry: str, base_yaml: str = "",
               base_extra: str = "") -> Path:
    """base (busybox + a fake dpkg status, a fake dist-info) and app FROM base."""
    stack = write_stack(directory, unique, {
        "base": "FROM scratch\nCOPY rootfs/ /\n" + base_extra,
        "app": "FROM base\nCOPY app.txt /app.txt\n",
    }, registry=registry)
    rootfs = stack / "base" / "rootfs"
    (rootfs / "var/lib/dpkg").mkdir(parents=True)
    (rootfs / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    dist_info = rootfs / "usr/lib/python3/dist-packages/demo_dist-1.2.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(METADATA)
    (rootfs / "usr/bin").mkdir(parents=True)
    (rootfs / "usr/bin/python3").symlink_to("python3.11")  # what Debian's python3 looks like
    (rootfs / "etc/os-release").write_text('ID=debian\nPRETTY_NAME="fake"\n')
    if base_yaml:  # more keys of base (and top-level ones after it)
        text = (stack / "stack.yaml").read_text()
        (stack / "stack.yaml").write_text(
            text.replace("    context: base\n", "    context: base\n" + base_yaml, 1))
    return stack


def registry_get(registry: Any, path: str, accept: str = "") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://{registry.address}/v2/{path}",
                                     headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {}, error.read()


MANIFEST_ACCEPT = ("application/vnd.oci.image.manifest.v1+json, "
                   "application/vnd.docker.distribution.manifest.v2+json")


def image_digest(registry: Any, repo_path: str, tag: str = "latest") -> str:
    status, headers, _ = registry_get(registry, f"{repo_path}/manifests/{tag}", MANIFEST_ACCEPT)
    assert status == 200
    return headers["docker-content-digest"]


def attached(registry: Any, repo_path: str, digest: str, artifact_type: str,
             suffix: str) -> bytes:
    """The document of ``artifact_type`` attached to ``digest``, as any client finds it."""
    status, headers, body = registry_get(registry, f"{repo_path}/referrers/{digest}")
    manifest_ref = f"sha256-{digest.partition(':')[2]}.{suffix}"  # no referrers API
    if status == 200 and headers.get("content-type", "").startswith(
            "application/vnd.oci.image.index.v1+json"):
        manifest_ref = next(m["digest"] for m in json.loads(body)["manifests"]
                            if m["artifactType"] == artifact_type)
    status, _, body = registry_get(registry, f"{repo_path}/manifests/{manifest_ref}",
                                   "application/vnd.oci.image.manifest.v1+json")
    assert status == 200, body
    manifest = json.loads(body)
    assert manifest["artifactType"] == artifact_type
    assert manifest["subject"]["digest"] == digest
    layer = manifest["layers"][0]
    status, _, payload = registry_get(registry, f"{repo_path}/blobs/{layer['digest']}")
    assert status == 200
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
    return payload


def context_sha256sums(context: Path) -> dict[str, str]:
    """``sha256sum`` of every regular file of a context (no .dockerignore in these)."""
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*")
                   if p.is_file() and not p.is_symlink())
    out = subprocess.run(["sha256sum", *files], cwd=context, capture_output=True, text=True,
                         check=True).stdout
    return {line.split(None, 1)[1].strip(): line.split(None, 1)[0] for line in out.splitlines()}


def check_statement(statement: dict, repository: str, digest: str) -> None:
    """An in-toto Statement v1 with a SLSA provenance v1 predicate, field by field."""
    assert set(statement) == {"_type", "subject", "predicateType", "predicate"}
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": repository,
                                     "digest": {"sha256": digest.partition(":")[2]}}]
    predicate = statement["predicate"]
    assert set(predicate) == {"buildDefinition", "runDetails"}
    definition = predicate["buildDefinition"]
    assert {"buildType", "externalParameters", "resolvedDependencies"} <= set(definition)
    assert definition["buildType"].startswith("https://")
    assert isinstance(definition["externalParameters"], dict)
    for dependency in definition["resolvedDependencies"]:  # ResourceDescriptor
        assert set(dependency) <= {"uri", "digest", "name", "downloadLocation", "mediaType",
                                   "content", "annotations"}
        assert {"uri", "digest", "content"} & set(dependency)
        for algorithm, value in dependency.get("digest", {}).items():
            assert algorithm == "sha256" and len(value) == 64 and int(value, 16) >= 0
    run = predicate["runDetails"]
    assert set(run) <= {"builder", "metadata", "byproducts"}
    assert run["builder"]["id"].startswith("https://")
    assert set(run["builder"]["version"]) == {"stackbuild", "engine", "backend"}
    metadata = run["metadata"]
    uuid.UUID(metadata["invocationId"])
    started = datetime.fromisoformat(metadata["startedOn"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(metadata["finishedOn"].replace("Z", "+00:00"))
    assert started <= finished


def test_pushed_image_carries_provenance_and_sbom_and_verify_names_an_edited_file(
    tmp_path: Path, registry: Any, unique: str, cleanup_images: set[str]
) -> None:
    from cyclonedx.model.bom import Bom
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    prefix = f"{registry.address}/{unique}"
    stack = make_stack(tmp_path / "stack", unique, prefix)
    results = by_image(json_out(run_cli(stack, "build", "--push", "--json")))
    assert {r["status"] for r in results.values()} == {"built"}

    digests = {}
    for name in ("base", "app"):
        repo_path = f"{unique}/{name}"
        digest = digests[name] = image_digest(registry, repo_path)
        statement = json.loads(attached(registry, repo_path, digest,
                                        "application/vnd.in-toto+json", "att"))
        check_statement(statement, f"{prefix}/{name}", digest)
        definition = statement["predicate"]["buildDefinition"]
        assert definition["externalParameters"]["image"] == name
        assert definition["externalParameters"]["labels"] == {TEST_LABEL: unique}
        assert definition["internalParameters"]["fingerprint"] == results[name]["fingerprint"]
        # every context file, by the digest sha256sum gives it
        deps = definition["resolvedDependencies"]
        recorded = {d["name"]: d["digest"]["sha256"] for d in deps
                    if d["annotations"]["stackbuild.role"] == "context" and "digest" in d}
        assert recorded == context_sha256sums(stack / name)
        dockerfile = next(d for d in deps if d["annotations"]["stackbuild.role"] == "dockerfile")
        assert dockerfile["digest"]["sha256"] == context_sha256sums(stack / name)["Dockerfile"]
        # the local copy names the pushed manifest too
        local = json.loads((stack / f".stackbuild/provenance/{name}.json").read_text())
        assert local == statement

        sbom_text = attached(registry, repo_path, digest, "application/vnd.cyclonedx+json",
                             "sbom").decode()
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom_text) is None
        bom = Bom.from_json(json.loads(sbom_text))  # type: ignore[attr-defined]
        components = {c.name: c for c in bom.components}
        # the packages of base's databases, in base and in app (built on it)
        assert str(components["libfake1"].purl) == "pkg:deb/debian/libfake1@1.2-3?arch=amd64"
        assert components["fake-tools"].version == "4.5"
        assert "gone" not in components  # removed, only its config files are left
        assert str(components["demo-dist"].purl) == "pkg:pypi/demo-dist@1.2.0"
        assert bom.metadata.component.name == name

    app = json.loads(attached(registry, f"{unique}/app", digests["app"],
                              "application/vnd.in-toto+json", "att"))
    parent = next(d for d in app["predicate"]["buildDefinition"]["resolvedDependencies"]
                  if d["annotations"]["stackbuild.role"] == "parent")
    assert parent["name"] == "base"
    assert parent["annotations"]["stackbuild.fingerprint"] == results["base"]["fingerprint"]
    base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}",
                              f"{prefix}/base:latest"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert parent["digest"] == {"sha256": base_id.partition(":")[2]}

    # verify: exact, locally and from the registry alone
    ref = f"{prefix}/base@{digests['base']}"
    verdict = json_out(run_cli(stack, "verify", ref, "--json"))
    assert verdict["exact"] and verdict["differences"] == []
    subprocess.run(["docker", "rmi", "-f", f"{prefix}/app:latest",
                    f"{prefix}/app:{results['app']['fingerprint'][7:19]}"],
                   capture_output=True, check=True)
    verdict = json_out(run_cli(stack, "verify", f"{prefix}/app:latest", "--json"))
    assert verdict["where"] == "registry" and verdict["provenance"] == "registry"
    assert verdict["exact"]

    # one context file edited: base differs, naming that file; app differs by its parent
    (stack / "base" / "base.txt").write_text("edited\n")
    proc = run_cli(stack, "verify", ref)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "context file changed: base/base.txt" in proc.stdout
    verdict = json_out(run_cli(stack, "verify", f"{prefix}/app:latest", "--json"), 1)
    assert [d["code"] for d in verdict["differences"]] == ["parent-changed"]

    # bad references: exit 2
    assert run_cli(stack, "verify", "Not A Ref").returncode == 2
    assert run_cli(stack, "verify", f"{prefix}/nothing:here").returncode == 2


def test_no_provenance_writes_and_attaches_nothing(
    tmp_path: Path, registry: Any, unique: str, cleanup_images: set[str]
) -> None:
    stack = make_stack(tmp_path / "stack", unique, f"{registry.address}/{unique}")
    json_out(run_cli(stack, "build", "--push", "--no-provenance", "--json"))
    assert not (stack / ".stackbuild/provenance").exists()
    assert not (stack / ".stackbuild/sbom").exists()
    digest = image_digest(registry, f"{unique}/base")
    status, _, _ = registry_get(registry, f"{unique}/base/manifests/sha256-{digest[7:]}.att",
                                "application/vnd.oci.image.manifest.v1+json")
    assert status == 404


def _everything_in(directory: Path) -> list[tuple[Path, bytes]]:
    """Every file under ``directory``, gzip ones (image layers) decompressed too."""
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found.append((path, data))
            if data[:2] == b"\x1f\x8b":
                found.append((path, gzip.decompress(data)))
    return found


def test_a_secret_never_reaches_provenance_sbom_labels_or_the_registry(
    tmp_path: Path, registry: Any, unique: str, cleanup_images: set[str],
    buildkit_backend: Any,
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env_name = f"SBT_SECRET_{unique.replace('-', '_').upper()}"
    # the secret is used by a build step, as a secret is meant to be
    stack = make_stack(
        tmp_path / "stack", unique, f"{registry.address}/{unique}",
        base_yaml=f"    secrets:\n      token: env:{env_name}\n",
        base_extra="RUN --mount=type=secret,id=token test -s /run/secrets/token\n",
    )
    with (stack / "stack.yaml").open("a") as f:
        f.write("backend: buildkit\n")
    results = by_image(json_out(run_cli(stack, "build", "--push", "--json",
                                        env={env_name: secret})))
    assert {r["status"] for r in results.values()} == {"built"}
    written = _everything_in(stack / ".stackbuild")
    assert any("provenance" in str(p) for p, _ in written)
    assert any("sbom" in str(p) for p, _ in written)
    statement = json.loads((stack / ".stackbuild/provenance/base.json").read_text())
    assert statement["predicate"]["buildDefinition"]["externalParameters"]["secrets"] == [
        "token"]
    pushed = _everything_in(registry.directory / "data")
    assert len(pushed) > 4
    for path, data in written + pushed:
        assert secret.encode() not in data, f"the secret is in {path}"
    labels = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}",
                             f"{registry.address}/{unique}/base:latest"], capture_output=True,
                            text=True, check=True).stdout
    assert secret not in labels
    assert os.environ.get(env_name) is None


def test_a_rebuild_on_the_same_layers_lists_the_same_packages_from_the_sbom_cache(
    tmp_path: Path, registry: Any, unique: str, cleanup_images: set[str]
) -> None:
    """A forced rebuild that reuses every layer takes its SBOM's packages from
    .stackbuild/sbom-cache/ (no new entry: nothing read again) and lists the same ones; a
    changed package database makes new layers, a new entry and the new package."""
    stack = make_stack(tmp_path / "stack", unique, f"{registry.address}/{unique}")
    cache = stack / ".stackbuild/sbom-cache"

    def packages(name: str) -> dict[str, str]:
        bom = json.loads((stack / f".stackbuild/sbom/{name}.cdx.json").read_text())
        return {c["name"]: c["version"] for c in bom["components"] if c["type"] == "library"}

    json_out(run_cli(stack, "build", "--json"))
    first = {name: packages(name) for name in ("base", "app")}
    assert first["base"]["libfake1"] == "1.2-3" and first["app"] == first["base"]
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2  # base's filesystem and app's

    results = by_image(json_out(run_cli(stack, "build", "--json", "--force", "base",
                                        "--force", "app")))  # fmt: skip
    assert {r["status"] for r in results.values()} == {"built"}
    assert {name: packages(name) for name in ("base", "app")} == first
    assert sorted(p.name for p in cache.iterdir()) == entries  # from the cache

    status = stack / "base/rootfs/var/lib/dpkg/status"
    status.write_text(status.read_text().replace("Version: 1.2-3", "Version: 1.2-4"))
    json_out(run_cli(stack, "build", "--json"))
    assert packages("base")["libfake1"] == "1.2-4" == packages("app")["libfake1"]
    assert len(list(cache.iterdir())) == 4
