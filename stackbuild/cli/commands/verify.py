"""``stackbuild verify IMAGE-REF``: is this image exactly what the checkout would build?

The image (local, else in its registry) names its stack image and fingerprint in its
labels; its provenance (attached in the registry, or the local one of the same image)
lists every input. The checkout's fingerprint is recomputed (stack.lock's pins, no
engine needed for that) and compared with both; the inputs that differ are named the
way ``plan`` names them. Exit 0 exact, 1 differs, 2 a bad or unknown reference.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import click

from stackbuild import provenance
from stackbuild.analyze import analyze
from stackbuild.backends.contract import FINGERPRINT_LABEL, IMAGE_LABEL, Backend
from stackbuild.cli.common import BACKEND, JSON, Context, pass_context
from stackbuild.cli.engines import open_engine
from stackbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_OK,
    RegistryError,
    RegistryNotFound,
    UsageError,
)
from stackbuild.fingerprint import ImageInputs
from stackbuild.manifest import load_stack
from stackbuild.plan import Reason, explain_changes, short
from stackbuild.refs import is_reference, registry_host, split_reference
from stackbuild.state import StateDir


@dataclass
class Found:
    """What the image says about itself."""

    where: str  # "local" | "registry"
    labels: dict[str, str]
    subjects: set[str] = field(default_factory=set)  # digests naming this image
    statement: Any = None
    statement_from: str = ""  # "registry" | "local file" | ""


def _from_registry(backend: Backend, ref: str, digest: str) -> Any:
    repository = split_reference(ref)[0]
    try:
        payload = backend.fetch_attachment(f"{repository}@{digest}", provenance.MEDIA_TYPE,
                                           "att")  # fmt: skip
    except RegistryError:
        return None
    return json.loads(payload) if payload else None


def locate(backend: Backend, state: StateDir, ref: str) -> Found:
    """The image ``ref`` names, its labels and provenance; UsageError when there is none."""
    labels = backend.image_labels(ref)
    if labels is not None:
        found = Found("local", labels)
        image_id, digest = backend.image_id(ref), backend.local_digest(ref)
        found.subjects = {d for d in (image_id, digest) if d}
        name = labels.get(IMAGE_LABEL, "")
        try:
            local = json.loads(state.provenance_path(name).read_bytes())
            if provenance.inputs_of(local).subject in found.subjects:
                found.statement, found.statement_from = local, "local file"
        except (OSError, ValueError):
            pass
        if found.statement is None and digest and digest != image_id and "/" in ref:
            found.statement = _from_registry(backend, ref, digest)
            found.statement_from = "registry" if found.statement else ""
        return found
    if registry_host(ref) == "docker.io" and "/" not in ref.split("@")[0]:
        raise UsageError(f"no image {ref} on the engine at {backend.name}")
    try:
        pushed = split_reference(ref)[2] or backend.registry_digest(ref)
        remote = backend.registry_labels(f"{split_reference(ref)[0]}@{pushed}")
    except RegistryNotFound:
        remote = None
    if remote is None:
        raise UsageError(f"no image {ref}: neither the engine at {backend.name} nor its "
                         "registry has it")  # fmt: skip
    found = Found("registry", remote, {pushed})
    found.statement = _from_registry(backend, ref, pushed)
    found.statement_from = "registry" if found.statement else ""
    return found


def _redacted(inputs: ImageInputs, names: frozenset[str]) -> ImageInputs:
    """``inputs`` with the build args a provenance redacted redacted the same way."""
    if not names:
        return inputs
    args = {k: provenance.REDACTED if k in names else v for k, v in inputs.build_args.items()}
    return dataclasses.replace(inputs, build_args=args)


@click.command()
@click.argument("image_ref", metavar="IMAGE-REF")
@JSON
@BACKEND
@pass_context
def verify(ctx: Context, image_ref: str, as_json: bool, backend_kind: str | None) -> int:
    """Check that IMAGE-REF (local or in a registry) is exactly what this checkout builds.

    Compares the image's fingerprint label and its provenance with the fingerprint of
    the checkout, and names every input that differs: context files added, removed or
    changed, the Dockerfile, build args, labels, target, platform, parents, upstream pins.

    \b
    Exit codes: 0 exactly this checkout's image, 1 it differs, 2 bad or unknown
    reference (or not an image of this stack), 3 engine unreachable.
    """
    stack = load_stack(ctx.stack_file)
    if not (is_reference(image_ref) or image_ref.startswith("sha256:")):
        raise UsageError(f"not an image reference: {image_ref!r}")
    backend = open_engine(backend_kind or stack.backend)
    found = locate(backend, StateDir(stack.root), image_ref)
    recorded = None
    problems: list[Reason] = []
    if found.statement is not None:
        try:
            recorded = provenance.inputs_of(found.statement)
        except ValueError as error:
            problems.append(Reason("provenance-unreadable", f"provenance unreadable: {error}"))
    name = found.labels.get(IMAGE_LABEL) or (recorded.image if recorded else "")
    if not name:
        raise UsageError(f"{image_ref} was not built by stackbuild (no {IMAGE_LABEL} label)")
    if name not in stack.images:
        raise UsageError(f"{image_ref} is image {name!r}, which {stack.display_path} does "
                         f"not have; images: {', '.join(stack.images)}")  # fmt: skip
    current = analyze(stack, [name]).inputs[name]
    label = found.labels.get(FINGERPRINT_LABEL)
    if recorded and label and recorded.fingerprint != label:
        problems.append(Reason("provenance-mismatch", f"the provenance says fingerprint "
                               f"{short(recorded.fingerprint)}, the image's label "
                               f"{short(label)}"))  # fmt: skip
    if recorded and recorded.subject not in found.subjects:
        problems.append(Reason("provenance-subject", "the provenance names another image "
                               f"({short(recorded.subject)})"))  # fmt: skip
    differences: list[Reason] = []
    if recorded:
        context_rel = stack.images[name].context_rel
        differences = explain_changes(context_rel, recorded.inputs,
                                      _redacted(current, recorded.redacted), max_files=None)
    fingerprints = [f for f in (label, recorded and recorded.fingerprint) if f]
    exact = bool(fingerprints) and all(f == current.fingerprint for f in fingerprints) \
        and not problems  # fmt: skip
    if not exact and not differences:
        if recorded and recorded.redacted:
            differences.append(Reason("build-arg-redacted", "redacted build arg(s) may differ: "
                                      + ", ".join(sorted(recorded.redacted))))  # fmt: skip
        elif not recorded:
            differences.append(Reason("no-provenance", "no provenance found for this image: "
                                      "cannot say which inputs differ"))  # fmt: skip
    reasons = problems + ([] if exact else differences)
    if as_json:
        click.echo(json.dumps({
            "ref": image_ref,
            "image": name,
            "where": found.where,
            "provenance": found.statement_from or None,
            "exact": exact,
            "fingerprint": {"label": label, "provenance": recorded and recorded.fingerprint,
                            "checkout": current.fingerprint},
            "differences": [{"code": r.code, "detail": r.detail} for r in reasons],
        }, indent=2))
    else:
        click.echo(f"{image_ref}: image {name} ({found.where}; provenance: "
                   f"{found.statement_from or 'none'})")
        click.echo(f"  fingerprint label  {label or '-'}")
        if recorded:
            click.echo(f"  provenance         {recorded.fingerprint}")
        click.echo(f"  this checkout      {current.fingerprint}")
        if exact:
            click.echo("exact: this checkout builds exactly this image")
        else:
            click.echo("differs:")
            for reason in reasons:
                click.echo(f"  {reason.detail}")
    return EXIT_OK if exact else EXIT_BUILD_FAILED
