"""Fixtures of the manifest tests: a stack root to write stack.yaml into, and both parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stackbuild.manifest import yaml as yaml_loader


@pytest.fixture
def stack_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack root holding images/base and images/httpd, each with a Dockerfile; the cwd."""
    for name in ("base", "httpd"):
        (tmp_path / "images" / name).mkdir(parents=True)
        (tmp_path / "images" / name / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's parser and again with PyYAML's pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(yaml_loader, "_Loader", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    return request.param
