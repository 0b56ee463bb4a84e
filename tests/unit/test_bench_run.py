"""bench/run.py's pure helpers: the lines saying how long each section took, the bound."""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from pathlib import Path

import pytest

from stackbuild.scheduler import Schedule, simulate

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def run():
    """bench/run.py as a module (it puts bench/ on sys.path and imports its siblings ``engine``
    and ``gen`` by those names: both undone here)."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for name in ("bench_run", "engine", "gen"):
            if name not in modules:
                sys.modules.pop(name, None)
        sys.path[:] = path


def test_section_lines_give_each_section_then_the_sum_and_the_load(run):
    lines = run.section_lines([("1", 41.4), ("3", 60.6)], (1.234, 1.0, 0.5), (2.5, 2.0, 1.0))
    assert lines == [
        "- section 1 took 41 s",
        "- section 3 took 61 s",
        "- sections in all 102 s; load average (1 min) 1.23 at the start, 2.50 at the end",
    ]


def test_section_lines_without_sections_say_nothing(run):
    assert run.section_lines([], (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == []


def test_the_tighter_bound_never_exceeds_a_real_schedule(run) -> None:
    """The window bound is a lower bound: no list schedule of a small DAG beats it."""
    for trial in range(25):
        g = run.make_graph(6, "random", fanout=2, sleep=1.0, skew=1.0, seed=trial, prefix="t")
        jobs = random.Random(trial).choice([1, 2, 3])
        bound = run.window_bound(g, jobs)
        best = min(
            simulate(
                Schedule(g.parents, list(order),
                         weights={n: float(i) for i, n in enumerate(reversed(order))}),
                jobs, g.durations,
            ).makespan
            for order in itertools.permutations(g.names)
        )
        assert bound <= best + 1e-9
        assert bound >= max(g.critical_path(), sum(g.durations.values()) / jobs) - 1e-9
