"""The resolved graph cached in .stackbuild/graph.json: used when nothing that decides
the graph changed (and then networkx is never imported), resolved again otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackbuild.analyze import analyze
from stackbuild.errors import ManifestError
from stackbuild.state import StateDir
from tests.helpers import run_importing

REPO = Path(__file__).resolve().parents[2]


def write_stack(root: Path, dockerfiles: dict[str, str], extra: dict[str, str] | None = None):
    lines = ["version: 1", "images:"]
    for name, text in dockerfiles.items():
        (root / name).mkdir(exist_ok=True)
        (root / name / "Dockerfile").write_text(text)
        lines += [f"  {name}:", f"    context: {name}"]
        lines += [f"    {line}" for line in (extra or {}).get(name, "").splitlines()]
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root / "stack.yaml"


CHAIN = {
    "base": "FROM scratch\n",
    "mid": "FROM base\n",
    "app": "FROM mid\n",
    "other": "FROM base\n",
}


def parents_of(stack_file: Path) -> dict[str, tuple[str, ...]]:
    graph = analyze(stack_file).graph
    return {name: graph.parents(name) for name in graph.order}


def test_a_second_run_uses_the_cache_and_an_edited_from_changes_the_graph(tmp_path: Path):
    stack_file = write_stack(tmp_path, CHAIN)
    assert parents_of(stack_file)["app"] == ("mid",)
    cache = StateDir(tmp_path).graph_cache
    assert json.loads(cache.read_bytes())["order"] == ["base", "mid", "app", "other"]
    assert analyze(stack_file).graph.order == ["base", "mid", "app", "other"]
    (tmp_path / "app" / "Dockerfile").write_text("FROM other\n")
    graph = analyze(stack_file).graph
    assert graph.parents("app") == ("other",)
    assert graph.order == ["base", "mid", "other", "app"]
    assert graph.select(["app"]) == ["base", "other", "app"]
    assert json.loads(cache.read_bytes())["nodes"]["app"][0] == ["other"]


def test_a_build_arg_that_picks_the_parent_is_part_of_the_key(tmp_path: Path):
    dockerfiles = {**CHAIN, "app": "ARG BASE=mid\nFROM ${BASE}\n"}
    stack_file = write_stack(tmp_path, dockerfiles)
    assert parents_of(stack_file)["app"] == ("mid",)
    write_stack(tmp_path, dockerfiles, {"app": "build_args:\n  BASE: other"})
    assert parents_of(stack_file)["app"] == ("other",)


def test_a_corrupt_or_foreign_cache_is_resolved_again_silently(tmp_path: Path):
    stack_file = write_stack(tmp_path, CHAIN)
    expected = parents_of(stack_file)
    cache = StateDir(tmp_path).graph_cache
    good = cache.read_bytes()
    for garbage in [b"{not json", b"[]", b'{"format": 1}', good[: len(good) // 2],
                    good.replace(b'"base"', b'"nope"'), b"\xff\xfe"]:  # fmt: skip
        cache.write_bytes(garbage)
        assert parents_of(stack_file) == expected
        assert cache.read_bytes() == good  # and written again
    cache.unlink()
    cache.mkdir()  # not even a file: still no error
    assert parents_of(stack_file) == expected


def test_a_cycle_made_after_caching_is_still_an_error_at_its_line(tmp_path: Path):
    stack_file = write_stack(tmp_path, CHAIN)
    analyze(stack_file)
    (tmp_path / "base" / "Dockerfile").write_text("FROM app\n")
    with pytest.raises(ManifestError) as error:
        analyze(stack_file)
    assert str(error.value) == (
        f"{stack_file}:5:3: dependency cycle: base -> mid -> app -> base; image 'mid' "
        "needs 'base' because its Dockerfile builds on it (FROM / COPY --from / RUN --mount). "
        "Remove one edge of the cycle."
    )


def _imports_networkx(stack_file: Path, *args: str) -> tuple[bool, str]:
    imported, proc = run_importing(stack_file, args, ["networkx"])
    return imported != [], proc.stdout


def test_a_cached_no_op_plan_never_imports_networkx(tmp_path: Path):
    stack_file = write_stack(tmp_path, CHAIN)
    first, first_plan = _imports_networkx(stack_file, "plan", "--offline")
    assert first  # nothing cached yet: resolved with networkx
    again, plan = _imports_networkx(stack_file, "plan", "--offline")
    assert not again and plan == first_plan
    # a selection is resolved once, then remembered too
    assert _imports_networkx(stack_file, "plan", "--offline", "app")[0]
    again, plan = _imports_networkx(stack_file, "plan", "--offline", "app")
    assert not again and "other" not in plan and "mid" in plan
    # a changed FROM invalidates the cache: resolved again, with networkx
    (tmp_path / "other" / "Dockerfile").write_text("FROM mid\n")
    assert _imports_networkx(stack_file, "plan", "--offline")[0]
