"""The dependency DAG of a stack: who is built on whom, and what to select.

Pure. An image's in-stack parents are the references of its Dockerfile that
name another image of the stack (``x`` or ``<registry>/x``, any tag), plus
``depends_on``; every other reference is an *upstream* image. A reference to
the image's own name (``python`` built ``FROM python:3.12``) is upstream:
nothing can be built on itself.

The DAG is a networkx ``DiGraph`` (``StackGraph.dag``, parent -> child), and
every graph algorithm is networkx's: the order is
``lexicographical_topological_sort`` keyed on manifest position (manifest
order among images ready at the same time), a cycle is named by
``find_cycle``, selection takes ancestors and descendants by ``edge_bfs``,
``levels()`` is ``topological_generations``, and the scheduler's critical
path (``longest_path_lengths``) walks networkx's topological order backwards.

Importing networkx costs 0.1-0.3 s, more than a warm 1,000-image
``plan --offline`` spends on everything else (BENCHMARKS.md). So a resolved
graph can be written out (``to_cache``) and read back (``from_cache``)
without networkx, keyed on everything that decides it (``graph_key``): a run
whose manifest and Dockerfiles did not change never imports networkx.
``StackGraph.dag`` is then built on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

from stackbuild import __version__, dockerfile
from stackbuild.dockerfile import DockerfileInfo
from stackbuild.errors import ManifestError, UsageError
from stackbuild.manifest import Stack
from stackbuild.refs import split_reference

if TYPE_CHECKING:
    import networkx as nx

CACHE_FORMAT = 1
_MAX_SELECTIONS = 32  # remembered target selections per cache (the newest win)


def _networkx() -> ModuleType:
    import networkx  # function-local: its 0.1-0.3 s import is paid only without a cached graph

    return networkx


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
        nx = _networkx()
        dag = self.dag  # builds it from the nodes
        position = {name: index for index, name in enumerate(stack.images)}
        order: list[str] = []
        try:
            # a generator: what it yielded before a cycle stopped it stays in ``order``
            order.extend(nx.lexicographical_topological_sort(dag, key=position.__getitem__))
        except nx.NetworkXUnfeasible:
            done = set(order)
            self._raise_cycle([name for name in stack.images if name not in done])
        self.order: list[str] = order
        self._levels: list[list[str]] | None = None
        self._selections: dict[str, list[str]] = {}
        self._unsaved = True

    @classmethod
    def _resolved(
        cls,
        stack: Stack,
        nodes: dict[str, ImageNode],
        order: list[str],
        levels: list[list[str]],
        selections: dict[str, list[str]],
    ) -> StackGraph:
        graph = cls.__new__(cls)  # no networkx: everything was resolved before
        graph.stack, graph.nodes, graph.order = stack, nodes, order
        graph._levels, graph._selections, graph._unsaved = levels, selections, False
        return graph

    @cached_property
    def dag(self) -> nx.DiGraph:
        """The graph as a networkx ``DiGraph`` (parent -> child), built on first use."""
        dag = _networkx().DiGraph()
        dag.add_nodes_from(self.stack.images)
        for name in self.stack.images:  # children in manifest order, as ``children()`` lists them
            dag.add_edges_from((parent, name) for parent in self.nodes[name].parents)
        return dag

    def _raise_cycle(self, stuck: list[str]) -> None:
        # ``stuck``: the images the sort could not place, in manifest order: the
        # cycles and what is built on them
        cycle = _networkx().find_cycle(self.dag.subgraph(stuck))
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
        return list(self.dag.successors(name))

    def upstream(self, name: str) -> tuple[str, ...]:
        return self.nodes[name].upstream

    def select(self, targets: Iterable[str] = (), with_descendants: bool = False) -> list[str]:
        """Targets plus their ancestors (what they need), optionally plus descendants.

        No targets selects everything. Returns names in topological order.
        """
        targets = list(targets)
        if not targets:
            return list(self.order)
        key = _selection_key(targets, with_descendants)
        if key in self._selections:
            return list(self._selections[key])
        unknown = [t for t in targets if t not in self.nodes]
        if unknown:
            raise UsageError(
                f"unknown image {', '.join(repr(u) for u in unknown)}; "
                f"images in {self.stack.display_path}: {', '.join(self.order)}"
            )
        nx = _networkx()
        chosen = set(targets)
        # edge_bfs from all of them at once: O(V+E), where per-node
        # ancestors()/descendants() calls cost O(V*E) on large stacks
        if with_descendants:
            chosen.update(child for _parent, child in nx.edge_bfs(self.dag, list(chosen)))
        chosen.update(
            parent for parent, _child, _ in nx.edge_bfs(self.dag, list(chosen), "reverse")
        )
        selected = [name for name in self.order if name in chosen]
        self._selections[key] = selected
        while len(self._selections) > _MAX_SELECTIONS:
            del self._selections[next(iter(self._selections))]
        self._unsaved = True
        return list(selected)

    def levels(self) -> list[list[str]]:
        """Topological generations: level 0 has no in-stack parents (for waves and views)."""
        if self._levels is None:
            generations = _networkx().topological_generations(self.dag)
            self._levels = [sorted(level) for level in generations]
        return [list(level) for level in self._levels]

    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs in topological order of the child."""
        return [(parent, name) for name in self.order for parent in self.nodes[name].parents]

    # -- the resolved graph, cached between runs ---------------------------

    @property
    def unsaved(self) -> bool:
        """True when ``to_cache`` would write something its cache does not hold yet
        (a graph resolved with networkx, or a selection it had not seen)."""
        return self._unsaved

    def to_cache(self, key: str) -> bytes:
        """Everything a run needs of this graph, for ``from_cache`` (JSON)."""
        position = {name: index for index, name in enumerate(self.order)}
        data = {
            "format": CACHE_FORMAT,
            "key": key,
            "order": self.order,
            "nodes": {
                name: [list(node.parents), dict(node.parent_refs), list(node.upstream)]
                for name, node in self.nodes.items()
            },
            "levels": self.levels(),
            # as positions in ``order``: a selection of 10,000 names would dwarf the rest
            "selections": {
                key: [position[name] for name in names] for key, names in self._selections.items()
            },
        }
        self._unsaved = False
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_cache(cls, stack: Stack, key: str, data: bytes) -> StackGraph | None:
        """The graph ``to_cache`` wrote under ``key``; None when ``data`` is another
        key's, another format's or unreadable (the caller resolves it again)."""
        try:
            cached = json.loads(data)
            if cached["format"] != CACHE_FORMAT or cached["key"] != key:
                return None
            order = [str(name) for name in cached["order"]]
            nodes = {
                name: ImageNode(
                    name,
                    tuple(map(str, parents)),
                    {str(ref): str(parent) for ref, parent in parent_refs.items()},
                    tuple(map(str, upstream)),
                )
                for name, (parents, parent_refs, upstream) in cached["nodes"].items()
            }
            levels = [[str(name) for name in level] for level in cached["levels"]]
            selections = {
                str(selection): [order[index] for index in indices]
                for selection, indices in cached["selections"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return None
        # the key says these are the same images; this guards against a mangled file
        if len(order) != len(stack.images) or set(order) != set(stack.images) or set(
            nodes
        ) != set(stack.images):
            return None
        return cls._resolved(stack, nodes, order, levels, selections)


def _selection_key(targets: Iterable[str], with_descendants: bool) -> str:
    # the selection depends on the set of targets only, not their order or repeats
    return json.dumps([sorted(set(targets)), with_descendants])


def _code_stamp() -> list[Any]:
    # a stackbuild whose parser or graph code changed (an upgrade, an editable
    # checkout) must not trust a graph an older one resolved
    stamp: list[Any] = [__version__]
    for path in (__file__, dockerfile.__file__):
        try:
            status = os.stat(path)
            stamp += [status.st_size, status.st_mtime_ns]
        except (OSError, TypeError):
            stamp.append(None)
    return stamp


def graph_key(stack: Stack, dockerfiles: Mapping[str, bytes]) -> str:
    """A digest of everything that decides the graph: the images in manifest order,
    the registry, each image's Dockerfile bytes, build args, target, platform and depends_on,
    and the code that reads them. Locations and every other setting do not count."""
    digest = hashlib.sha256()
    # the machine: BuildKit's BUILD* platform ARGs are this machine's and may pick a FROM
    head = [CACHE_FORMAT, _code_stamp(), stack.registry, os.uname().machine]
    digest.update(json.dumps(head).encode())
    for name, spec in stack.images.items():
        raw = dockerfiles[name]
        head = [name, list(spec.depends_on), sorted(spec.build_args.items()), spec.target,
                spec.platform, len(raw)]  # the platform: TARGET* ARGs may pick a FROM
        digest.update(json.dumps(head).encode())  # with the length: no two inputs run together
        digest.update(raw)
    return digest.hexdigest()


def longest_path_lengths(
    children: Sequence[Sequence[int]], weights: Sequence[float]
) -> list[float]:
    """For each node ``i`` of a DAG on ``0..n-1`` (``children[i]``: its children), the
    weight of the heaviest path from ``i`` down to a leaf, ``i`` included (the
    scheduler's critical-path priority): networkx's topological order, walked
    backwards so that every child is done before its parents. O(V+E).

    Nodes numbered in a topological order already (a build's images come in the
    order networkx gave the cached graph) are walked as they are, so a build does
    not import networkx (0.1-0.3 s) just to sort what is sorted.

    A cycle raises ``NotADag`` naming the nodes that cannot be ordered.
    """
    order: Sequence[int] = range(len(children))
    if any(c <= i for i, of_i in enumerate(children) for c in of_i):  # not in order
        order = _topological_order(children)
    longest = [0.0] * len(children)
    for i in reversed(order):
        longest[i] = weights[i] + max((longest[c] for c in children[i]), default=0.0)
    return longest


def _topological_order(children: Sequence[Sequence[int]]) -> list[int]:
    nx = _networkx()
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(children)))
    dag.add_edges_from((i, c) for i, of_i in enumerate(children) for c in of_i)
    order: list[int] = []
    try:
        order.extend(nx.topological_sort(dag))
    except nx.NetworkXUnfeasible:
        done = set(order)
        raise NotADag([i for i in range(len(children)) if i not in done]) from None
    return order


class NotADag(ValueError):
    """``longest_path_lengths`` met a cycle; ``stuck`` are the nodes it could not order."""

    def __init__(self, stuck: list[int]) -> None:
        super().__init__(f"dependency cycle among {len(stuck)} nodes")
        self.stuck = stuck


def build_graph(stack: Stack, dockerfiles: Mapping[str, DockerfileInfo]) -> StackGraph:
    """The DAG of ``stack`` given each image's parsed Dockerfile (``load_stack`` has
    already checked that every ``depends_on`` names an image of the stack)."""
    nodes = {name: infer_node(stack, name, dockerfiles[name]) for name in stack.images}
    return StackGraph(stack, nodes)
