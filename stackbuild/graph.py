"""The dependency DAG of a stack: who is built on whom, and what to select.

Pure. An image's in-stack parents are the references of its Dockerfile that
name another image of the stack (``x`` or ``<registry>/x``, any tag), plus
``depends_on``; every other reference is an *upstream* image. A reference to
the image's own name (``python`` built ``FROM python:3.12``) is upstream:
nothing can be built on itself.

The DAG is plain dicts and lists, not networkx: importing networkx costs
~100-160 ms, more than a warm 1,000-image ``plan --offline`` spends on
everything else (see BENCHMARKS.md). Ordering is Kahn's algorithm with a heap
keyed on manifest position (what networkx's ``lexicographical_topological_sort``
does); when it stalls, the leftover nodes hold a cycle, which networkx's
``find_cycle`` names for the error message. ``levels()`` (waves, views) is
networkx's ``topological_generations`` over ``StackGraph.dag``, a networkx
``DiGraph`` built on first use. Selection walks the graph once.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from stackbuild.dockerfile import DockerfileInfo, split_reference
from stackbuild.errors import ManifestError, UsageError
from stackbuild.manifest import Stack

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class ImageNode:
    """One image of the graph with its edges explained."""

    name: str
    parents: tuple[str, ...]  # in-stack parents, in first-mention order
    # every reference exactly as the Dockerfile writes it (after ARG substitution)
    # that names an in-stack parent -> that parent; used to pin it before a build
    parent_refs: Mapping[str, str] = field(default_factory=dict)
    upstream: tuple[str, ...] = ()  # upstream references as written (minus scratch)


def in_stack_name(ref: str, stack: Stack) -> str | None:
    """The stack image a reference names (``x``, ``x:tag``, ``<registry>/x@sha``), or None."""
    repository, _tag, _digest = split_reference(ref)
    if repository in stack.images:
        return repository
    if stack.registry and repository.startswith(stack.registry + "/"):
        name = repository[len(stack.registry) + 1 :]
        if name in stack.images:
            return name
    return None


def infer_node(stack: Stack, name: str, info: DockerfileInfo) -> ImageNode:
    """Split one image's Dockerfile references into in-stack parents and upstreams."""
    parents: dict[str, None] = {}
    parent_refs: dict[str, str] = {}
    upstream: dict[str, None] = {}
    for reference in info.references:
        parent = in_stack_name(reference.ref, stack)
        if parent is None or parent == name:
            upstream[reference.ref] = None
        else:
            parents[parent] = None
            parent_refs[reference.ref] = parent
    for explicit in stack.images[name].depends_on:
        if explicit != name:
            parents[explicit] = None
    return ImageNode(name, tuple(parents), parent_refs, tuple(upstream))


class StackGraph:
    """The DAG of a stack: topological order, parents, children, selection."""

    def __init__(self, stack: Stack, nodes: Mapping[str, ImageNode]) -> None:
        self.stack = stack
        self.nodes = dict(nodes)
        names = list(stack.images)
        self._children: dict[str, list[str]] = {name: [] for name in names}
        remaining: dict[str, int] = {}
        for name in names:
            node = self.nodes[name]
            remaining[name] = len(node.parents)  # parents are unique
            for parent in node.parents:
                self._children[parent].append(name)
        # Kahn's algorithm; stable: among images ready at the same time, manifest order wins
        position = {name: index for index, name in enumerate(names)}
        ready = [position[name] for name in names if not remaining[name]]
        order: list[str] = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(name)
            for child in self._children[name]:
                remaining[child] -= 1
                if not remaining[child]:
                    heapq.heappush(ready, position[child])
        if len(order) < len(names):
            self._raise_cycle([name for name in names if remaining[name]])
        self.order: list[str] = order

    @cached_property
    def dag(self) -> nx.DiGraph:
        """The graph as a networkx ``DiGraph`` (parent -> child), built on first use."""
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from(self.stack.images)
        for name, node in self.nodes.items():
            dag.add_edges_from((parent, name) for parent in node.parents)
        return dag

    def _raise_cycle(self, stuck: list[str]) -> None:
        # only a broken manifest gets here, so networkx's import cost is paid only then
        import networkx as nx

        cycle = nx.find_cycle(self.dag.subgraph(stuck))
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        first_parent, first_child = cycle[0][0], cycle[0][1]
        spec = self.stack.images[first_child]
        if first_parent in spec.depends_on:
            why, location = "depends_on", spec.key_locations.get("depends_on", spec.location)
        else:
            why = "its Dockerfile builds on it (FROM / COPY --from / RUN --mount)"
            location = spec.location
        raise ManifestError(
            f"dependency cycle: {' -> '.join(names)}; image '{first_child}' needs "
            f"'{first_parent}' because {why}. Remove one edge of the cycle.",
            self.stack.display_path,
            location.line,
            location.col,
        )

    def parents(self, name: str) -> tuple[str, ...]:
        return self.nodes[name].parents

    def children(self, name: str) -> list[str]:
        return list(self._children[name])

    def upstream(self, name: str) -> tuple[str, ...]:
        return self.nodes[name].upstream

    def select(self, targets: Iterable[str] = (), with_descendants: bool = False) -> list[str]:
        """Targets plus their ancestors (what they need), optionally plus descendants.

        No targets selects everything. Returns names in topological order.
        """
        targets = list(targets)
        if not targets:
            return list(self.order)
        unknown = [t for t in targets if t not in self.nodes]
        if unknown:
            raise UsageError(
                f"unknown image {', '.join(repr(u) for u in unknown)}; "
                f"images in {self.stack.display_path}: {', '.join(self.order)}"
            )
        chosen = set(targets)
        # one pass each way over the topological order instead of per-node
        # ancestors()/descendants() calls, which cost O(V*E) on large stacks
        if with_descendants:
            for name in self.order:
                if name not in chosen and any(p in chosen for p in self.nodes[name].parents):
                    chosen.add(name)
        for name in reversed(self.order):
            if name in chosen:
                chosen.update(self.nodes[name].parents)
        return [name for name in self.order if name in chosen]

    def levels(self) -> list[list[str]]:
        """Topological generations: level 0 has no in-stack parents (for waves and views)."""
        import networkx as nx

        return [sorted(level) for level in nx.topological_generations(self.dag)]

    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs in topological order of the child."""
        return [(parent, name) for name in self.order for parent in self.nodes[name].parents]


def build_graph(stack: Stack, dockerfiles: Mapping[str, DockerfileInfo]) -> StackGraph:
    """The DAG of ``stack`` given each image's parsed Dockerfile (``load_stack`` has
    already checked that every ``depends_on`` names an image of the stack)."""
    nodes = {name: infer_node(stack, name, dockerfiles[name]) for name in stack.images}
    return StackGraph(stack, nodes)

