"""Attestations in a build run, on the fake engine: written, attached after a push."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from stackbuild.analyze import analyze
from stackbuild.run.attest import Attestor, secret_values
from stackbuild.run.build import BuildOptions, BuildRun
from stackbuild.run.registry import Pusher, RetryPolicy
from tests.fakes import FakeBackend, Manifest

STATUS = b"Package: libfake\nStatus: install ok installed\nVersion: 1.0\n"


class Quiet:
    def start(self, to_build: int, up_to_date: int, to_test: int = 0) -> None: ...
    def scheduled(self, schedule: object, slots: int, durations: object) -> None: ...
    def image_started(self, image: str, engine: str | None = None) -> None: ...
    def image_output(self, image: str, line: str) -> None: ...
    def image_requeued(self, image: str, why: str) -> None: ...
    def image_finished(self, result: object) -> None: ...


def make_stack(tmp_path: Path) -> Path:
    for name, dockerfile in {"base": "FROM scratch\nCOPY f /f\n", "app": "FROM base\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(dockerfile)
        (tmp_path / name / "f").write_text(name)
    (tmp_path / "stack.yaml").write_text(
        "version: 1\nregistry: reg\nimages:\n  base:\n    context: base\n"
        "    secrets:\n      token: env:SBT_UNIT_TOKEN\n  app:\n    context: app\n")
    return tmp_path / "stack.yaml"


def test_every_built_image_gets_provenance_and_sbom_and_a_push_attaches_them(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SBT_UNIT_TOKEN", "top-secret-value")
    analysis = analyze(make_stack(tmp_path))
    backend = FakeBackend()
    backend.filesystems["base"] = {"var/lib/dpkg/status": STATUS, "etc/passwd": b"root"}
    messages: list[str] = []
    attestor = Attestor(analysis, "docker", messages.append)
    stop = threading.Event()

    def attach(image: str, subject: str, log) -> None:
        attestor.attach(image, subject, log, backend=backend)

    pusher = Pusher(backend, 1, tmp_path, stop, messages.append, RetryPolicy(0, 1, 0, 0),
                    after_push=attach)
    from stackbuild.run.registry import RegistryHooks

    hooks = RegistryHooks(backend, analysis, {}, pusher, stop)
    results = BuildRun(analysis, analysis.plan(None), backend, Quiet(), BuildOptions(jobs=2),
                       {}, stop, registry_hooks=hooks, attestor=attestor).run()
    assert [r.error for r in results] == [None, None], messages
    state = tmp_path / ".stackbuild"
    for result in results:  # pushed as its fingerprint tag (release tags move later)
        name = result.image
        statement = json.loads((state / "provenance" / f"{name}.json").read_text())
        manifest: Manifest = backend.registry.find(result.tags[0])
        assert statement["subject"][0]["digest"] == {"sha256": manifest.digest[7:]}
        kinds = [a.tag_suffix for a in backend.registry.attachments[(f"reg/{name}",
                                                                     manifest.digest)]]
        assert kinds == ["att", "sbom"]
    sbom = json.loads((state / "sbom" / "base.cdx.json").read_text())
    assert [c["name"] for c in sbom["components"]] == ["libfake"]
    app = json.loads((state / "sbom" / "app.cdx.json").read_text())
    assert [c["name"] for c in app["components"]] == ["base"]
    for path in state.rglob("*"):
        if path.is_file():
            assert b"top-secret-value" not in path.read_bytes(), path


def test_a_failure_to_read_the_image_is_reported_and_the_provenance_still_attached(
    tmp_path: Path
) -> None:
    from stackbuild.run.registry import RegistryHooks

    analysis = analyze(make_stack(tmp_path))
    backend = FakeBackend()
    backend.fail_always("read_image_files", RuntimeError("engine hiccup"))
    stale = tmp_path / ".stackbuild/sbom/base.cdx.json"  # an earlier build's
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    messages: list[str] = []
    stop = threading.Event()
    attestor = Attestor(analysis, "docker", messages.append)
    pusher = Pusher(backend, 1, tmp_path, stop, messages.append, RetryPolicy(0, 1, 0, 0),
                    after_push=lambda i, s, log: attestor.attach(i, s, log, backend=backend))
    results = BuildRun(analysis, analysis.plan(None), backend, Quiet(), BuildOptions(jobs=1),
                       {}, stop, registry_hooks=RegistryHooks(backend, analysis, {}, pusher, stop),
                       attestor=attestor).run()
    assert all(r.error is None for r in results)
    assert any("base" in m and "engine hiccup" in m for m in messages)
    assert (tmp_path / ".stackbuild/provenance/base.json").exists()
    assert not stale.exists()
    digest = backend.registry.find(next(r for r in results if r.image == "base").tags[0]).digest
    assert [a.tag_suffix for a in backend.registry.attachments[("reg/base", digest)]] == ["att"]


def test_secret_values_come_from_env_and_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SBT_A", "from-env")
    (tmp_path / "s").write_text("from-file\n")
    assert secret_values({"a": "env:SBT_A", "b": f"file:{tmp_path / 's'}",
                          "c": "env:SBT_UNSET_X", "d": "file:/nonexistent"}) == [
        "from-env", "from-file"]


def test_an_image_of_layers_read_before_takes_its_packages_from_the_cache(
    tmp_path: Path
) -> None:
    """A rebuild that reused every layer (a forced rebuild, a label change) has the same
    filesystem: its SBOM lists the same packages without the engine reading it again; a
    damaged cache entry is read again, never trusted."""
    from stackbuild.layers import Layer

    analysis = analyze(make_stack(tmp_path))
    backend = FakeBackend()
    layers = [Layer("sha256:" + "1" * 64, 10), Layer("sha256:" + "2" * 64, 20)]
    first = backend.add_image("sha256:" + "a" * 64, layers=layers)
    first.files["var/lib/dpkg/status"] = STATUS
    backend.add_image("sha256:" + "b" * 64, layers=layers)  # same layers, files unknown
    backend.add_image("sha256:" + "c" * 64, layers=[layers[0]])  # another filesystem

    def sbom_of(image_id: str) -> list[str]:
        attestor = Attestor(analysis, "docker", messages.append)
        attestor.built("base", backend, image_id, {}, 0.0, 1.0)
        attestor.wait()
        document = json.loads((tmp_path / ".stackbuild/sbom/base.cdx.json").read_text())
        return [c["name"] for c in document["components"]]

    def reads() -> int:
        return sum(call == "read_image_files" for call, _ in backend.calls)

    messages: list[str] = []
    assert sbom_of("sha256:" + "a" * 64) == ["libfake"] and reads() == 1
    assert sbom_of("sha256:" + "b" * 64) == ["libfake"] and reads() == 1  # from the cache
    assert sbom_of("sha256:" + "c" * 64) == [] and reads() == 2  # other layers: read
    for entry in (tmp_path / ".stackbuild/sbom-cache").iterdir():
        entry.write_text("{not json")
    assert sbom_of("sha256:" + "b" * 64) == [] and reads() == 3  # read again: b has no files
    assert messages == []
