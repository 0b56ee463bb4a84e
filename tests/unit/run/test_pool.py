"""The builder pool without Docker: slot choice, engines leaving, images moving, BuildRun on it.

Engines are ``tests.fakes.FakeBackend``s: an image store in memory, a registry (a
dict) they share, and a switch that makes them stop answering. A fake build fails
when a pin points at an image its engine does not hold, so every test also checks
that a child never builds before its parents are where it runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stackbuild.analyze import analyze
from stackbuild.backends.contract import LocalImage
from stackbuild.errors import EngineUnreachable, ManifestError, RegistryError, UsageError
from stackbuild.manifest import EngineSpec, load_stack
from stackbuild.refs import fingerprint12
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.existing import existing_images
from stackbuild.run.pool import (
    Engine,
    EnginePool,
    PoolPushes,
    open_pool,
    parse_builder,
    pool_builders,
)
from stackbuild.run.registry import RetryPolicy
from stackbuild.scheduler import NoSlotsLeft
from tests.fakes import FakeBackend, FakeRegistry, QuietReporter

NO_RETRY = RetryPolicy(first_delay=0.01, budget=0.0)


def engines(*specs: tuple[str, int], registry: FakeRegistry | None = None,
            local: dict[str, dict] | None = None) -> list[Engine]:  # fmt: skip
    shared = FakeRegistry() if registry is None else registry
    return [Engine(name, FakeBackend(name, shared, (local or {}).get(name)), slots)
            for name, slots in specs]  # fmt: skip


def fake(engine: Engine) -> FakeBackend:
    """The fake behind ``engine`` (an Engine's backend is typed as the contract)."""
    assert isinstance(engine.backend, FakeBackend)
    return engine.backend


# -- EnginePool as a SlotPool ------------------------------------------------------------


def test_acquire_prefers_the_engine_holding_the_parents_then_the_freest() -> None:
    a, b = engines(("a", 2), ("b", 2))
    pool = EnginePool([a, b], needs={"kid": ["p"], "other": []})
    assert pool.capacity == 4
    pool.record("p", b, "sha256:p")

    slot = pool.acquire("kid")
    assert slot is not None and slot.engine is b and slot.index == 0 and slot.image == "kid"
    assert str(slot) == "b#0" and slot.backend is b.backend
    # no parents: the engine with the most free slots (a: 2, b: 1)
    other = pool.acquire("other")
    assert other is not None and other.engine is a
    # parents' engine still first while it has a free slot
    assert pool.acquire("kid").engine is b  # type: ignore[union-attr]
    assert pool.acquire("kid").engine is a  # type: ignore[union-attr]
    assert pool.acquire("kid") is None  # all four busy
    pool.release(slot)
    again = pool.acquire("other")
    assert again is not None and (again.engine, again.index) == (b, 0)


def test_equal_engines_fill_in_pool_order_and_slots_come_back_lowest_first() -> None:
    a, b = engines(("a", 2), ("b", 2))
    pool = EnginePool([a, b])
    got = [pool.acquire(f"n{i}") for i in range(4)]
    assert [(s.engine.name, s.index) for s in got if s] == [
        ("a", 0), ("b", 0), ("a", 1), ("b", 1)
    ]  # fmt: skip
    pool.release(got[2])  # a#1
    pool.release(got[0])  # a#0
    assert (pool.acquire("x").engine.name, pool.acquire("y").index) == ("a", 1)  # type: ignore


def test_a_lost_engine_leaves_the_pool_with_its_slots_and_images() -> None:
    a, b = engines(("a", 1), ("b", 2))
    pool = EnginePool([a, b], needs={"kid": ["p"], "kid2": ["p"]})
    pool.record("p", b, "sha256:p")
    on_b = pool.acquire("kid")
    other_b = pool.acquire("kid2")
    assert on_b.engine is b and other_b.engine is b  # type: ignore[union-attr]

    pool.lost(on_b)
    assert not b.alive and pool.alive == [a]
    assert pool.holders("p") == []  # what b held is out of reach now
    pool.release(other_b)  # finished after its engine left: not handed out again
    retry = pool.acquire("kid")
    assert retry is not None and retry.engine is a
    assert pool.acquire("y") is None  # b's slots are gone for good
    assert pool.notes() == ["engine b stopped answering; its builds moved to a"]
    assert pool.to_json()["engines"][1] == {"name": "b", "slots": 2, "alive": False}
    # a build recorded on a gone engine does not count
    pool.record("late", b, "sha256:late")
    assert pool.holders("late") == []

    pool.lost(retry)
    with pytest.raises(NoSlotsLeft, match="a, b stopped answering"):
        pool.acquire("kid")
    assert pool.notes()[1] == "engine a stopped answering; it was taken out of the pool"


def test_broken_asks_the_engine() -> None:
    (a,) = engines(("a", 1))
    pool = EnginePool([a])
    assert not pool.broken(a)
    fake(a).dead = True
    assert pool.broken(a)


def test_engines_need_distinct_names() -> None:
    with pytest.raises(ValueError, match="differ"):
        EnginePool(engines(("a", 1), ("a", 2)))
    with pytest.raises(ValueError):
        EnginePool([])


# -- configuration -----------------------------------------------------------------------


def test_parse_builder() -> None:
    assert parse_builder("unix:///run/d.sock", 3) == EngineSpec("unix:///run/d.sock", 3)
    assert parse_builder("tcp://h:2376=4", 3) == EngineSpec("tcp://h:2376", 4)
    assert parse_builder("ssh://me@host=1", 2) == EngineSpec("ssh://me@host", 1)
    for bad in ("host:2375", "tcp://h=0", "unix://"):
        with pytest.raises(UsageError, match="--builder"):
            parse_builder(bad, 1)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("tcp://h:2376=99999999999999999999", "SLOTS must be a whole number from 1 to 1024"),
        ("tcp://h:2376=" + "9" * 5000, "SLOTS must be a whole number"),
        ("tcp://h:2376=1025", "SLOTS must be a whole number from 1 to 1024"),
        ("tcp://h:2376=abc", "not 'abc'"),
        ("tcp://h:2376=-1", "not '-1'"),
        ("tcp://h:2376=", "not ''"),
        ("tcp://h:2376=\u0662", "SLOTS must be"),  # a digit, but not an ASCII one
        ("tcp://h:2376=2=3", "one =SLOTS at most"),
        ("tcp://127.0.0.1:99999", "not a valid address"),
        ("tcp://[::1", "not a valid address"),
        ("tcp://h:port", "not a valid address"),
    ],
)
def test_parse_builder_refuses_bad_slots_and_addresses(text: str, complaint: str) -> None:
    with pytest.raises(UsageError, match=re.escape(complaint)):
        parse_builder(text, 1)


def test_cli_job_limit_is_the_pool_slot_limit() -> None:
    from stackbuild.cli.common import MAX_JOBS
    from stackbuild.manifest import MAX_SLOTS

    assert MAX_JOBS == MAX_SLOTS
    assert parse_builder("tcp://[::1]:2376=1024", 1) == EngineSpec("tcp://[::1]:2376", 1024)


def write_stack(root: Path, dockerfiles: dict[str, str], extra: str = "") -> Path:
    lines = ["version: 1", "images:"]
    for name, dockerfile in dockerfiles.items():
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text(dockerfile)
        (root / name / "f").write_text(name)
        lines += [f"  {name}:", f"    context: {name}"]
    (root / "stack.yaml").write_text(extra + "\n".join(lines) + "\n")
    return root / "stack.yaml"


def test_several_builders_without_a_registry_are_refused_at_the_builders_line(
    tmp_path: Path,
) -> None:
    path = write_stack(tmp_path, {"base": "FROM scratch\n"}, extra=(
        "builders:\n  - url: unix:///a.sock\n  - url: unix:///b.sock\n"
    ))  # fmt: skip
    stack = load_stack(path)
    with pytest.raises(ManifestError) as info:
        open_pool(stack, pool_builders(stack, (), 2), lambda spec: FakeBackend(spec.url), print)
    assert (info.value.line, info.value.col) == (1, 1)
    assert info.value.exit_code == 2 and "registry" in str(info.value)
    with pytest.raises(UsageError, match="--builder given 2 times.*registry"):
        open_pool(stack, pool_builders(stack, ("unix:///a", "unix:///b"), 2),
                  lambda spec: FakeBackend(spec.url), print, from_options=True)  # fmt: skip
    # --builder replaces stack.yaml's builders; none at all means the default engine
    assert pool_builders(stack, ("unix:///c=2",), 5) == (EngineSpec("unix:///c", 2),)
    (tmp_path / "x").mkdir()
    assert pool_builders(load_stack(write_stack(tmp_path / "x", {"y": "FROM scratch\n"})),
                         (), 5) == ()  # fmt: skip


def test_engines_that_do_not_answer_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = {url: FakeBackend(url) for url in ("unix:///up", "unix:///down")}
    fakes["unix:///down"].dead = True

    def engine(spec: EngineSpec) -> FakeBackend:
        return fakes[spec.url]

    stack = load_stack(write_stack(tmp_path, {"base": "FROM scratch\n"}, extra="registry: r\n"))
    warnings: list[str] = []
    pool = open_pool(stack, [EngineSpec("unix:///up", 2, "up"), EngineSpec("unix:///down", 1)],
                     engine, warnings.append)  # fmt: skip
    assert [e.name for e in pool.engines] == ["up"]
    assert warnings == ["warning: leaving engine unix:///down out of the pool: "
                        "cannot reach the Docker engine at unix:///down"]  # fmt: skip
    assert pool.notes() == ["engine unix:///down did not answer at the start; built without it"]
    fakes["unix:///up"].dead = True
    specs = [EngineSpec("unix:///up", 1), EngineSpec("unix:///down", 1)]
    with pytest.raises(EngineUnreachable, match="no engine of the pool answers"):
        open_pool(stack, specs, engine, print)


# -- BuildRun on a pool ------------------------------------------------------------------

#   base ── a ── c
#        └─ b
DOCKERFILES = {
    "base": "FROM scratch\nCOPY f /f\n",
    "a": "FROM reg/base\n",
    "b": "FROM base\n",
    "c": "FROM reg/a:latest\n",
}


class Reporter(QuietReporter):
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.started: list[tuple[str, str | None]] = []



    def message(self, text: str) -> None:
        self.messages.append(text)

    def image_started(self, image: str, engine: str | None = None) -> None:
        self.started.append((image, engine))


    def image_requeued(self, image: str, why: str) -> None:
        self.messages.append(why)




@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return write_stack(tmp_path, DOCKERFILES, extra="registry: reg\n")


def build_on(stack: Path, pool: EnginePool, reporter: Reporter | None = None):
    analysis = analyze(stack)
    pool.policy = NO_RETRY
    existing = existing_images(analysis, pool.alive[0].backend, print, pool.discover(analysis))
    plan = analysis.plan(existing.where())
    results = BuildRun(analysis, plan, pool.engines[0].backend, reporter or Reporter(),
                       BuildOptions(jobs=1), existing.local, pool=pool).run()  # fmt: skip
    return analysis, {r.image: r for r in results}


def ref(analysis, name: str) -> str:
    return f"reg/{name}:{fingerprint12(analysis.inputs[name].fingerprint)}"


def test_a_stack_builds_across_engines_and_parents_move_through_the_registry(
    stack: Path,
) -> None:
    alpha, beta = engines(("alpha", 1), ("beta", 1))
    reporter = Reporter()
    analysis, results = build_on(stack, EnginePool([alpha, beta]), reporter)

    assert {n: (r.status, r.engine) for n, r in results.items()} == {
        "base": ("built", "alpha"),  # ties go to the first engine
        "a": ("built", "alpha"),  # where base is
        "b": ("built", "beta"),  # alpha was busy: base pulled onto beta
        "c": ("built", "alpha"),  # where a is
    }
    # base and a have children to build, so they went to the registry first; leaves did not
    assert sorted(fake(alpha).done("push")) == sorted([ref(analysis, "base"), ref(analysis, "a")])
    assert fake(beta).done("push") == [] and fake(alpha).done("pull") == []
    assert fake(beta).done("pull") == [ref(analysis, "base")]
    assert ("b", "beta") in reporter.started
    assert analysis.state.load_record("b").engine == "beta"


def test_a_parent_up_to_date_on_one_engine_only_is_pushed_when_another_needs_it(
    stack: Path,
) -> None:
    analysis = analyze(stack)
    fp = analysis.inputs["base"].fingerprint
    old = LocalImage("sha256:old-base", (f"reg/base:{fp[7:19]}",))
    alpha, beta = engines(("alpha", 1), ("beta", 1), local={"alpha": {fp: [old]}})
    _, results = build_on(stack, EnginePool([alpha, beta]))

    assert results["base"].status == "up-to-date"
    assert fake(alpha).image_id("reg/base:latest") == "sha256:old-base"  # retagged where it is
    assert results["a"].engine == "alpha" and results["b"].engine == "beta"
    # beta asked the registry, which lacked it: alpha pushed it, beta pulled it
    assert ref(analysis, "base") in fake(alpha).done("push")
    assert fake(beta).done("pull") == [ref(analysis, "base")]
    assert fake(beta).image_id(ref(analysis, "base")) == "sha256:old-base"


def test_an_engine_that_stops_answering_hands_its_build_to_another(stack: Path) -> None:
    alpha, beta = engines(("alpha", 1), ("beta", 1))
    fake(beta).die_building = {"b"}
    reporter = Reporter()
    pool = EnginePool([alpha, beta])
    analysis, results = build_on(stack, pool, reporter)

    assert {n: (r.status, r.engine) for n, r in results.items()} == {
        "base": ("built", "alpha"), "a": ("built", "alpha"),
        "b": ("built", "alpha"), "c": ("built", "alpha"),
    }  # fmt: skip
    assert pool.alive == [alpha]
    assert pool.notes() == ["engine beta stopped answering; its builds moved to alpha"]
    assert "engine beta stopped answering; b goes back to the queue" in reporter.messages
    log = (analysis.state.logs / "b.log").read_text()
    assert "beta stopped answering; retrying elsewhere" in log
    assert "lost the connection to beta" in log


def test_when_no_engine_is_left_what_remains_fails(stack: Path) -> None:
    alpha, beta = engines(("alpha", 1), ("beta", 1))
    fake(alpha).die_building = {"a"}
    fake(beta).die_building = {"b"}
    pool = EnginePool([alpha, beta])
    _, results = build_on(stack, pool)

    assert results["base"].status == "built"
    assert {results[n].status for n in ("a", "b")} == {"failed"}
    assert results["c"].status == "blocked"
    assert pool.alive == []
    assert all("no engine is left in the pool" in (results[n].error or "") for n in ("a", "b"))


def test_pushes_come_from_an_engine_that_holds_the_image(stack: Path) -> None:
    shared = FakeRegistry()
    alpha, beta = engines(("alpha", 1), ("beta", 1), registry=shared)
    pool = EnginePool([alpha, beta])
    analysis = analyze(stack)
    pool.discover(analysis)
    fake(beta).add_image("sha256:b", ["reg/b:1"])
    pool.record("b", beta, "sha256:b")
    pushes = PoolPushes(pool)
    digest = pushes.push("reg/b:1", print)
    assert digest == shared["reg/b:1"].digest  # what the registry stored
    assert fake(beta).done("push") == ["reg/b:1"] and shared["reg/b:1"].image_id == "sha256:b"
    assert pushes.registry_digest("reg/b:1") == digest
    with pytest.raises(RegistryError, match="no engine that holds reg/a:1"):
        pushes.push("reg/a:1", print)


def test_up_to_date_images_are_found_on_every_engine_with_one_listing_each(stack: Path) -> None:
    analysis = analyze(stack)
    fp = {n: analysis.inputs[n].fingerprint for n in DOCKERFILES}

    def image(name: str, tag: str) -> LocalImage:
        return LocalImage(f"sha256:{name}", (f"{tag}:{fp[name][7:19]}",))

    alpha, beta = engines(("alpha", 1), ("beta", 1), local={
        "alpha": {fp["base"]: [image("base", "reg/base")]},
        "beta": {fp["base"]: [image("base", "reg/base")], fp["a"]: [image("a", "reg/a")],
                 fp["b"]: [image("b", "elsewhere/b")]},  # not in its repository: no
    })  # fmt: skip
    pool = EnginePool([alpha, beta])
    existing = existing_images(analysis, pool.alive[0].backend, print, pool.discover(analysis))
    assert [len(fake(e).attempts("fingerprinted_images")) for e in (alpha, beta)] == [1, 1]
    assert set(existing.local) == {"base", "a"} and existing.remote == {}
    assert pool.holders("base") == [alpha, beta] and pool.holders("a") == [beta]
