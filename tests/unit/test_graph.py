"""The dependency graph: parents inferred from Dockerfiles, cycles, selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackbuild.dockerfile import parse_dockerfile
from stackbuild.errors import ManifestError, UsageError
from stackbuild.graph import NotADag, StackGraph, build_graph, in_stack_name, longest_path_lengths
from stackbuild.manifest import ImageSpec, Location, Stack


def make_stack(dockerfiles: dict[str, str], registry: str | None = None, depends_on=None):
    depends_on = depends_on or {}
    images = {
        name: ImageSpec(
            name=name,
            context=Path("/repo/images") / name,
            dockerfile=Path("/repo/images") / name / "Dockerfile",
            context_rel=f"images/{name}",
            dockerfile_rel=f"images/{name}/Dockerfile",
            depends_on=tuple(depends_on.get(name, ())),
            location=Location(index + 3, 3),
            key_locations={"depends_on": Location(index + 3, 5)},
        )
        for index, name in enumerate(dockerfiles)
    }
    stack = Stack(
        path=Path("/repo/stack.yaml"), root=Path("/repo"), version=1,
        registry=registry, images=images,
    )
    parsed = {name: parse_dockerfile(text) for name, text in dockerfiles.items()}
    return stack, parsed


def graph_of(dockerfiles, **kwargs):
    stack, parsed = make_stack(dockerfiles, **kwargs)
    return build_graph(stack, parsed)


DIAMOND = {
    "base": "FROM scratch\n",
    "left": "FROM base\n",
    "right": "FROM base:latest\n",
    "top": "FROM left\nCOPY --from=right /x /x\n",
}


def test_parents_come_from_from_and_copy_from():
    graph = graph_of(DIAMOND)
    assert graph.parents("top") == ("left", "right")
    assert graph.parents("right") == ("base",)
    assert graph.order[0] == "base" and graph.order[-1] == "top"


def test_other_references_are_upstream_and_scratch_is_nothing():
    graph = graph_of({"app": "FROM debian:bookworm-slim\nCOPY --from=busybox:1 /bin/x /x\n",
                      "root": "FROM scratch\n"})
    assert graph.upstream("app") == ("debian:bookworm-slim", "busybox:1")
    assert graph.parents("app") == ()
    assert graph.upstream("root") == ()


def test_registry_prefixed_reference_names_the_stack_image():
    graph = graph_of(
        {"base": "FROM scratch\n", "app": "FROM 127.0.0.1:5000/acme/base:1.0\n"},
        registry="127.0.0.1:5000/acme",
    )
    assert graph.parents("app") == ("base",)
    assert graph.nodes["app"].parent_refs == {"127.0.0.1:5000/acme/base:1.0": "base"}


def test_registry_prefix_of_another_registry_is_upstream():
    graph = graph_of(
        {"base": "FROM scratch\n", "app": "FROM quay.io/other/base\n"},
        registry="127.0.0.1:5000/acme",
    )
    assert graph.parents("app") == ()
    assert graph.upstream("app") == ("quay.io/other/base",)


def test_an_image_named_like_its_upstream_is_not_its_own_parent():
    graph = graph_of({"python": "FROM python:3.12-slim\n"})
    assert graph.parents("python") == ()
    assert graph.upstream("python") == ("python:3.12-slim",)


def test_depends_on_adds_an_edge():
    graph = graph_of({"a": "FROM scratch\n", "b": "FROM scratch\n"}, depends_on={"b": ["a"]})
    assert graph.parents("b") == ("a",)


def test_a_cycle_is_printed_with_its_path():
    stack, parsed = make_stack({"a": "FROM b\n", "b": "FROM a\n"})
    with pytest.raises(ManifestError) as error:
        build_graph(stack, parsed)
    message = str(error.value)
    assert "dependency cycle:" in message
    assert "a -> b -> a" in message or "b -> a -> b" in message


def test_select_takes_targets_with_their_ancestors():
    graph = graph_of(DIAMOND)
    assert graph.select(["left"]) == ["base", "left"]
    assert graph.select([]) == graph.order


def test_select_with_descendants_adds_what_is_built_on_them():
    graph = graph_of(DIAMOND)
    # top is built on left; it also needs right, which comes along as its ancestor
    assert graph.select(["left"], with_descendants=True) == ["base", "left", "right", "top"]
    assert graph.select(["right"], with_descendants=False) == ["base", "right"]


def test_select_unknown_target_is_a_usage_error_listing_images():
    graph = graph_of(DIAMOND)
    with pytest.raises(UsageError) as error:
        graph.select(["nope"])
    assert "unknown image 'nope'" in str(error.value)
    assert "base" in str(error.value)


def test_in_stack_name_ignores_tags_and_digests():
    stack, _ = make_stack({"base": "FROM scratch\n"}, registry="r.example:5000/x")
    assert in_stack_name("base", stack) == "base"
    assert in_stack_name("base:7", stack) == "base"
    assert in_stack_name("r.example:5000/x/base@sha256:" + "a" * 64, stack) == "base"
    assert in_stack_name("r.example:5000/y/base", stack) is None


def test_images_ready_together_go_in_manifest_order():
    # z is listed first; a becomes ready only after z, yet before m and y (manifest order)
    graph = graph_of({"z": "FROM scratch\n", "y": "FROM z\n", "m": "FROM scratch\n",
                      "a": "FROM scratch\n", "b": "FROM y\n"})  # fmt: skip
    assert graph.order == ["z", "y", "m", "a", "b"]
    assert graph.levels() == [["a", "m", "z"], ["y"], ["b"]]
    assert graph.children("z") == ["y"] and graph.children("a") == []
    assert graph.edges() == [("z", "y"), ("y", "b")]


def test_a_depends_on_cycle_names_the_depends_on_line():
    stack, parsed = make_stack(
        {"a": "FROM b\n", "b": "FROM scratch\n", "c": "FROM scratch\n"}, depends_on={"b": ["a"]}
    )
    with pytest.raises(ManifestError) as error:
        build_graph(stack, parsed)
    assert str(error.value) == (
        "/repo/stack.yaml:4:5: dependency cycle: a -> b -> a; image 'b' needs 'a' because "
        "depends_on. Remove one edge of the cycle."
    )


def test_selection_survives_the_cache_round_trip():
    graph = graph_of(DIAMOND)
    assert graph.select(["right"], with_descendants=True) == ["base", "left", "right", "top"]
    cached = StackGraph.from_cache(graph.stack, "k", graph.to_cache("k"))
    assert cached is not None and not cached.unsaved
    assert cached.order == graph.order and cached.levels() == graph.levels()
    assert cached.nodes == graph.nodes
    assert cached.select(["right"], with_descendants=True) == ["base", "left", "right", "top"]
    assert cached.select(["left"]) == ["base", "left"] and cached.unsaved  # a new one
    assert cached.children("base") == ["left", "right"]
    assert StackGraph.from_cache(graph.stack, "other key", graph.to_cache("k")) is None


def test_longest_path_lengths_weigh_the_heaviest_way_down():
    # 0 -> 1 -> 3, 0 -> 2 -> 3, 4 alone
    children = [[1, 2], [3], [3], [], []]
    assert longest_path_lengths(children, [1.0, 5.0, 2.0, 1.0, 7.0]) == [7.0, 6.0, 3.0, 1.0, 7.0]
    with pytest.raises(NotADag) as error:
        longest_path_lengths([[1], [0], [], [0]], [1.0] * 4)
    assert error.value.stuck == [0, 1]  # 3 is a root outside the cycle; 2 is alone
