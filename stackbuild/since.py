"""``--since REF``: the images whose inputs changed in ``git diff REF...HEAD``, and
everything built on them.

Reads git (a subprocess: I/O, so not a pure stage; the layer of ``run``, beside it) and
the working tree. What counts as an image's input, each named in the plan's reasons:

- a file of its context that Docker would send (the context's ``.dockerignore`` as it is
  now, through ``stackbuild.context``; a deleted file counts when it would have been sent);
- its Dockerfile (also one outside its context);
- its entry under ``images:`` of stack.yaml, ``defaults`` or ``registry`` (the YAML at
  the merge base compared with the one at HEAD, value by value);
- the stack.lock pins of its upstreams;

and an image built on a changed one (networkx descendants) is selected too.

Like ``git diff REF...HEAD``, the changes are those of HEAD since it forked from REF
(their merge base): commits only. Uncommitted changes do not select anything, on
purpose: CI checks out a commit, and a clean checkout is what ``--since`` is for;
a build still fingerprints the working tree, so what it builds is always what is there.

No engine, registry or ``.stackbuild/`` is needed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stackbuild.analyze import load_graph, read_dockerfile_bytes
from stackbuild.context import context_files, would_send
from stackbuild.errors import GitError, LockfileError, ManifestError
from stackbuild.graph import StackGraph
from stackbuild.lockfile import LOCK_NAME, parse_lock
from stackbuild.manifest import Stack
from stackbuild.manifest.yaml import load_yaml
from stackbuild.plan import MAX_FILE_REASONS, Plan, Reason
from stackbuild.platforms import split_node
from stackbuild.state import STATE_DIRNAME, StateDir

_STATUS = {"A": "added", "D": "removed", "M": "changed", "T": "changed"}
_FETCH_HINT = (
    "fetch it first (e.g. `git fetch origin main`); a CI checkout needs the history "
    "(GitHub: actions/checkout with fetch-depth: 0; GitLab: GIT_DEPTH: 0)"
)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    except FileNotFoundError:
        raise GitError("--since needs git, which is not installed (apt-get install git)") from None


def _stderr(done: subprocess.CompletedProcess[bytes]) -> str:
    return " ".join(done.stderr.decode("utf-8", "replace").split()) or f"exit {done.returncode}"


@dataclass(frozen=True)
class Changes:
    """What changed since ``ref``: the selected images (topological order) and why."""

    ref: str
    base: str  # the merge base of ref and HEAD, a commit id
    selected: tuple[str, ...]
    reasons: Mapping[str, tuple[Reason, ...]] = field(default_factory=dict)

    def annotate(self, plan: Plan) -> Plan:
        """``plan`` with each selected step's reasons for being selected, after its own."""
        return replace(
            plan,
            steps=tuple(
                replace(step, reasons=step.reasons + self.reasons.get(step.image, ()))
                for step in plan.steps
            ),
        )


def changed_paths(root: Path, ref: str) -> tuple[str, dict[Path, str]]:
    """``(merge base, {absolute path: "added" | "removed" | "changed"})`` of
    ``git diff REF...HEAD`` in the repository holding ``root``. Raises GitError."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise GitError(f"--since {ref}: {root} is not in a git repository ({_stderr(top)})")
    toplevel = Path(os.fsdecode(top.stdout.rstrip(b"\n")))
    known = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if known.returncode != 0:
        raise GitError(f"--since {ref}: git does not know the revision {ref!r}; {_FETCH_HINT}")
    merge_base = _git(root, "merge-base", known.stdout.decode().strip(), "HEAD")
    if merge_base.returncode != 0:
        raise GitError(
            f"--since {ref}: {ref} and HEAD have no common commit in this clone "
            f"({_stderr(merge_base)}); {_FETCH_HINT}"
        )
    base = merge_base.stdout.decode().strip()
    diff = _git(root, "diff", "--name-status", "--no-renames", "-z", base, "HEAD", "--")
    if diff.returncode != 0:
        raise GitError(f"--since {ref}: git diff failed: {_stderr(diff)}")
    fields = diff.stdout.split(b"\0")
    changed: dict[Path, str] = {}
    for status, name in zip(fields[0::2], fields[1::2], strict=False):
        if status:
            changed[toplevel / os.fsdecode(name)] = _STATUS.get(status.decode()[:1], "changed")
    return base, changed


def _show(root: Path, commit: str, path: Path) -> bytes | None:
    """``path``'s bytes at ``commit``; None when it did not exist there."""
    done = _git(root, "show", f"{commit}:./{os.path.relpath(path, root)}")
    return done.stdout if done.returncode == 0 else None


_MISSING: dict[str, Any] = {}  # stack.yaml did not exist at that revision


def _manifest_data(raw: bytes | None, display: str) -> dict[str, Any] | None:
    """stack.yaml's data as YAML; ``_MISSING`` when absent, None when unreadable or not
    a mapping."""
    if raw is None:
        return _MISSING
    try:
        data = load_yaml(raw, display).data
    except ManifestError:
        return None
    return data if isinstance(data, dict) else None


def _lock_pins(raw: bytes | None, display: str) -> dict[str, str] | None:
    if raw is None:
        return {}
    try:
        return parse_lock(raw, display)
    except LockfileError:
        return None  # unreadable there: every pin counts as changed


def _inside(path: Path, directory: Path) -> str | None:
    """``path`` relative to ``directory`` (posix), or None when it is not inside."""
    try:
        rel = path.relative_to(directory)
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


def _images_of(data: dict[str, Any]) -> dict[str, Any]:
    images = data.get("images")
    return images if isinstance(images, dict) else {}


def _manifest_reasons(
    stack: Stack, ref: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, list[Reason]]:
    """Per image, how its part of stack.yaml differs between the two revisions."""
    name = stack.path.name  # as the other reasons name files: from the stack's root

    def reason(detail: str) -> Reason:
        return Reason("changed-since-manifest", f"{name}: {detail} since {ref}")

    if before is None or after is None:
        unreadable = reason("changed (not a readable manifest at one end)")
        return {image: [unreadable] for image in stack.images}
    shared = [] if before is _MISSING else [
        reason(f"{key} changed") for key in ("registry", "defaults")
        if before.get(key) != after.get(key)
    ]
    old_images, new_images = _images_of(before), _images_of(after)
    out: dict[str, list[Reason]] = {}
    for image in stack.images:
        reasons = list(shared)
        if image not in old_images:
            reasons.append(reason(f"image {image} is new"))
        elif old_images[image] != new_images.get(image):
            reasons.append(reason(f"images.{image} changed"))
        if reasons:
            out[image] = reasons
    return out


def _lock_reasons(
    stack: Stack, graph: StackGraph, ref: str, before: dict[str, str] | None,
    after: dict[str, str] | None,
) -> dict[str, list[Reason]]:
    def pins_of(pins: dict[str, str], upstream: str) -> dict[str, str]:
        # the index's pin and each platform's (``ref[linux/arm64]``): either may move alone
        return {key: digest for key, digest in pins.items() if split_node(key)[0] == upstream}

    out: dict[str, list[Reason]] = {}
    for image in stack.images:
        for upstream in graph.upstream(image):
            if before is None or after is None or (
                pins_of(before, upstream) != pins_of(after, upstream)
            ):
                detail = f"{LOCK_NAME}: the pin of {upstream} changed since {ref}"
                out.setdefault(image, []).append(Reason("changed-since-lock", detail))
    return out


def _file_reasons(
    stack: Stack, ref: str, changed: Mapping[Path, str]
) -> dict[str, list[Reason]]:
    """Per image, its Dockerfile and the context files Docker would send, that changed."""
    state = stack.root / STATE_DIRNAME
    out: dict[str, list[Reason]] = {}
    for image, spec in stack.images.items():
        reasons: list[Reason] = []
        inside = {path: rel for path in changed
                  if (rel := _inside(path, spec.context)) is not None
                  and _inside(path, state) is None}  # fmt: skip
        sent: set[str] = set()
        if any(changed[path] != "removed" for path in inside):
            sent = {f.path for f in context_files(spec.context, spec.dockerfile, exclude=state)}
        files = []
        for path, rel in sorted(inside.items(), key=lambda item: item[1]):
            if path == spec.dockerfile:
                continue
            if changed[path] == "removed":
                counts = would_send(spec.context, spec.dockerfile, rel)
            else:
                counts = rel in sent
            if counts:
                shown = _inside(path, stack.root) or rel
                detail = f"context file {changed[path]} since {ref}: {shown}"
                files.append(Reason("changed-since-file", detail))
        if spec.dockerfile in changed:
            detail = f"Dockerfile {changed[spec.dockerfile]} since {ref}: {spec.dockerfile_rel}"
            reasons.append(Reason("changed-since-dockerfile", detail))
        if len(files) > MAX_FILE_REASONS:
            hidden = len(files) - MAX_FILE_REASONS
            files = files[:MAX_FILE_REASONS] + [
                Reason("changed-since-file", f"... and {hidden} more context files since {ref}")
            ]
        reasons += files
        if reasons:
            out[image] = reasons
    return out


def changes_since(stack: Stack, ref: str, graph: StackGraph | None = None) -> Changes:
    """The images whose inputs changed in ``git diff REF...HEAD``, plus their descendants."""
    base, changed = changed_paths(stack.root, ref)
    if graph is None:
        graph = load_graph(stack, read_dockerfile_bytes(stack), StateDir(stack.root))
    direct = _file_reasons(stack, ref, changed)
    for name, more in _structured_reasons(stack, graph, ref, base, changed).items():
        direct.setdefault(name, []).extend(more)
    reasons: dict[str, tuple[Reason, ...]] = {name: tuple(r) for name, r in direct.items()}
    selected: list[str] = []
    for name in graph.order:  # topological: every parent is decided before its children
        if name in reasons:
            selected.append(name)
            continue
        changed_parents = [p for p in graph.parents(name) if p in reasons]
        if changed_parents:
            selected.append(name)
            reasons[name] = tuple(
                Reason("changed-since-parent", f"built on {p}, which changed since {ref}")
                for p in changed_parents
            )
    return Changes(ref, base, tuple(selected), reasons)


def _structured_reasons(
    stack: Stack, graph: StackGraph, ref: str, base: str, changed: Mapping[Path, str]
) -> dict[str, list[Reason]]:
    """stack.yaml's and stack.lock's changes, when the diff touches them."""
    out: dict[str, list[Reason]] = {}
    if stack.path in changed:
        before = _manifest_data(_show(stack.root, base, stack.path), stack.display_path)
        after = _manifest_data(_show(stack.root, "HEAD", stack.path), stack.display_path)
        out.update(_manifest_reasons(stack, ref, before, after))
    lock = stack.path.parent / LOCK_NAME
    if lock in changed:
        pins_before = _lock_pins(_show(stack.root, base, lock), LOCK_NAME)
        pins_after = _lock_pins(_show(stack.root, "HEAD", lock), LOCK_NAME)
        for name, more in _lock_reasons(stack, graph, ref, pins_before, pins_after).items():
            out.setdefault(name, []).extend(more)
    return out


def since_targets(
    changes: Changes, allowed: Iterable[str] | None
) -> tuple[str, ...]:
    """The changed images among ``allowed`` (a selection the command line made), or all."""
    if allowed is None:
        return changes.selected
    keep = set(allowed)
    return tuple(name for name in changes.selected if name in keep)
