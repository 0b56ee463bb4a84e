"""The Stack model: how images are named."""

from __future__ import annotations

from pathlib import Path

from stackbuild.manifest import load_stack
from tests.unit.manifest.stacks import EXAMPLE, write


def test_registry_names_the_image_references(stack_root: Path) -> None:
    write(stack_root, EXAMPLE)
    stack = load_stack("stack.yaml")
    assert stack.registry == "127.0.0.1:5000/acme"
    assert stack.reference("httpd") == "127.0.0.1:5000/acme/httpd"


def test_without_registry_the_reference_is_the_name(stack_root: Path) -> None:
    write(stack_root, "version: 1\nimages:\n  base: {context: images/base}\n")
    stack = load_stack("stack.yaml")
    assert stack.registry is None
    assert stack.reference("base") == "base"
    assert stack.builders == ()
