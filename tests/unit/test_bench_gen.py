"""bench/gen.py: a generated stack loads and plans offline with the images and edges it says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from stackbuild.analyze import analyze

GEN_PATH = Path(__file__).resolve().parents[2] / "bench" / "gen.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("bench_gen", GEN_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gen"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_gen", None)


@pytest.mark.parametrize(
    ("shape", "extra_parents"),
    [("random", "copy"), ("layered", "depends_on"), ("chain-leaves", "copy"), ("diamond", "copy")],
)
def test_generated_stack_plans_offline_with_its_images_and_edges(tmp_path, gen, shape,
                                                                  extra_parents):
    graph = gen.make_graph(
        40, shape, depth=4, fanout=3, prefix="t", sleep=0.5, skew=1.0, seed=2
    )
    stack = gen.write_stack(
        tmp_path, graph, base="scratch", files=3, context_bytes=3000,
        extra_parents=extra_parents,
    )
    analysis = analyze(stack)
    assert sorted(analysis.selected) == sorted(graph.names)
    edges = {(p, n) for n in analysis.selected for p in analysis.graph.parents(n)}
    assert edges == set(graph.edges)
    plan = analysis.plan(None)  # offline: everything is planned as a build
    assert len(plan.to_build) == 40
    assert all(len(analysis.files[n]) == 1 + 1 + 3 for n in graph.names if graph.parents[n])


def test_shapes_and_durations(gen):
    g = gen.make_graph(21, "chain-leaves", depth=4, prefix="c", sleep=1.0, long_sleep=5.0)
    assert g.critical_path() == pytest.approx(1.0 + 4 * 5.0)
    assert len(g.levels()) == 5 and len(g.levels()[1]) == 17
    d = gen.make_graph(10, "diamond", prefix="d")
    assert len(d.parents[d.names[-1]]) == 8 and len(d.levels()) == 3
    r = gen.make_graph(500, "random", fanout=3, window=20, prefix="r", sleep=1.0, skew=1.0)
    assert all(0 < len(r.parents[n]) <= 3 for n in r.names[1:])
    index = {n: i for i, n in enumerate(r.names)}
    assert all(i - 20 <= index[p] < i for i, n in enumerate(r.names) for p in r.parents[n])
    assert max(r.durations.values()) > 5 * min(r.durations.values())  # skewed


def test_runs_get_distinct_dockerfiles(tmp_path, gen):
    g = gen.make_graph(5, "chain-leaves", depth=1, prefix="s", sleep=1.0)
    gen.write_stack(tmp_path, g, base="busybox-ref:1", extra_parents="depends_on", salt="x1")
    texts = {(tmp_path / "ctx" / n / "Dockerfile").read_text() for n in g.names}
    assert len(texts) == 5  # leaves with equal durations never share a RUN layer
    assert "FROM busybox-ref:1" in (tmp_path / "ctx" / g.names[0] / "Dockerfile").read_text()
