"""stack.yaml against the JSON Schema: the first error in words, and the fast check."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from stackbuild.manifest import schema as manifest_schema
from stackbuild.manifest import yaml as yaml_loader
from tests.unit.manifest.stacks import EXAMPLE, assert_error, error_for

# --- the schema: structure and types ----------------------------------------------------


def test_unknown_key_in_image_suggests_the_nearest(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base:
            context: images/base
          httpd:
            context: images/httpd
            dependson: [base]
        """,
    )
    assert_error(error, 7, 5)
    assert error.message == "unknown key 'dependson' in image 'httpd'; did you mean 'depends_on'?"


def test_unknown_key_without_a_near_one_lists_the_valid_keys(stack_root: Path) -> None:
    error = error_for(
        stack_root, "version: 1\nfrobnicate: yes\nimages:\n  base: {context: images/base}\n"
    )
    assert_error(error, 2, 1, "unknown key 'frobnicate' at the top level", "registry, backend")


def test_unknown_key_in_nested_mappings(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        defaults: {buildargs: {TZ: UTC}}
        builders:
          - {url: "tcp://b:2376", tls: {ca: x}}
        images:
          base: {context: images/base}
        """,
    )
    assert_error(error, 2, 12, "unknown key 'buildargs' in defaults", "did you mean 'build_args'")
    text = "version: 1\nbuilders:\n  - {url: 'tcp://b:2376', tls: {ca: x}}\nimages: {}\n"
    assert_error(error_for(stack_root, text), 3, 33, "unknown key 'ca' in builders[0].tls")


def test_a_misspelt_required_key_is_reported_as_unknown_not_missing(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base:\n    contxt: images/base\n")
    assert_error(error, 4, 5, "unknown key 'contxt'", "did you mean 'context'?")


def test_wrong_type_says_what_was_expected(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base:\n    context: [images/base]\n")
    assert_error(
        error, 4, 14, "expected a string for context of image 'base', got a list", "images/base"
    )


def test_an_image_must_be_a_mapping(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base: images/base\n")
    assert_error(error, 3, 9, "expected a mapping for image 'base', got a string", "context:")


def test_build_arg_values_must_be_scalars(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nimages:\n  base:\n    context: images/base\n    build_args: {A: }\n",
    )
    assert_error(
        error,
        5,
        18,
        "expected a string, a number or true or false for build_args.A of image 'base'",
        "got nothing",
    )


def test_missing_version(stack_root: Path) -> None:
    error = error_for(stack_root, "images:\n  base: {context: images/base}\n")
    assert_error(error, 1, 1, "stack.yaml has no 'version'", "`version: 1`")


def test_missing_images(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\n")
    assert_error(error, 1, 1, "stack.yaml has no 'images'", "add it")


def test_missing_context(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base:\n    target: prod\n")
    assert_error(error, 3, 3, "image 'base' has no 'context'", "context: images/base")


def test_unsupported_version(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 2\nimages:\n  base: {context: images/base}\n")
    assert_error(error, 1, 10, "unsupported version 2", "write `version: 1`")
    error = error_for(stack_root, "version: '1'\nimages:\n  base: {context: images/base}\n")
    assert_error(error, 1, 10, "unsupported version '1'")


def test_empty_images(stack_root: Path) -> None:
    assert_error(error_for(stack_root, "version: 1\nimages: {}\n"), 2, 9, "images: is empty")
    assert_error(error_for(stack_root, "version: 1\nimages:\n"), 2, 1, "images: is empty")


def test_image_names_must_be_docker_repository_names(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  Base_:\n    context: images/base\n")
    assert_error(error, 3, 3, "image name 'Base_' is not valid", "lowercase")


def test_registry_must_be_host_port_path(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nregistry: https://reg.example.com/acme\n"
        "images:\n  b: {context: images/base}\n",
    )
    assert_error(error, 2, 11, "registry ('https://reg.example.com/acme')", "host[:port][/path]")


def test_backend_must_be_known(stack_root: Path) -> None:
    error = error_for(
        stack_root, "version: 1\nbackend: buildkitd\nimages:\n  b: {context: images/base}\n"
    )
    assert_error(error, 2, 10, "backend 'buildkitd' is not supported", "did you mean 'buildkit'?")


def test_a_secret_id_the_build_would_refuse_is_refused_at_load(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nimages:\n  b:\n    context: images/base\n    secrets: {_tok: 'env:T'}\n",
    )
    assert error.line == 5
    assert "_tok" in error.message and "start with a letter or digit" in error.message


def test_secret_sources_are_env_or_file(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nimages:\n  b:\n    context: images/base\n    secrets: {tok: TOKEN}\n",
    )
    assert_error(error, 5, 20, "secrets.tok of image 'b' ('TOKEN')", "env:NAME", "file:PATH")


def test_builder_slots_must_be_positive(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nbuilders:\n  - {url: 'unix:///d.sock', slots: 0}\nimages: {b: {context: x}}\n",
    )
    assert_error(error, 3, 36, "builders[0].slots must be at least 1, got 0")


def test_listing_an_image_twice_in_depends_on(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base: {context: images/base}
          httpd: {context: images/httpd, depends_on: [base, base]}
        """,
    )
    assert_error(error, 4, 53, "'base' is listed twice in depends_on of image 'httpd'")


def test_the_first_error_in_the_file_is_reported(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base: {context: images/base, tags: [7]}
          httpd: {contxt: images/httpd}
        backend: podman
        """,
    )
    assert_error(error, 3, 39, "expected a string for tags[0] of image 'base'")


# --- the shipped JSON Schema --------------------------------------------------------------


def shipped_schema() -> dict:
    text = (resources.files("stackbuild") / "schema" / "stack.schema.json").read_text()
    return json.loads(text)


def test_shipped_schema_is_valid_and_accepts_the_example() -> None:
    schema = shipped_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    example = yaml_loader.load_yaml(EXAMPLE, "stack.yaml").data
    jsonschema.Draft202012Validator(schema).validate(example)


def test_every_property_of_the_schema_has_a_description() -> None:
    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{where}.properties.{name} has no description"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                walk(sub, f"{where}[{index}]")

    walk(shipped_schema(), "schema")


FAST_CHECK_CASES = [
    EXAMPLE,
    "version: 1\nimages: {b: {context: x}}\n",
    "version: 1.0\nimages: {b: {context: x}}\n",
    "version: true\nimages: {b: {context: x}}\n",
    "version: 1\nimages: {B: {context: x}}\n",
    "version: 1\nimages: {b: {context: x, tags: [a, a]}}\n",
    "version: 1\nimages: {b: {context: x, build_args: {A: [1]}}}\n",
    "version: 1\nimages: {b: {context: x, build_args: {A: 1, B: true, C: 1.5}}}\n",
    "version: 1\nbackend: docker\nbuilders: [{url: 'unix:///x', slots: 1.0}]\nimages: {}\n",
    "version: 1\nbuilders: [{url: 'unix:///x', slots: true}]\nimages: {b: {context: x}}\n",
    "version: 1\nregistry: Reg.io:5000/Acme\nimages: {b: {context: x}}\n",
    "version: 1\nimages: {b: {context: ''}}\n",
    "version: 1\nimages: {b: {context: x, secrets: {s: 'file:a'}, target: t}}\n",
]


@pytest.mark.parametrize("text", FAST_CHECK_CASES)
def test_the_fast_schema_check_never_passes_what_jsonschema_rejects(text: str) -> None:
    data = yaml_loader.load_yaml(text, "stack.yaml").data
    fast = manifest_schema._fast_checker()
    assert fast is not None  # the schema uses only keywords the fast check knows
    valid = jsonschema.Draft202012Validator(shipped_schema()).is_valid(data)
    if fast(data):
        assert valid
    if text in (EXAMPLE, FAST_CHECK_CASES[1], FAST_CHECK_CASES[7], FAST_CHECK_CASES[12]):
        assert fast(data)  # and it does certify the ordinary manifests


def test_errors_are_never_tracebacks_for_odd_values(stack_root: Path) -> None:
    for text in ("version: 1\nimages: [base]\n", "~\n", "42\n", "version: 1\nimages: {b: ~}\n"):
        error = error_for(stack_root, text)
        assert os.path.basename(error.path) == "stack.yaml" and error.message
