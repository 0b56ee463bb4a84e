"""A pool of Docker engines: one scheduler, many engines, a registry between them.

``builders:`` in stack.yaml (or ``--builder URL[=SLOTS]``) lists the engines;
each has its own number of slots. ``EnginePool`` is the scheduler's
``SlotPool``: ``acquire(image)`` hands out a free slot, preferring the engine
that already holds the image's parents (no transfer), otherwise any free one.

How images move: through the stack's registry, by their fingerprint tag
``<registry>/<image>:<fingerprint12>``.

- Before a build (``EngineSlot.prepare``) every in-stack parent the Dockerfile
  names is made present on the slot's engine: pulled by its fingerprint tag
  when missing (pushed first from an engine that has it, if the registry lacks
  it), and the build's pins point at the engine's own copy.
- After a build (``EngineSlot.built``), an image whose children are still to
  be built is pushed by its fingerprint tag before its node counts as
  finished, so a child can start anywhere, even after this engine is gone.

Which engine holds what: each engine's up-to-date images are found once at the
start (``discover``: one ``fingerprinted_images()`` per engine); builds and
pulls add to it.

An engine that stops answering: a build that fails on it asks the engine
(``EngineSlot.broken``); when it does not answer, the job raises
``RetryElsewhere``, the scheduler calls ``lost(slot)``, the engine leaves the
pool for the rest of the run and the image goes back to the ready queue (at
most twice). ``notes()`` says what happened, for the summary. When no engine
is left, ``acquire`` raises ``NoSlotsLeft`` and what is left to build fails.

Without ``registry:`` a pool of more than one engine cannot move images, and
``open_pool`` refuses it. Imports nothing heavy: the docker SDK is loaded by
the backends when they first talk to an engine.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Backend, BuildRequest, LocalImage, LogSink
from stackbuild.errors import (
    EngineUnreachable,
    ManifestError,
    RegistryError,
    RegistryNotFound,
    UsageError,
)
from stackbuild.manifest import MAX_SLOTS, EngineSpec, Stack
from stackbuild.refs import split_reference
from stackbuild.run.existing import find_existing, fingerprint_ref
from stackbuild.run.registry import RegistryHooks, RetryPolicy, with_logged_retries
from stackbuild.scheduler import NoSlotsLeft

T = TypeVar("T")

URL_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://", "http://", "https://")


@dataclass(eq=False)  # compared and hashed by identity: two engines are never "equal"
class Engine:
    """One Docker engine of the pool."""

    name: str  # for logs, the summary and --json
    backend: Backend
    slots: int
    registry_hooks: RegistryHooks | None = None  # upstream pins, registry-only parents, here
    alive: bool = True
    platform: str | None = None  # its own (docker info): other platforms build emulated

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, slots={self.slots}, alive={self.alive})"


@dataclass(frozen=True, eq=False)
class EngineSlot:
    """What ``EnginePool.acquire`` hands out: one slot of one engine, for one image.

    ``BuildRun.build_one`` builds on ``backend`` and calls ``prepare`` before
    the build, ``built`` after it and ``broken`` when it failed.
    """

    pool: EnginePool
    engine: Engine
    index: int
    image: str

    @property
    def backend(self) -> Backend:
        return self.engine.backend

    @property
    def registry_hooks(self) -> RegistryHooks | None:
        return self.engine.registry_hooks

    def __str__(self) -> str:
        return f"{self.engine.name}#{self.index}"

    def prepare(self, request: BuildRequest, log: LogSink) -> BuildRequest:
        """``request`` with its parents present on this engine and pinned to them."""
        return self.pool.prepare(self.engine, request, log)

    def built(self, request: BuildRequest, image_id: str, log: LogSink) -> None:
        """Record the build; push it for the other engines when they will need it."""
        self.pool.built(self.engine, request, image_id, log)

    def broken(self) -> bool:
        """Whether this slot's engine has stopped answering."""
        return self.pool.broken(self.engine)


class EnginePool:
    """The scheduler's ``SlotPool`` over several engines, and what moves images between them.

    ``needs`` maps an image to the in-stack images its Dockerfile builds on (what
    must be on an engine before it builds there); ``discover`` fills it from the
    analysis. ``acquire``, ``release`` and ``lost`` run on the scheduler's
    coordinating thread only; what build threads change is under a lock.
    """

    def __init__(
        self,
        engines: Sequence[Engine],
        needs: Mapping[str, Iterable[str]] | None = None,
        stop: threading.Event | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not engines:
            raise ValueError("a pool needs at least one engine")
        names = [e.name for e in engines]
        if len(set(names)) != len(names):
            raise ValueError(f"engine names must differ: {', '.join(names)}")
        self.engines = list(engines)
        self.stop = stop or threading.Event()
        self.policy = policy
        self.analysis: Analysis | None = None
        self._needs: dict[str, tuple[str, ...]] = {}
        self._needed_by: dict[str, set[str]] = {}
        self.set_needs(needs or {})
        self._free = {e: list(range(e.slots - 1, -1, -1)) for e in engines}  # pop() -> lowest
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, Engine], str] = {}  # (image, engine) -> its local id there
        self._copies: dict[tuple[str, Engine], LocalImage] = {}  # found up to date at start
        self._known: set[str] = set()  # images some engine held during this run
        self._published: set[str] = set()  # fingerprint tag known to be in the registry
        self._locks: dict[tuple[str, Engine | None], threading.Lock] = {}
        self._displaced: dict[str, Engine] = {}  # image -> the engine it was running on
        self._moved: dict[Engine, list[str]] = {}  # gone engine -> where its builds went
        self.left_out: list[str] = []  # engines that did not answer at the start

    # -- the SlotPool protocol (coordinating thread) -------------------------------------

    @property
    def capacity(self) -> int:
        """All slots of all engines: the most builds at once, ever."""
        return sum(e.slots for e in self.engines)

    @property
    def alive(self) -> list[Engine]:
        return [e for e in self.engines if e.alive]

    def acquire(self, name: str) -> EngineSlot | None:
        """A free slot for ``name``: on an engine of its platform first (emulation only
        when no native slot is free), then on the engine holding most of its parents,
        else the engine with the most free slots (ties: the first listed). None when all
        are busy."""
        if not self.alive:
            raise NoSlotsLeft(f"no engine is left in the pool ({self._gone_text()})")
        free = [e for e in self.engines if e.alive and self._free[e]]
        if not free:
            return None
        needs = self._needs.get(name, ())
        with self._lock:
            held = [sum((p, e) in self._ids for p in needs) for e in free]
        order = {e: i for i, e in enumerate(self.engines)}
        want = self._platform_of(name)
        native = [want is None or free[i].platform in (None, want) for i in range(len(free))]
        best = max(
            range(len(free)),
            key=lambda i: (native[i], held[i], len(self._free[free[i]]), -order[free[i]]),
        )
        engine = free[best]
        slot = EngineSlot(self, engine, self._free[engine].pop(), name)
        gone = self._displaced.pop(name, None)
        if gone is not None and engine.name not in self._moved[gone]:
            self._moved[gone].append(engine.name)
        return slot

    def _platform_of(self, name: str) -> str | None:
        """The platform node ``name`` is built for, when the stack names one."""
        spec = self.analysis.stack.images.get(name) if self.analysis else None
        return spec.platform if spec is not None else None

    def release(self, slot: EngineSlot) -> None:
        if slot.engine.alive:  # a gone engine's slots are not handed out again
            free = self._free[slot.engine]
            free.append(slot.index)
            free.sort(reverse=True)

    def lost(self, slot: EngineSlot) -> None:
        """The build on ``slot`` found its engine gone: the engine leaves the pool."""
        self.remove(slot.engine)
        self._displaced[slot.image] = slot.engine

    # -- engines -------------------------------------------------------------------------

    def remove(self, engine: Engine) -> None:
        """Take ``engine`` out for the rest of the run; what it held no longer counts."""
        if not engine.alive:
            return
        engine.alive = False
        self._free[engine] = []
        self._moved.setdefault(engine, [])
        with self._lock:
            for key in [k for k in self._ids if k[1] is engine]:
                del self._ids[key]

    def broken(self, engine: Engine) -> bool:
        """Whether ``engine`` stopped answering (asked after a failure, from a build thread)."""
        if not engine.alive:
            return True
        try:
            engine.backend.ping()
        except EngineUnreachable:
            return True
        return False

    def notes(self) -> list[str]:
        """What happened to the pool, for the summary: engines that stopped answering."""
        lines = [f"engine {name} did not answer at the start; built without it"
                 for name in self.left_out]  # fmt: skip
        for engine, moved in self._moved.items():
            if moved:
                lines.append(f"engine {engine.name} stopped answering; "
                             f"its builds moved to {', '.join(moved)}")  # fmt: skip
            else:
                lines.append(f"engine {engine.name} stopped answering; "
                             "it was taken out of the pool")  # fmt: skip
        return lines

    def to_json(self) -> dict:
        """For ``build --json``: the engines (still in the pool or not) and the notes."""
        engines = [{"name": e.name, "slots": e.slots, "alive": e.alive} for e in self.engines]
        engines += [{"name": name, "slots": 0, "alive": False} for name in self.left_out]
        return {"engines": engines, "notes": self.notes()}

    def _gone_text(self) -> str:
        gone = [e.name for e in self.engines if not e.alive]
        return f"{', '.join(gone)} stopped answering" if gone else "none configured"

    # -- which engine holds what ---------------------------------------------------------

    def set_needs(self, needs: Mapping[str, Iterable[str]]) -> None:
        self._needs = {name: tuple(dict.fromkeys(parents)) for name, parents in needs.items()}
        self._needed_by = {}
        for name, parents in self._needs.items():
            for parent in parents:
                self._needed_by.setdefault(parent, set()).add(name)

    def discover(self, analysis: Analysis) -> dict[str, LocalImage]:
        """Find the selected images each engine already holds (one listing per engine).

        Returns, per image, one engine's copy (for the plan and the pins of the
        single-engine code paths); the pool keeps every engine's.
        """
        self.analysis = analysis
        graph = analysis.graph
        self.set_needs({
            name: [p for p in graph.nodes[name].parent_refs.values() if p in graph.nodes]
            for name in analysis.selected
        })  # fmt: skip
        found: dict[str, LocalImage] = {}
        for engine in self.alive:
            for name, image in find_existing(analysis, engine.backend).items():
                self._copies[(name, engine)] = image
                self.record(name, engine, image.id)
                found.setdefault(name, image)
        return found

    def record(self, name: str, engine: Engine, image_id: str) -> None:
        """``engine`` holds this run's build of ``name`` as ``image_id``."""
        with self._lock:
            if engine.alive:
                self._ids[(name, engine)] = image_id
            self._known.add(name)

    def holders(self, name: str) -> list[Engine]:
        """The live engines that hold ``name``, in pool order."""
        with self._lock:
            return [e for e in self.engines if (name, e) in self._ids]

    def local_copies(self, name: str) -> list[tuple[Backend, LocalImage]]:
        """(backend, local image) of each live engine found holding ``name`` at the start."""
        return [(e.backend, self._copies[(name, e)]) for e in self.alive
                if (name, e) in self._copies]  # fmt: skip

    def image_of(self, ref: str) -> str | None:
        """The stack image whose repository ``ref`` is in."""
        if self.analysis is None:
            return None
        repository = split_reference(ref)[0]
        for name in self.analysis.selected:
            if self.analysis.stack.reference(name) == repository:
                return name
        return None

    # -- moving images (build threads) ---------------------------------------------------

    def prepare(self, engine: Engine, request: BuildRequest, log: LogSink) -> BuildRequest:
        """Make every parent ``request`` builds on present on ``engine``; pin to those copies.

        A parent no engine held in this run (only the registry has it) is left to
        the registry hooks, which pull it where the build runs.
        """
        if self.analysis is None:
            return request
        parent_refs = self.analysis.graph.nodes[request.image].parent_refs
        pins = dict(request.pins)
        for ref, parent in parent_refs.items():
            if parent in self._known:
                pins[ref] = self._local_id(parent, engine, log)
        return dataclasses.replace(request, pins=pins)

    def built(self, engine: Engine, request: BuildRequest, image_id: str, log: LogSink) -> None:
        """Record a build on ``engine``; push it when a child may build elsewhere.

        A failed push is not the build's failure: a child on this engine needs no
        registry, and one elsewhere tries again (and fails with the reason).
        """
        name = request.image
        self.record(name, engine, image_id)
        if len(self.alive) < 2 or not self._awaited(name):
            return
        try:
            self._publish(name, log)
        except RegistryError as error:
            log(f"warning: cannot hand {name} over to the other engines: {error}")

    def _awaited(self, name: str) -> bool:
        # children no engine holds yet are still to be built, possibly elsewhere
        children = self._needed_by.get(name, ())
        with self._lock:
            held = {child for (child, _) in self._ids}
        return any(child not in held for child in children)

    def _lock_for(self, name: str, engine: Engine | None) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((name, engine), threading.Lock())

    def _ref(self, name: str) -> str:
        assert self.analysis is not None
        return fingerprint_ref(self.analysis, name)

    def _retrying(self, call: Callable[[], T], log: LogSink) -> T:
        return with_logged_retries(call, self.policy or RetryPolicy.from_env(), self.stop, log)

    def push_from_holders(
        self, name: str, ref: str, log: LogSink, cancel: threading.Event | None = None
    ) -> str:
        """Push ``ref`` (a tag of image ``name``) from the first live engine holding it;
        the registry's digest. An engine that stopped answering is passed over."""
        problem: Exception | None = None
        for holder in self.holders(name):
            try:
                return holder.backend.push(ref, log, cancel)
            except EngineUnreachable as error:  # that holder is gone too; try the next
                log(f"cannot push {ref} from {holder.name}: {error}")
                problem = error
        detail = f": {problem}" if problem else ""
        raise RegistryError(f"no engine that holds {ref} answers, so it cannot be pushed{detail}")

    def _publish(self, name: str, log: LogSink) -> None:
        """Get ``name``'s fingerprint tag into the registry (once per run), for the other
        engines to pull."""
        with self._lock_for(name, None):
            if name in self._published:
                return
            ref = self._ref(name)
            log(f"push {ref} for the other engines")
            self._retrying(lambda: self.push_from_holders(name, ref, log, self.stop), log)
            with self._lock:
                self._published.add(name)

    def _local_id(self, name: str, engine: Engine, log: LogSink) -> str:
        """Id of ``engine``'s copy of ``name``, pulled by its fingerprint tag if missing."""
        with self._lock_for(name, engine):
            with self._lock:
                found = self._ids.get((name, engine))
            if found:
                return found
            ref = self._ref(name)
            log(f"pull {ref} onto {engine.name} (parent {name} was built elsewhere)")
            try:
                image_id = self._retrying(lambda: engine.backend.pull(ref, log, self.stop), log)
            except RegistryNotFound:  # up to date on another engine, never pushed
                self._publish(name, log)
                image_id = self._retrying(lambda: engine.backend.pull(ref, log, self.stop), log)
            self.record(name, engine, image_id)
            return image_id


class PoolPushes:
    """What ``registry.Pusher`` asks of a backend, for a pool: each image is pushed
    from a live engine that holds it; registry look-ups go through any live engine."""

    def __init__(self, pool: EnginePool) -> None:
        self.pool = pool

    def _any(self) -> Backend:
        alive = self.pool.alive
        if not alive:
            raise EngineUnreachable("no engine of the pool answers")
        return alive[0].backend

    def registry_digest(self, ref: str) -> str:
        return str(self._any().registry_digest(ref))

    def push(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        name = self.pool.image_of(ref)
        if name is None:
            raise RegistryError(f"no engine that holds {ref} answers, so it cannot be pushed")
        return self.pool.push_from_holders(name, ref, log, cancel)


# -- configuration ----------------------------------------------------------------------


# builds at once on one engine (each is a thread here): far beyond what an engine can
# take, and small enough for the slot lists and thread pool sized by it
_ADDRESS_HINT = (
    "give an engine address like unix:///var/run/docker.sock, tcp://host:2376 or "
    "ssh://user@host, optionally followed by =SLOTS"
)


def parse_builder(text: str, default_slots: int) -> EngineSpec:
    """``--builder URL[=SLOTS]``: an engine address, and how many builds it runs at once.

    Whatever follows the last ``=`` is SLOTS (an address has no ``=``), so a typo
    there is an error rather than part of the address.
    """
    url, sep, slots = text.rpartition("=")
    if not sep:
        url = text
    if not url.startswith(URL_SCHEMES) or url.endswith("://"):
        raise UsageError(f"--builder {text!r}: {_ADDRESS_HINT}")
    if "=" in url:
        raise UsageError(f"--builder {text!r}: one =SLOTS at most, after the address")
    if sep:
        # the length test first: int() of thousands of digits is itself an error
        digits = slots.isascii() and slots.isdigit() and len(slots) <= 6
        count = int(slots) if digits else -1
        if not 1 <= count <= MAX_SLOTS:
            raise UsageError(
                f"--builder {text!r}: SLOTS must be a whole number from 1 to {MAX_SLOTS}, "
                f"not {slots!r}"
            )
    else:
        count = default_slots
    try:
        urlsplit(url).port  # noqa: B018 - parsing it is the check (port range, brackets)
    except ValueError as error:
        message = f"--builder {text!r}: not a valid address ({error}); {_ADDRESS_HINT}"
        raise UsageError(message) from None
    return EngineSpec(url, count)


def pool_builders(stack: Stack, options: Sequence[str], jobs: int) -> tuple[EngineSpec, ...]:
    """The engines to build on: ``--builder`` options, else stack.yaml's ``builders:``;
    empty for the default single engine (``docker.from_env()`` with ``-j`` slots)."""
    if options:
        return tuple(parse_builder(text, jobs) for text in options)
    return tuple(stack.builders)


def open_pool(
    stack: Stack,
    builders: Sequence[EngineSpec],
    open_backend: Callable[[EngineSpec], Backend],
    warn: Callable[[str], None],
    from_options: bool = False,
) -> EnginePool:
    """The pool of ``builders``, each engine pinged (all at once).

    More than one engine without ``registry:``: ManifestError at stack.yaml's
    ``builders:`` line (UsageError for ``--builder``). An engine that does not
    answer is left out with a warning; none answering is EngineUnreachable.
    """
    if len(builders) > 1 and not stack.registry:
        message = (
            f"{len(builders)} builders need a registry to move images between them: "
            "set `registry:` (e.g. registry: 127.0.0.1:5000/acme) or build on one engine"
        )
        where = stack.locations.get("builders")
        if from_options or where is None:
            raise UsageError(f"--builder given {len(builders)} times: {message}")
        raise ManifestError(f"builders: {message}", stack.display_path, where.line, where.col)
    engines = [Engine(b.name or b.url, open_backend(b), b.slots) for b in builders]
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise UsageError(f"the same builder is listed twice: {', '.join(names)}")

    def ping(engine: Engine) -> EngineUnreachable | None:
        try:
            engine.backend.ping()
        except EngineUnreachable as error:
            return error
        return None

    with ThreadPoolExecutor(max_workers=len(engines)) as executor:
        problems = list(executor.map(ping, engines))
    answering = [e for e, problem in zip(engines, problems, strict=True) if problem is None]
    if not answering:
        raise EngineUnreachable(
            "no engine of the pool answers: " + "; ".join(str(p) for p in problems)
        )
    for engine in answering:  # placement: native builds before emulated ones
        try:
            engine.platform = engine.backend.engine_platform()
        except EngineUnreachable:
            engine.platform = None
    pool = EnginePool(answering)
    for engine, problem in zip(engines, problems, strict=True):
        if problem is not None:
            warn(f"warning: leaving engine {engine.name} out of the pool: {problem}")
            pool.left_out.append(engine.name)
    return pool


def attach_registry(
    pool: EnginePool, make: Callable[[Backend], RegistryHooks]
) -> None:
    """Give each engine its own registry hooks (pins and pulls happen where a build runs)."""
    for engine in pool.engines:
        engine.registry_hooks = make(engine.backend)
