"""What is built already: the images an engine's one listing holds, in their own repository,
and the fingerprint tags the stack's registry has."""

from __future__ import annotations

from pathlib import Path

from stackbuild.analyze import analyze
from stackbuild.backends.contract import LocalImage
from stackbuild.errors import RegistryUnavailable
from stackbuild.run.existing import existing_images, find_existing, fingerprint_ref
from tests.fakes import FakeBackend, FakeRegistry


def one_image_stack(root: Path, registry: str) -> Path:
    (root / "base").mkdir()
    (root / "base" / "Dockerfile").write_text("FROM scratch\n")
    stack_file = root / "stack.yaml"
    stack_file.write_text(f"version: 1\nregistry: {registry}\nimages:\n  base: {{context: base}}\n")
    return stack_file


def test_an_existing_image_counts_only_when_tagged_in_its_own_repository(tmp_path: Path) -> None:
    analysis = analyze(one_image_stack(tmp_path, "reg"))
    fingerprint = analysis.inputs["base"].fingerprint
    # labelled with base's fingerprint, but tagged where no child looks for it
    elsewhere = FakeBackend(local={fingerprint: [LocalImage("sha256:x", ("reg/other:1",))]})
    assert find_existing(analysis, elsewhere) == {}
    home = LocalImage("sha256:y", ("reg/base:latest",))
    assert find_existing(analysis, FakeBackend(local={fingerprint: [home]})) == {"base": home}


def test_a_docker_hub_registry_matches_the_short_names_the_engine_reports(tmp_path: Path) -> None:
    analysis = analyze(one_image_stack(tmp_path, "docker.io/acme"))
    image = LocalImage("sha256:z", ("acme/base:latest",))  # how the engine spells it
    backend = FakeBackend(local={analysis.inputs["base"].fingerprint: [image]})
    assert find_existing(analysis, backend) == {"base": image}


def test_an_image_only_in_the_registry_exists_there(tmp_path: Path) -> None:
    analysis = analyze(one_image_stack(tmp_path, "reg"))
    ref = fingerprint_ref(analysis, "base")
    backend = FakeBackend(registry=FakeRegistry({ref: "sha256:" + "a" * 64}))
    existing = existing_images(analysis, backend, print)
    assert existing.local == {} and existing.remote == {"base": ref}
    assert existing.where() == {"base": "registry"}


def test_a_registry_that_cannot_answer_is_one_warning_and_the_image_counts_as_missing(
    tmp_path: Path,
) -> None:
    analysis = analyze(one_image_stack(tmp_path, "reg"))
    backend = FakeBackend()
    backend.fail_always("has_tag", RegistryUnavailable("the registry reg is unavailable"))
    warnings: list[str] = []
    assert existing_images(analysis, backend, warnings.append).remote == {}
    assert len(warnings) == 1 and "cannot check the registry for 1 image(s)" in warnings[0]
