"""The builder pool on real engines: two test dockerds of our own plus docker-registry.

The engines come from tests/engines.py (own sockets, data roots, exec roots,
bridges and cgroups; started once for this module and removed with all their
images at its end). The main engine is never used here. Commands run as
``python3 -m stackbuild`` subprocesses, as a user would; stacks live in
tmp_path and name the registry fixture's address plus the test's prefix.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stackbuild.backends import open_backend
from stackbuild.backends.contract import FINGERPRINT_LABEL
from tests.engines import ExtraEngine, docker0_exists, engines_or_skip
from tests.helpers import BASE_DOCKERFILE, make_request, write_base_context
from tests.integration.test_registry import by_image, json_out, run_cli, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.registry]


@pytest.fixture(scope="module")
def engines() -> Iterator[list[ExtraEngine]]:
    """Two running test engines; named alpha and beta in the stacks below."""
    with engines_or_skip(2) as started:
        yield started


@pytest.fixture(scope="module")
def clients(engines: list[ExtraEngine]) -> Iterator[dict[str, Any]]:
    """A docker SDK client per engine, by the name the stacks give it."""
    import docker

    found = {name: docker.DockerClient(base_url=e.url)
             for name, e in zip(("alpha", "beta"), engines, strict=True)}  # fmt: skip
    yield found
    for client in found.values():
        client.close()


def add_builders(stack: Path, engines: list[ExtraEngine], slots: int = 1) -> None:
    text = "builders:\n" + "".join(
        f"  - {{url: '{e.url}', name: {name}, slots: {slots}}}\n"
        for name, e in zip(("alpha", "beta"), engines, strict=True)
    )
    with open(stack / "stack.yaml", "a") as f:
        f.write(text)


def running(client: Any, command: str) -> bool:
    """Whether a container (a build's RUN step) runs ``command`` on this engine."""
    return any(command in str(c.get("Command")) for c in client.api.containers())


def layers(client: Any, ref: str) -> list[str]:
    return list(client.api.inspect_image(ref)["RootFS"]["Layers"])


def test_a_stack_builds_across_the_pool_on_exactly_its_parents(
    engines: list[ExtraEngine], clients: dict[str, Any], registry: Any, unique: str,
    tmp_path: Path,
) -> None:
    assert docker0_exists()
    prefix = f"{registry.address}/{unique}"
    parents = {"left": ["base"], "right": ["base"], "top": ["left", "right"]}
    stack = write_stack(tmp_path / "stack", unique, {
        "base": BASE_DOCKERFILE + "RUN echo base > /m-base\n",
        "left": f"FROM {prefix}/base\nRUN sleep 1 && echo left > /m-left\n",
        "right": f"FROM {prefix}/base:latest\nRUN sleep 1 && echo right > /m-right\n",
        "top": f"FROM {prefix}/left\nCOPY --from={prefix}/right /m-right /m-right\n",
    }, registry=prefix)
    add_builders(stack, engines)
    # beta already has a different base:latest; a child built there must not use it
    ctx = write_base_context(tmp_path / "stale", extra="RUN echo stale > /m-base\n")
    stale = open_backend("docker", engines[1].url).build(
        make_request(ctx, f"{prefix}/base", unique=unique, tags=(f"{prefix}/base:latest",)),
        lambda line: None, threading.Event(),
    )
    assert stale.ok, stale.error

    proc = run_cli(stack, "build", "--json")
    results = by_image(json_out(proc))
    assert {r["status"] for r in results.values()} == {"built"}
    where = {name: r["engine"] for name, r in results.items()}
    assert set(where.values()) == {"alpha", "beta"}, where  # the work was spread
    assert where["left"] != where["right"]  # one slot each: siblings ran side by side
    assert "ENGINE" in proc.stderr and "stopped answering" not in proc.stderr

    # each image is on the engine the JSON names, tagged with its fingerprint
    for name, result in results.items():
        ref = result["tags"][0]
        assert ref == f"{prefix}/{name}:{result['fingerprint'][7:19]}"
        labels = clients[where[name]].api.inspect_image(ref)["Config"]["Labels"]
        assert labels[FINGERPRINT_LABEL] == result["fingerprint"]
    # ... and built on exactly its parents' builds, wherever they ran: their layers
    # are a prefix of its own (layer digests survive the trip through the registry)
    for child, names in parents.items():
        child_layers = layers(clients[where[child]], results[child]["tags"][0])
        for parent in names[:1]:  # FROM; right reaches top only through COPY --from
            parent_layers = layers(clients[where[parent]], results[parent]["tags"][0])
            assert child_layers[: len(parent_layers)] == parent_layers, (child, parent)
    top = results["top"]["tags"][0]
    out = clients[where["top"]].containers.run(
        top, ["cat", "/m-base", "/m-left", "/m-right"], network_mode="none", remove=True
    )
    assert out.decode().split() == ["base", "left", "right"]

    # what other engines needed went to the registry by fingerprint; the leaf did not
    assert results["base"]["tags"][0].rpartition(":")[2] in registry.tags(f"{unique}/base")
    assert registry.tags(f"{unique}/top") == []

    # again: every image is found on the engine that has it; nothing is built
    again = by_image(json_out(run_cli(stack, "build", "--json")))
    assert {r["status"] for r in again.values()} == {"up-to-date"}
    plan = json_out(run_cli(stack, "plan", "--json"))
    assert plan["summary"] == {"build": 0, "skip": 4, "test": 0, "promote": 0}


def test_buildkit_and_sdk_backends_give_the_same_plan_and_statuses(
    engines: list[ExtraEngine], tmp_path: Path, unique: str,
) -> None:
    from stackbuild.errors import BuildKitUnavailable

    try:
        engine = open_backend("buildkit", engines[1].url)
        engine.builder.cli(engine)
    except BuildKitUnavailable as e:
        pytest.skip(str(e))
    dockerfiles = {
        "base": BASE_DOCKERFILE + "RUN echo base > /m-base\n",
        "ok": "FROM base\nARG GREETING=hi\nRUN echo $GREETING > /m-ok\n",
        "bad": "FROM base\nRUN false\n",
        "bad-kid": "FROM bad\nRUN true\n",
        "ok-kid": "FROM ok\nCOPY ok-kid.txt /\n",
    }
    # the same stack, once per backend, each on an engine of its own (the busybox rootfs
    # of tests/helpers differs per stack, so fingerprints are compared within a stack);
    # the two run side by side, as they share nothing
    def run(kind: str, engine: ExtraEngine) -> list[Any]:
        stack = write_stack(tmp_path / kind, unique, dockerfiles)
        with open(stack / "stack.yaml", "a") as f:
            f.write(f"backend: {kind}\nbuilders:\n  - {{url: '{engine.url}', name: e}}\n")
        plans = [json_out(run_cli(stack, "plan", "--json"))]
        builds = [json_out(run_cli(stack, "build", "--json"), code=1)]
        plans.append(json_out(run_cli(stack, "plan", "--json")))
        builds.append(json_out(run_cli(stack, "build", "--json"), code=1))
        fingerprints = {s["image"]: s["fingerprint"] for s in plans[0]["steps"]}
        for document in (*plans[1:], *builds):
            items = document.get("steps") or document["results"]
            assert {i["image"]: i["fingerprint"] for i in items} == fingerprints
        return [
            *([(s["image"], s["action"], s["reasons"], s["parents"]) for s in p["steps"]]
              for p in plans),
            *({r["image"]: (r["status"], r["engine"]) for r in b["results"]} for b in builds),
        ]  # fmt: skip

    with ThreadPoolExecutor(max_workers=2) as executor:
        futures = {kind: executor.submit(run, kind, engine)
                   for kind, engine in (("docker", engines[0]), ("buildkit", engines[1]))}
        runs = {kind: future.result() for kind, future in futures.items()}

    assert runs["docker"] == runs["buildkit"]
    before, after, first, second = runs["docker"]
    assert {action for _, action, _, _ in before} == {"build"}
    assert first == {
        "base": ("built", "e"), "ok": ("built", "e"), "ok-kid": ("built", "e"),
        "bad": ("failed", "e"), "bad-kid": ("blocked", None),
    }  # fmt: skip
    assert [(image, action) for image, action, _, _ in after] == [
        ("base", "skip"), ("ok", "skip"), ("bad", "build"), ("bad-kid", "build"),
        ("ok-kid", "skip"),
    ]  # fmt: skip
    assert second == {
        "base": ("up-to-date", None), "ok": ("up-to-date", None),
        "ok-kid": ("up-to-date", None), "bad": ("failed", "e"), "bad-kid": ("blocked", None),
    }  # fmt: skip


def test_killing_an_engine_mid_build_moves_its_work_and_the_run_completes(
    engines: list[ExtraEngine], clients: dict[str, Any], registry: Any, unique: str,
    tmp_path: Path,
) -> None:
    from tests.helpers import wait_until

    prefix = f"{registry.address}/{unique}"
    stack = write_stack(tmp_path / "stack", unique, {
        "base": BASE_DOCKERFILE,
        "slow1": f"FROM {prefix}/base\nRUN sleep 4 && echo slow1 > /m-slow1\n",
        "slow2": f"FROM {prefix}/base\nRUN sleep 4 && echo slow2 > /m-slow2\n",
        "kid1": f"FROM {prefix}/slow1\nRUN cat /m-slow1\n",
        "kid2": f"FROM {prefix}/slow2\nRUN cat /m-slow2\n",
    }, registry=prefix)
    add_builders(stack, engines)
    alpha, beta = engines
    # the classic builder: the test waits for the RUN step's container, which BuildKit
    # (the default) does not make
    proc = run_cli(stack, "build", "--json", "--backend", "docker", popen=True)
    try:
        on_beta = None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            words = line.split()
            if words[1:2] == ["start"] and words[-2:] == ["on", "beta"]:
                on_beta = words[2]
                break
        assert on_beta in ("slow1", "slow2"), "".join(seen)
        # SIGKILL beta's dockerd while its RUN sleep is running
        assert wait_until(lambda: running(clients["beta"], "sleep 4"), timeout=30)
        beta.kill()
        out, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        # beta stays down: this is the module's last test, and closing the engines
        # cleans up what the crash left
    stderr = "".join(seen) + rest
    assert proc.returncode == 0, stderr
    document = json.loads(out)
    results = by_image(document)
    assert {r["status"] for r in results.values()} == {"built"}, stderr
    assert {r["engine"] for r in results.values()} == {"alpha"}
    assert f"engine beta stopped answering; {on_beta} goes back to the queue" in stderr
    assert "engine beta stopped answering; its builds moved to alpha" in stderr
    assert document["pool"]["engines"][1] == {"name": "beta", "slots": 1, "alive": False}
    moved = results[on_beta]["tags"][0]
    labels = clients["alpha"].api.inspect_image(moved)["Config"]["Labels"]
    assert labels[FINGERPRINT_LABEL] == results[on_beta]["fingerprint"]
    run_log = (stack / ".stackbuild/logs/stackbuild.log").read_text()
    assert f"requeued {on_beta} engine beta stopped answering" in run_log
    assert docker0_exists()
