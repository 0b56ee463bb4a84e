"""One module per command (or pair of commands); ``stackbuild.cli`` loads each on first use.

``load`` is that loading, the one place a command module is imported at run time: the
group loads the command that runs, and a command loads the half of itself that not
every run needs (``plan``'s engine side, ``plan_online``), so ``plan --offline``
imports no backend.
"""

from __future__ import annotations

import importlib
from typing import Any


def load(module: str, name: str) -> Any:
    """``name`` of ``stackbuild.cli.commands.<module>``, importing that module now."""
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
