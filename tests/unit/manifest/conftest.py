"""Fixtures of the manifest tests: a stack root to write stack.yaml into, and both parsers."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def stack_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack root holding images/base and images/httpd, each with a Dockerfile; the cwd."""
    for name in ("base", "httpd"):
        (tmp_path / "images" / name).mkdir(parents=True)
        (tmp_path / "images" / name / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


