"""The no-Docker half of the data flow, wired: manifest -> graph -> fingerprints.

Reads stack.yaml, the Dockerfiles, the context files, ``stack.lock`` and
``.stackbuild/``; never talks to an engine. ``plan``, ``build`` and
``refresh`` all start from an ``Analysis``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stackbuild.context import ContextFile, context_files, dockerfile_name_in_context
from stackbuild.dockerfile import DockerfileInfo, parse_dockerfile
from stackbuild.errors import DockerfileError, ManifestError
from stackbuild.fingerprint import HashCache, ImageInputs, image_inputs
from stackbuild.graph import StackGraph, build_graph, graph_key
from stackbuild.lockfile import lock_path, read_lock
from stackbuild.manifest import Stack, load_stack
from stackbuild.plan import Plan, make_plan
from stackbuild.state import StateDir, atomic_write


@dataclass
class Analysis:
    stack: Stack
    graph: StackGraph
    state: StateDir
    selected: list[str]  # topological order
    dockerfiles: dict[str, bytes]
    files: dict[str, list[ContextFile]]
    inputs: dict[str, ImageInputs]
    last: dict[str, ImageInputs | None]
    durations: dict[str, float]  # last build durations, for scheduling weights

    def dockerfile_name(self, image: str) -> str:
        return dockerfile_name_in_context(self.stack.images[image])

    def plan(self, existing: Mapping[str, str] | None, force: Iterable[str] = ()) -> Plan:
        return make_plan(
            self.selected,
            self.inputs,
            self.last,
            {name: spec.context_rel for name, spec in self.stack.images.items()},
            existing,
            set(force),
        )


def read_dockerfiles(stack: Stack) -> tuple[dict[str, bytes], dict[str, DockerfileInfo]]:
    raw = read_dockerfile_bytes(stack)
    return raw, parse_dockerfiles(stack, raw)


def read_dockerfile_bytes(stack: Stack) -> dict[str, bytes]:
    raw: dict[str, bytes] = {}
    for name, spec in stack.images.items():
        try:
            raw[name] = spec.dockerfile.read_bytes()
        except OSError as error:
            location = spec.key_locations.get("dockerfile", spec.location)
            raise ManifestError(
                f"cannot read the Dockerfile of image '{name}' ({spec.dockerfile_rel}): "
                f"{error.strerror}",
                stack.display_path,
                location.line,
                location.col,
            ) from None
    return raw


def parse_dockerfiles(stack: Stack, raw: Mapping[str, bytes]) -> dict[str, DockerfileInfo]:
    parsed: dict[str, DockerfileInfo] = {}
    for name, spec in stack.images.items():
        try:
            parsed[name] = parse_dockerfile(
                raw[name].decode("utf-8", "replace"),
                spec.build_args,
                target=spec.target,
                platform=spec.platform,
            )
        except DockerfileError as error:  # BuildKit would refuse it: say where
            raise error.located(spec.dockerfile_rel) from None
    return parsed


def load_graph(stack: Stack, raw: Mapping[str, bytes], state: StateDir) -> StackGraph:
    """The stack's graph from ``.stackbuild/graph.json`` when that was resolved from
    the same inputs (``graph_key``), else parsed and resolved again (networkx).

    An unreadable, corrupt or stale cache is no error: it is resolved again.
    """
    key = graph_key(stack, raw)
    try:
        cached = StackGraph.from_cache(stack, key, state.graph_cache.read_bytes())
    except OSError:
        cached = None
    return cached or build_graph(stack, parse_dockerfiles(stack, raw))


def save_graph(graph: StackGraph, raw: Mapping[str, bytes], state: StateDir) -> None:
    """Write the graph's cache when it holds something new; a failure only costs speed."""
    if graph.unsaved:
        with contextlib.suppress(OSError):
            atomic_write(state.graph_cache, graph.to_cache(graph_key(graph.stack, raw)))


def analyze(
    stack_file: str | Path | Stack,
    targets: Iterable[str] = (),
    with_descendants: bool = False,
    pinned: Mapping[str, str] | None = None,
) -> Analysis:
    """Load the stack (unless given a loaded one) and fingerprint the selected images.

    ``pinned`` maps upstream references to digests; ``None`` reads them from
    ``stack.lock`` next to stack.yaml. An upstream without a pin is
    fingerprinted by its reference alone.
    """
    stack = stack_file if isinstance(stack_file, Stack) else load_stack(stack_file)
    raw = read_dockerfile_bytes(stack)
    state = StateDir(stack.root)
    graph = load_graph(stack, raw, state)
    try:
        selected = graph.select(targets, with_descendants)
    finally:  # after select(), which remembers a new selection; also when a target is unknown
        save_graph(graph, raw, state)
    cache = HashCache.load(state.hash_cache)
    if pinned is None:
        pinned = read_lock(lock_path(stack.path))
    files: dict[str, list[ContextFile]] = {}
    inputs: dict[str, ImageInputs] = {}
    for name in selected:
        spec = stack.images[name]
        files[name] = context_files(spec.context, spec.dockerfile, exclude=state.path)
        parents = {parent: inputs[parent].fingerprint for parent in graph.parents(name)}
        upstream = {ref: pinned.get(ref, "") for ref in graph.upstream(name)}
        inputs[name] = image_inputs(spec, raw[name], files[name], parents, upstream, cache)
    if len(selected) == len(stack.images):  # every context was hashed: the rest is stale
        cache.forget_unused()
    if cache.dirty:
        cache.save(state.hash_cache)
    last: dict[str, ImageInputs | None] = {}
    durations: dict[str, float] = {}
    for name in selected:
        record = state.load_record(name)
        last[name] = record.inputs if record else None
        if record:
            durations[name] = record.duration_s
    return Analysis(stack, graph, state, selected, raw, files, inputs, last, durations)
