"""Provenance statements: what they hold, what they hide, and reading them back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stackbuild.fingerprint import ImageInputs
from stackbuild.manifest import ImageSpec
from stackbuild.plan import explain_changes
from stackbuild.provenance import (
    REDACTED,
    RunInfo,
    inputs_of,
    redacted_args,
    statement,
    with_subject,
)

DIGEST = "a" * 64
INPUTS = ImageInputs(
    dockerfile="d" * 64,
    files={"Dockerfile": f"f644:{'d' * 64}", "app.txt": f"f755:{'1' * 64}", "conf": "d755",
           "link": "l:app.txt"},
    build_args={"TZ": "UTC", "API_TOKEN": "hunter2", "URL": "https://x/?k=s3cret-value"},
    labels={"a": "b"},
    target="release",
    platform="linux/amd64",
    parents={"base": "sha256:" + "b" * 64},
    upstream={"debian:12": "sha256:" + "c" * 64, "alpine": ""},
)
SPEC = ImageSpec(
    name="app", context=Path("/s/images/app"), dockerfile=Path("/s/images/app/Dockerfile"),
    context_rel="images/app", dockerfile_rel="images/app/Dockerfile",
    build_args=INPUTS.build_args, labels=INPUTS.labels, target="release",
    platform="linux/amd64", secrets={"token": "env:TOKEN"},
)
RUN = RunInfo("0.1.0", "20.10.24", "docker", "0b6f8a3e-0000-4000-8000-000000000000",
              "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z")


def make(secrets: tuple[str, ...] = ("s3cret-value",)) -> dict:
    return statement(SPEC, "reg/app", f"sha256:{DIGEST}", INPUTS,
                     {"base": "sha256:" + "e" * 64}, RUN, secrets)


def test_statement_names_the_image_and_every_input() -> None:
    doc = make()
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["subject"] == [{"name": "reg/app", "digest": {"sha256": DIGEST}}]
    deps = {d["uri"]: d for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["file:images/app/Dockerfile"]["digest"] == {"sha256": "d" * 64}
    assert deps["file:images/app/app.txt"]["digest"] == {"sha256": "1" * 64}
    assert "digest" not in deps["file:images/app/link"]  # a symlink has its target only
    assert deps["stackbuild:image/base"]["digest"] == {"sha256": "e" * 64}
    assert deps["stackbuild:image/base"]["annotations"]["stackbuild.fingerprint"] == \
        INPUTS.parents["base"]
    assert deps["docker-image://debian:12"]["digest"] == {"sha256": "c" * 64}
    assert "digest" not in deps["docker-image://alpine"]  # unpinned
    run = doc["predicate"]["runDetails"]
    assert run["builder"]["version"] == {"stackbuild": "0.1.0", "engine": "20.10.24",
                                         "backend": "docker"}


def test_secret_looking_and_secret_carrying_args_are_redacted() -> None:
    doc = make()
    external = doc["predicate"]["buildDefinition"]["externalParameters"]
    assert external["buildArgs"] == {"TZ": "UTC", "API_TOKEN": REDACTED, "URL": REDACTED}
    assert external["secrets"] == ["token"]  # the id, never where it comes from
    assert "hunter2" not in str(doc) and "s3cret-value" not in str(doc)
    assert "env:TOKEN" not in str(doc)
    assert redacted_args({"KEYBOARD": "x", "SSH_KEY": "y", "PASS": "z"}, ()) == {"SSH_KEY",
                                                                                 "PASS"}


def test_inputs_read_back_give_the_same_fingerprint_without_redactions() -> None:
    plain = dataclasses.replace(INPUTS, build_args={"TZ": "UTC"})
    doc = statement(SPEC, "reg/app", f"sha256:{DIGEST}", plain, {}, RUN)
    recorded = inputs_of(doc)
    assert recorded.inputs == plain
    assert recorded.inputs.fingerprint == recorded.fingerprint == plain.fingerprint
    assert recorded.subject == f"sha256:{DIGEST}"
    moved = with_subject(doc, "reg/app", "sha256:" + "f" * 64)
    assert inputs_of(moved).subject == "sha256:" + "f" * 64


def test_a_changed_file_is_named_against_a_read_back_statement() -> None:
    recorded = inputs_of(make()).inputs
    now = dataclasses.replace(recorded, files={**recorded.files, "app.txt": f"f755:{'2' * 64}"})
    reasons = explain_changes("images/app", recorded, now, max_files=None)
    assert [r.detail for r in reasons] == ["context file changed: images/app/app.txt"]


@pytest.mark.parametrize("broken", [{}, {"_type": "x"}, {"_type": "https://in-toto.io/Statement/v1",
                                                          "predicateType": "other"}])
def test_anything_else_is_a_value_error(broken: dict) -> None:
    with pytest.raises(ValueError):
        inputs_of(broken)
