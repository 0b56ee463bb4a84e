"""load_stack: what loads, and what the stack checker refuses (paths, references, tags)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from stackbuild.errors import EXIT_USAGE, ManifestError
from stackbuild.manifest import Location, load_stack
from stackbuild.manifest.schema import stack_schema
from tests.unit.manifest.stacks import EXAMPLE, assert_error, error_for, write

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


def test_without_a_backend_key_the_backend_is_auto_as_the_schema_says(stack_root: Path) -> None:
    write(stack_root, "version: 1\nimages:\n  base: {context: images/base}\n")
    assert load_stack("stack.yaml").backend == "auto"  # BuildKit, else the classic builder
    assert stack_schema()["properties"]["backend"]["default"] == "auto"


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


# --- cache_from ---------------------------------------------------------------------------


def test_cache_from_registry_is_the_images_own_repository(stack_root: Path) -> None:
    write(
        stack_root,
        """\
        version: 1
        registry: 127.0.0.1:5000/acme
        defaults: {cache_from: registry}
        images:
          base: {context: images/base}
          httpd:
            context: images/httpd
            cache_from: [registry, "ghcr.io/acme/httpd:main"]
          quiet: {context: images/httpd, cache_from: []}
        """,
    )
    images = load_stack("stack.yaml").images
    assert images["base"].cache_from == ("127.0.0.1:5000/acme/base:latest",)
    assert images["httpd"].cache_from == (
        "127.0.0.1:5000/acme/httpd:latest", "ghcr.io/acme/httpd:main"
    )
    assert images["quiet"].cache_from == ()  # an image's own list replaces the default
    # where each is written, for the warning when it cannot be reached
    assert images["base"].cache_locations == {"127.0.0.1:5000/acme/base:latest": Location(3, 24)}
    assert images["httpd"].cache_locations == {
        "127.0.0.1:5000/acme/httpd:latest": Location(8, 18),
        "ghcr.io/acme/httpd:main": Location(8, 28),
    }


def test_no_cache_from_by_default(stack_root: Path) -> None:
    write(stack_root, "version: 1\nimages:\n  base: {context: images/base}\n")
    assert load_stack("stack.yaml").images["base"].cache_from == ()


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        (
            "version: 1\ndefaults: {cache_from: registry}\n"
            "images:\n  base: {context: images/base}\n",
            2, 24, ("defaults.cache_from", "stack.yaml has none", "set `registry:`"),
        ),
        (
            "version: 1\nimages:\n  base: {context: images/base, cache_from: [registry]}\n",
            3, 45, ("cache_from of image 'base'", "stack.yaml has none"),
        ),
        (
            "version: 1\nimages:\n  base: {context: images/base, cache_from: latest}\n",
            3, 44, ("cache_from of image 'base' is 'latest'", "write `registry`"),
        ),
        (
            "version: 1\nimages:\n  base: {context: images/base, cache_from: [ok/x, 'Bad:']}\n",
            3, 51, ("'Bad:' is not an image reference", "ghcr.io/acme/base:main"),
        ),
        (
            "version: 1\nimages:\n  base: {context: images/base, cache_from: 3}\n",
            3, 44, ("expected a string or a list for cache_from",),
        ),
    ],
)
def test_a_wrong_cache_from_is_located(
    stack_root: Path, text: str, line: int, col: int, words: tuple[str, ...]
) -> None:
    assert_error(error_for(stack_root, text), line, col, *words)
