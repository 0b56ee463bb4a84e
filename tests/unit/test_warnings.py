"""Dockerfile warnings and ONBUILD triggers as plan and why show them (issue 10).

Every warning names the Dockerfile as stack.yaml spells it and its line; ONBUILD
makes no edge of the image that declares it and runs, per BuildKit, in the build of
every image built FROM it (not in one that only copies from it, not in grandchildren).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stackbuild import render
from stackbuild.analyze import analyze, located, notes_cache_path
from stackbuild.cli import cli
from stackbuild.dockerfile import parse_dockerfile

REPO = Path(__file__).resolve().parents[2]


def write_stack(root: Path, images: dict[str, str], extra: dict[str, list[str]] | None = None
                ) -> Path:  # fmt: skip
    """``images``: name -> Dockerfile text, each in images/<name>/; ``extra``: more
    manifest lines per image (``depends_on: [x]``)."""
    lines = ["version: 1", "images:"]
    for name, text in images.items():
        directory = root / "images" / name
        directory.mkdir(parents=True)
        (directory / "Dockerfile").write_text(text)
        lines += [f"  {name}:", f"    context: images/{name}"]
        lines += [f"    {line}" for line in (extra or {}).get(name, [])]
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root / "stack.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stackbuild", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


# -- the parser's ONBUILD and FROM facts ----------------------------------------

# (Dockerfile, target, the triggers of the image, their --from / from= operands)
ONBUILD_ROWS = [
    pytest.param("FROM a\nONBUILD COPY . /app\n", None, [(2, "COPY . /app")], [()],
                 id="the last stage's trigger is the image's"),
    pytest.param("FROM a AS one\nONBUILD RUN make\nFROM b\nRUN true\n", None, [], [],
                 id="an earlier stage's trigger is not in the image (it runs within the file)"),
    pytest.param("FROM a AS one\nONBUILD RUN make\nFROM b\nONBUILD RUN x\n", "one",
                 [(2, "RUN make")], [()], id="with a target, the target stage's"),
    pytest.param("FROM a\nonbuild copy --from=assets /a /a\n", None,
                 [(2, "copy --from=assets /a /a")], [("assets",)],
                 id="COPY --from operand, as written"),
    pytest.param("FROM a\nONBUILD RUN --mount=type=bind,from=tools,target=/t true\n", None,
                 [(2, "RUN --mount=type=bind,from=tools,target=/t true")], [("tools",)],
                 id="RUN --mount from= operand"),
    pytest.param("FROM a\nONBUILD RUN --mount=type=secret,id=x true\n", None,
                 [(2, "RUN --mount=type=secret,id=x true")], [()],
                 id="a secret mount names no image"),
    pytest.param("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nONBUILD RUN b\n", None,
                 [(2, "RUN <<EOF"), (5, "RUN b")], [(), ()], id="a heredoc trigger"),
]


@pytest.mark.parametrize(("text", "target", "triggers", "names"), ONBUILD_ROWS)
def test_parser_exposes_the_images_onbuild_triggers(text, target, triggers, names) -> None:
    info = parse_dockerfile(text, target=target)
    assert [(t.line, t.trigger) for t in info.onbuild] == triggers
    assert [t.names for t in info.onbuild] == names


def test_onbuild_makes_no_edge_of_the_image_that_declares_it() -> None:
    info = parse_dockerfile("FROM a\nONBUILD COPY --from=assets / /\nONBUILD FROM x\n")
    assert [r.ref for r in info.references] == ["a"]


def test_bases_keep_a_from_that_references_deduplicate_away() -> None:
    # references keep `p` once, as the COPY --from of line 2: bases still see the FROM
    info = parse_dockerfile("FROM a\nCOPY --from=p / /\nFROM p\n")
    assert [(r.ref, r.instruction) for r in info.references] == [
        ("a", "FROM"), ("p", "COPY --from")
    ]
    assert [(r.ref, r.line) for r in info.bases] == [("a", 1), ("p", 3)]
    # a FROM of an earlier stage is no image
    assert [r.ref for r in parse_dockerfile("FROM a AS s\nFROM s\n").bases] == ["a"]


@pytest.mark.parametrize(
    ("warning", "expected"),
    [
        ("line 3: FROM $X: variable X is not set", "images/x/Dockerfile:3: FROM $X: variable X is not set"),  # noqa: E501
        ("target stage 'y' is not in the Dockerfile; counting every stage",
         "images/x/Dockerfile: target stage 'y' is not in the Dockerfile; counting every stage"),
    ],
)
def test_a_parser_warning_is_located_in_the_stacks_dockerfile(warning, expected) -> None:
    assert located("images/x/Dockerfile", warning) == expected


# -- plan and why ----------------------------------------------------------------

def test_plan_warnings_name_the_dockerfile_and_line(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, {"ok": "FROM alpine\n", "bad": "FROM alpine\nFROM ${NOPE}\n"})
    proc = run("-f", str(stack), "plan", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert "images/bad/Dockerfile:2: FROM ${NOPE}: variable NOPE is not set" in proc.stderr
    assert "warning:" not in proc.stdout  # stdout is the table alone
    assert proc.stderr.count("warning:") == 2  # also: '' is not an image reference

    proc = run("-f", str(stack), "plan", "--offline", "--json")
    assert proc.returncode == 0, proc.stderr
    steps = {step["image"]: step for step in json.loads(proc.stdout)["steps"]}
    assert steps["ok"]["warnings"] == []
    assert steps["bad"]["warnings"][0].startswith("images/bad/Dockerfile:2: FROM ${NOPE}: ")


def test_a_dockerfile_set_in_stack_yaml_is_named_by_its_path_from_the_root(
    tmp_path: Path,
) -> None:
    stack = write_stack(tmp_path, {"app": "FROM alpine\n"}, {"app": ["dockerfile: ci/Df"]})
    (tmp_path / "images" / "app" / "ci").mkdir()
    (tmp_path / "images" / "app" / "ci" / "Df").write_text("# syntax=acme/frontend\nFROM a\n")
    step = analyze(stack).plan(None).step("app")
    assert len(step.warnings) == 1
    assert step.warnings[0].startswith("images/app/ci/Df:1: # syntax=acme/frontend: ")


def test_plan_shows_a_few_warnings_per_image_and_why_shows_all(tmp_path: Path) -> None:
    text = "FROM alpine\n" + "".join(f"FROM ${{MISSING{i}}}alpine\n" for i in range(8))
    stack = write_stack(tmp_path, {"many": text})
    plan = analyze(stack).plan(None)
    shown = render.plan_warnings(plan).splitlines()
    assert len(shown) == render.MAX_PLAN_WARNINGS + 1
    assert shown[-1] == "warning: ... and 3 more for many: stackbuild why many"

    result = CliRunner().invoke(cli, ["-f", str(stack), "why", "many", "--offline"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  warnings:" in lines
    for i in range(8):
        assert any(
            line.startswith(f"    images/many/Dockerfile:{i + 2}: FROM ${{MISSING{i}}}alpine: ")
            for line in lines
        ), result.output


def test_why_text_of_a_plan_alone_shows_its_steps_warnings(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, {"bad": "FROM alpine:${TAG}\n"})
    lines = render.why_text(analyze(stack).plan(None), "bad").splitlines()
    at = lines.index("  warnings:")
    assert lines[at + 1].startswith("    images/bad/Dockerfile:1: FROM alpine:${TAG}: variable TAG")


def test_a_stack_without_warnings_prints_none(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, {"a": "FROM alpine\n", "b": "FROM a\n"})
    proc = run("-f", str(stack), "plan", "--offline")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "warnings" not in render.why_text(analyze(stack).plan(None), "b")


# base declares triggers; app is built FROM it, tool only copies from it, grand is
# built FROM app (triggers are cleared in app's image: none reach grand)
ONBUILD_STACK = {
    "base": "FROM debian:12\nONBUILD COPY . /app\nONBUILD RUN make\n",
    "app": "FROM golang AS build\nFROM base\nRUN true\n",
    "tool": "FROM alpine\nCOPY --from=base /app /app\n",
    "grand": "FROM app\n",
}


def why(stack: Path, image: str) -> list[str]:
    result = CliRunner().invoke(cli, ["-f", str(stack), "why", image, "--offline"])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_why_lists_an_images_onbuild_triggers_as_no_edge_of_its_own(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, ONBUILD_STACK)
    lines = why(stack, "base")
    assert "  onbuild (no edge of this image):" in lines
    assert (
        "    ONBUILD COPY . /app: runs in every image built FROM this one "
        "(images/base/Dockerfile:2)"
    ) in lines
    assert not any(line.startswith("  parents:") for line in lines)


def test_why_of_a_child_says_which_parent_triggers_run_in_its_build(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, ONBUILD_STACK)
    lines = why(stack, "app")
    at = lines.index(
        "  onbuild of base: runs in this build, after FROM base (images/app/Dockerfile:2):"
    )
    assert lines[at + 1 : at + 3] == [
        "    ONBUILD COPY . /app (images/base/Dockerfile:2)",
        "    ONBUILD RUN make (images/base/Dockerfile:3)",
    ]
    tool = why(stack, "tool")
    assert any(line.startswith("  onbuild of base: none runs here") for line in tool), tool
    assert not any("ONBUILD" in line for line in tool)
    assert not any("onbuild" in line for line in why(stack, "grand"))


def test_notes_survive_a_run_that_reads_the_graph_from_its_cache(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, {**ONBUILD_STACK, "bad": "FROM ${NOPE}alpine\n"})
    first = analyze(stack)
    assert notes_cache_path(first.state).is_file()
    second = analyze(stack)
    assert second.notes == first.notes
    assert second.notes_of("app").inherited[0].via_from == "images/app/Dockerfile:2"
    assert second.plan(None).step("bad").warnings == first.plan(None).step("bad").warnings

    notes_cache_path(first.state).write_text("{not json")  # a mangled cache is read again
    assert analyze(stack).notes == first.notes


def test_a_dockerfile_edit_refreshes_the_notes(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, {"a": "FROM alpine\n"})
    assert analyze(stack).plan(None).step("a").warnings == ()
    (tmp_path / "images" / "a" / "Dockerfile").write_text("FROM alpine${X}\n")
    assert analyze(stack).plan(None).step("a").warnings[0].startswith("images/a/Dockerfile:1: ")


# what a trigger's COPY --from / from= means in the child: (child's Dockerfile, child's
# manifest lines, warnings expected on the child)
TRIGGER_OPERAND_ROWS = [
    pytest.param("FROM base\n", [], ["needs image 'assets' of this stack"],
                 id="an in-stack image: a missed edge, say so"),
    pytest.param("FROM base\n", ["depends_on: [assets]"], [],
                 id="already a parent of the child: nothing missed"),
    pytest.param("FROM scratch AS assets\nFROM base\n", [], [],
                 id="a stage of the child's own Dockerfile"),
    pytest.param("FROM alpine\nCOPY --from=base / /\n", [], [],
                 id="not built FROM base: the trigger does not run"),
]


@pytest.mark.parametrize(("child", "manifest", "expected"), TRIGGER_OPERAND_ROWS)
def test_an_image_a_trigger_names_is_the_childs_and_uncounted_is_a_warning(
    tmp_path: Path, child: str, manifest: list[str], expected: list[str]
) -> None:
    stack = write_stack(
        tmp_path,
        {
            "assets": "FROM alpine\n",
            "base": "FROM alpine\nONBUILD COPY --from=assets /a /a\n",
            "child": child,
        },
        {"child": manifest},
    )
    analysis = analyze(stack)
    assert analysis.graph.parents("base") == ()  # no edge of the image that declares it
    warnings = analysis.plan(None).step("child").warnings
    assert len(warnings) == len(expected), warnings
    for warning, text in zip(warnings, expected, strict=True):
        assert warning.startswith(
            f"images/child/Dockerfile:{child.count(chr(10))}: FROM base runs ONBUILD "
            "COPY --from=assets /a /a (images/base/Dockerfile:2) in this build"
        ), warning
        assert text in warning
        assert "add it to depends_on of 'child'" in warning


def test_an_upstream_a_trigger_names_is_a_warning_too(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        {"base": "FROM alpine\nONBUILD COPY --from=debian:11 /etc/issue /\n", "c": "FROM base\n"},
    )
    (warning,) = analyze(stack).plan(None).step("c").warnings
    assert warning.startswith("images/c/Dockerfile:1: FROM base runs ONBUILD COPY")
    assert "pulls debian:11, which stackbuild does not count as an upstream of 'c'" in warning
