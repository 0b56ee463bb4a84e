"""A registry that is down for the whole run costs the run one retry budget, not one per
image: real engine, real (stopped) registry, the CLI as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BASE_DOCKERFILE
from tests.integration.test_registry import by_image, run_cli, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.registry]

IMAGES = 12


def test_a_dead_registry_fails_the_remaining_pushes_at_once(
    registry: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    prefix = f"{registry.address}/{unique}"
    dockerfiles = {"base": BASE_DOCKERFILE}
    dockerfiles |= {f"c{n}": f"FROM {prefix}/base\nLABEL n={n}\n" for n in range(IMAGES - 1)}
    stack = write_stack(tmp_path, unique, dockerfiles, registry=prefix)
    registry.stop()  # its port now refuses: every push fails, and would be retried
    env = {"STACKBUILD_PUSH_RETRY_SECONDS": "2"}
    proc = run_cli(stack, "build", "--push", "--json", "-j", "2", "--push-jobs", "2", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    results = by_image(json.loads(proc.stdout))
    assert len(results) == IMAGES
    for name, result in results.items():
        assert result["status"] == "failed" and result["pushed"] == [], (name, result)
        assert f"the registry {registry.address} is unavailable" in result["error"], result
    # one engine push per "ERROR:" line of the push logs: with a budget per push, each
    # image made about three attempts (over 30 in all); with the run's deadline per
    # registry, only the pushes that met the outage first retried, the rest none
    logs = sorted((tmp_path / ".stackbuild" / "logs").glob("*.push.log"))
    assert len(logs) == IMAGES
    attempts = {log.name: log.read_text().count(" ERROR: ") for log in logs}
    assert sum(attempts.values()) < IMAGES, attempts
    at_once = [r for r in results.values() if "not tried again" in r["error"]]
    assert len(at_once) >= IMAGES - 4, [r["error"] for r in results.values()]
