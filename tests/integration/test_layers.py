"""``stackbuild layers`` on the example stack, built for real (the session's
``example_run``), against what ``docker image inspect`` and ``docker history`` say of
the same images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FROM_PARENT = {"httpd": "base", "tools": "base", "site-hello": "httpd", "site-ops": "httpd",
               "runner": "tools"}


def stackbuild(stack: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(stack), *args],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def docker_json(*args: str) -> Any:
    return json.loads(subprocess.run(["docker", *args], capture_output=True, text=True,
                                     check=True, timeout=60).stdout)


def history_sizes(image_id: str) -> list[int]:
    """``docker history``'s bytes per entry, oldest first."""
    out = subprocess.run(
        ["docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}", image_id],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [int(size) for size in reversed(out.split())]


@pytest.mark.docker
def test_layers_counts_base_once_and_saves_the_sum_of_sizes_minus_what_is_stored(
    example_run: Any,
) -> None:
    stack = example_run.stack  # the session's build of it, with one image that failed
    report = json.loads(stackbuild(stack, "layers", "--json").stdout)
    images = {i["name"].partition("/")[2]: i for i in report["images"]}
    assert set(images) == {"base", *FROM_PARENT}
    assert report["missing"] == [f"{example_run.prefix}/broken"]  # not built: no layers
    inspect = {name: docker_json("image", "inspect", image["id"])[0]
               for name, image in images.items()}
    sizes = {name: history_sizes(image["id"]) for name, image in images.items()}
    own = {"base": sum(sizes["base"])}
    for name, parent in FROM_PARENT.items():
        # a child's history starts with its FROM parent's: the rest is its own
        assert len(sizes[name]) > len(sizes[parent])
        own[name] = sum(sizes[name][len(sizes[parent]):])
    for name, image in images.items():
        assert image["size"] == inspect[name]["Size"] == sum(sizes[name])
        assert [layer["diff_id"] for layer in image["layers"]] == inspect[name]["RootFS"]["Layers"]
        assert image["own_bytes"] == own[name], name
        assert image["warnings"] == []
    # base's layers are inherited by all five others and stored once
    base_layers = inspect["base"]["RootFS"]["Layers"]
    for name in FROM_PARENT:
        assert inspect[name]["RootFS"]["Layers"][: len(base_layers)] == base_layers
    stored = sum(own.values())  # every image's own layers, base's once
    full = sum(i["Size"] for i in inspect.values())
    assert report["stored_bytes"] == stored
    assert report["full_bytes"] == full
    assert report["saved_bytes"] == full - stored >= 5 * inspect["base"]["Size"]
    text = stackbuild(stack, "layers").stdout
    assert f"({full - stored} bytes = {full} - {stored})" in text
