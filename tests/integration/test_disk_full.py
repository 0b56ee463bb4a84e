"""``stackbuild build`` with ``.stackbuild/`` on a real full file system (a 64 KiB tmpfs the
test mounts and removes; skipped, saying why, where mounting is not permitted)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.test_build import run_cli, write_stack
from tests.unit.test_disk_full import _fill, small_fs

__all__ = ["small_fs"]  # the fixture, used by name

pytestmark = pytest.mark.docker


def _stack_on(small_fs: Path, root: Path, prefix: str) -> None:
    write_stack(root, prefix, {"app": "FROM {r}/base\nLABEL a=1\n"})
    os.symlink(small_fs, root / ".stackbuild")  # .stackbuild/ is the small file system


def test_build_on_a_full_disk_is_one_clear_error_before_building(
    small_fs: Path, tmp_path: Path, unique: str, cleanup_images: set[str]
) -> None:
    root = tmp_path / "stack"
    _stack_on(small_fs, root, unique)
    _fill(small_fs)
    done = run_cli(root, "build")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert f"cannot write {root / '.stackbuild' / 'run.lock'}: No space left" in done.stderr
    assert done.stderr.count("No space left") == 1  # one error, not one per file
    assert "built" not in done.stdout


def test_a_disk_that_is_full_once_the_run_holds_its_lock_fails_clearly(
    small_fs: Path, tmp_path: Path, unique: str, cleanup_images: set[str]
) -> None:
    root = tmp_path / "stack"
    _stack_on(small_fs, root, unique)
    (small_fs / "run.lock").write_text("1")  # a lock from an earlier run: it fits again
    _fill(small_fs)
    done = run_cli(root, "build", "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert done.stderr.count("cannot write the log") == 1, done.stderr
    results = {r["image"].rpartition("/")[2]: r for r in json.loads(done.stdout)["results"]}
    base = results["base"]
    assert base["status"] == "failed"
    assert f"cannot write {root / '.stackbuild' / 'images'}" in base["error"]
    assert "No space left on device" in base["error"]
    assert results["app"]["status"] == "blocked"
    assert not any(small_fs.glob("images/*"))  # no half-written record, no temp file
