"""``stackbuild init``'s inference: a stack.yaml for a tree of Dockerfiles that has none.

Pure: given the Dockerfiles found (path relative to the tree's root, and text), it
names an image per Dockerfile, finds the registry prefix (and, where one image's ARG
defaults disagree with the others', the build args) under which the FROM /
``COPY --from`` / ``RUN --mount`` lines name images of the stack, and renders the
manifest with a comment per image saying why each parent was inferred. The parents
it reports are the ones ``graph`` will infer from the written file: it uses the same
parser (``parse_dockerfile``) and the same rule (a reference names image ``x`` as
``x`` or ``<registry>/x``, any tag or digest).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from posixpath import basename, dirname

from stackbuild.dockerfile import DockerfileInfo, parse_dockerfile
from stackbuild.errors import DockerfileError
from stackbuild.refs import split_reference

PLAIN_NAMES = ("Dockerfile", "Containerfile")
# stack.schema.json's image-name and registry patterns
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_REGISTRY = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_PLAIN_SCALAR = re.compile(r"[A-Za-z0-9_./-]+")


def dockerfile_suffix(filename: str) -> str | None:
    """``""`` for ``Dockerfile`` / ``Containerfile``, ``x`` for ``Dockerfile.x`` and
    ``x.Dockerfile``; None for a file that is no Dockerfile."""
    if filename in PLAIN_NAMES:
        return ""
    if filename.startswith("Dockerfile.") and len(filename) > len("Dockerfile."):
        return filename[len("Dockerfile.") :]
    if filename.endswith(".Dockerfile") and len(filename) > len(".Dockerfile"):
        return filename[: -len(".Dockerfile")]
    return None


@dataclass(frozen=True)
class Found:
    """One Dockerfile of the tree: its posix path relative to the root, and its text."""

    path: str
    text: str


@dataclass(frozen=True)
class Parent:
    name: str
    why: str  # "FROM quay.io/jupyter/base-notebook (images/minimal-notebook/Dockerfile:6)"


@dataclass
class Adopted:
    """One image of the inferred stack."""

    name: str
    path: str  # the Dockerfile, relative to the root
    context: str  # relative to the root; "." for the root itself
    dockerfile: str | None  # relative to the context; None for the default "Dockerfile"
    parents: list[Parent] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # renaming, warnings, unresolved prefixes


@dataclass(frozen=True)
class Adoption:
    registry: str | None
    registry_why: str
    images: tuple[Adopted, ...]

    def edges(self) -> set[tuple[str, str]]:
        """(parent, child) pairs: what ``graph`` infers from the rendered manifest."""
        return {(parent.name, image.name) for image in self.images for parent in image.parents}


def valid_name(wanted: str) -> str:
    """``wanted`` made a valid repository name: lowercase, other characters as ``-``."""
    lowered = wanted.lower()
    if _NAME.fullmatch(lowered):
        return lowered
    words = re.findall(r"[a-z0-9]+", lowered)
    return "-".join(words) or "image"


def _names(found: Sequence[Found], root_name: str) -> list[tuple[str, str | None]]:
    """Each Dockerfile's image name, and a note when the name had to be changed."""
    plain_dirs = {dirname(f.path) for f in found if dockerfile_suffix(basename(f.path)) == ""}

    def dir_name(directory: str) -> str:
        # nested under another image's directory (pytorch-notebook/cuda12): say both
        segments = directory.split("/") if directory else []
        for cut in range(len(segments) - 1, 0, -1):
            if "/".join(segments[:cut]) in plain_dirs:
                return "-".join(segments[cut - 1 :])
        return segments[-1] if segments else root_name

    wanted: list[str] = []
    for item in found:
        directory, suffix = dirname(item.path), dockerfile_suffix(basename(item.path)) or ""
        if not suffix:
            wanted.append(dir_name(directory))
        elif directory in plain_dirs or not directory:
            wanted.append(f"{dir_name(directory)}-{suffix}" if directory else suffix)
        else:
            wanted.append(suffix)
    names: list[tuple[str, str | None]] = []
    counts = Counter(valid_name(name) for name in wanted)
    taken: set[str] = set()
    for item, name in zip(found, wanted, strict=True):
        valid = valid_name(name)
        note = None if valid == name else f"named {valid}: {name!r} is not a valid repository name"
        if counts[valid] > 1:  # two images would share a name: spell out the whole path
            directory = dirname(item.path)
            suffix = dockerfile_suffix(basename(item.path)) or ""
            valid = valid_name("-".join(filter(None, [*directory.split("/"), suffix])) or name)
            note = f"named {valid} after its path: {name!r} is the name of several Dockerfiles"
        unique, number = valid, 2
        while unique in taken:
            unique, number = f"{valid}-{number}", number + 1
        taken.add(unique)
        names.append((unique, note))
    return names


def _parse(text: str, build_args: Mapping[str, str]) -> DockerfileInfo | None:
    try:
        return parse_dockerfile(text, build_args)
    except DockerfileError:
        return None


def _named(ref: str, names: Sequence[str], self_name: str) -> tuple[str, str] | None:
    """(image, prefix) when ``ref`` is ``prefix/image`` or ``image`` for an image of the
    stack (the longest name that fits), else None."""
    repository = split_reference(ref)[0]
    best: tuple[str, str] | None = None
    for name in names:
        if name == self_name:
            continue
        if repository == name:
            prefix = ""
        elif repository.endswith("/" + name):
            prefix = repository[: -len(name) - 1]
        else:
            continue
        if best is None or len(name) > len(best[0]):
            best = (name, prefix)
    return best


def _resolves(prefix: str, registry: str | None) -> bool:
    return prefix == "" or prefix == registry


def _segments(value: str) -> list[str]:
    parts = value.split("/")
    return ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]


def _fix_args(
    text: str, info: DockerfileInfo, names: Sequence[str], self_name: str, registry: str
) -> tuple[dict[str, str], DockerfileInfo] | None:
    """One build arg that makes every reference naming a stack image under another
    prefix name it under ``registry`` (``OWNER=jupyter`` where the default is another
    owner), or None when no single override does."""

    def wrong(parsed: DockerfileInfo) -> int:
        count = 0
        for reference in parsed.references:
            named = _named(reference.ref, names, self_name)
            if named and not _resolves(named[1], registry):
                count += 1
        return count

    def right(parsed: DockerfileInfo) -> int:
        return sum(
            1
            for reference in parsed.references
            if (named := _named(reference.ref, names, self_name)) and _resolves(named[1], registry)
        )

    before = right(info)
    for arg, value in info.global_args:
        if not value or not any(value in r.ref for r in info.references):
            continue
        candidates = dict.fromkeys(_segments(registry) + [f"{registry}/{n}" for n in names])
        for candidate in candidates:
            parsed = _parse(text, {arg: candidate})
            if parsed is not None and wrong(parsed) == 0 and right(parsed) > before:
                return {arg: candidate}, parsed
    return None


def adopt(found: Sequence[Found], root_name: str) -> Adoption:
    """The stack for the Dockerfiles ``found`` (in the order given: the manifest's)."""
    named = _names(found, root_name or "app")
    names = [name for name, _note in named]
    infos: list[DockerfileInfo | None] = []
    errors: dict[int, str] = {}
    for index, item in enumerate(found):
        try:
            infos.append(parse_dockerfile(item.text))
        except DockerfileError as error:
            infos.append(None)
            errors[index] = str(error.located(item.path))
    # the registry: the prefix most references to stack images use
    prefixes: Counter[str] = Counter()
    for index, info in enumerate(infos):
        for reference in info.references if info else ():
            hit = _named(reference.ref, names, names[index])
            if hit:
                prefixes[hit[1]] += 1
    registry: str | None = None
    registry_why = "no registry: no FROM line names an image of this stack with a prefix"
    usable = [(p, n) for p, n in prefixes.most_common() if p and _REGISTRY.fullmatch(p)]
    if usable and usable[0][1] >= prefixes.get("", 0):
        registry = usable[0][0]
        registry_why = (
            f"registry {registry}: {usable[0][1]} reference(s) name images of this stack "
            f"as {registry}/<image>"
        )
    images: list[Adopted] = []
    for index, (item, (name, note)) in enumerate(zip(found, named, strict=True)):
        directory, filename = dirname(item.path), basename(item.path)
        image = Adopted(
            name,
            item.path,
            directory or ".",
            None if filename == "Dockerfile" else filename,
        )
        if note:
            image.notes.append(note)
        info = infos[index]
        if info is None:
            image.notes.append(f"not parsed: {errors[index]}")
            images.append(image)
            continue
        if registry:
            fixed = _fix_args(item.text, info, names, name, registry)
            if fixed:
                image.build_args, info = fixed
        image.notes.extend(f"{item.path}: {warning}" for warning in info.warnings)
        seen: set[str] = set()
        for reference in info.references:
            hit = _named(reference.ref, names, name)
            where = f"{reference.instruction} {reference.ref} ({item.path}:{reference.line})"
            if hit and _resolves(hit[1], registry):
                parent = hit[0]
                if parent in seen:
                    continue
                seen.add(parent)
                why = where
                if image.build_args:
                    why += ", with build arg " + ", ".join(
                        f"{k}={v}" for k, v in image.build_args.items()
                    )
                if split_reference(reference.ref)[2]:
                    why += "; pinned by digest, yet built on this stack's image"
                image.parents.append(Parent(parent, why))
            else:
                image.upstream.append(reference.ref)
                if hit:
                    image.notes.append(
                        f"{where} looks like image {hit[0]} under {hit[1]}/, not the "
                        f"stack's registry: kept as an upstream image"
                    )
        images.append(image)
    return Adoption(registry, registry_why, _parents_first(images))


def _parents_first(images: list[Adopted]) -> tuple[Adopted, ...]:
    """The images in scan order, each moved after its parents (where no cycle forbids),
    so the manifest reads top-down like the hierarchy."""
    placed: dict[str, Adopted] = {}
    waiting = list(images)
    while waiting:
        ready = next(
            (i for i in waiting if all(p.name in placed for p in i.parents)), waiting[0]
        )
        placed[ready.name] = ready
        waiting.remove(ready)
    return tuple(placed.values())


def _scalar(value: str) -> str:
    return value if _PLAIN_SCALAR.fullmatch(value) and value[0] not in "-." else json.dumps(value)


def _comment(text: str) -> str:
    return " ".join(text.split())


def render_stack(adoption: Adoption, scanned: str) -> str:
    """The manifest's text, with a comment per image saying why each parent was inferred."""
    lines = [
        f"# Written by `stackbuild init` from {len(adoption.images)} Dockerfile(s) "
        f"under {scanned}.",
        "# Parents are not listed: stackbuild infers them from the Dockerfiles, as said below.",
        f"# {_comment(adoption.registry_why)}",
        "version: 1",
    ]
    if adoption.registry:
        lines.append(f"registry: {adoption.registry}")
    lines.append("images:")
    for image in adoption.images:
        for parent in image.parents:
            lines.append(f"  # parent {parent.name}: {_comment(parent.why)}")
        if not image.parents:
            lines.append("  # no parent in this stack")
        for ref in image.upstream:
            lines.append(f"  # upstream: {_comment(ref)}")
        for note in image.notes:
            lines.append(f"  # note: {_comment(note)}")
        lines.append(f"  {image.name}:")
        lines.append(f"    context: {_scalar(image.context)}")
        if image.dockerfile:
            lines.append(f"    dockerfile: {_scalar(image.dockerfile)}")
        if image.build_args:
            lines.append("    build_args:")
            lines.extend(
                f"      {_scalar(k)}: {json.dumps(v)}" for k, v in image.build_args.items()
            )
    return "\n".join(lines) + "\n"
