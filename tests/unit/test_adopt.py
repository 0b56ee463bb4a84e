"""``stackbuild init``: the stack.yaml it infers for a tree of Dockerfiles.

Every written manifest is loaded and resolved as ``plan`` does (``load_stack`` +
``build_graph``), so what is asserted is what a user's next ``plan --offline`` sees.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from stackbuild.adopt import Found, adopt, dockerfile_suffix, render_stack, valid_name
from stackbuild.analyze import read_dockerfiles
from stackbuild.cli import _main
from stackbuild.graph import StackGraph, build_graph
from stackbuild.manifest import load_stack
from tests.helpers import ORACLE

REPO = Path(__file__).resolve().parents[2]
DOCKER_STACKS = ORACLE / "real" / "jupyter+docker-stacks"

# jupyter/docker-stacks' declared hierarchy (its docs' image relationships), variants too
DOCKER_STACKS_EDGES = {
    ("docker-stacks-foundation", "base-notebook"),
    ("base-notebook", "minimal-notebook"),
    ("minimal-notebook", "scipy-notebook"),
    ("minimal-notebook", "r-notebook"),
    ("minimal-notebook", "julia-notebook"),
    ("scipy-notebook", "tensorflow-notebook"),
    ("scipy-notebook", "tensorflow-notebook-cuda"),
    ("scipy-notebook", "pytorch-notebook"),
    ("scipy-notebook", "pytorch-notebook-cuda12"),
    ("scipy-notebook", "datascience-notebook"),
    ("scipy-notebook", "pyspark-notebook"),
    ("pyspark-notebook", "all-spark-notebook"),
}

CHILD = """\
# Copyright (c) Jupyter Development Team.
ARG REGISTRY=quay.io
ARG OWNER=jupyter
ARG BASE_IMAGE=$REGISTRY/$OWNER/{parent}
FROM $BASE_IMAGE
RUN echo {parent}
"""
UBUNTU = "ubuntu:24.04@sha256:561618e2c15bf2397621dd04f96926663a3b5616c189cf7e38db7e82f5c538ea"
MAMBA = "mambaorg/micromamba:2.8.1@sha256:" + (
    "fb18405d6004af757a38ec498a078240b4fd5549146990a484c28bb7e78aace4"
)
FOUNDATION = f"""\
# the root image is a stage named by an ARG default; upstreams pinned by digest
ARG ROOT_IMAGE=default_root_image
FROM {UBUNTU} AS default_root_image
FROM {MAMBA} AS micromamba
FROM $ROOT_IMAGE
COPY --from=micromamba /bin/micromamba /usr/local/bin/
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def miniature_docker_stacks(root: Path) -> Path:
    """docker-stacks' images/ in miniature: the same FROM lines, nested variants."""
    parents = {child: parent for parent, child in DOCKER_STACKS_EDGES}
    files = {"images/docker-stacks-foundation/Dockerfile": FOUNDATION}
    for child, parent in parents.items():
        directory = child.replace("-cuda12", "/cuda12").replace("-cuda", "/cuda")
        files[f"images/{directory}/Dockerfile"] = CHILD.format(parent=parent)
    # digest-pinned like its examples/ and binder/: a published image, out of images/
    files["binder/Dockerfile"] = "FROM quay.io/jupyter/base-notebook@sha256:" + "a" * 64 + "\n"
    files[".devcontainer/Dockerfile"] = "FROM mcr.microsoft.com/devcontainers/python:3\n"
    return write(root, files)


def init(root: Path, *args: str) -> tuple[int, str]:
    """Exit code and output of ``stackbuild init ROOT ARGS``, errors reported as a user
    sees them (``_main``), without a subprocess."""
    result = CliRunner().invoke(_main_command, ["init", str(root), *args])
    return result.exit_code, result.output


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _main_command(args: tuple[str, ...]) -> None:
    sys.argv = ["stackbuild", *args]
    sys.exit(_main())


def resolved(stack_file: Path) -> StackGraph:
    stack = load_stack(stack_file)
    return build_graph(stack, read_dockerfiles(stack)[1])


def edges(graph: StackGraph) -> set[tuple[str, str]]:
    return {(parent, name) for name in graph.order for parent in graph.parents(name)}


def test_docker_stacks_shaped_tree_gives_its_declared_hierarchy(tmp_path: Path) -> None:
    root = miniature_docker_stacks(tmp_path)
    code, output = init(root)
    assert code == 0, output
    assert "warning" not in output  # read back, plan infers what the comments say
    text = (root / "stack.yaml").read_text()
    assert "registry: quay.io/jupyter\n" in text
    graph = resolved(root / "stack.yaml")
    # .devcontainer/ is hidden: no image; binder is built on the stack's base-notebook
    assert edges(graph) == DOCKER_STACKS_EDGES | {("base-notebook", "binder")}
    assert graph.stack.images["pytorch-notebook-cuda12"].context_rel == (
        "images/pytorch-notebook/cuda12"
    )
    # the stage named by ROOT_IMAGE's default is no image; its FROM is an upstream
    assert graph.upstream("docker-stacks-foundation") == (UBUNTU, MAMBA)
    # a comment per image says why: the FROM line, as expanded, and where it is
    assert (
        "  # parent scipy-notebook: FROM quay.io/jupyter/scipy-notebook "
        "(images/pytorch-notebook/cuda12/Dockerfile:5)\n  pytorch-notebook-cuda12:\n"
    ) in text
    assert "pinned by digest, yet built on this stack's image" in text
    # parents first, like the hierarchy reads
    order = list(graph.stack.images)
    assert all(order.index(p) < order.index(c) for p, c in edges(graph))


@pytest.mark.skipif(not DOCKER_STACKS.is_dir(), reason="no checkout of jupyter/docker-stacks")
def test_the_real_docker_stacks_images(tmp_path: Path) -> None:
    shutil.copytree(DOCKER_STACKS / "images", tmp_path / "images")
    code, output = init(tmp_path)
    assert code == 0, output
    declared = DOCKER_STACKS_EDGES | {("scipy-notebook", "pytorch-notebook-cuda13")}
    assert edges(resolved(tmp_path / "stack.yaml")) == declared


def test_the_example_images_give_back_the_example_stack(tmp_path: Path) -> None:
    shutil.copytree(REPO / "images", tmp_path / "images", symlinks=True)
    code, output = init(tmp_path)
    assert code == 0, output
    ours, theirs = resolved(tmp_path / "stack.yaml"), resolved(REPO / "stack.yaml")
    assert sorted(ours.stack.images) == sorted(theirs.stack.images)
    assert {n: s.context_rel for n, s in ours.stack.images.items()} == {
        n: s.context_rel for n, s in theirs.stack.images.items()
    }
    assert edges(ours) == edges(theirs)
    assert ours.stack.registry is None


def test_refuses_to_overwrite_without_force_and_dry_run_prints(tmp_path: Path) -> None:
    write(tmp_path, {"app/Dockerfile": "FROM debian:bookworm\n"})
    (tmp_path / "stack.yaml").write_text("mine\n")
    code, output = init(tmp_path)
    assert code == 2 and "use --force" in output
    assert (tmp_path / "stack.yaml").read_text() == "mine\n"
    code, output = init(tmp_path, "--dry-run")
    assert code == 0 and "  app:\n    context: app\n" in output
    assert (tmp_path / "stack.yaml").read_text() == "mine\n"
    code, output = init(tmp_path, "--force")
    assert code == 0 and "  # upstream: debian:bookworm\n" in (tmp_path / "stack.yaml").read_text()


def test_no_dockerfile_is_an_error(tmp_path: Path) -> None:
    code, output = init(tmp_path)
    assert code == 2 and "no Dockerfile under" in output


def test_suffixes_invalid_names_and_a_build_arg_that_makes_the_edge(tmp_path: Path) -> None:
    write(tmp_path, {
        "docker/Dockerfile.api": "ARG OWNER=acme\nFROM ghcr.io/$OWNER/base:1\n",
        "docker/worker.Dockerfile": "FROM ghcr.io/acme/base\n",
        "Base/Containerfile": "FROM alpine:3\n",
        "My_Tool/Dockerfile": "ARG OWNER=someone-else\nFROM ghcr.io/$OWNER/base\n",
    })
    code, output = init(tmp_path)
    assert code == 0 and "warning" not in output, output
    text = (tmp_path / "stack.yaml").read_text()
    graph = resolved(tmp_path / "stack.yaml")
    assert graph.stack.registry == "ghcr.io/acme"
    assert set(graph.stack.images) == {"base", "api", "worker", "my_tool"}
    assert graph.stack.images["base"].dockerfile_rel == "Base/Containerfile"
    assert graph.stack.images["api"].dockerfile_rel == "docker/Dockerfile.api"
    assert "# note: named base: 'Base' is not a valid repository name" in text
    # its default names another owner: the build arg that makes it the stack's base
    assert graph.stack.images["my_tool"].build_args == {"OWNER": "acme"}
    assert "with build arg OWNER=acme" in text
    assert edges(graph) == {("base", "api"), ("base", "worker"), ("base", "my_tool")}


def test_pure_inference() -> None:
    adoption = adopt(
        [Found("a/Dockerfile", "FROM b\n"), Found("b/Dockerfile", "FROM scratch\n")], "x"
    )
    assert [image.name for image in adoption.images] == ["b", "a"]  # parents first
    assert adoption.edges() == {("b", "a")}
    assert "\nregistry:" not in render_stack(adoption, ".")
    assert [dockerfile_suffix(n) for n in ("Dockerfile", "Dockerfile.x", "x.Dockerfile")] == [
        "", "x", "x"
    ]
    assert dockerfile_suffix("README") is None
    assert valid_name("Foo Bar!") == "foo-bar"
