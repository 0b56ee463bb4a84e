"""Specs of the first-build estimates: what weighs more, and calibration to known durations."""

from __future__ import annotations

import pytest

from stackbuild.analyze import analyze
from stackbuild.estimate import ImageShape, estimated_weights, work_units
from stackbuild.scheduler import Schedule, simulate

COPY_ONLY = "FROM base\nCOPY app/ /app/\nCOPY etc/ /etc/app/\n"
RUN_HEAVY = "FROM base\nRUN apt-get update && apt-get install -y gcc\nRUN make && make install\n"


def test_run_steps_weigh_more_than_copy_steps() -> None:
    assert work_units(ImageShape(RUN_HEAVY)) > work_units(ImageShape(COPY_ONLY))


def test_a_longer_command_chain_weighs_more() -> None:
    short = ImageShape("FROM base\nRUN make\n")
    long = ImageShape("FROM base\nRUN ./configure && make && make test && make install\n")
    assert work_units(long) > work_units(short)


def test_a_larger_context_weighs_more() -> None:
    small = ImageShape(COPY_ONLY, context_bytes=1_000)
    large = ImageShape(COPY_ONLY, context_bytes=200 * 2**20)
    assert work_units(large) > work_units(small)


def test_an_unreadable_dockerfile_still_gets_a_weight() -> None:
    assert work_units(ImageShape("FROM base\nRUN <<EOF\necho never closed\n")) > 0


def test_known_durations_are_kept_and_estimates_scale_to_them() -> None:
    shapes = {"known": ImageShape(RUN_HEAVY), "twin": ImageShape(RUN_HEAVY),
              "light": ImageShape(COPY_ONLY)}  # fmt: skip
    for seconds in (3.0, 300.0):
        weights = estimated_weights(shapes, {"known": seconds})
        assert weights["known"] == seconds
        # the same Dockerfile as an image that took `seconds`: about as long
        assert weights["twin"] == pytest.approx(seconds)
        assert weights["light"] < weights["twin"]


def test_without_any_known_duration_the_order_still_follows_the_work() -> None:
    shapes = {"light": ImageShape(COPY_ONLY), "heavy": ImageShape(RUN_HEAVY)}
    weights = estimated_weights(shapes, {})
    assert weights["heavy"] > weights["light"] > 0


def test_a_first_build_starts_the_heaviest_middle_image_first() -> None:
    # base, then 3 images on it, one of them much heavier, then a sink on all three:
    # with unit weights the middle ones tie and go in name order, the heavy one last
    parents = {"base": [], "m1": ["base"], "m2": ["base"], "m3": ["base"],
               "sink": ["m1", "m2", "m3"]}  # fmt: skip
    chain = " && ".join(["make"] * 8)
    shapes = {name: ImageShape("FROM base\nRUN make\n") for name in parents}
    shapes["m3"] = ImageShape(f"FROM base\nRUN {chain}\n")
    real = {"base": 1.0, "m1": 1.0, "m2": 1.0, "m3": 8.0, "sink": 1.0}
    names = list(parents)
    estimated = Schedule(parents, names, weights=estimated_weights(shapes, {}))
    unit = Schedule(parents, names)
    assert simulate(estimated, 2, real).makespan < simulate(unit, 2, real).makespan


def test_analysis_weights_estimate_only_what_has_no_duration(tmp_path) -> None:
    (tmp_path / "stack.yaml").write_text(
        "version: 1\nimages:\n  a:\n    context: a\n  b:\n    context: b\n"
    )
    for name, text in (("a", RUN_HEAVY), ("b", COPY_ONLY)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(text)
    analysis = analyze(tmp_path / "stack.yaml")
    first = analysis.weights()
    assert first["a"] > first["b"] > 0
    analysis.durations["a"] = 42.0
    assert analysis.weights()["a"] == 42.0
    assert analysis.weights({"b": 7.0}) == {"a": 42.0, "b": 7.0}
