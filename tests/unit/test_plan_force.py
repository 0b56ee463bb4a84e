"""``plan --force IMAGE`` refuses an image the stack does not have, as ``build`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli import example, run

__all__ = ["example"]  # the fixture, used by name


@pytest.mark.parametrize("offline", [True, False])
def test_plan_force_of_an_unknown_image_exits_2_like_build(example: Path, offline: bool) -> None:
    # offline or not, refused before the engine is asked (it does not exist here)
    proc = run("-f", str(example), "plan", *(["--offline"] if offline else []),
               "--force", "nosuch", "--force", "base",
               DOCKER_HOST="unix:///nonexistent.sock")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "--force names unknown image(s): nosuch" in proc.stderr
    assert proc.stdout == ""


def test_plan_force_of_a_known_image_plans_it(example: Path) -> None:
    proc = run("-f", str(example), "plan", "--offline", "--force", "base", "--json")
    assert proc.returncode == 0, proc.stderr
