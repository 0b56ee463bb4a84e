"""The no-Docker half of the data flow, wired: manifest -> graph -> fingerprints.

Reads stack.yaml, the Dockerfiles, the context files, ``stack.lock`` and
``.stackbuild/``; never talks to an engine. ``plan``, ``build`` and
``refresh`` all start from an ``Analysis``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from stackbuild.checks import checks_digest
from stackbuild.context import ContextFile, context_files, dockerfile_name_in_context
from stackbuild.dockerfile import DockerfileInfo, parse_dockerfile
from stackbuild.errors import DockerfileError, ManifestError
from stackbuild.estimate import ImageShape, estimated_weights
from stackbuild.files import atomic_write
from stackbuild.fingerprint import HashCache, ImageInputs, image_inputs
from stackbuild.graph import StackGraph, build_graph, graph_key, in_stack_name
from stackbuild.lockfile import lock_path, read_lock
from stackbuild.manifest import Stack, load_stack
from stackbuild.plan import ImageNotes, Inherited, Plan, Trigger, make_plan
from stackbuild.platforms import (
    expand,
    is_multi_platform,
    nodes_of_target,
    split_node,
    upstream_pin,
    with_nodes,
)
from stackbuild.state import StateDir

NO_NOTES = ImageNotes()


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
    # Dockerfile warnings and ONBUILD triggers, per image that has any
    notes: dict[str, ImageNotes] = field(default_factory=dict)
    # each image's tests hash ("" without checks), and the one that passed at its current
    # fingerprint (None: they did not, or never ran): not in the fingerprint, see checks.py
    tests: dict[str, str] = field(default_factory=dict)
    tested: dict[str, str | None] = field(default_factory=dict)

    def dockerfile_name(self, image: str) -> str:
        return dockerfile_name_in_context(self.stack.images[image])

    def plan(self, existing: Mapping[str, str] | None, force: Iterable[str] = ()) -> Plan:
        return self.annotate(
            make_plan(
                self.selected,
                self.inputs,
                self.last,
                {name: spec.context_rel for name, spec in self.stack.images.items()},
                existing,
                with_nodes(self.stack, force),  # an image's name forces all its platforms
                self.tests,
                self.tested,
            )
        )

    def annotate(self, plan: Plan) -> Plan:
        """``plan`` with each step's Dockerfile warnings (for a plan made elsewhere)."""
        return replace(
            plan,
            steps=tuple(
                replace(step, warnings=self.notes[step.image].warnings)
                if step.image in self.notes
                else step
                for step in plan.steps
            ),
        )

    def notes_of(self, image: str) -> ImageNotes:
        return self.notes.get(image, NO_NOTES)

    def weights(self, known: Mapping[str, float] | None = None) -> dict[str, float]:
        """The scheduler's weight of every selected image: its last build duration
        (``known`` adds durations found elsewhere, ``durations`` wins), else an estimate
        from its Dockerfile and context size, calibrated on those durations (``estimate``)."""
        durations = {**(known or {}), **self.durations}
        if all(name in durations for name in self.selected):
            return durations  # every image built before: nothing to estimate or stat
        shapes = {
            name: ImageShape(
                self.dockerfiles[name].decode("utf-8", "replace"),
                _context_bytes(self.files[name]),
            )
            for name in self.selected
        }
        return estimated_weights(shapes, durations)


def _context_bytes(files: Iterable[ContextFile]) -> int:
    """The size of a context's files (an estimate's input: a vanished file counts 0)."""
    total = 0
    for entry in files:
        if entry.kind == "f":
            with contextlib.suppress(OSError):
                total += os.stat(entry.source).st_size
    return total


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


def located(path: str, warning: str) -> str:
    """``line 3: FROM ...`` of the parser as ``images/x/Dockerfile:3: FROM ...``."""
    head, colon, rest = warning.partition(": ")
    if colon and head.startswith("line ") and head[5:].isdigit():
        return f"{path}:{head[5:]}: {rest}"
    return f"{path}: {warning}"


def image_notes(
    stack: Stack, parsed: Mapping[str, DockerfileInfo], graph: StackGraph
) -> dict[str, ImageNotes]:
    """Each image's located warnings and ONBUILD triggers, for the images that have any.

    BuildKit runs an image's ONBUILD triggers (those of the stage it is built from) at
    the start of every stage built FROM that image, in the child's build, and not in
    grandchildren (the child's image has them cleared). So they are no edge of the image
    that declares them; an image a trigger names (``ONBUILD COPY --from=x``) is read in
    the child's build, where stackbuild does not count it as an edge: that is a warning.
    """
    own: dict[str, tuple[Trigger, ...]] = {}
    for name, info in parsed.items():
        path = stack.images[name].dockerfile_rel
        own[name] = tuple(Trigger(name, f"{path}:{t.line}", t.trigger) for t in info.onbuild)
    notes: dict[str, ImageNotes] = {}
    for name, info in parsed.items():
        path = stack.images[name].dockerfile_rel
        warnings = [located(path, warning) for warning in info.warnings]
        via: dict[str, str] = {}  # parent -> the first FROM line that builds on it
        for base in info.bases:
            parent = in_stack_name(base.ref, stack)
            if parent is not None and parent != name:
                via.setdefault(parent, f"{path}:{base.line}")
        inherited = []
        for parent in graph.parents(name):
            if not own.get(parent):
                continue
            inherited.append(Inherited(parent, via.get(parent), own[parent]))
            if parent in via:
                warnings += _trigger_warnings(stack, graph, name, info, via[parent], parent,
                                              parsed[parent])
        if warnings or own[name] or inherited:
            notes[name] = ImageNotes(tuple(warnings), own[name], tuple(inherited))
    return notes


def _trigger_warnings(
    stack: Stack,
    graph: StackGraph,
    child: str,
    info: DockerfileInfo,
    where: str,
    parent: str,
    parent_info: DockerfileInfo,
) -> list[str]:
    """A warning per image that a trigger of ``parent`` names in ``child``'s build and
    that is not already an edge of ``child`` (a stage of the child's Dockerfile is fine)."""
    warnings = []
    parent_path = stack.images[parent].dockerfile_rel
    for trigger in parent_info.onbuild:
        for operand in trigger.names:
            if operand.isdigit() or operand.lower() in info.stages:
                continue
            named = in_stack_name(operand, stack)
            if named is not None and named in graph.parents(child):
                continue
            if "$" in operand:
                what = f"names {operand!r}, which BuildKit does not expand in --from / from="
            elif named is not None:
                what = (f"needs image '{named}' of this stack, which stackbuild does not count "
                        f"as a parent of '{child}': add it to depends_on of '{child}'")
            else:
                what = (f"pulls {operand}, which stackbuild does not count as an upstream "
                        f"of '{child}' (not pinned, not in its fingerprint)")
            warnings.append(
                f"{where}: FROM {parent} runs ONBUILD {trigger.trigger} "
                f"({parent_path}:{trigger.line}) in this build, which {what}"
            )
    return warnings


NOTES_FORMAT = 1


def _notes_stamp() -> list[object]:
    # notes written by another version of this file are not trusted
    try:
        status = os.stat(__file__)
        return [NOTES_FORMAT, status.st_size, status.st_mtime_ns]
    except (OSError, TypeError):
        return [NOTES_FORMAT, None]


def notes_cache_path(state: StateDir) -> Path:
    return state.path / "notes.json"


def read_notes(state: StateDir, key: str) -> dict[str, ImageNotes] | None:
    """The notes ``write_notes`` saved under ``key``; None when absent, stale or mangled."""
    try:
        data = json.loads(notes_cache_path(state).read_bytes())
        if data["key"] != key or data["code"] != _notes_stamp():
            return None
        return {
            str(name): ImageNotes.from_json(str(name), value)
            for name, value in data["notes"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_notes(state: StateDir, key: str, notes: Mapping[str, ImageNotes]) -> None:
    """Keep the notes beside the graph's cache: a run that reads the graph from there
    parses no Dockerfile, so it reads the notes from here. A failure only costs speed."""
    data = {
        "key": key,
        "code": _notes_stamp(),
        "notes": {name: value.to_json() for name, value in notes.items()},
    }
    with contextlib.suppress(OSError):
        atomic_write(notes_cache_path(state), json.dumps(data, separators=(",", ":")).encode())


def load_graph_and_notes(
    stack: Stack, raw: Mapping[str, bytes], state: StateDir
) -> tuple[StackGraph, dict[str, ImageNotes]]:
    """``load_graph`` and the images' ``image_notes``, both from their caches when those
    were made from the same inputs, else from the Dockerfiles parsed once."""
    key = graph_key(stack, raw)
    try:
        graph = StackGraph.from_cache(stack, key, state.graph_cache.read_bytes())
    except OSError:
        graph = None
    notes = read_notes(state, key) if graph is not None else None
    if graph is None or notes is None:
        parsed = parse_dockerfiles(stack, raw)
        graph = graph or build_graph(stack, parsed)
        notes = image_notes(stack, parsed, graph)
        write_notes(state, key, notes)
    return graph, notes


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
    graph, notes = load_graph_and_notes(stack, raw, state)
    try:
        # a multi-platform image is selected by its name; ``base[linux/arm64]`` names one
        # node, selected again among the nodes below
        multi = is_multi_platform(stack)
        targets = list(targets)
        selected = graph.select([split_node(t)[0] for t in targets] if multi else targets,
                                with_descendants)
    finally:  # after select(), which remembers a new selection; also when a target is unknown
        save_graph(graph, raw, state)
    if multi:  # one node per (image, platform) from here on
        stack, graph, selected = expand(stack, graph, selected, (raw, notes))
        if any(split_node(t)[1] for t in targets):
            selected = graph.select([n for t in targets for n in nodes_of_target(stack, t)],
                                    with_descendants)
    cache = HashCache.load(state.hash_cache)
    if pinned is None:
        pinned = read_lock(lock_path(stack.path))
    files: dict[str, list[ContextFile]] = {}
    inputs: dict[str, ImageInputs] = {}
    for name in selected:
        spec = stack.images[name]
        files[name] = context_files(spec.context, spec.dockerfile, exclude=state.path)
        parents = {parent: inputs[parent].fingerprint for parent in graph.parents(name)}
        upstream = {ref: upstream_pin(pinned, ref, spec) for ref in graph.upstream(name)}
        inputs[name] = image_inputs(spec, raw[name], files[name], parents, upstream, cache)
    if len(selected) == len(stack.images):  # every context was hashed: the rest is stale
        cache.forget_unused()
    if cache.dirty:
        cache.save(state.hash_cache)
    last: dict[str, ImageInputs | None] = {}
    durations: dict[str, float] = {}
    tested: dict[str, str | None] = {}
    records = state.load_records(selected)
    for name in selected:
        record = records[name]
        last[name] = record.inputs if record else None
        if record:
            durations[name] = record.duration_s
        same = record is not None and record.fingerprint == inputs[name].fingerprint
        tested[name] = record.tests if record is not None and same else None
    tests = {name: image_tests_hash(stack, name) for name in selected}
    return Analysis(stack, graph, state, selected, raw, files, inputs, last, durations, notes,
                    tests, tested)  # fmt: skip


def image_tests_hash(stack: Stack, image: str) -> str:
    """The tests hash of ``image``: its checks and the scripts they run, read now."""
    checks = stack.images[image].tests
    scripts: dict[str, bytes] = {}
    for check in checks:
        if check.script is not None and check.script_path is not None:
            try:
                scripts[check.script] = check.script_path.read_bytes()
            except OSError:  # gone since loading: the check itself will say so
                scripts[check.script] = b""
    return checks_digest(checks, scripts)
