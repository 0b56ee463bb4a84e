"""History that travels, on a real engine and registry: the duration a pushed image tells.

An image that takes a few seconds to build is built and pushed; a fresh checkout (no
``.stackbuild/``) of the stack then reads its duration back from the registry's image
config, close to what the first run measured, and a rebuild there writes it into the
new image's ``stackbuild.duration`` label.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stackbuild.analyze import analyze
from stackbuild.backends import open_backend
from stackbuild.backends.contract import DURATION_LABEL
from stackbuild.run.history import fill_from_registry
from tests.helpers import TEST_LABEL, write_base_context
from tests.integration.test_build import run_cli

docker = pytest.mark.docker


def write_slow(root: Path, prefix: str, registry: str, marker: str) -> Path:
    write_base_context(root / "app")
    (root / "app" / "Dockerfile").write_text(
        f"FROM scratch\nCOPY rootfs/ /\nRUN sleep 3 && echo {marker} > /m\n"
    )
    (root / "stack.yaml").write_text(
        f"version: 1\nregistry: {registry}\n"
        f"defaults:\n  labels: {{{TEST_LABEL}: {prefix}}}\n"
        f"images:\n  {prefix}/app:\n    context: app\n"
    )
    return root / "stack.yaml"


@docker
def test_a_fresh_checkout_reads_the_build_duration_from_the_registry(
    tmp_path: Path, unique: str, cleanup_images: set[str], registry: Any,
) -> None:
    address = f"{registry.address}/{unique}"
    first = write_slow(tmp_path / "ci-1", unique, address, "one")
    proc = run_cli(first.parent, "build", "--push", "--json")
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout)["results"][0]["duration_s"]
    assert measured >= 3

    second = tmp_path / "ci-2"
    shutil.copytree(first.parent, second, symlinks=True,
                    ignore=shutil.ignore_patterns(".stackbuild"))
    # changed, and quick: the label written is the duration known before the build
    (second / "app" / "Dockerfile").write_text(
        (second / "app" / "Dockerfile").read_text().replace("sleep 3 && echo one", "echo two")
    )
    analysis = analyze(second / "stack.yaml")
    assert analysis.durations == {}  # no history on this runner
    backend = open_backend("docker")
    try:
        found = fill_from_registry(analysis, [f"{unique}/app"], backend)
        # the registry's config: commit time minus start label, to the second
        assert found[f"{unique}/app"] == pytest.approx(measured, abs=2.5)

        # the rebuild there (ordered by it) writes it into its image as the last known one
        proc = run_cli(second, "build", "--json")
        assert proc.returncode == 0, proc.stderr
        assert "read from the registry" in proc.stderr
        ref = json.loads(proc.stdout)["results"][0]["tags"][0]
        labels = backend.image_labels(ref) or {}
        assert float(labels[DURATION_LABEL]) == pytest.approx(measured, abs=2.5)
    finally:
        backend.close()
