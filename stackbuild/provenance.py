"""Provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate per image.

Built from what the fingerprint already hashed (``ImageInputs``): every context file
with its sha256, the Dockerfile, build args, labels, target, platform, each in-stack
parent (image digest and fingerprint) and each upstream (pinned digest). Nothing is
hashed again here. ``inputs_of`` reads the inputs back out of a statement, so
``stackbuild verify`` can say which of them differ from a checkout.

Secrets: ``secrets:`` contributes only its ids; a build arg whose name looks like a
secret (TOKEN, PASSWORD, ...) or whose value contains a secret's value is written as
``REDACTED`` and listed under ``internalParameters.redactedBuildArgs``.

Pure: no I/O. The dicts are built here rather than with ``in-toto-attestation``
(protobuf bindings, no release since 2023): a statement is five keys of JSON.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from stackbuild.fingerprint import ImageInputs
from stackbuild.manifest import ImageSpec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://stackbuild.dev/buildtypes/image/v1"
BUILDER_ID = "https://stackbuild.dev/builder/v1"
MEDIA_TYPE = "application/vnd.in-toto+json"  # the attached artifact's type
REDACTED = "REDACTED"
# names of build args whose values are never written (matched as words of the name)
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|PASS|PWD|KEY|APIKEY|CREDENTIALS?|AUTH|PRIVATE)(_|$)",
    re.IGNORECASE,
)

ROLE = "stackbuild.role"
ENTRY = "stackbuild.entry"
FINGERPRINT = "stackbuild.fingerprint"


@dataclass(frozen=True)
class RunInfo:
    """How one build ran: the parts of ``runDetails`` no input decides."""

    stackbuild_version: str
    engine_version: str
    backend: str  # "docker" | "buildkit"
    invocation_id: str
    started_on: str  # RFC 3339, UTC
    finished_on: str


def redacted_args(build_args: Mapping[str, str], secret_values: Collection[str]) -> set[str]:
    """The build args whose values must not be written: secret-looking names, and any
    whose value contains a secret's value (a secret passed as an arg as well)."""
    values = [v for v in secret_values if v]
    return {
        name for name, value in build_args.items()
        if _SECRET_NAME.search(name) or any(v in value for v in values)
    }


def _sha(digest: str) -> dict[str, str]:
    algorithm, _, hexdigest = digest.partition(":")
    return {algorithm: hexdigest} if hexdigest else {"sha256": digest}


def _join(prefix: str, path: str) -> str:
    return f"{prefix.rstrip('/')}/{path}" if prefix not in ("", ".") else path


def statement(
    spec: ImageSpec,
    repository: str,
    subject_digest: str,
    inputs: ImageInputs,
    parent_digests: Mapping[str, str],
    run: RunInfo,
    secret_values: Collection[str] = (),
) -> dict[str, Any]:
    """The statement for image ``spec`` built from ``inputs``; ``subject_digest`` is its
    image id, or its manifest digest once pushed; ``parent_digests`` the image digest of
    each in-stack parent it was built on."""
    hidden = redacted_args(inputs.build_args, secret_values)
    build_args = {k: REDACTED if k in hidden else v for k, v in sorted(inputs.build_args.items())}
    dependencies: list[dict[str, Any]] = [{
        "uri": f"file:{spec.dockerfile_rel}",
        "name": spec.dockerfile_rel,
        "digest": {"sha256": inputs.dockerfile},
        "annotations": {ROLE: "dockerfile"},
    }]
    for path, entry in sorted(inputs.files.items()):
        dependency: dict[str, Any] = {"uri": f"file:{_join(spec.context_rel, path)}", "name": path}
        if entry.startswith("f"):
            dependency["digest"] = {"sha256": entry.rpartition(":")[2]}
        dependency["annotations"] = {ROLE: "context", ENTRY: entry}
        dependencies.append(dependency)
    for parent, fingerprint in sorted(inputs.parents.items()):
        digest = parent_digests.get(parent, "")
        dependency = {"uri": f"stackbuild:image/{parent}", "name": parent}
        if digest:
            dependency["digest"] = _sha(digest)
        dependency["annotations"] = {ROLE: "parent", FINGERPRINT: fingerprint}
        dependencies.append(dependency)
    for ref, digest in sorted(inputs.upstream.items()):
        dependency = {"uri": f"docker-image://{ref}", "name": ref}
        if digest:
            dependency["digest"] = _sha(digest)
        dependency["annotations"] = {ROLE: "upstream"}
        dependencies.append(dependency)
    external = {
        "image": spec.name,
        "context": spec.context_rel,
        "dockerfile": spec.dockerfile_rel,
        "buildArgs": build_args,
        "labels": dict(sorted(inputs.labels.items())),
        "target": inputs.target,
        "platform": inputs.platform,
        "dependsOn": list(spec.depends_on),
        "tags": list(spec.tags),
        "secrets": sorted(spec.secrets),  # the ids only: what they resolve to stays out
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": _sha(subject_digest)}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {
                    "fingerprint": inputs.fingerprint,
                    "redactedBuildArgs": sorted(hidden),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {
                        "stackbuild": run.stackbuild_version,
                        "engine": run.engine_version,
                        "backend": run.backend,
                    },
                },
                "metadata": {
                    "invocationId": run.invocation_id,
                    "startedOn": run.started_on,
                    "finishedOn": run.finished_on,
                },
            },
        },
    }


def with_subject(document: Mapping[str, Any], repository: str, digest: str) -> dict[str, Any]:
    """``document`` naming another subject (the pushed manifest instead of the image id)."""
    return {**document, "subject": [{"name": repository, "digest": _sha(digest)}]}


@dataclass(frozen=True)
class Recorded:
    """What a statement says an image was built from."""

    image: str
    fingerprint: str
    inputs: ImageInputs  # redacted build args hold REDACTED
    redacted: frozenset[str]
    subject: str  # "sha256:<hex>"


def inputs_of(document: Any) -> Recorded:
    """Read a statement back (``statement``'s inverse); ValueError when it is not one."""
    try:
        if document["_type"] != STATEMENT_TYPE or document["predicateType"] != PREDICATE_TYPE:
            raise ValueError("not an in-toto statement with a SLSA provenance v1 predicate")
        definition = document["predicate"]["buildDefinition"]
        if definition["buildType"] != BUILD_TYPE:
            raise ValueError(f"not built by stackbuild (buildType {definition['buildType']})")
        external = definition["externalParameters"]
        internal = definition["internalParameters"]
        dockerfile, files, parents, upstream = "", {}, {}, {}
        for dep in definition["resolvedDependencies"]:
            role = dep.get("annotations", {}).get(ROLE)
            if role == "dockerfile":
                dockerfile = dep["digest"]["sha256"]
            elif role == "context":
                files[dep["name"]] = dep["annotations"][ENTRY]
            elif role == "parent":
                parents[dep["name"]] = dep["annotations"][FINGERPRINT]
            elif role == "upstream":
                digest = dep.get("digest") or {}
                upstream[dep["name"]] = next((f"{a}:{h}" for a, h in digest.items()), "")
        inputs = ImageInputs.from_json({
            "dockerfile": dockerfile, "files": files, "build_args": external["buildArgs"],
            "labels": external["labels"], "target": external["target"],
            "platform": external["platform"], "parents": parents, "upstream": upstream,
        })
        (algorithm, hexdigest), = document["subject"][0]["digest"].items()
        return Recorded(
            image=str(external["image"]),
            fingerprint=str(internal["fingerprint"]),
            inputs=inputs,
            redacted=frozenset(internal.get("redactedBuildArgs", ())),
            subject=f"{algorithm}:{hexdigest}",
        )
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"not a stackbuild provenance statement: missing {error}") from None
