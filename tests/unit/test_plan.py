"""The plan: build or skip per image, with reasons a reviewer can check."""

from __future__ import annotations

from dataclasses import replace

from stackbuild.fingerprint import ImageInputs
from stackbuild.plan import BUILD, SKIP, make_plan


def inputs(**changes) -> ImageInputs:
    base = ImageInputs(
        dockerfile="d" * 64,
        files={"app.py": "f644:" + "1" * 64, "requirements.txt": "f644:" + "2" * 64},
        build_args={"GREETING": "hi"},
        labels={},
        target=None,
        platform=None,
        parents={},
        upstream={},
    )
    return replace(base, **changes)


CONTEXTS = {"base": "images/base", "python": "images/python", "app": "images/app"}


def chain(base=None, python=None, app=None):
    """base <- python <- app, fingerprints chained like the real thing."""
    base = base or inputs()
    python = replace(python or inputs(), parents={"base": base.fingerprint})
    app = replace(app or inputs(), parents={"python": python.fingerprint})
    return {"base": base, "python": python, "app": app}


def reasons(plan, image):
    return [r.detail for r in plan.step(image).reasons]


def test_nothing_built_before_means_build_everything_as_new():
    now = chain()
    plan = make_plan(["base", "python", "app"], now, {}, CONTEXTS, existing={})
    assert [s.action for s in plan] == [BUILD, BUILD, BUILD]
    assert "never built here" in reasons(plan, "base")
    assert reasons(plan, "python") == ["never built here"]


def test_existing_fingerprints_are_skipped():
    now = chain()
    existing = {name: "local engine" for name in now}
    plan = make_plan(["base", "python", "app"], now, {}, CONTEXTS, existing=existing)
    assert [s.action for s in plan] == [SKIP, SKIP, SKIP]
    assert reasons(plan, "app") == ["up to date: this fingerprint exists (local engine)"]


def test_a_context_edit_names_the_file_and_rebuilds_descendants():
    before = chain()
    edited = inputs(files={"app.py": "f644:" + "1" * 64, "requirements.txt": "f644:" + "9" * 64})
    now = chain(python=edited)
    existing = {"base": "local engine"}
    last = {name: value for name, value in before.items()}
    plan = make_plan(["base", "python", "app"], now, last, CONTEXTS, existing=existing)
    assert plan.step("base").action == SKIP
    assert reasons(plan, "python") == ["context file changed: images/python/requirements.txt"]
    assert reasons(plan, "app") == ["parent rebuilt: python"]


def test_mode_change_is_named_as_such():
    before = chain()
    now = chain(base=inputs(files={"app.py": "f755:" + "1" * 64,
                                    "requirements.txt": "f644:" + "2" * 64}))
    plan = make_plan(["base"], now, before, CONTEXTS, existing={})
    assert reasons(plan, "base") == ["context file mode changed: images/base/app.py"]


def test_build_arg_and_dockerfile_changes_are_named():
    before = chain()
    now = chain(app=inputs(dockerfile="e" * 64, build_args={"GREETING": "hello"}))
    existing = {"base": "local engine", "python": "local engine"}
    plan = make_plan(["base", "python", "app"], now, before, CONTEXTS, existing=existing)
    assert reasons(plan, "app") == ["Dockerfile changed", "build arg changed: GREETING"]


def test_upstream_move_shows_old_and_new_digest():
    old = "sha256:" + "1a2b" * 16
    new = "sha256:" + "9f8e" * 16
    before = chain(base=inputs(upstream={"debian:bookworm-slim": old}))
    now = chain(base=inputs(upstream={"debian:bookworm-slim": new}))
    plan = make_plan(["base", "python"], now, before, CONTEXTS, existing={})
    assert reasons(plan, "base") == [
        "upstream moved: debian:bookworm-slim sha256:1a2b1a2b1a2b -> sha256:9f8e9f8e9f8e"
    ]
    assert reasons(plan, "python") == ["parent rebuilt: base"]


def test_offline_builds_everything_and_says_so():
    now = chain()
    plan = make_plan(["base", "python", "app"], now, now, CONTEXTS, existing=None)
    assert all(step.action == BUILD for step in plan)
    assert reasons(plan, "base") == ["not checked (offline)"]


def test_a_deleted_image_is_rebuilt_with_the_reason():
    now = chain()
    plan = make_plan(["base"], now, now, CONTEXTS, existing={})
    assert plan.step("base").action == BUILD
    assert "no such image exists now" in reasons(plan, "base")[0]


def test_force_builds_an_existing_image():
    now = chain()
    existing = {name: "local engine" for name in now}
    plan = make_plan(["base", "python", "app"], now, now, CONTEXTS, existing, force={"python"})
    assert [s.action for s in plan] == [SKIP, BUILD, SKIP]
    assert reasons(plan, "python") == ["forced with --force"]


def test_plan_json_has_the_documented_keys():
    now = chain()
    plan = make_plan(["base", "python"], now, {}, CONTEXTS, existing={})
    step = plan.to_json()["steps"][1]
    assert set(step) >= {"image", "action", "reasons", "parents", "upstream", "fingerprint"}
    assert step["parents"] == ["base"]
    assert step["reasons"][0] == {"code": "new-image", "detail": "never built here"}
    assert step["fingerprint"].startswith("sha256:")


def test_changed_tests_of_a_built_image_plan_only_a_test():
    from stackbuild.plan import TEST

    now = chain()
    existing = {"base": "local engine", "python": "local engine", "app": "registry"}
    tests = {"base": "sha256:new", "python": "sha256:t", "app": "sha256:new"}
    tested = {"base": "sha256:old", "python": None, "app": "sha256:old"}
    plan = make_plan(["base", "python", "app"], now, now, CONTEXTS, existing, (), tests, tested)
    assert [s.action for s in plan] == [TEST, TEST, SKIP]  # the registry's passed elsewhere
    assert reasons(plan, "base") == ["tests changed"]
    assert [r.code for r in plan.step("python").reasons] == ["tests-not-passed"]
    assert plan.to_test == ["base", "python"] and plan.to_build == []
    assert plan.to_json()["summary"] == {"build": 0, "skip": 1, "test": 2, "promote": 0}
    same = make_plan(["base"], now, now, CONTEXTS, existing, (), tests, {"base": "sha256:new"})
    assert same.step("base").action == SKIP
    none = make_plan(["base"], now, now, CONTEXTS, existing, (), {"base": ""}, {"base": None})
    assert none.step("base").action == SKIP  # no checks: nothing to test
