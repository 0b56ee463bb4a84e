"""What the hierarchy saves: each built image's layers split into inherited and own,
and the stack's bytes stored once against the sum of its images' full sizes.

Pure. An engine stores a layer once per chain (the layer and every layer below it:
Docker's chain id), so two images share exactly the layers of their longest common
prefix of ``RootFS.Layers``. A child built ``FROM`` its parent starts with all of the
parent's layers; one that does not was built on another build of that parent.
``layers_from_history`` pairs the engine's two views (the diff ids of inspect, the
history's sizes and instructions) for ``backends``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Layer:
    """One filesystem layer of an image, bottom first: its diff id, its bytes, and the
    instruction that made it (``COPY rootfs/ / # buildkit``)."""

    diff_id: str
    size: int
    created_by: str = ""


@dataclass(frozen=True)
class ImageLayers:
    """An image as the engine stores it: its id, full size and layers (bottom first)."""

    id: str
    size: int
    layers: tuple[Layer, ...]


# history instructions that make a layer even when it holds no bytes (``RUN ln -s``);
# ENV, CMD, LABEL, ARG and the classic builder's ``#(nop)`` lines make none
_MAKES_LAYER = ("RUN ", "COPY ", "ADD ", "/bin/sh -c ", "|")
_NOP = "/bin/sh -c #(nop) "


def _makes_layer(created_by: str) -> int:
    """2: surely a layer; 1: maybe (WORKDIR); 0: surely none, when it holds no bytes."""
    if created_by.startswith(_NOP):
        rest = created_by[len(_NOP) :].lstrip()
        if rest.startswith(("COPY ", "ADD ")):
            return 2
        return 1 if rest.startswith("WORKDIR ") else 0
    if created_by.startswith(_MAKES_LAYER):
        return 2
    return 1 if created_by.startswith("WORKDIR ") else 0


def layers_from_history(
    diff_ids: Sequence[str], history: Sequence[Mapping[str, Any]]
) -> tuple[Layer, ...]:
    """Pair ``RootFS.Layers`` (bottom first) with ``docker history`` (the API's order:
    newest first; ``Size``, ``CreatedBy``). The engine reports no "empty layer" flag,
    so an entry with bytes is a layer, and of those without, the instructions that make
    one (RUN, COPY, ADD, then WORKDIR) until the count is the layers'. A mismatch only
    misnames a layer of 0 bytes, never moves bytes between layers."""
    entries = list(reversed(history))
    sizes = [int(entry.get("Size") or 0) for entry in entries]
    made = [str(entry.get("CreatedBy") or "") for entry in entries]
    chosen = {index for index, size in enumerate(sizes) if size > 0}
    for rank in (2, 1):
        for index, created_by in enumerate(made):
            if len(chosen) >= len(diff_ids):
                break
            if index not in chosen and _makes_layer(created_by) == rank:
                chosen.add(index)
    picked = sorted(chosen)
    if len(picked) > len(diff_ids):  # more entries with bytes than layers: the first ones
        picked = picked[: len(diff_ids)]
    layers = []
    for position, diff_id in enumerate(diff_ids):
        if position < len(picked):
            index = picked[position]
            layers.append(Layer(diff_id, sizes[index], made[index]))
        else:
            layers.append(Layer(diff_id, 0, ""))
    return tuple(layers)


def _common(a: Sequence[Layer], b: Sequence[Layer]) -> int:
    count = 0
    for left, right in zip(a, b, strict=False):
        if left.diff_id != right.diff_id:
            break
        count += 1
    return count


@dataclass(frozen=True)
class Inheritance:
    parent: str
    layers: int  # layers shared with the parent's current build
    bytes: int
    whole: bool  # every layer of the parent is one of the image's, at the bottom


@dataclass(frozen=True)
class ImageAccount:
    name: str
    id: str
    level: int
    size: int  # full size: every layer
    own_bytes: int  # the layers no parent has
    inherited_bytes: int
    layers: tuple[Layer, ...]
    own_from: int  # layers[own_from:] are the image's own
    parents: tuple[Inheritance, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LevelAccount:
    level: int
    images: tuple[str, ...]
    full_bytes: int  # the sum of their full sizes
    stored_bytes: int  # the bytes the engine stores first for this level


@dataclass(frozen=True)
class StackAccount:
    images: tuple[ImageAccount, ...]
    levels: tuple[LevelAccount, ...]
    full_bytes: int
    stored_bytes: int
    missing: tuple[str, ...] = ()  # selected images not built at their fingerprint

    @property
    def saved_bytes(self) -> int:
        return self.full_bytes - self.stored_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [
                {
                    "name": image.name,
                    "id": image.id,
                    "level": image.level,
                    "size": image.size,
                    "own_bytes": image.own_bytes,
                    "inherited_bytes": image.inherited_bytes,
                    "parents": [
                        {"parent": p.parent, "layers": p.layers, "bytes": p.bytes,
                         "whole": p.whole}
                        for p in image.parents
                    ],
                    "layers": [
                        {"diff_id": layer.diff_id, "size": layer.size,
                         "created_by": layer.created_by, "own": index >= image.own_from}
                        for index, layer in enumerate(image.layers)
                    ],
                    "warnings": list(image.warnings),
                }
                for image in self.images
            ],
            "levels": [
                {"level": level.level, "images": list(level.images),
                 "full_bytes": level.full_bytes, "stored_bytes": level.stored_bytes}
                for level in self.levels
            ],
            "full_bytes": self.full_bytes,
            "stored_bytes": self.stored_bytes,
            "saved_bytes": self.saved_bytes,
            "missing": list(self.missing),
        }


def account(
    levels: Sequence[Sequence[str]],
    parents: Mapping[str, Sequence[str]],
    from_parents: Mapping[str, Sequence[str]],
    built: Mapping[str, ImageLayers],
) -> StackAccount:
    """The layer accounting of the ``built`` images.

    ``levels``: the stack's images by level (``StackGraph.levels()``, selected ones);
    ``parents``: each image's in-stack parents; ``from_parents``: those a ``FROM``
    names (the ones whose layers it should start with; ``COPY --from`` shares none).
    Images of ``levels`` missing from ``built`` are listed as ``missing``.
    """
    images: list[ImageAccount] = []
    level_accounts: list[LevelAccount] = []
    stored: set[tuple[str, ...]] = set()  # chains (bottom..layer) already counted
    missing: list[str] = []
    for depth, names in enumerate(levels):
        present = [name for name in names if name in built]
        missing.extend(name for name in names if name not in built)
        level_stored = 0
        for name in present:
            image = built[name]
            chain: tuple[str, ...] = ()
            for layer in image.layers:
                chain += (layer.diff_id,)
                if chain not in stored:
                    stored.add(chain)
                    level_stored += layer.size
            images.append(_image_account(name, depth, image, parents, from_parents, built))
        if present:
            level_accounts.append(LevelAccount(
                depth, tuple(present), sum(built[n].size for n in present), level_stored
            ))  # fmt: skip
    full = sum(level.full_bytes for level in level_accounts)
    return StackAccount(
        tuple(images),
        tuple(level_accounts),
        full,
        sum(level.stored_bytes for level in level_accounts),
        tuple(missing),
    )


def _image_account(
    name: str,
    depth: int,
    image: ImageLayers,
    parents: Mapping[str, Sequence[str]],
    from_parents: Mapping[str, Sequence[str]],
    built: Mapping[str, ImageLayers],
) -> ImageAccount:
    inherited: list[Inheritance] = []
    for parent in parents.get(name, ()):
        if parent not in built:
            continue
        theirs = built[parent].layers
        shared = _common(image.layers, theirs)
        inherited.append(Inheritance(
            parent, shared, sum(layer.size for layer in image.layers[:shared]),
            shared == len(theirs),
        ))  # fmt: skip
    own_from = max((i.layers for i in inherited), default=0)
    inherited_bytes = sum(layer.size for layer in image.layers[:own_from])
    warnings = []
    named = [i for i in inherited if i.parent in from_parents.get(name, ())]
    if named and not any(i.whole for i in named):
        for i in named:
            how = "shares no layer with" if i.layers == 0 else "is not built on all of"
            warnings.append(
                f"{name} {how} the current build of {i.parent}, which its FROM names: "
                f"it was built on another {i.parent}; rebuild it (stackbuild build {name})"
            )
    return ImageAccount(
        name,
        image.id,
        depth,
        image.size,
        image.size - inherited_bytes,
        inherited_bytes,
        image.layers,
        own_from,
        tuple(inherited),
        tuple(warnings),
    )
