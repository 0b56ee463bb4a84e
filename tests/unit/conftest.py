"""Fixtures the unit tests of several modules share."""

from __future__ import annotations

import pytest
import yaml

from stackbuild.manifest import yaml as yaml_loader


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's parser and again with PyYAML's pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(yaml_loader, "_Loader", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    return request.param
