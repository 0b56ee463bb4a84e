"""``stackbuild lock`` against a registry whose digest header lies, asked through the real
engine (which relays the header as is): refused, not pinned."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackbuild.lockfile import read_lock
from tests.lying_registry import LIE, TRUE_DIGEST, LyingRegistry

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lying(docker_client: object) -> Iterator[LyingRegistry]:
    registry = LyingRegistry(lie=True)
    yield registry
    registry.close()


def lock(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(root / "stack.yaml"), "lock"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_lock_refuses_a_digest_the_manifest_does_not_hash_to(
    lying: LyingRegistry, tmp_path: Path
) -> None:
    upstream = f"{lying.address}/acme/base:1"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {upstream}\n")
    (tmp_path / "stack.yaml").write_text("version: 1\nimages:\n  app:\n    context: app\n")

    done = lock(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"claims the digest {LIE} for {upstream}" in done.stderr
    assert f"hashes to {TRUE_DIGEST}" in done.stderr
    assert not (tmp_path / "stack.lock").exists()

    lying.lie = False  # the same registry, honest: pinned to what its bytes hash to
    done = lock(tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_lock(tmp_path / "stack.lock") == {upstream: TRUE_DIGEST}
