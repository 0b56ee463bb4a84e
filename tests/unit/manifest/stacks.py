"""The stacks and helpers the manifest tests share: every manifest is written into a
temporary stack root (the ``stack_root`` fixture of conftest.py, which is also the working
directory), so errors name the file ``stack.yaml`` as the user would see it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stackbuild.errors import ManifestError
from stackbuild.manifest import load_stack

REPO = Path(__file__).resolve().parents[3]

EXAMPLE = """\
version: 1
registry: 127.0.0.1:5000/acme
backend: docker
builders:
  - {url: "unix:///var/run/docker.sock", slots: 2}
defaults:
  build_args: {TZ: UTC}
  labels: {org.opencontainers.image.vendor: Acme}
  platform: linux/amd64
images:
  base:
    context: images/base
  httpd:
    context: images/httpd
    dockerfile: Dockerfile
    depends_on: [base]
    build_args: {GREETING: "Hello"}
    labels: {a: b}
    target: prod
    platform: linux/amd64
    tags: ["{fingerprint12}", latest]
    secrets: {tok: "env:TOKEN"}
"""


def write(root: Path, text: str | bytes) -> Path:
    path = root / "stack.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def error_for(root: Path, text: str | bytes) -> ManifestError:
    """The ManifestError that loading ``text`` as stack.yaml raises."""
    write(root, text)
    with pytest.raises(ManifestError) as caught:
        load_stack("stack.yaml")
    return caught.value


def assert_error(error: ManifestError, line: int, col: int, *words: str) -> None:
    assert (error.path, error.line, error.col) == ("stack.yaml", line, col), str(error)
    assert str(error).startswith(f"stack.yaml:{line}:{col}: "), str(error)
    for word in words:
        assert word in error.message, f"{word!r} not in {error.message!r}"
