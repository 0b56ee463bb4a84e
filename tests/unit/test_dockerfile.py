"""Dockerfile parsing: which images a Dockerfile builds on, as ``docker build`` sees them."""

from __future__ import annotations

import textwrap

import pytest

from stackbuild.dockerfile import ImageReference, parse_dockerfile
from stackbuild.errors import DockerfileError
from stackbuild.refs import repository_of, split_reference


def refs(text: str, build_args: dict[str, str] | None = None, **kwargs) -> list[str]:
    """The references of a Dockerfile written as an indented literal."""
    info = parse_dockerfile(textwrap.dedent(text), build_args, **kwargs)
    return [reference.ref for reference in info.references]


def parse(text: str, build_args: dict[str, str] | None = None, **kwargs):
    return parse_dockerfile(textwrap.dedent(text), build_args, **kwargs)


# --- FROM ------------------------------------------------------------------


def test_a_plain_from_names_its_image_with_instruction_and_line():
    info = parse(
        """\
        # a comment
        FROM debian:bookworm-slim
        RUN true
        """
    )
    assert info.references == (ImageReference("debian:bookworm-slim", "FROM", 2, 0),)
    assert info.stages == ()
    assert info.warnings == ()


def test_instructions_are_case_insensitive():
    assert refs("from alpine:3.19 as build\nFrOm build\ncopy --from=busybox /bin /bin\n") == [
        "alpine:3.19",
        "busybox",
    ]


def test_scratch_is_not_an_image():
    assert refs("FROM scratch\nCOPY --from=scratch / /\n") == []


def test_platform_flag_is_ignored_even_with_a_variable():
    assert refs("FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n") == ["golang:1.22"]


def test_registry_with_port_and_digest_is_kept_verbatim():
    assert refs(
        """\
        FROM 127.0.0.1:5000/acme/base:1.0
        FROM localhost:5000/tools
        FROM ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef
        """
    ) == [
        "127.0.0.1:5000/acme/base:1.0",
        "localhost:5000/tools",
        "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef",
    ]


def test_each_reference_is_reported_once_at_its_first_line():
    info = parse(
        """\
        FROM python:3.12 AS a
        FROM python:3.12 AS b
        COPY --from=python:3.12 / /
        """
    )
    assert info.references == (ImageReference("python:3.12", "FROM", 1, 0),)


# --- ARG substitution --------------------------------------------------------


def test_global_arg_default_is_substituted_in_from():
    assert refs("ARG VERSION=3.12\nFROM python:${VERSION}-slim\n") == ["python:3.12-slim"]


def test_build_arg_overrides_the_default():
    assert refs("ARG VERSION=3.12\nFROM python:$VERSION\n", {"VERSION": "3.11"}) == ["python:3.11"]


def test_build_arg_gives_a_value_to_an_arg_without_default():
    assert refs("ARG BASE\nFROM $BASE\n", {"BASE": "acme/base:1"}) == ["acme/base:1"]


def test_build_arg_not_declared_with_arg_is_not_in_scope():
    # like docker build: --build-arg alone does not declare a variable
    info = parse("FROM ${BASE:-debian}\n", {"BASE": "acme/base"})
    assert [reference.ref for reference in info.references] == ["debian"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("ARG TAG", "debian:default"),  # unset
        ("ARG TAG=", "debian:default"),  # empty
        ("ARG TAG=12", "debian:12"),
    ],
)
def test_colon_dash_default_applies_when_unset_or_empty(args, expected):
    assert refs(f"{args}\nFROM debian:${{TAG:-default}}\n") == [expected]


@pytest.mark.parametrize(
    ("args", "expected"),
    [("ARG TAG", "debian:default"), ("ARG TAG=", "debian"), ("ARG TAG=12", "debian12")],
)
def test_dash_default_applies_only_when_unset(args, expected):
    # "debian" + "" and "debian" + "12": not tags, just name text
    assert refs(f"{args}\nFROM debian${{TAG-:default}}\n") == [expected]


@pytest.mark.parametrize(
    ("args", "expected"),
    [("ARG SLIM", "python:3.12"), ("ARG SLIM=1", "python:3.12-slim")],
)
def test_colon_plus_gives_the_alternative_when_set(args, expected):
    assert refs(f"{args}\nFROM python:3.12${{SLIM:+-slim}}\n") == [expected]


def test_nested_defaults_and_quotes():
    text = """\
        ARG REGISTRY
        ARG NAME="acme/base"
        FROM ${REGISTRY:-docker.io}/${NAME}:'1.0'
        """
    assert refs(text) == ["docker.io/acme/base:1.0"]


def test_prefix_and_suffix_removal():
    text = "ARG V=3.12.4\nFROM python:${V%.*}\nFROM python:${V%%.*}\nFROM python:${V#*.}\n"
    assert refs(text) == ["python:3.12", "python:3", "python:12.4"]


def test_escaped_dollar_is_literal_and_unset_names_are_reported():
    info = parse("FROM \\$X\n")
    assert info.references == ()
    assert "'$X' is not an image reference" in info.warnings[0]


def test_arg_defaults_use_earlier_args_jupyter_docker_stacks_style():
    text = """\
        ARG REGISTRY=quay.io
        ARG OWNER=jupyter
        ARG BASE_IMAGE=$REGISTRY/$OWNER/docker-stacks-foundation
        FROM $BASE_IMAGE
        """
    assert refs(text) == ["quay.io/jupyter/docker-stacks-foundation"]
    assert refs(text, {"REGISTRY": "127.0.0.1:5000", "OWNER": "acme"}) == [
        "127.0.0.1:5000/acme/docker-stacks-foundation"
    ]
    # an overridden ARG is taken as given, not re-derived from the others
    assert refs(text, {"BASE_IMAGE": "acme/foundation:2", "OWNER": "x"}) == ["acme/foundation:2"]


def test_several_args_on_one_line():
    assert refs("ARG A=acme B=base\nFROM $A/$B\n") == ["acme/base"]


def test_only_global_args_are_in_scope_for_from():
    info = parse(
        """\
        FROM debian AS one
        ARG IMAGE=alpine
        FROM $IMAGE:latest
        """
    )
    assert [reference.ref for reference in info.references] == ["debian"]
    assert any("variable IMAGE is not set" in warning for warning in info.warnings)
    assert any("':latest' is not an image reference" in warning for warning in info.warnings)


@pytest.mark.parametrize("written", ["${MISSING}", "${MISSING}:latest", "$REG/", "python:$TAG"])
def test_a_reference_left_invalid_by_unset_variables_is_dropped_with_a_warning(written):
    info = parse(f"ARG MISSING\nFROM {written}\n")
    assert info.references == ()
    assert info.warnings


def test_an_unset_variable_that_leaves_a_valid_name_is_kept_and_warned_about():
    info = parse("ARG PREFIX\nFROM ${PREFIX}debian\n")
    assert [reference.ref for reference in info.references] == ["debian"]
    assert info.warnings == (
        "line 2: FROM ${PREFIX}debian: variable PREFIX is not set (an ARG without a value "
        "and no build arg, or not declared where it is used)",
    )


# --- stages ----------------------------------------------------------------


def test_from_an_earlier_stage_is_that_stage_not_an_image():
    info = parse(
        """\
        FROM golang:1.22 AS build
        RUN go build -o /app .
        FROM build
        """
    )
    assert [reference.ref for reference in info.references] == ["golang:1.22"]
    assert info.stages == ("build",)


def test_a_stage_named_like_its_image_shadows_it_only_afterwards():
    # the first FROM builds on the image `base`, the second on the stage `base`
    info = parse("FROM base AS base\nRUN true\nFROM base\n")
    assert info.references == (ImageReference("base", "FROM", 1, 0),)


def test_stage_names_are_case_insensitive():
    info = parse("FROM golang AS Build\nFROM BUILD\nCOPY --from=bUiLd /a /a\n")
    assert [reference.ref for reference in info.references] == ["golang"]
    assert info.stages == ("build",)


def test_copy_from_stage_name_number_and_image():
    text = """\
        FROM golang:1.22 AS build
        FROM alpine:3.19
        COPY --from=build /app /app
        COPY --from=0 /etc/passwd /etc/passwd
        COPY --from=nginx:1.25 /etc/nginx /etc/nginx
        COPY --link --from=127.0.0.1:5000/acme/base:1 / /base
        """
    info = parse(text)
    assert [(r.ref, r.instruction, r.line) for r in info.references] == [
        ("golang:1.22", "FROM", 1),
        ("alpine:3.19", "FROM", 2),
        ("nginx:1.25", "COPY --from", 5),
        ("127.0.0.1:5000/acme/base:1", "COPY --from", 6),
    ]


@pytest.mark.parametrize(
    "copy",
    [
        "COPY --from=tools /x /x",
        "COPY --chown=app:app --from=tools /x /x",
        "COPY --chown=app --from tools /x /x",
        'COPY --from="tools" /x /x',
        'COPY --from=tools ["/x", "/x"]',
        "COPY   --chmod=755   --from=tools   /x /x",
    ],
)
def test_copy_from_flag_spellings(copy):
    assert refs(f"FROM alpine\n{copy}\n") == ["alpine", "tools"]


def test_copy_from_may_name_a_later_stage():
    # BuildKit resolves COPY --from against every stage of the file
    assert refs("FROM alpine\nCOPY --from=assets /a /a\nFROM node:20 AS assets\n") == [
        "alpine",
        "node:20",
    ]


def test_run_mount_from_in_any_key_order():
    text = """\
        FROM golang:1.22 AS build
        FROM alpine
        RUN --mount=type=bind,from=tools:1,source=/t,target=/t make
        RUN --mount=from=cachebase:2,type=cache,target=/root/.cache make
        RUN --mount=target=/src,from=build,source=/src make
        RUN --mount=type=secret,id=token --mount=from=2.example.com/x,target=/x make
        RUN --mount=type=cache,target=/var/cache/apt --mount=type=tmpfs,target=/tmp make
        RUN --network=none --mount=from=1 ["make", "all"]
        """
    info = parse(text)
    assert [(r.ref, r.instruction, r.line) for r in info.references] == [
        ("golang:1.22", "FROM", 1),
        ("alpine", "FROM", 2),
        ("tools:1", "RUN --mount", 3),
        ("cachebase:2", "RUN --mount", 4),
        ("2.example.com/x", "RUN --mount", 6),
    ]


def test_target_keeps_only_the_stages_it_needs():
    text = """\
        FROM golang:1.22 AS build
        RUN --mount=from=tools,target=/t make
        FROM build AS test
        COPY --from=testdata / /data
        FROM alpine AS release
        COPY --from=build /app /app
        """
    assert refs(text) == ["golang:1.22", "tools", "testdata", "alpine"]
    assert refs(text, target="release") == ["golang:1.22", "tools", "alpine"]
    assert refs(text, target="TEST") == ["golang:1.22", "tools", "testdata"]
    info = parse(text, target="nope")
    assert len(info.references) == 4
    assert "target stage 'nope' is not in the Dockerfile" in info.warnings[0]


# --- lines: continuations, comments, heredocs, directives ---------------------


def test_continuation_lines_with_interleaved_comments_and_blank_lines():
    info = parse(
        """\
        FROM debian:bookworm-slim
        RUN apt-get update \\
        # FROM not-an-instruction \\
            && apt-get install -y curl \\

            # another comment
            && rm -rf /var/lib/apt/lists/*
        COPY \\
          --from=busybox:1.36 \\
          /bin/busybox /bin/
        FROM alpine
        """
    )
    assert [(r.ref, r.line) for r in info.references] == [
        ("debian:bookworm-slim", 1),
        ("busybox:1.36", 8),
        ("alpine", 11),
    ]


def test_trailing_blanks_after_the_escape_still_continue():
    assert refs("FROM \\  \n  alpine\n") == ["alpine"]


def test_heredoc_bodies_are_not_instructions():
    text = """\
        # syntax=docker/dockerfile:1
        FROM python:3.12-slim
        RUN <<EOF
        FROM body-one
        EOF
        RUN <<-"EOT" bash
        \t\tFROM body-two
        \tEOT
        COPY <<'CONF' /etc/app.conf
        FROM body-three
        CONF
        RUN <<ONE cat >/a && <<TWO cat >/b
        FROM body-four
        ONE
        FROM body-five
        TWO
        FROM alpine
        """
    info = parse(text)
    assert [(r.ref, r.line) for r in info.references] == [
        ("python:3.12-slim", 2),
        ("alpine", 17),
    ]


def test_quoted_or_json_heredoc_markers_are_plain_text():
    text = """\
        FROM alpine
        RUN echo "<<EOF" && echo a<<b
        RUN ["sh", "-c", "cat <<EOF"]
        FROM busybox
        """
    assert refs(text) == ["alpine", "busybox"]


def test_escape_directive_changes_the_continuation_character():
    text = """\
        # escape=`
        FROM mcr.microsoft.com/windows/servercore:ltsc2022
        RUN mkdir C:\\app `
            && echo done
        COPY --from=mcr.microsoft.com/powershell:lts `
            C:\\ C:\\ps
        """
    assert refs(text) == [
        "mcr.microsoft.com/windows/servercore:ltsc2022",
        "mcr.microsoft.com/powershell:lts",
    ]


def test_escape_directive_only_counts_at_the_top():
    # after an ordinary comment it is a comment too: the backslash still continues
    text = "# hello\n# escape=`\nFROM alpine \\\n  AS base\nFROM base\n"
    info = parse(text)
    assert [reference.ref for reference in info.references] == ["alpine"]
    assert info.stages == ("base",)


def test_crlf_line_endings_and_byte_order_mark():
    text = "\ufeffARG V=1\r\nFROM acme/base:$V \\\r\n  AS b\r\nCOPY --from=b / /\r\n"
    info = parse_dockerfile(text)
    assert [(r.ref, r.line) for r in info.references] == [("acme/base:1", 2)]
    assert info.stages == ("b",)


# --- realistic Dockerfiles ---------------------------------------------------

JUPYTER_BASE_NOTEBOOK = """\
# Copyright (c) Jupyter Development Team.
# Distributed under the terms of the Modified BSD License.
ARG REGISTRY=quay.io
ARG OWNER=jupyter
ARG BASE_IMAGE=$REGISTRY/$OWNER/docker-stacks-foundation
FROM $BASE_IMAGE

LABEL maintainer="Jupyter Project <jupyter@googlegroups.com>"

# Fix: https://github.com/hadolint/hadolint/wiki/DL4006
# Fix: https://github.com/koalaman/shellcheck/wiki/SC3014
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

USER root

# Install all OS dependencies for the Server that starts
# but lacks all features (e.g., download as all possible file formats)
RUN apt-get update --yes && \\
    apt-get install --yes --no-install-recommends \\
    # - Add necessary fonts for matplotlib/seaborn
    #   See https://github.com/jupyter/docker-stacks/pull/380 for details
    fonts-liberation \\
    # - `pandoc` is used to convert notebooks to html files
    pandoc \\
    # - `run-one` - a wrapper script that runs no more
    #   than one unique instance of some command with a unique set of arguments
    run-one && \\
    apt-get clean && rm -rf /var/lib/apt/lists/*

USER ${NB_UID}

WORKDIR /tmp
RUN mamba install --yes \\
    'jupyterhub-singleuser' \\
    'jupyterlab' \\
    'nbclassic' \\
    # Old versions of `notebook` (<v7) didn't restrict the `jupyterlab` version
    'notebook>=7.2.2' && \\
    jupyter server --generate-config && \\
    mamba clean --all -f -y && \\
    npm cache clean --force && \\
    jupyter lab clean && \\
    rm -rf "/home/${NB_USER}/.cache/yarn" && \\
    fix-permissions "${CONDA_DIR}" && \\
    fix-permissions "/home/${NB_USER}"

ENV JUPYTER_PORT=8888
EXPOSE $JUPYTER_PORT

# Configure container startup
CMD ["start-notebook.py"]

# Copy local files as late as possible to avoid cache busting
COPY start-notebook.py start-notebook.sh start-singleuser.py start-singleuser.sh /usr/local/bin/
COPY jupyter_server_config.py docker_healthcheck.py /etc/jupyter/

USER root

# HEALTHCHECK documentation: https://docs.docker.com/engine/reference/builder/#healthcheck
HEALTHCHECK --interval=3s --timeout=1s --start-period=3s --retries=3 \\
    CMD /etc/jupyter/docker_healthcheck.py || exit 1

USER ${NB_UID}

WORKDIR "${HOME}"
"""


def test_jupyter_base_notebook():
    info = parse_dockerfile(JUPYTER_BASE_NOTEBOOK)
    assert info.references == (
        ImageReference("quay.io/jupyter/docker-stacks-foundation", "FROM", 6, 0),
    )
    assert info.warnings == ()
    stack_args = {"REGISTRY": "127.0.0.1:5000", "OWNER": "acme"}
    assert [r.ref for r in parse_dockerfile(JUPYTER_BASE_NOTEBOOK, stack_args).references] == [
        "127.0.0.1:5000/acme/docker-stacks-foundation"
    ]


GO_CROSS_COMPILE = """\
# syntax=docker/dockerfile:1

ARG GO_VERSION=1.22
ARG ALPINE_VERSION=3.19
ARG XX_VERSION=1.4.0

FROM --platform=$BUILDPLATFORM tonistiigi/xx:${XX_VERSION} AS xx

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine${ALPINE_VERSION} AS base
COPY --from=xx / /
RUN apk add --no-cache clang lld git
WORKDIR /src
ENV CGO_ENABLED=0

FROM base AS build
ARG TARGETPLATFORM
RUN --mount=type=bind,target=. \\
    --mount=type=cache,target=/root/.cache/go-build \\
    --mount=type=cache,target=/go/pkg/mod \\
    xx-go build -trimpath -ldflags "-s -w" -o /out/app ./cmd/app && \\
    xx-verify --static /out/app

FROM scratch AS binary
COPY --from=build /out/app /

FROM alpine:${ALPINE_VERSION} AS release
RUN apk add --no-cache ca-certificates
COPY --from=binary /app /usr/local/bin/app
ENTRYPOINT ["app"]
"""


def test_buildkit_cross_compile_multi_stage():
    info = parse_dockerfile(GO_CROSS_COMPILE)
    assert [(r.ref, r.line, r.stage) for r in info.references] == [
        ("tonistiigi/xx:1.4.0", 7, 0),
        ("golang:1.22-alpine3.19", 9, 1),
        ("alpine:3.19", 26, 4),
    ]
    assert info.stages == ("xx", "base", "build", "binary", "release")
    assert [r.ref for r in parse_dockerfile(GO_CROSS_COMPILE, {"GO_VERSION": "1.23"}).references][
        1
    ] == "golang:1.23-alpine3.19"


DOCKER_LIBRARY_STYLE = """\
#
# NOTE: THIS DOCKERFILE IS GENERATED VIA "apply-templates.sh"
#
# PLEASE DO NOT EDIT IT DIRECTLY.
#

FROM buildpack-deps:bookworm AS builder

# ensure local python is preferred over distribution python
ENV PATH /usr/local/bin:$PATH

ENV GPG_KEY 7169605F62C751356D054A26A821E680E5FA6305
ENV PYTHON_VERSION 3.12.4

RUN set -eux; \\
	\\
	wget -O python.tar.xz "$PY_FTP/${PYTHON_VERSION%%[a-z]*}/Python-$PYTHON_VERSION.tar.xz"; \\
	mkdir -p /usr/src/python; \\
	tar --extract --directory /usr/src/python --strip-components=1 --file python.tar.xz; \\
	rm python.tar.xz; \\
	\\
	cd /usr/src/python; \\
	./configure --enable-optimizations; \\
	make -j "$(nproc)"; \\
	make install DESTDIR=/out

FROM debian:bookworm-slim
ENV PATH /usr/local/bin:$PATH
ENV LANG C.UTF-8
COPY --from=builder /out/usr/local /usr/local
RUN set -eux; \\
	apt-get update; \\
	apt-get install -y --no-install-recommends ca-certificates netbase tzdata; \\
	rm -rf /var/lib/apt/lists/*

CMD ["python3"]
"""


def test_docker_library_style_two_stage_build():
    info = parse_dockerfile(DOCKER_LIBRARY_STYLE)
    assert [(r.ref, r.line) for r in info.references] == [
        ("buildpack-deps:bookworm", 7),
        ("debian:bookworm-slim", 27),
    ]
    assert info.stages == ("builder",)
    assert info.warnings == ()


# --- split_reference ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("debian", ("debian", None, None)),
        ("debian:bookworm-slim", ("debian", "bookworm-slim", None)),
        ("acme/base:1.0", ("acme/base", "1.0", None)),
        ("127.0.0.1:5000/acme/base", ("127.0.0.1:5000/acme/base", None, None)),
        ("127.0.0.1:5000/acme/base:1.0", ("127.0.0.1:5000/acme/base", "1.0", None)),
        (
            "127.0.0.1:5000/acme/base:1.0@sha256:ab",
            ("127.0.0.1:5000/acme/base", "1.0", "sha256:ab"),
        ),
        ("localhost:5000/base@sha256:ab", ("localhost:5000/base", None, "sha256:ab")),
        ("base@sha256:ab", ("base", None, "sha256:ab")),
    ],
)
def test_split_reference(ref, expected):
    assert split_reference(ref) == expected


# --- speed -------------------------------------------------------------------


def test_repository_of_spells_docker_hub_names_as_the_engine_does() -> None:
    assert repository_of("docker.io/library/base:1") == "base"
    assert repository_of("docker.io/acme/base@sha256:" + "a" * 64) == "acme/base"
    assert repository_of("index.docker.io/acme/base") == "acme/base"
    assert repository_of("127.0.0.1:5000/library/base:1") == "127.0.0.1:5000/library/base"
    assert repository_of("acme/team/base:2") == "acme/team/base"


def test_a_tag_outside_docker_s_ascii_alphabet_is_not_an_image() -> None:
    info = parse_dockerfile("FROM base:täg\nFROM base:v1.2_x\n")
    assert [r.ref for r in info.references] == ["base:v1.2_x"]


# BuildKit (dockerfile2llb): "variable expansion is not supported for --from"; it
# refuses the whole file, so it is a located error, not an edge
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ARG TOOLS=acme/tools:1\nFROM alpine\nARG TOOLS\nCOPY --from=$TOOLS /t /t\n", 4),
        ("FROM alpine AS base\nENV A=acme/assets:3\nFROM base\nCOPY --from=${A} / /\n", 4),
        ("FROM alpine\nARG T=acme/tools\nRUN --mount=from=$T,target=/t make\n", 3),
        ("FROM alpine\nRUN --mount=type=cache,target=/c \\\n  --mount=from=x$T make\n", 2),
    ],
)
def test_variables_in_from_flags_are_a_located_error(text, line):
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"Dockerfile:{line}: ")
    assert "does not expand variables" in str(caught.value)
