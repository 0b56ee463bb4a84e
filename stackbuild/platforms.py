"""Multi-platform images as one node per (image, platform): ``base[linux/arm64]``.

Pure. A stack whose images name ``platforms:`` (two or more) is expanded after its graph
is resolved: each such image becomes one ``ImageSpec`` per platform (``platform`` set,
that platform's ``platform_build_args`` over its build args, ``image`` naming the
stack.yaml image), and every edge follows the platform, so the arm64 child builds on
the arm64 parent. Everything after (fingerprints, plan, scheduler, build records) then
works on nodes as it worked on images: each platform has its own fingerprint, its own
row and its own place in the schedule, and the amd64 and arm64 sides of a subtree
build in parallel. A stack without ``platforms:`` is not touched at all, so it
fingerprints and prints exactly as before.

An in-stack parent must offer every platform its child asks for (an image without
``platforms`` offers its ``platform``, or the host's); otherwise a located manifest
error names the missing one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from stackbuild.dockerfile import platform_args
from stackbuild.errors import ManifestError
from stackbuild.graph import ImageNode, StackGraph
from stackbuild.manifest import ImageSpec, Stack


def node_name(image: str, platform: str) -> str:
    """The node of ``image`` for ``platform``: ``base[linux/arm64]``."""
    return f"{image}[{platform}]"


def split_node(name: str) -> tuple[str, str | None]:
    """``base[linux/arm64]`` -> (``base``, ``linux/arm64``); a plain image -> (name, None)."""
    if name.endswith("]") and "[" in name:
        image, _, platform = name[:-1].rpartition("[")
        return image, platform
    return name, None


def host_platform() -> str:
    """This machine's platform as BuildKit names it (``linux/amd64``)."""
    args = platform_args(None)
    variant = args.get("TARGETVARIANT")
    return f"{args['TARGETOS']}/{args['TARGETARCH']}" + (f"/{variant}" if variant else "")


def is_multi_platform(stack: Stack) -> bool:
    return any(spec.platforms for spec in stack.images.values())


def platforms_of(spec: ImageSpec) -> tuple[str, ...]:
    """The platforms an image is built for (its ``platform``, else the host's, when one)."""
    return spec.platforms or (spec.platform or host_platform(),)


def nodes_of(stack: Stack, image: str) -> list[str]:
    """The nodes image ``image`` builds as: one per platform, or itself."""
    spec = stack.images[image]
    return [node_name(image, p) for p in spec.platforms] if spec.platforms else [image]


def check_parent_platforms(stack: Stack, graph: StackGraph) -> None:
    """ManifestError (located at the child) when an in-stack parent lacks a platform its
    child is built for."""
    for name, spec in stack.images.items():
        asks = platforms_of(spec)
        for parent in graph.parents(name):
            offers = platforms_of(stack.images[parent])
            missing = [p for p in asks if p not in offers]
            if missing:
                where = spec.key_locations.get(
                    "platforms", spec.key_locations.get("platform", spec.location)
                )
                raise ManifestError(
                    f"image '{name}' is built for {', '.join(missing)}, which its parent "
                    f"'{parent}' does not offer (it is built for {', '.join(offers)}); add "
                    f"{', '.join(missing)} to the platforms of '{parent}', or leave "
                    f"{', '.join(missing)} out of the platforms of '{name}'",
                    stack.display_path,
                    where.line,
                    where.col,
                )


def check_backend(stack: Stack, backend: str) -> None:
    """ManifestError, located at the first multi-platform image, when the backend is the
    classic builder, which builds one platform per image."""
    if backend != "docker":
        return
    for name, spec in stack.images.items():
        if len(spec.platforms) > 1:
            where = spec.key_locations.get("platforms", spec.location)
            raise ManifestError(
                f"image '{name}' is built for {len(spec.platforms)} platforms "
                f"({', '.join(spec.platforms)}), and the classic backend (docker) builds one "
                "platform: build with --backend buildkit, or set `backend: buildkit` in "
                "stack.yaml",
                stack.display_path,
                where.line,
                where.col,
            )


def _node_spec(spec: ImageSpec, platform: str) -> ImageSpec:
    return replace(
        spec,
        name=node_name(spec.name, platform),
        platform=platform,
        platforms=(),
        build_args={**spec.build_args, **spec.platform_build_args.get(platform, {})},
        platform_build_args={},
        image=spec.name,
    )


def expand(
    stack: Stack,
    graph: StackGraph,
    selected: Iterable[str],
    per_image: Iterable[MutableMapping[str, Any]] = (),
) -> tuple[Stack, StackGraph, list[str]]:
    """The per-platform stack, graph and selection (in topological order) of a
    multi-platform ``stack``; each mapping of ``per_image`` (image -> its Dockerfile
    bytes, notes, ...) gets an entry per node too. Checks the parents' platforms first.
    """
    check_parent_platforms(stack, graph)
    specs: dict[str, ImageSpec] = {}
    nodes: dict[str, ImageNode] = {}
    host = host_platform()

    def parent_node(parent: str, platform: str) -> str:
        return node_name(parent, platform) if stack.images[parent].platforms else parent

    for name, spec in stack.images.items():
        node = graph.nodes[name]
        # a single-platform child of a multi-platform parent builds on the parent's
        # node for the child's own platform
        targets = spec.platforms or (spec.platform or host,)
        for platform in targets:
            key = node_name(name, platform) if spec.platforms else name
            specs[key] = _node_spec(spec, platform) if spec.platforms else spec
            nodes[key] = ImageNode(
                key,
                tuple(parent_node(p, platform) for p in node.parents),
                {ref: parent_node(p, platform) for ref, p in node.parent_refs.items()},
                node.upstream,
            )
    expanded = replace(stack, images=specs)
    order = [n for name in selected for n in nodes_of(stack, name)]
    for mapping in per_image:
        for name in list(mapping):
            if name in stack.images and stack.images[name].platforms:
                value = mapping.pop(name)
                for n in nodes_of(stack, name):
                    mapping[n] = value
    return expanded, StackGraph(expanded, nodes), order


def image_of(stack: Stack, name: str) -> str:
    """The stack.yaml image a node builds (the node itself for a single-platform image)."""
    spec = stack.images.get(name)
    return spec.image if spec is not None and spec.image else name


def multi_platforms(spec: ImageSpec) -> tuple[str, ...]:
    """The platforms of a multi-platform image (as stack.yaml has it) or of one of its
    nodes (its one platform); () for a single-platform image."""
    if spec.image and spec.platform:
        return (spec.platform,)
    return spec.platforms


def node_platform(spec: ImageSpec) -> str | None:
    """The platform of a per-platform node; None for a single-platform image."""
    return spec.platform if spec.image else None


def platform_tag(tag: str, platform: str) -> str:
    """A tag of one platform's image: ``latest`` -> ``latest-linux-arm64`` (a tag is at
    most 128 characters: the tag is cut, the platform kept)."""
    suffix = "-" + platform.replace("/", "-")
    return tag[: 128 - len(suffix)] + suffix


def upstream_pin(pinned: Mapping[str, str], ref: str, spec: ImageSpec) -> str:
    """The digest ``ref`` is locked to for ``spec``: a per-platform node takes its
    platform's manifest (``ref[linux/arm64]`` in stack.lock) before the index's."""
    if spec.image and spec.platform:
        own = pinned.get(node_name(ref, spec.platform))
        if own:
            return own
    return pinned.get(ref, "")


def nodes_of_target(expanded: Stack, target: str) -> list[str]:
    """The nodes a target names in an expanded stack: ``base[linux/arm64]`` itself, or
    every node of ``base``."""
    if target in expanded.images:
        return [target]
    return [n for n, spec in expanded.images.items() if spec.image == target] or [target]


def with_nodes(stack: Stack, names: Iterable[str]) -> set[str]:
    """``names`` (``--force``) plus every node of each multi-platform image among them."""
    wanted = set(names)
    return wanted | {n for n, spec in stack.images.items() if spec.image in wanted}


def group_by_image(stack: Stack, names: Iterable[str]) -> Mapping[str, list[str]]:
    """Nodes by the image they build, in the order given."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(image_of(stack, name), []).append(name)
    return groups
