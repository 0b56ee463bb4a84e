"""stack.yaml → ``Stack``: the manifest model, and how it is loaded and validated.

One module a room, each importing only the ones above it in this list:

* ``model``: the frozen dataclasses (``Stack``, ``ImageSpec``, ``EngineSpec``, ``Location``);
  no I/O, no stackbuild imports.
* ``yaml``: the strict YAML loader (values plus the position of every node).
* ``schema``: the JSON Schema check, its fast path, and its errors in words.
* ``load``: ``load_stack``; ``StackChecker`` checks what a schema cannot (paths,
  ``depends_on``, tag templates) and builds the ``Stack``.

Tag templates are naming rules, so they live in ``stackbuild.refs``; they are named here
too because the manifest is where a user writes them.
"""

from stackbuild.manifest.load import StackChecker, cyclic_gc_paused, load_stack
from stackbuild.manifest.model import MAX_SLOTS, EngineSpec, ImageSpec, Location, Stack, TlsSettings
from stackbuild.manifest.schema import stack_schema
from stackbuild.refs import TAG_PLACEHOLDERS, render_tag, tag_template_problem

__all__ = [
    "cyclic_gc_paused",
    "MAX_SLOTS",
    "TAG_PLACEHOLDERS",
    "EngineSpec",
    "ImageSpec",
    "Location",
    "Stack",
    "StackChecker",
    "TlsSettings",
    "load_stack",
    "render_tag",
    "stack_schema",
    "tag_template_problem",
]
