"""stack.yaml: what loads, and the one located, actionable error for each mistake.

Every manifest is written into a temporary stack root (the ``stack_root`` fixture, which
is also the working directory), so errors name the file ``stack.yaml`` as the user would
see it.
"""

from __future__ import annotations

import json
import os
import pickle
import textwrap
import time
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from stackbuild.errors import EXIT_USAGE, ManifestError
from stackbuild.manifest import Location, load_stack, render_tag
from stackbuild.manifest import load as manifest
from stackbuild.manifest import yaml as yaml_loader

REPO = Path(__file__).resolve().parents[2]

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


@pytest.fixture
def stack_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack root holding images/base and images/httpd, each with a Dockerfile; the cwd."""
    for name in ("base", "httpd"):
        (tmp_path / "images" / name).mkdir(parents=True)
        (tmp_path / "images" / name / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


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


# --- loads ------------------------------------------------------------------------------


def test_example_manifest_loads_with_defaults_merged(stack_root: Path) -> None:
    write(stack_root, EXAMPLE)
    stack = load_stack("stack.yaml")

    assert stack.version == 1
    assert stack.path == stack_root.resolve() / "stack.yaml"
    assert stack.root == stack_root.resolve()
    assert stack.backend == "docker"
    assert list(stack.images) == ["base", "httpd"]
    base, httpd = stack.images["base"], stack.images["httpd"]
    assert base.context == stack_root.resolve() / "images" / "base"
    assert base.dockerfile == base.context / "Dockerfile"
    assert (base.context_rel, base.dockerfile_rel) == ("images/base", "images/base/Dockerfile")
    assert base.build_args == {"TZ": "UTC"}
    assert base.labels == {"org.opencontainers.image.vendor": "Acme"}
    assert base.platform == "linux/amd64"  # from defaults
    assert base.target is None and base.tags == () and base.depends_on == ()
    assert httpd.depends_on == ("base",)
    assert httpd.build_args == {"TZ": "UTC", "GREETING": "Hello"}
    assert httpd.labels == {"org.opencontainers.image.vendor": "Acme", "a": "b"}
    assert httpd.target == "prod"
    assert httpd.tags == ("{fingerprint12}", "latest")
    assert httpd.secrets == {"tok": "env:TOKEN"}


def test_image_values_override_defaults(stack_root: Path) -> None:
    write(
        stack_root,
        """\
        version: 1
        defaults:
          build_args: {TZ: UTC, MODE: dev}
          labels: {team: core}
          platform: linux/amd64
        images:
          base:
            context: images/base
            build_args: {MODE: prod}
            labels: {team: web}
            platform: linux/arm64/v8
        """,
    )
    base = load_stack("stack.yaml").images["base"]
    assert base.build_args == {"TZ": "UTC", "MODE": "prod"}
    assert base.labels == {"team": "web"}
    assert base.platform == "linux/arm64/v8"


def test_numbers_and_booleans_are_passed_as_written(stack_root: Path) -> None:
    write(
        stack_root,
        """\
        version: 1
        images:
          base:
            context: images/base
            build_args: {VERSION: 1.10, DEBUG: true, JOBS: 0x10, NAME: "1.10"}
            labels: {build: 7}
        """,
    )
    base = load_stack("stack.yaml").images["base"]
    assert base.build_args == {"VERSION": "1.10", "DEBUG": "true", "JOBS": "0x10", "NAME": "1.10"}
    assert base.labels == {"build": "7"}


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


def test_builders_with_tls_paths_made_absolute(stack_root: Path) -> None:
    write(
        stack_root,
        """\
        version: 1
        backend: buildkit
        builders:
          - {url: "unix:///var/run/docker.sock", slots: 2}
          - url: tcp://build1:2376
            name: build1
            tls: {ca_cert: certs/ca.pem, client_cert: /etc/cert.pem, verify: false}
        images:
          base: {context: images/base}
        """,
    )
    stack = load_stack("stack.yaml")
    assert stack.backend == "buildkit"
    local, remote = stack.builders
    assert (local.url, local.slots, local.name, local.tls) == (
        "unix:///var/run/docker.sock",
        2,
        None,
        {},
    )
    assert (remote.url, remote.slots, remote.name) == ("tcp://build1:2376", 1, "build1")
    assert remote.tls == {
        "ca_cert": str(stack_root.resolve() / "certs" / "ca.pem"),
        "client_cert": "/etc/cert.pem",
        "verify": False,
    }


def test_file_secrets_are_made_absolute_env_secrets_kept(stack_root: Path) -> None:
    write(
        stack_root,
        """\
        version: 1
        images:
          base:
            context: images/base
            secrets: {npm: "file:secrets/npmrc", tok: "env:TOKEN"}
        """,
    )
    secrets = load_stack("stack.yaml").images["base"].secrets
    assert secrets == {"npm": f"file:{stack_root.resolve()}/secrets/npmrc", "tok": "env:TOKEN"}


def test_dockerfile_is_relative_to_the_context_directory(stack_root: Path) -> None:
    (stack_root / "images" / "httpd" / "docker").mkdir()
    (stack_root / "images" / "httpd" / "docker" / "Dockerfile.prod").write_text("FROM base\n")
    write(
        stack_root,
        """\
        version: 1
        images:
          httpd:
            context: ./images/httpd/
            dockerfile: docker/Dockerfile.prod
        """,
    )
    httpd = load_stack("stack.yaml").images["httpd"]
    assert httpd.dockerfile == stack_root.resolve() / "images/httpd/docker/Dockerfile.prod"
    assert httpd.context_rel == "images/httpd"
    assert httpd.dockerfile_rel == "images/httpd/docker/Dockerfile.prod"


def test_dockerfile_may_sit_outside_its_context_but_inside_the_root(stack_root: Path) -> None:
    (stack_root / "dockerfiles").mkdir()
    (stack_root / "dockerfiles" / "httpd.Dockerfile").write_text("FROM base\n")
    write(
        stack_root,
        """\
        version: 1
        images:
          httpd: {context: images/httpd, dockerfile: ../../dockerfiles/httpd.Dockerfile}
        """,
    )
    httpd = load_stack("stack.yaml").images["httpd"]
    assert httpd.dockerfile_rel == "dockerfiles/httpd.Dockerfile"


def test_a_symlink_that_stays_inside_the_root_is_fine(stack_root: Path) -> None:
    (stack_root / "alias").symlink_to(stack_root / "images" / "base")
    write(stack_root, "version: 1\nimages:\n  base: {context: alias}\n")
    base = load_stack("stack.yaml").images["base"]
    assert base.context == stack_root.resolve() / "images" / "base"
    assert base.context_rel == "alias"


def test_locations_of_keys_images_and_list_items(stack_root: Path) -> None:
    write(stack_root, EXAMPLE)
    stack = load_stack("stack.yaml")
    assert stack.locations["version"] == Location(1, 1)
    assert stack.locations["images"] == Location(10, 1)
    assert stack.locations["builders[0]"] == Location(5, 5)
    assert stack.locations["defaults.build_args.TZ"] == Location(7, 16)
    httpd = stack.images["httpd"]
    assert httpd.location == Location(13, 3)
    assert httpd.key_locations["depends_on"] == Location(16, 5)
    assert httpd.key_locations["depends_on[0]"] == Location(16, 18)
    assert httpd.key_locations["tags[1]"] == Location(21, 31)
    assert httpd.key_locations["build_args.GREETING"] == Location(17, 18)
    assert "dockerfile" in httpd.key_locations and len(httpd.key_locations) == 15
    # key_locations is computed lazily, but an ImageSpec still pickles (process pools)
    assert pickle.loads(pickle.dumps(httpd)) == httpd


def test_yaml_keys_are_always_names(stack_root: Path) -> None:
    (stack_root / "images" / "on").mkdir()
    (stack_root / "images" / "on" / "Dockerfile").write_text("FROM scratch\n")
    write(stack_root, "version: 1\nimages:\n  on: {context: images/on}\n")
    assert list(load_stack("stack.yaml").images) == ["on"]


def test_errors_name_the_file_as_given(stack_root: Path) -> None:
    (stack_root / "sub").mkdir()
    (stack_root / "sub" / "stack.yaml").write_text("version: 2\nimages: {}\n")
    with pytest.raises(ManifestError) as relative:
        load_stack("sub/stack.yaml")
    assert str(relative.value).startswith("sub/stack.yaml:1:10: ")
    absolute = stack_root / "sub" / "stack.yaml"
    with pytest.raises(ManifestError) as given_absolute:
        load_stack(absolute)
    assert str(given_absolute.value).startswith(f"{absolute}:1:10: ")
    assert given_absolute.value.exit_code == EXIT_USAGE


def test_a_missing_manifest_is_a_manifest_error(stack_root: Path) -> None:
    with pytest.raises(ManifestError, match="nope.yaml does not exist"):
        load_stack("nope.yaml")


# --- YAML the loader refuses --------------------------------------------------------------


def test_yaml_syntax_error_is_located(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base: {context: images/base\n")
    assert_error(error, 4, 1, "invalid YAML", "started at line 3")


def test_yaml_value_with_colon_suggests_quotes(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nregistry: a: b\n")
    assert_error(error, 2, 12, "invalid YAML", "quotes")


def test_tabs_for_indentation_are_named(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n\tbase: {context: images/base}\n")
    assert_error(error, 3, 1, "tab", "spaces")


def test_empty_file(stack_root: Path) -> None:
    assert_error(error_for(stack_root, ""), 1, 1, "stack.yaml is empty", "version: 1")
    assert_error(error_for(stack_root, "# nothing yet\n"), 1, 1, "is empty")


def test_top_level_must_be_a_mapping(stack_root: Path) -> None:
    error = error_for(stack_root, "- version: 1\n")
    assert_error(error, 1, 1, "top level", "must be a mapping", "got a list")


def test_duplicate_keys_name_both_lines(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base:
            context: images/base
          base:
            context: images/httpd
        """,
    )
    assert_error(error, 5, 3, "duplicate key 'base' (first defined at line 3)", "remove one")


def test_anchors_and_aliases_are_refused(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base: &common
            context: images/base
          httpd: *common
        """,
    )
    assert_error(error, 3, 9, "anchors and aliases are not supported", "write the value out")


def test_merge_keys_are_refused(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base:
            <<: {context: images/base}
        """,
    )
    assert_error(error, 4, 5, "merge keys (<<) are not supported", "write the keys out")


def test_billion_laughs_is_refused_at_once(stack_root: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    started = time.perf_counter()
    error = error_for(stack_root, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert_error(error, 1, 5, "anchors and aliases are not supported")


def test_nested_merge_keys_attack_is_refused_at_once(stack_root: Path) -> None:
    # PyYAML's safe_load needs more than 10 s for this: each level merges the last 7 times
    lines = ["l0: &l0 {a: 1, b: 2, c: 3, d: 4}"]
    for level in range(1, 8):
        refs = ", ".join([f"*l{level - 1}"] * 7)
        lines.append(f"l{level}: &l{level} {{<<: [{refs}], k{level}: {level}}}")
    started = time.perf_counter()
    error = error_for(stack_root, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert_error(error, 1, 5, "anchors and aliases are not supported")


def test_merge_without_anchors_is_also_refused_quickly(stack_root: Path) -> None:
    text = "version: 1\nx: " + "{<<: " * 30 + "{a: 1}" + "}" * 30 + "\n"
    started = time.perf_counter()
    error = error_for(stack_root, text)
    assert time.perf_counter() - started < 1.0
    assert_error(error, 2, 5, "merge keys (<<) are not supported")


def test_documents_over_the_size_cap_are_refused(stack_root: Path) -> None:
    error = error_for(stack_root, b"#" * (yaml_loader.MAX_BYTES + 1))
    assert_error(error, 1, 1, "larger than 10 MiB")


def test_deep_nesting_is_refused(stack_root: Path) -> None:
    error = error_for(stack_root, "x: " + "[" * 100 + "]" * 100 + "\n")
    assert_error(error, 1, 4 + yaml_loader.MAX_DEPTH - 1, "nesting is deeper than")


def test_a_second_yaml_document_is_refused(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\n---\nimages: {}\n")
    assert_error(error, 2, 1, "one YAML document", "'---'")


def test_python_tags_are_refused(stack_root: Path) -> None:
    error = error_for(stack_root, "version: !!python/object:os.system 1\n")
    assert_error(error, 1, 10, "tag !!python/object:os.system is not supported")


def test_invalid_utf8_is_located(stack_root: Path) -> None:
    error = error_for(stack_root, b"version: 1\nregistry: caf\xe9\n")
    assert_error(error, 2, 14, "not valid UTF-8", "save it as UTF-8")


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's parser and again with PyYAML's pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(yaml_loader, "_Loader", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    return request.param


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("!!int abc", ("'abc' is not a whole number", "remove the tag")),
        ('!!int ""', ("'' is not a whole number", "remove the tag")),
        ("!!int 1.5", ("'1.5' is not a whole number",)),
        ("!!float x", ("'x' is not a number", "remove the tag")),
        ("!!bool maybe", ("'maybe' is not a !!bool", "true or false")),
        ("!!bool 1", ("'1' is not a !!bool",)),
        ("1" * 5000, ("5,000 characters long", "put it in quotes")),
        ("0b" + "1" * 20000, ("20,002 characters long", "put it in quotes")),
        ("0x" + "f" * 5000, ("5,002 characters long",)),
        ("1:" * 3000 + "1", ("6,001 characters long",)),  # base 60
    ],
)
def test_scalars_the_constructors_refuse_are_located(
    stack_root: Path, parser: str, value: str, words: tuple[str, ...]
) -> None:
    error = error_for(stack_root, f"# base ─┬─ httpd\nversion: {value}\nimages: {{}}\n")
    assert_error(error, 2, 10, *words)
    assert len(str(error)) < 300  # printing it works, and it stays one short line


def test_long_numbers_within_the_limit_are_still_numbers(stack_root: Path) -> None:
    digits = "9" * yaml_loader.MAX_NUMBER_CHARS
    doc = yaml_loader.load_yaml(f"a: {digits}\nb: !!int '12'\nc: !!float '1'\n", "x.yaml")
    assert doc.data == {"a": int(digits), "b": 12, "c": 1.0}
    assert doc.source_text(("a",)) == digits


def test_a_bad_character_after_non_ascii_text_is_located_in_characters(
    stack_root: Path, parser: str
) -> None:
    # libyaml reports the byte offset; applied to the text it was 4 lines and columns off
    error = error_for(stack_root, "# ─┬─ tree\nregistry: ─┬─\x00\n".encode())
    assert_error(error, 2, 14, "U+0000 is not allowed in YAML", "remove it")
    error = error_for(stack_root, "version: 1\nlabels: {é: \"ü\x07\"}\n".encode())
    assert_error(error, 2, 15, "U+0007 is not allowed", '"\\x07"')


def test_a_nul_in_the_example_stacks_tree_comment_is_located(
    stack_root: Path, parser: str
) -> None:
    # the repository's own stack.yaml draws its tree with box-drawing characters
    lines = (REPO / "stack.yaml").read_text(encoding="utf-8").split("\n")
    number = next(i for i, line in enumerate(lines) if "└─ (site-ops)" in line)
    col = lines[number].index("(site-ops)")
    lines[number] = lines[number][:col] + "\x00" + lines[number][col:]
    error = error_for(stack_root, "\n".join(lines).encode("utf-8"))
    assert_error(error, number + 1, col + 1, "U+0000")


def test_invalid_utf8_after_non_ascii_text_is_located_in_characters(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nregistry: ─caf".encode() + b"\xe9\n")
    assert_error(error, 2, 15, "not valid UTF-8", "save it as UTF-8")


def test_an_error_at_the_end_of_the_text_is_inside_the_file(
    stack_root: Path, parser: str
) -> None:
    # without a final newline libyaml put the end of the text on a line past the last one
    assert_error(error_for(stack_root, "version: 1\nimages: [a"), 2, 11, "invalid YAML")
    assert_error(error_for(stack_root, "version: 1\nimages: [a\n"), 3, 1, "invalid YAML")


def test_keys_must_be_names(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\n? [a, b]\n: 1\n")
    assert_error(error, 2, 3, "keys must be plain names")


def test_pure_python_parser_gives_the_same_result(
    stack_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(stack_root, EXAMPLE)
    fast = load_stack("stack.yaml")
    monkeypatch.setattr(yaml_loader, "_Loader", yaml.SafeLoader)
    slow = load_stack("stack.yaml")
    assert slow == fast
    assert dict(slow.images["httpd"].key_locations) == dict(fast.images["httpd"].key_locations)
    assert_error(error_for(stack_root, "a: 1\na: 2\n"), 2, 1, "duplicate key 'a'")


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


# --- paths, references, tags --------------------------------------------------------------


def test_missing_context_directory(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base:\n    context: images/nope\n")
    assert_error(error, 4, 14, "context 'images/nope' of image 'base' does not exist", "create")


def test_context_that_is_a_file(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  b: {context: images/base/Dockerfile}\n")
    assert_error(error, 3, 16, "is a file, not a directory")


def test_missing_default_dockerfile_points_at_the_context(stack_root: Path) -> None:
    (stack_root / "images" / "empty").mkdir()
    error = error_for(stack_root, "version: 1\nimages:\n  e:\n    context: images/empty\n")
    assert_error(
        error, 4, 14, "image 'e' has no Dockerfile: images/empty/Dockerfile does not exist"
    )
    assert "dockerfile:" in error.message


def test_missing_named_dockerfile_points_at_dockerfile(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nimages:\n  b:\n    context: images/base\n    dockerfile: Dockerfile.prod\n",
    )
    assert_error(
        error,
        5,
        17,
        "dockerfile 'Dockerfile.prod' of image 'b' does not exist",
        "images/base/Dockerfile.prod",
        "relative to the context",
    )


def test_context_may_not_escape_the_root(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  b:\n    context: ../elsewhere\n")
    assert_error(error, 4, 14, "context '../elsewhere' of image 'b' is outside", "move")


def test_context_may_not_be_absolute(stack_root: Path) -> None:
    error = error_for(
        stack_root, f"version: 1\nimages:\n  b:\n    context: {stack_root}/images/base\n"
    )
    assert_error(error, 4, 14, "is an absolute path", "relative to the directory of stack.yaml")


def test_context_may_not_escape_through_a_symlink(stack_root: Path, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (stack_root / "images" / "link").symlink_to(outside)
    error = error_for(stack_root, "version: 1\nimages:\n  b:\n    context: images/link\n")
    assert_error(error, 4, 14, "is outside", "through a symlink", str(outside.resolve()))


def test_dockerfile_may_not_escape_the_root(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nimages:\n  b:\n    context: images/base\n"
        "    dockerfile: ../../../Dockerfile\n",
    )
    assert_error(error, 5, 17, "dockerfile '../../../Dockerfile' of image 'b' is outside")


def test_depends_on_must_name_an_image_of_the_stack(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base: {context: images/base}
          httpd:
            context: images/httpd
            depends_on: [base, bsae]
        """,
    )
    assert_error(error, 6, 24)
    assert error.message.startswith(
        "image 'httpd' depends_on 'bsae', which is not in images:; known images: base, httpd"
    )
    assert "did you mean 'base'?" in error.message


def test_an_image_may_not_depend_on_itself(stack_root: Path) -> None:
    error = error_for(
        stack_root, "version: 1\nimages:\n  base: {context: images/base, depends_on: [base]}\n"
    )
    assert_error(error, 3, 45, "image 'base' depends_on itself")


def test_unknown_tag_placeholder(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        "version: 1\nimages:\n  b: {context: images/base, tags: ['{fingerprint}-x']}\n",
    )
    assert_error(
        error, 3, 36, "tag '{fingerprint}-x' of image 'b'", "unknown placeholder {fingerprint}"
    )
    assert "did you mean {fingerprint12}?" in error.message


def test_tag_templates_must_expand_to_valid_docker_tags(stack_root: Path) -> None:
    long_tag = "v" * 100 + "-{git_sha}"  # 141 characters once filled in
    error = error_for(
        stack_root, f"version: 1\nimages:\n  b: {{context: images/base, tags: ['{long_tag}']}}\n"
    )
    assert_error(error, 3, 36, "does not make a valid Docker tag", "128 characters")
    error = error_for(stack_root, "version: 1\nimages:\n  b: {context: images/base, tags: [.x]}\n")
    assert_error(error, 3, 36, "does not make a valid Docker tag")


def test_tag_characters_are_checked_by_the_schema(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  b: {context: images/base, tags: [a!]}\n")
    assert_error(error, 3, 36, "tags[0] of image 'b' ('a!') may hold only letters")


def test_render_tag_fills_placeholders() -> None:
    values = {"fingerprint12": "0123456789ab", "git_sha": "f" * 40, "date": "20240131"}
    assert render_tag("{fingerprint12}-{date}", values) == "0123456789ab-20240131"


def test_scratch_is_not_an_image_name(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  scratch: {context: images/base}\n")
    assert_error(error, 3, 3, "'scratch' is reserved")


def test_builder_names_are_unique(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        builders:
          - {url: "tcp://a:2376", name: one}
          - {url: "tcp://b:2376", name: one}
        images: {base: {context: images/base}}
        """,
    )
    assert_error(error, 4, 33, "builder name 'one' is used twice")


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
    fast = manifest._fast_checker()
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
