"""The CI fan-out on this machine: the generated jobs as processes, one fresh engine each.

``stackbuild ci github`` writes the workflow of a small diamond stack (three levels);
each of its jobs then runs as CI would run it: its own checkout (a copy of the stack,
no ``.stackbuild/``), its own fresh Docker engine (tests/engines.py: own socket, data
root and bridge), only the registry in common, and only after the jobs its ``needs:``
names; the jobs of one level run side by side. Then the registry holds every image at
its fingerprint, each job built exactly its own images (its ``--json``), and a second
generation has no build job.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from tests.engines import ExtraEngine, engines_or_skip
from tests.helpers import BASE_DOCKERFILE
from tests.integration.test_registry import REPO_ROOT, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.registry]

JOB_TIMEOUT = 300  # s per job


@pytest.fixture
def engines() -> Iterator[list[ExtraEngine]]:
    """One fresh engine per job of the diamond."""
    with engines_or_skip(4) as started:
        yield started


def stackbuild(*args: str) -> list[str]:
    return [sys.executable, "-m", "stackbuild", *args]


def environment(**more: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **more}


def generate(stack: Path, kind: str = "github") -> tuple[dict[str, Any], str]:
    """``stackbuild ci KIND`` in the checkout (asks the registry through the main engine)."""
    proc = subprocess.run(stackbuild("ci", kind), cwd=stack, env=environment(),
                          capture_output=True, text=True, timeout=JOB_TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout), proc.stderr


def build_command(job: dict[str, Any]) -> list[str] | None:
    """The job's ``stackbuild build ... --push`` as a command line here, with --json."""
    for step in job["steps"]:
        words = shlex.split(step.get("run", ""))
        if words[:2] == ["stackbuild", "build"]:
            return [sys.executable, "-m", *words, "--json"]
    return None


def test_the_generated_jobs_build_the_stack_on_fresh_engines_through_the_registry(
    engines: list[ExtraEngine], registry: Any, unique: str, tmp_path: Path,
) -> None:
    prefix = f"{registry.address}/{unique}"
    stack = write_stack(tmp_path / "checkout", unique, {
        "base": BASE_DOCKERFILE + "RUN echo base > /m-base\n",
        "left": f"FROM {prefix}/base\nRUN echo left > /m-left\n",
        "right": f"FROM {prefix}/base\nRUN echo right > /m-right\n",
        "top": f"FROM {prefix}/left\nCOPY --from={prefix}/right /m-right /m-right\n",
    }, registry=prefix)
    planned = subprocess.run(stackbuild("plan", "--offline", "--json"), cwd=stack, check=True,
                             env=environment(), capture_output=True, text=True)  # fmt: skip
    fingerprints = {s["image"]: s["fingerprint"] for s in json.loads(planned.stdout)["steps"]}

    workflow, said = generate(stack)
    assert "4 job(s) for 4 image(s) to build" in said
    jobs = workflow["jobs"]
    assert len(jobs) == 4
    dag = nx.DiGraph()
    dag.add_nodes_from(jobs)
    dag.add_edges_from((need, name) for name, job in jobs.items() for need in job.get("needs", []))
    levels = list(nx.topological_generations(dag))
    assert [len(level) for level in levels] == [1, 2, 1]  # the diamond, as the DAG it is

    # GitLab's pipeline is the same DAG of the same commands
    pipeline, _ = generate(stack, "gitlab")
    assert {name: (job["needs"], job["script"]) for name, job in pipeline.items()
            if name.startswith("build-")} == {
        name: (job.get("needs", []), [job["steps"][-1]["run"]]) for name, job in jobs.items()
    }  # fmt: skip

    engine_of = dict(zip(jobs, engines, strict=True))
    outputs: dict[str, dict[str, Any]] = {}
    for level in levels:  # needs: order; the jobs of a level side by side
        running = {}
        for name in level:
            command = build_command(jobs[name])
            assert command is not None, jobs[name]
            checkout = tmp_path / "runners" / name  # a fresh runner's own checkout
            shutil.copytree(stack, checkout, symlinks=True,  # as git checks them out
                            ignore=shutil.ignore_patterns(".stackbuild"))  # fmt: skip
            assert _images(engine_of[name]) == []  # a fresh engine: nothing built or pulled
            running[name] = subprocess.Popen(
                command, cwd=checkout, env=environment(DOCKER_HOST=engine_of[name].url),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        for name, proc in running.items():
            out, err = proc.communicate(timeout=JOB_TIMEOUT)
            assert proc.returncode == 0, f"job {name}: exit {proc.returncode}\n{out}\n{err}"
            outputs[name] = json.loads(out)

    for name, document in outputs.items():
        mine = set(jobs[name]["name"].split())
        built = {r["image"] for r in document["results"] if r["status"] == "built"}
        assert built == mine, name  # exactly its own images; parents came from the registry
        others = {r["status"] for r in document["results"] if r["image"] not in mine}
        assert others <= {"up-to-date"}, (name, others)
        for result in document["results"]:
            if result["image"] in mine:
                assert result["fingerprint"] == fingerprints[result["image"]]
                assert any(tag.endswith(":" + result["fingerprint"][7:19])
                           for tag in result["pushed"]), result  # fmt: skip

    # the registry holds every image at its fingerprint
    for image, fingerprint in fingerprints.items():
        assert fingerprint[7:19] in registry.tags(f"{unique}/{image}"), image

    # the top job's engine pulled its parents by fingerprint, and its image is whole
    top_job = next(name for name in jobs if jobs[name]["name"] == "top")
    import docker

    client = docker.DockerClient(base_url=engine_of[top_job].url)
    try:
        ref = f"{prefix}/top:{fingerprints['top'][7:19]}"
        out = client.containers.run(ref, ["cat", "/m-base", "/m-left", "/m-right"],
                                    network_mode="none", remove=True)  # fmt: skip
        assert out.decode().split() == ["base", "left", "right"]
    finally:
        client.close()

    again, said = generate(stack)
    assert "0 job(s) for 0 image(s) to build; 4 up to date" in said
    assert all(build_command(job) is None for job in again["jobs"].values())


def _images(engine: ExtraEngine) -> list[str]:
    import docker

    client = docker.APIClient(base_url=engine.url)
    try:
        return [image["Id"] for image in client.images(all=True)]
    finally:
        client.close()
