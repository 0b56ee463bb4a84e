"""The plan: for every selected image, build or skip, and why.

Pure. Given each image's current inputs, the inputs of its last build (from
``.stackbuild/``) and what the engine or registry already holds, decide the
action and explain it in words a reviewer can check: which file, which build
arg, which parent, which upstream digest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from stackbuild.fingerprint import ImageInputs

BUILD = "build"
SKIP = "skip"
PROMOTE = "promote"  # up to date, but its release tags in the registry lag (plan --push)
TEST = "test"  # built already (this fingerprint exists here); only its checks run again

# where ``existing`` (make_plan) says a fingerprint exists
LOCAL_ENGINE = "local engine"
REGISTRY = "registry"

# how many file-level reasons to list before summarising the rest
MAX_FILE_REASONS = 10


@dataclass(frozen=True)
class Reason:
    """One reason for an action; ``code`` is stable for machines, ``detail`` is for people."""

    code: str
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class Step:
    image: str
    action: str  # BUILD | SKIP | TEST | PROMOTE
    reasons: tuple[Reason, ...]
    fingerprint: str
    parents: tuple[str, ...]
    upstream: Mapping[str, str]  # reference -> pinned digest ("" when unpinned)
    inputs: ImageInputs | None = field(default=None, compare=False, repr=False)
    # the image's Dockerfile warnings, located ("images/x/Dockerfile:3: ..."); they do not
    # change the action, but an edge BuildKit would see may be missing
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "action": self.action,
            "reasons": [{"code": r.code, "detail": r.detail} for r in self.reasons],
            "parents": list(self.parents),
            "upstream": [
                {"ref": ref, "digest": digest or None} for ref, digest in self.upstream.items()
            ],
            "fingerprint": self.fingerprint,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def step(self, image: str) -> Step:
        for step in self.steps:
            if step.image == image:
                return step
        raise KeyError(image)

    @property
    def to_build(self) -> list[str]:
        return [s.image for s in self.steps if s.action == BUILD]

    @property
    def to_test(self) -> list[str]:
        """The images only tested: built already, their checks changed or did not pass."""
        return [s.image for s in self.steps if s.action == TEST]

    def to_json(self) -> dict:
        return {
            "steps": [s.to_json() for s in self.steps],
            "summary": {
                "build": sum(s.action == BUILD for s in self.steps),
                "skip": sum(s.action == SKIP for s in self.steps),
                "test": sum(s.action == TEST for s in self.steps),
                "promote": sum(s.action == PROMOTE for s in self.steps),
            },
        }


def with_promotions(plan: Plan, lagging: Mapping[str, str]) -> Plan:
    """``plan`` with the skipped images of ``lagging`` (image -> what lags) as PROMOTE:
    nothing to build, but ``--push`` moves their release tags."""
    steps = tuple(
        replace(step, action=PROMOTE,
                reasons=(Reason("release-tags-behind", lagging[step.image]), *step.reasons))
        if step.action == SKIP and step.image in lagging else step
        for step in plan.steps
    )  # fmt: skip
    return Plan(steps)


def short(digest: str, length: int = 12) -> str:
    """``sha256:1a2b3c…`` for people; full digests stay in JSON."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:length]}" if hexdigest else digest[:length]


def _mapping_changes(code: str, noun: str, old: Mapping, new: Mapping) -> list[Reason]:
    reasons = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            reasons.append(Reason(code, f"{noun} added: {key}"))
        elif key not in new:
            reasons.append(Reason(code, f"{noun} removed: {key}"))
        elif old[key] != new[key]:
            reasons.append(Reason(code, f"{noun} changed: {key}"))
    return reasons


def explain_changes(
    context_rel: str, old: ImageInputs, new: ImageInputs, rebuilt_parents: Collection[str] = (),
    max_files: int | None = MAX_FILE_REASONS,
) -> list[Reason]:
    """What differs between the last build's inputs and now, most telling first; at most
    ``max_files`` context files are named (None: every one)."""
    reasons: list[Reason] = []
    if old.dockerfile != new.dockerfile:
        reasons.append(Reason("dockerfile-changed", "Dockerfile changed"))
    file_reasons = []
    prefix = context_rel.rstrip("/") + "/" if context_rel not in ("", ".") else ""
    for path in sorted(set(old.files) | set(new.files)):
        if path not in old.files:
            file_reasons.append(Reason("context-file-added", f"context file added: {prefix}{path}"))
        elif path not in new.files:
            file_reasons.append(
                Reason("context-file-removed", f"context file removed: {prefix}{path}")
            )
        elif old.files[path] != new.files[path]:
            same_content = old.files[path].split(":")[-1] == new.files[path].split(":")[-1]
            what = "mode changed" if same_content else "changed"
            file_reasons.append(
                Reason("context-file-changed", f"context file {what}: {prefix}{path}")
            )
    if max_files is not None and len(file_reasons) > max_files:
        hidden = len(file_reasons) - max_files
        file_reasons = file_reasons[:max_files] + [
            Reason("context-files-changed", f"... and {hidden} more context file changes")
        ]
    reasons += file_reasons
    reasons += _mapping_changes("build-arg-changed", "build arg", old.build_args, new.build_args)
    reasons += _mapping_changes("label-changed", "label", old.labels, new.labels)
    if old.target != new.target:
        reasons.append(Reason("target-changed", f"target changed: {old.target} -> {new.target}"))
    if old.platform != new.platform:
        reasons.append(
            Reason("platform-changed", f"platform changed: {old.platform} -> {new.platform}")
        )
    for ref in sorted(set(old.upstream) | set(new.upstream)):
        before, after = old.upstream.get(ref), new.upstream.get(ref)
        if before is None:
            reasons.append(Reason("upstream-added", f"new upstream: {ref}"))
        elif after is None:
            reasons.append(Reason("upstream-removed", f"upstream removed: {ref}"))
        elif before != after:
            reasons.append(
                Reason(
                    "upstream-moved",
                    f"upstream moved: {ref} {short(before) or 'unpinned'} -> "
                    f"{short(after) or 'unpinned'}",
                )
            )
    for parent in sorted(set(old.parents) | set(new.parents)):
        if parent not in old.parents:
            reasons.append(Reason("parent-added", f"new parent: {parent}"))
        elif parent not in new.parents:
            reasons.append(Reason("parent-removed", f"parent removed: {parent}"))
        elif old.parents[parent] != new.parents[parent] and parent not in rebuilt_parents:
            reasons.append(
                Reason(
                    "parent-changed",
                    f"parent changed: {parent} {short(old.parents[parent])} -> "
                    f"{short(new.parents[parent])}",
                )
            )
    return reasons


def make_plan(
    order: Iterable[str],
    inputs: Mapping[str, ImageInputs],
    last: Mapping[str, ImageInputs | None],
    context_rel: Mapping[str, str],
    existing: Mapping[str, str] | None,
    force: Collection[str] = (),
    tests: Mapping[str, str] | None = None,
    tested: Mapping[str, str | None] | None = None,
) -> Plan:
    """Decide build, skip or test for each image of ``order`` (topological).

    ``existing`` maps an image to where its fingerprint already exists
    (``LOCAL_ENGINE``, ``REGISTRY``); ``None`` means offline: nothing was asked,
    so everything is built. ``tests``: each image's tests hash now ("" without
    checks); ``tested``: the hash whose checks passed at its current fingerprint
    (None: they did not). An image to skip on this engine whose checks did not pass
    as they are now is tested again (``TEST``), not rebuilt: checks are not in the
    fingerprint. One only in the registry passed them where it was built.
    """
    tests = tests or {}
    tested = tested or {}
    steps: list[Step] = []
    action_of: dict[str, str] = {}
    for name in order:
        current = inputs[name]
        fingerprint = current.fingerprint
        rebuilt_parents = [p for p in current.parents if action_of.get(p) == BUILD]
        reasons: list[Reason] = []
        if name in force:
            action = BUILD
            reasons.append(Reason("forced", "forced with --force"))
        elif existing is None:
            action = BUILD
            reasons.append(Reason("not-checked", "not checked (offline)"))
        elif name in existing:
            action = SKIP
            passed = tested.get(name)
            if tests.get(name) and existing[name] != REGISTRY and passed != tests[name]:
                action = TEST
                if passed is None:
                    reasons.append(Reason("tests-not-passed", (
                        f"built ({existing[name]}), but its tests did not pass at this "
                        "fingerprint (they failed, were skipped or never ran here)")))  # fmt: skip
                else:
                    reasons.append(Reason("tests-changed", "tests changed"))
            else:
                where = existing[name]
                reasons.append(
                    Reason("up-to-date", f"up to date: this fingerprint exists ({where})")
                )
        else:
            action = BUILD
        if action == BUILD:
            previous = last.get(name)
            if previous is None:
                reasons.append(Reason("new-image", "never built here"))
            elif previous.fingerprint == fingerprint:
                if existing is not None and name not in force:
                    reasons.append(
                        Reason(
                            "image-missing",
                            f"built before as {short(fingerprint)} but no such image exists now",
                        )
                    )
            else:
                reasons += explain_changes(context_rel[name], previous, current, rebuilt_parents)
            if previous is not None:  # for a new image, "never built" says it all
                reasons += [
                    Reason("parent-rebuilt", f"parent rebuilt: {p}") for p in rebuilt_parents
                ]
        action_of[name] = action
        steps.append(
            Step(
                image=name,
                action=action,
                reasons=tuple(reasons),
                fingerprint=fingerprint,
                parents=tuple(current.parents),
                upstream=dict(current.upstream),
                inputs=current,
            )
        )
    return Plan(tuple(steps))


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class Trigger:
    """An ONBUILD trigger of an image's Dockerfile, located."""

    image: str  # the image whose Dockerfile declares it
    location: str  # "images/base/Dockerfile:4"
    trigger: str  # "COPY . /app"


@dataclass(frozen=True)
class Inherited:
    """An in-stack parent's ONBUILD triggers, seen from a child."""

    parent: str
    # where the child is built FROM the parent ("images/app/Dockerfile:1"); None when it
    # uses the parent only through COPY --from / RUN --mount, where triggers do not run
    via_from: str | None
    triggers: tuple[Trigger, ...]


@dataclass(frozen=True)
class ImageNotes:
    """What ``plan`` and ``why`` say about an image's Dockerfile besides build or skip."""

    # "images/x/Dockerfile:3: FROM ...: variable BASE is not set ...", in file order
    warnings: tuple[str, ...] = ()
    onbuild: tuple[Trigger, ...] = ()  # its own: they run in every image built FROM it
    inherited: tuple[Inherited, ...] = ()  # its in-stack parents' triggers

    def to_json(self) -> list:
        return [
            list(self.warnings),
            [[t.location, t.trigger] for t in self.onbuild],
            [
                [i.parent, i.via_from, [[t.image, t.location, t.trigger] for t in i.triggers]]
                for i in self.inherited
            ],
        ]

    @classmethod
    def from_json(cls, image: str, data: list) -> ImageNotes:
        warnings, onbuild, inherited = data
        return cls(
            tuple(map(str, warnings)),
            tuple(Trigger(image, str(where), str(what)) for where, what in onbuild),
            tuple(
                Inherited(
                    str(parent),
                    None if via is None else str(via),
                    tuple(Trigger(str(p), str(where), str(what)) for p, where, what in triggers),
                )
                for parent, via, triggers in inherited
            ),
        )
