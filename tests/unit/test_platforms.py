"""Multi-platform stacks without an engine: the manifest's platforms, one node per
(image, platform) with its own fingerprint, plan rows and builds (tests.fakes.FakeBackend)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from stackbuild.analyze import analyze
from stackbuild.errors import ManifestError
from stackbuild.manifest import load_stack
from stackbuild.platforms import node_name, platform_tag, split_node
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.existing import find_existing
from tests.fakes import FakeBackend, QuietReporter

AMD, ARM = "linux/amd64", "linux/arm64"

DOCKERFILES = {
    "base": "FROM scratch\nCOPY f /f\n",
    "httpd": "FROM reg/base\nRUN true\n",
    "site": "FROM httpd\nARG GREETING\n",
}


def write_stack(root: Path, images: str, defaults: str = "",
                dockerfiles: dict[str, str] = DOCKERFILES) -> Path:  # fmt: skip
    for name, dockerfile in dockerfiles.items():
        (root / name).mkdir(exist_ok=True)
        (root / name / "Dockerfile").write_text(dockerfile)
        (root / name / "f").write_text(name)
    text = "version: 1\nregistry: reg\n" + textwrap.dedent(defaults) + "images:\n"
    text += textwrap.indent(textwrap.dedent(images), "  ")
    (root / "stack.yaml").write_text(text)
    return root / "stack.yaml"


TWO = """\
base: {context: base}
httpd: {context: httpd}
site:
  context: site
  build_args: {GREETING: hi}
  platform_build_args: {linux/arm64: {GREETING: hi-arm}}
"""
TWO_DEFAULTS = "defaults:\n  platforms: [linux/amd64, linux/arm64]\n"


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_stack(tmp_path, TWO, TWO_DEFAULTS)


@pytest.fixture
def two_on_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``two`` with base built FROM the upstream debian:12."""
    monkeypatch.chdir(tmp_path)
    dockerfiles = {**DOCKERFILES, "base": "FROM debian:12\n"}
    return write_stack(tmp_path, TWO, TWO_DEFAULTS, dockerfiles)


def error_of(stack_file: Path) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        analyze(stack_file)
    return caught.value


# -- the manifest ------------------------------------------------------------------------


def test_platform_and_platforms_together_is_a_located_error(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "base: {context: base, platform: linux/amd64,\n"
                                  "       platforms: [linux/amd64, linux/arm64]}\n")  # fmt: skip
    error = error_of(stack)
    assert "either platform (one) or platforms (a list), not both" in error.message
    assert (error.line, error.col) == (5, 10)  # the platforms key


def test_one_platform_in_a_list_is_the_platform_form(tmp_path: Path) -> None:
    listed = load_stack(write_stack(tmp_path, "base: {context: base, platforms: [linux/arm64]}\n"))
    assert (listed.images["base"].platform, listed.images["base"].platforms) == (ARM, ())
    one = analyze(write_stack(tmp_path, "base: {context: base, platform: linux/arm64}\n"))
    assert analyze(listed).inputs["base"].fingerprint == one.inputs["base"].fingerprint


def test_a_parent_must_offer_every_platform_of_its_child(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, """\
        base: {context: base, platforms: [linux/amd64]}
        httpd: {context: httpd, platforms: [linux/amd64, linux/arm64]}
        site: {context: site, platforms: [linux/amd64]}
        """)  # fmt: skip
    error = error_of(stack)
    assert error.message.startswith(
        "image 'httpd' is built for linux/arm64, which its parent 'base' does not offer"
    )
    assert "add linux/arm64 to the platforms of 'base'" in error.message
    assert error.line == 5  # the platforms of httpd


def test_platform_build_args_must_name_a_platform_of_the_image(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, """\
        base:
          context: base
          platforms: [linux/amd64, linux/arm64]
          platform_build_args: {linux/s390x: {X: "1"}}
        """)  # fmt: skip
    error = error_of(stack)
    assert "platform_build_args names linux/s390x, which image 'base' is not built for" in (
        error.message
    )
    assert error.line == 7


def test_node_names() -> None:
    assert node_name("base", ARM) == "base[linux/arm64]"
    assert split_node("base[linux/arm64]") == ("base", ARM)
    assert split_node("base") == ("base", None)
    assert platform_tag("latest", "linux/arm64/v8") == "latest-linux-arm64-v8"
    assert len(platform_tag("x" * 128, ARM)) == 128


# -- fingerprints and the graph ----------------------------------------------------------


def test_each_image_and_platform_is_a_node_with_its_own_fingerprint(two: Path) -> None:
    analysis = analyze(two)
    assert analysis.selected == [
        node_name(image, platform)
        for image in ("base", "httpd", "site")
        for platform in (AMD, ARM)
    ]
    fingerprints = {name: inputs.fingerprint for name, inputs in analysis.inputs.items()}
    assert len(set(fingerprints.values())) == 6
    # every edge stays on its platform: the two sides share no node
    assert analysis.graph.parents("httpd[linux/arm64]") == ("base[linux/arm64]",)
    assert analysis.graph.parents("site[linux/amd64]") == ("httpd[linux/amd64]",)
    assert analysis.inputs["site[linux/arm64]"].build_args == {"GREETING": "hi-arm"}
    assert analysis.inputs["site[linux/amd64]"].build_args == {"GREETING": "hi"}
    assert analysis.stack.reference("site[linux/arm64]") == "reg/site"


def test_a_target_selects_all_its_platforms(two: Path) -> None:
    assert analyze(two, ["httpd"]).selected == [
        "base[linux/amd64]", "base[linux/arm64]", "httpd[linux/amd64]", "httpd[linux/arm64]",
    ]  # fmt: skip


def test_an_arm64_only_build_arg_changes_only_the_arm64_fingerprints(two: Path) -> None:
    before = analyze(two).inputs
    two.write_text(two.read_text().replace("hi-arm", "hi-arm-2"))
    after = analyze(two).inputs
    changed = {name for name in before if before[name].fingerprint != after[name].fingerprint}
    assert changed == {"site[linux/arm64]"}


def test_a_per_platform_pin_in_the_lock_moves_only_that_platform(two_on_debian: Path) -> None:
    stack = two_on_debian
    index, amd, arm = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64
    pins = {"debian:12": index, "debian:12[linux/amd64]": amd, "debian:12[linux/arm64]": arm}
    before = analyze(stack, pinned=pins).inputs
    assert before["base[linux/arm64]"].upstream == {"debian:12": arm}
    after = analyze(stack, pinned={**pins, "debian:12[linux/arm64]": "sha256:" + "4" * 64})
    changed = {n for n in before if before[n].fingerprint != after.inputs[n].fingerprint}
    assert changed == {"base[linux/arm64]", "httpd[linux/arm64]", "site[linux/arm64]"}


# -- plan and build ----------------------------------------------------------------------


def build(stack_file: Path, backend: FakeBackend) -> tuple[list[str], list[str]]:
    """(what was built, the statuses by plan row) of one build run on ``backend``."""
    analysis = analyze(stack_file)
    local = find_existing(analysis, backend)
    plan = analysis.plan({name: "local engine" for name in local})
    results = BuildRun(analysis, plan, backend, QuietReporter(), BuildOptions(jobs=4), local).run()
    return [r.image for r in results if r.status == "built"], [s.image for s in plan.steps]


def test_every_node_builds_for_its_platform_on_its_own_parent(two: Path) -> None:
    backend = FakeBackend()
    built, rows = build(two, backend)
    assert rows == built and len(rows) == 6  # one plan row per image and platform
    arm = backend.requests["site[linux/arm64]"]
    assert arm.platform == ARM and arm.repository == "reg/site"
    assert arm.build_args == {"GREETING": "hi-arm"}
    assert arm.pins == {"httpd": "sha256:id-httpd[linux/arm64]"}
    # the engine holds one platform per tag: the node's own tags name the platform
    assert arm.tags == (f"reg/site:{arm.fingerprint[7:19]}", "reg/site:latest-linux-arm64")
    assert backend.requests["httpd[linux/amd64]"].pins == {
        "reg/base": "sha256:id-base[linux/amd64]"
    }


def test_a_second_run_builds_nothing_and_an_arm64_arg_rebuilds_only_arm64(two: Path) -> None:
    backend = FakeBackend()
    build(two, backend)
    assert build(two, backend)[0] == []
    two.write_text(two.read_text().replace("hi-arm", "hi-arm-2"))
    assert build(two, backend)[0] == ["site[linux/arm64]"]


# -- publishing and emulation ------------------------------------------------------------


def pushed_nodes(stack: Path, status: str) -> tuple[FakeBackend, Any, dict[str, Any]]:
    """Every node of ``stack`` in the fake registry under its fingerprint12 tag, with its
    result of ``status`` (built: pushed in this run)."""
    from stackbuild.run.results import ImageResult

    backend = FakeBackend()
    analysis = analyze(stack)
    results = {}
    for name in analysis.selected:
        fingerprint = analysis.inputs[name].fingerprint
        ref = f"reg/{name.split('[')[0]}:{fingerprint[7:19]}"
        backend.add_image(f"sha256:id-{name}", (ref,))
        backend.push(ref, lambda line: None)
        pushed = [ref] if status == "built" else []
        results[name] = ImageResult(name, status, fingerprint, tags=[ref], pushed=pushed)
    return backend, analysis, results


def test_a_pushed_multi_platform_image_gets_one_index_per_tag(two: Path) -> None:
    from stackbuild.run.promote import HELD_BACK, PROMOTED
    from stackbuild.run.publish import INDEX_TYPE, publish_indexes
    from stackbuild.run.results import Promotion
    from stackbuild.scheduler import Status

    backend, analysis, results = pushed_nodes(two, Status.BUILT)
    # promotion held back: only the immutable fingerprint12 index is put
    for result in results.values():
        result.promotion = Promotion(HELD_BACK, reason="ancestor base failed")
    put = publish_indexes(backend, analysis.stack, analysis.selected, results, None, print)
    assert len(put) == 3 and not any(ref.endswith(":latest") for ref in put)
    for result in results.values():  # promoted: the release tags get the index too
        result.promotion = Promotion(PROMOTED)
    put = publish_indexes(backend, analysis.stack, analysis.selected, results, None, print)
    assert "reg/site:latest" in put and len(put) == 3  # latest, per image
    index = backend.indexes["reg/site:latest"]
    assert index["mediaType"] == INDEX_TYPE
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"},
    ]  # fmt: skip
    assert "reg/site:latest" in results["site[linux/arm64]"].pushed


def test_a_missing_emulator_says_what_to_install() -> None:
    from stackbuild.backends.buildkit import no_emulation

    tail = ["#5 0.698 exec /bin/busybox: exec format error", "#5 ERROR: executor failed"]
    message = no_emulation(tail, ARM)
    assert message is not None and "apt-get install qemu-user-static" in message
    assert no_emulation(tail, None) is None
    assert no_emulation(["#5 ERROR: exit code: 1"], ARM) is None


def test_the_classic_backend_refuses_two_platforms(two: Path) -> None:
    from stackbuild.platforms import check_backend

    stack = load_stack(two)
    check_backend(stack, "buildkit")
    with pytest.raises(ManifestError, match="the classic backend .docker. builds one platform"):
        check_backend(stack, "docker")


def test_a_platform_pin_is_that_platform_s_manifest_in_the_index() -> None:
    import json

    from stackbuild.errors import RegistryError
    from stackbuild.run.upstream import platform_digest

    amd, arm = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    index = json.dumps({"manifests": [
        {"digest": amd, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]}).encode()  # fmt: skip

    def fetch(ref: str) -> tuple[bytes, str, str | None]:
        return index, "application/vnd.oci.image.index.v1+json", None

    assert platform_digest("debian:12", "sha256:" + "1" * 64, ARM, fetch) == arm
    assert platform_digest("debian:12", "sha256:" + "1" * 64, AMD, fetch) == amd
    with pytest.raises(RegistryError, match="offers no linux/s390x image"):
        platform_digest("debian:12", "sha256:" + "1" * 64, "linux/s390x", fetch)
    single = (b'{"config": {}}', "application/vnd.docker.distribution.manifest.v2+json", None)
    assert platform_digest("x:1", amd, ARM, lambda ref: single) == amd


def test_a_moved_arm64_pin_names_only_the_arm64_nodes(two_on_debian: Path) -> None:
    from stackbuild.run.upstream import moved_upstreams, upstream_refs

    stack = two_on_debian
    analysis = analyze(stack, pinned={})
    refs = upstream_refs(analysis.graph, analysis.selected)
    assert refs == ["debian:12", "debian:12[linux/amd64]", "debian:12[linux/arm64]"]
    old = {ref: "sha256:" + "1" * 64 for ref in refs}
    new = {**old, "debian:12": "sha256:" + "2" * 64, "debian:12[linux/arm64]": "sha256:" + "3" * 64}
    moved = {m.ref: m.images for m in moved_upstreams(analysis.graph, analysis.selected, old, new)}
    assert moved == {
        "debian:12": (),  # every node takes its own platform's pin
        "debian:12[linux/arm64]": ("base[linux/arm64]", "httpd[linux/arm64]", "site[linux/arm64]"),
    }


# -- a builder pool ----------------------------------------------------------------------


def test_a_node_goes_to_a_native_engine_first_and_to_emulation_when_none_is_free(
    two: Path,
) -> None:
    from stackbuild.backends.contract import engine_platform_of
    from stackbuild.run.pool import Engine, EnginePool, open_pool

    assert engine_platform_of("linux", "aarch64") == ARM
    assert engine_platform_of("linux", "x86_64") == AMD
    stack = load_stack(two)
    backends = {"amd": FakeBackend("amd", platform=AMD), "arm": FakeBackend("arm", platform=ARM)}
    specs = [type("Spec", (), {"name": n, "url": n, "slots": 1})() for n in backends]
    pool = open_pool(stack, specs, lambda spec: backends[spec.name], print)  # type: ignore[arg-type]
    assert [(e.name, e.platform) for e in pool.engines] == [("amd", AMD), ("arm", ARM)]
    pool.discover(analyze(two))
    arm = pool.acquire("base[linux/arm64]")
    assert arm is not None and arm.engine.name == "arm"  # native, though listed second
    # the arm engine is busy: the next arm64 node builds emulated on the amd engine
    emulated = pool.acquire("httpd[linux/arm64]")
    assert emulated is not None and emulated.engine.name == "amd"
    assert isinstance(emulated.engine, Engine) and isinstance(pool, EnginePool)


def test_an_index_already_in_the_registry_is_not_put_again(two: Path) -> None:
    from stackbuild.run.promote import PROMOTED
    from stackbuild.run.publish import publish_indexes
    from stackbuild.run.results import Promotion
    from stackbuild.scheduler import Status

    backend, analysis, results = pushed_nodes(two, Status.UP_TO_DATE)
    for result in results.values():
        result.promotion = Promotion(PROMOTED)
    def publish() -> list[str]:
        return publish_indexes(backend, analysis.stack, analysis.selected, results, None, print)

    assert len(publish()) == 6
    assert publish() == []


def test_save_carries_every_platform(two: Path) -> None:
    from stackbuild.run.archive import images_to_save

    backend = FakeBackend()
    build(two, backend)
    saved = images_to_save(analyze(two), backend)
    assert [s.image for s in saved] == analyze(two).selected
    assert "reg/site:latest-linux-arm64" in {t for s in saved for t in s.tags}


def test_plan_and_why_show_one_row_per_image_and_platform(two: Path) -> None:
    import json

    from click.testing import CliRunner

    from stackbuild.cli import cli

    plan = CliRunner().invoke(cli, ["-f", str(two), "plan", "--offline", "--json"])
    assert plan.exit_code == 0, plan.output
    rows = [step["image"] for step in json.loads(plan.output)["steps"]]
    assert rows == [f"{i}[{p}]" for i in ("base", "httpd", "site") for p in (AMD, ARM)]
    why = CliRunner().invoke(cli, ["-f", str(two), "why", "--offline", "site"])
    assert why.exit_code == 0, why.output
    assert "site[linux/amd64] will be built" in why.output
    assert "site[linux/arm64] will be built" in why.output
    assert "parents: httpd[linux/arm64]" in why.output


def test_a_target_can_name_one_platform_and_force_takes_every_platform(two: Path) -> None:
    assert analyze(two, ["httpd[linux/arm64]"]).selected == [
        "base[linux/arm64]", "httpd[linux/arm64]",
    ]  # fmt: skip
    backend = FakeBackend()
    build(two, backend)
    analysis = analyze(two)
    local = find_existing(analysis, backend)
    plan = analysis.plan({name: "local engine" for name in local}, force=["site"])
    assert plan.to_build == ["site[linux/amd64]", "site[linux/arm64]"]


def test_a_platform_s_tags_name_it_once() -> None:
    from stackbuild.run.build import image_tags

    fp = "sha256:" + "0123456789ab" + "c" * 52
    assert image_tags("reg/app", fp, ("{fingerprint12}", "v1"), None, ARM) == [
        "reg/app:0123456789ab", "reg/app:latest-linux-arm64", "reg/app:v1-linux-arm64",
    ]  # fmt: skip
    assert image_tags("reg/app", fp, ("{fingerprint12}",), None) == [
        "reg/app:0123456789ab", "reg/app:latest",
    ]  # fmt: skip


def test_promotion_moves_a_platform_nodes_own_release_tags(two: Path) -> None:
    """Promotion moves a platform node's own release tags (``latest-linux-arm64``), the
    ones its build tagged (``node_tags``): never the image's ``latest``, which holds the
    index of all its platforms."""
    from stackbuild.run.build import node_tags
    from stackbuild.run.promote import release_refs

    analysis = analyze(two)
    node = "site[linux/arm64]"
    tags = node_tags(analysis.stack, node, analysis.inputs[node].fingerprint, None)
    fingerprint_ref, release = release_refs(analysis, node)
    assert [fingerprint_ref, *release] == tags
    assert "reg/site:latest-linux-arm64" in release and "reg/site:latest" not in release
