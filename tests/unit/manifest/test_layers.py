"""stackbuild.manifest is layered: each module imports only the ones below it, at the top.

model (the dataclasses) is the bottom, so any stage can use the types without a circle;
a function-local or TYPE_CHECKING import of a stackbuild module would hide one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stackbuild.manifest

PACKAGE = Path(stackbuild.manifest.__file__).parent
# bottom first; errors and refs sit below the whole package
LAYERS = ["model", "yaml", "schema", "load", "__init__"]
BELOW_THE_PACKAGE = {"stackbuild.errors", "stackbuild.refs"}


def stackbuild_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(module, at the top level of the file) for each import of a stackbuild module."""
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(name, id(node) in top) for name in names if name.startswith("stackbuild")]
    return found


def test_each_module_imports_only_the_layers_below_it_at_the_top() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(LAYERS)
    for index, layer in enumerate(LAYERS):
        tree = ast.parse((PACKAGE / f"{layer}.py").read_text())
        allowed = BELOW_THE_PACKAGE | {f"stackbuild.manifest.{m}" for m in LAYERS[:index]}
        for module, at_top in stackbuild_imports(tree):
            assert module in allowed, f"manifest/{layer}.py imports {module}"
            assert at_top, f"manifest/{layer}.py imports {module} inside a function or block"


def test_the_model_imports_nothing_of_stackbuild() -> None:
    tree = ast.parse((PACKAGE / "model.py").read_text())
    assert stackbuild_imports(tree) == []
