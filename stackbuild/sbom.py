"""SBOM: a CycloneDX JSON document per image, from the image's own package databases.

``SEARCH_PATHS``, ``python_dirs`` and ``wanted`` say which files of an image's filesystem
to read (dpkg's status, apk's installed, the Python ``*.dist-info/METADATA`` of the site
directories of the image's python3, os-release for the distribution's name); the
backend reads them without running the image; ``packages`` parses them and
``document`` writes the BOM: the image as the described component, its packages, and
its in-stack parents and upstream images as components it is built on.

Pure: no I/O. The JSON is written here, not with ``cyclonedx-python-lib``: the
library costs ~0.1 s to import and more to serialize, on every build's critical path
(issue 17's per-run budget is 0.1 s), for a document of four component shapes. The
tests check every shape against the CycloneDX 1.6 schema with that library's strict
validator and parse it back with the library.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from urllib.parse import quote

MEDIA_TYPE = "application/vnd.cyclonedx+json"
SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"
DPKG_STATUS = "var/lib/dpkg/status"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_DIST_INFO = re.compile(r"(^|/)[^/]+\.dist-info/METADATA$")
PYTHON_LINKS = ("usr/bin/python3", "usr/local/bin/python3")
# first where the databases are, and which python3 the image has (each missing path costs
# the engine one quick 404: no walk of the whole filesystem); then that python's site
# directories (``python_dirs``)
SEARCH_PATHS = (DPKG_STATUS, APK_INSTALLED, *OS_RELEASE, *PYTHON_LINKS)
SYMLINK = b"symlink:"  # how a backend returns a symlink's target
_PYTHON_VERSION = re.compile(r"python(3\.\d+)$")


def python_dirs(files: Mapping[str, bytes]) -> list[str]:
    """The site directories of the python3 versions that ``files`` (the ``SEARCH_PATHS``
    read) show the image has: Debian's, the python images' and pip's."""
    versions = set()
    for link in PYTHON_LINKS:
        target = files.get(link, b"")
        found = _PYTHON_VERSION.search(target.removeprefix(SYMLINK).decode("utf-8", "replace"))
        if target.startswith(SYMLINK) and found:
            versions.add(found.group(1))
    dirs = ["usr/lib/python3/dist-packages"] if versions else []
    for v in sorted(versions):
        dirs += [f"usr/lib/python{v}/site-packages", f"usr/local/lib/python{v}/site-packages",
                 f"usr/local/lib/python{v}/dist-packages"]
    return dirs


def wanted(path: str) -> bool:
    """Whether the image file ``path`` (relative to /, no leading slash) is one to read."""
    path = path.lstrip("./")
    return path in SEARCH_PATHS or bool(
        _DIST_INFO.search(path))  # fmt: skip


@dataclass(frozen=True, order=True)
class Package:
    kind: str  # "deb" | "apk" | "pypi": the purl type
    name: str
    version: str
    arch: str = ""


def _stanzas(text: str) -> list[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg status): continuation lines are dropped."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
        elif not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_dpkg_status(text: str) -> list[Package]:
    """The packages dpkg's status file says are installed."""
    return [
        Package("deb", s["Package"], s.get("Version", ""), s.get("Architecture", ""))
        for s in _stanzas(text)
        if "Package" in s and s.get("Status", "install ok installed").endswith(" installed")
    ]


def parse_apk_installed(text: str) -> list[Package]:
    """The packages of apk's installed database (``P:`` name, ``V:`` version, ``A:`` arch)."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        fields = dict(line.split(":", 1) for line in block.splitlines() if line[1:2] == ":")
        if fields.get("P"):
            found.append(Package("apk", fields["P"], fields.get("V", ""), fields.get("A", "")))
    return found


def parse_dist_info(text: str) -> Package | None:
    """A Python distribution's name and version from its METADATA headers."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line; the description follows
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            headers.setdefault(key.strip().lower(), value.strip())
    if not headers.get("name"):
        return None
    return Package("pypi", headers["name"], headers.get("version", ""))


def os_id(files: Mapping[str, bytes]) -> str:
    """The distribution's ``ID`` from os-release ("" when there is none)."""
    for path in OS_RELEASE:
        for line in files.get(path, b"").decode("utf-8", "replace").splitlines():
            if line.startswith("ID="):
                return line[3:].strip().strip('"')
    return ""


def packages(files: Mapping[str, bytes]) -> list[Package]:
    """Every package the databases among ``files`` (path -> content) record, sorted."""
    found: set[Package] = set()
    for path, data in files.items():
        text = data.decode("utf-8", "replace")
        if path == DPKG_STATUS:
            found.update(parse_dpkg_status(text))
        elif path == APK_INSTALLED:
            found.update(parse_apk_installed(text))
        elif _DIST_INFO.search(path):
            package = parse_dist_info(text)
            if package:
                found.add(package)
    return sorted(found)


def filesystem_key(diff_ids: list[str]) -> str:
    """What names an image's filesystem exactly: its layers' diff ids, bottom first
    (content digests: the same list is the same bytes). Its package databases, so its
    packages, follow from it: a rebuild that reused every layer needs no second look."""
    return hashlib.sha256("\n".join(diff_ids).encode()).hexdigest()


def contents_to_json(found: list[Package], distro: str) -> bytes:
    """``found`` and ``distro`` (``packages``, ``os_id``) as the SBOM cache stores them."""
    return json.dumps({"distro": distro, "packages": [list(astuple(p)) for p in found]}).encode()


def contents_from_json(data: bytes) -> tuple[list[Package], str]:
    """The inverse of ``contents_to_json``; ValueError for anything else."""
    try:
        record = json.loads(data)
        return [Package(*map(str, p)) for p in record["packages"]], str(record["distro"])
    except (TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"not an SBOM cache record: {error}") from error


def purl(package: Package, distro: str) -> str:
    """The package URL of ``package`` (github.com/package-url/purl-spec): the type, the
    distribution as namespace for OS packages, the name (pypi's normalized), the version
    and the architecture, percent-encoded as the spec asks (``:`` stays)."""
    namespace = {"deb": distro or "debian", "apk": distro or "alpine"}.get(package.kind)
    name = package.name
    if package.kind == "pypi":  # PEP 503 names: case and "_" do not tell packages apart
        name = name.lower().replace("_", "-")
    text = f"pkg:{package.kind}/" + (f"{_quote(namespace)}/" if namespace else "") + _quote(name)
    if package.version:
        text += f"@{_quote(package.version)}"
    if package.arch:
        text += f"?arch={_quote(package.arch)}"
    return text


def _quote(text: str) -> str:
    return quote(text, safe=":")


def document(
    image: str,
    repository: str,
    digest: str,
    found: list[Package],
    distro: str,
    parents: Mapping[str, tuple[str, str]],
    upstream: Mapping[str, str],
    serial: str,
    timestamp: str,
) -> str:
    """The CycloneDX 1.6 JSON of one image. ``parents``: name -> (image digest,
    fingerprint); ``upstream``: reference -> pinned digest ("" unpinned); ``serial`` a
    UUID, ``timestamp`` RFC 3339 (given, so the same inputs make the same document)."""
    root = {"bom-ref": f"image:{image}", "type": "container", "name": image,
            "version": digest, "description": repository}  # fmt: skip
    components: list[dict[str, object]] = []
    for package in found:
        ref = purl(package, distro)
        components.append({"bom-ref": ref, "type": "library", "name": package.name,
                           "version": package.version, "purl": ref})  # fmt: skip
    for name, (parent_digest, fingerprint) in sorted(parents.items()):
        components.append({
            "bom-ref": f"parent:{name}", "type": "container", "name": name,
            "version": parent_digest,
            "properties": [{"name": "stackbuild:role", "value": "parent"},
                           {"name": "stackbuild:fingerprint", "value": fingerprint}],
        })  # fmt: skip
    for ref, pinned in sorted(upstream.items()):
        components.append({
            "bom-ref": f"upstream:{ref}", "type": "container", "name": ref,
            "version": pinned or "unpinned",
            "properties": [{"name": "stackbuild:role", "value": "upstream"}],
        })  # fmt: skip
    refs = list(dict.fromkeys(str(c["bom-ref"]) for c in components))  # unique, in order
    unique = {str(c["bom-ref"]): c for c in components}  # one component per bom-ref
    bom = {
        "$schema": SCHEMA,
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {"timestamp": timestamp, "component": root},
        "components": [unique[ref] for ref in refs],
        "dependencies": [{"ref": root["bom-ref"], "dependsOn": refs},
                         *({"ref": ref} for ref in refs)],
    }
    return json.dumps(bom, indent=2)
