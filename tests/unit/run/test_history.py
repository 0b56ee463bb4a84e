"""History that travels: durations written into images and read back from the registry.

A fresh runner (no ``.stackbuild/``) orders its first build by the durations the
registry's images tell; a machine's own records still win; a registry that fails is
no error. The backend is ``tests.fakes.FakeBackend`` with its ``FakeRegistry``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stackbuild.analyze import analyze
from stackbuild.backends.contract import DURATION_LABEL, ManifestUnreachable
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.history import CREATED_LABEL, duration_of, fill_from_registry
from stackbuild.run.results import ImageResult
from tests.fakes import FakeBackend, FakeRegistry, Manifest, QuietReporter
from tests.helpers import fake_stack


def config(created: str | None = None, **labels: str) -> dict:
    out: dict = {"config": {"Labels": labels}}
    if created is not None:
        out["created"] = created
    return out


@pytest.mark.parametrize(
    ("cfg", "seconds"),
    [
        # the engine's commit time minus the build's start label: this build's duration
        (config("2026-12-02T14:01:05.123456789Z", **{CREATED_LABEL: "2026-12-02T14:00:00Z"}),
         65.123457),
        # a pinned `created` (SOURCE_DATE_EPOCH): the label of the last known duration
        (config("1970-01-01T00:00:00Z", **{CREATED_LABEL: "2026-12-02T14:00:00Z",
                                            DURATION_LABEL: "42.5"}), 42.5),
        (config(**{DURATION_LABEL: "7"}), 7.0),
        (config("2026-12-02T14:00:00Z"), None),  # not built by stackbuild: nothing to tell
        (config(**{DURATION_LABEL: "soon"}), None),
        (config(**{DURATION_LABEL: "-3"}), None),
        ({"config": None}, None),
        ({}, None),
    ],
)
def test_duration_of_an_image_config(cfg: dict, seconds: float | None) -> None:
    found = duration_of(cfg)
    assert found == (None if seconds is None else pytest.approx(seconds, abs=1e-3))


#   base ─┬─ a ── c       -j 1: after base, the scheduler picks the ready image with the
#         └─ b            longest remaining path: without durations a's (two images),
#                         with the registry's b's (one slow image)
DOCKERFILES = {"base": "FROM scratch\n", "a": "FROM reg/base\n", "b": "FROM reg/base\n",
               "c": "FROM reg/a\n"}


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return fake_stack(tmp_path, DOCKERFILES)


class Order(QuietReporter):
    """A reporter that remembers the start order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.messages: list[str] = []


    def message(self, text: str) -> None:
        self.messages.append(text)

    def image_started(self, image: str, engine: str | None = None) -> None:
        self.started.append(image)





def build(stack: Path, backend: FakeBackend) -> tuple[Order, list[ImageResult]]:
    """A fresh runner's ``build -j 1``, durations filled from the registry first."""
    analysis = analyze(stack)
    plan = analysis.plan({})
    reporter = Order()
    fill_from_registry(analysis, plan.to_build, backend, reporter.message)
    results = BuildRun(analysis, plan, backend, reporter, BuildOptions(jobs=1), {}).run()
    return reporter, results


def registry_with(durations: dict[str, str]) -> FakeRegistry:
    return FakeRegistry({f"reg/{name}:latest": Manifest(f"sha256:{name}" * 2,
                                                         labels={DURATION_LABEL: seconds})
                         for name, seconds in durations.items()})  # fmt: skip


def test_a_fresh_runner_orders_its_first_build_by_the_registrys_durations(
    stack: Path,
) -> None:
    # no history anywhere: a goes first (plan order)
    reporter, _ = build(stack, FakeBackend())
    assert reporter.started == ["base", "a", "b", "c"]

    # the registry's images say b is slow: b is the critical path
    (stack.parent / ".stackbuild").rename(stack.parent / "old-state")  # a fresh runner
    backend = FakeBackend(registry=registry_with({"a": "5", "b": "60", "c": "5"}))
    reporter, results = build(stack, backend)
    assert reporter.started == ["base", "b", "a", "c"]
    assert reporter.messages == [
        "build durations of 3 of 4 image(s) without history read from the registry"
    ]
    assert {r.status for r in results} == {"built"}


def test_local_records_win_and_become_the_label(stack: Path) -> None:
    analysis = analyze(stack)
    analysis.durations["a"] = 1.25  # this machine's own record
    backend = FakeBackend(registry=registry_with({"a": "99", "b": "3"}))
    found = fill_from_registry(analysis, ["a", "b"], backend)
    assert found == {"b": 3.0}
    assert analysis.durations["a"] == 1.25
    assert "reg/a:latest" not in backend.attempts("registry_config")
    # what the next build of each writes into its image: the last known duration
    BuildRun(analysis, analysis.plan({}), backend, Order(), BuildOptions(), {}).run()
    labels = {name: request.labels for name, request in backend.requests.items()}
    assert labels["a"][DURATION_LABEL] == "1.2"
    assert labels["b"][DURATION_LABEL] == "3.0"
    assert DURATION_LABEL not in labels["c"]  # never measured anywhere


def test_a_failing_registry_leaves_the_durations_alone(stack: Path) -> None:
    analysis = analyze(stack)
    backend = FakeBackend(registry=registry_with({"a": "5"}))
    backend.fail_always("registry_config",
                        ManifestUnreachable("http://reg/v2/a/manifests/latest: refused"))
    assert fill_from_registry(analysis, ["a", "b", "c"], backend) == {}
    # the host did not answer: not asked again (lookups already under way may finish)
    assert 1 <= len(backend.attempts("registry_config")) <= 3
    assert analysis.durations == {}


def test_no_registry_no_lookup(stack: Path) -> None:
    stack.write_text(stack.read_text().replace("registry: reg\n", ""))
    analysis = analyze(stack)
    backend = FakeBackend()
    assert fill_from_registry(analysis, ["a"], backend) == {}
    assert backend.attempts("registry_config") == []
