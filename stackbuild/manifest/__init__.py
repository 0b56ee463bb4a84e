"""stack.yaml → ``Stack``: loading and validation (being split into model, yaml, schema, load)."""

from stackbuild.manifest.load import (
    TAG_PLACEHOLDERS,
    Builder,
    ImageSpec,
    Location,
    Stack,
    load_stack,
    render_tag,
    schema,
    tag_template_problem,
)

__all__ = [
    "TAG_PLACEHOLDERS",
    "Builder",
    "ImageSpec",
    "Location",
    "Stack",
    "load_stack",
    "render_tag",
    "schema",
    "tag_template_problem",
]
