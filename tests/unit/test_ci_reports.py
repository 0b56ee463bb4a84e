"""CI reports: the JUnit file a CI reads, the Markdown job summary, GitHub annotations.

The JUnit document is checked by parsing it, never by comparing strings: every shape is
validated (with the xmlschema library) against tests/data/junit.xsd, our statement of
the JUnit schema Jenkins reads (the xunit plugin's junit-10.xsd, whose shape GitLab
reads too), and its counts are checked to add up.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
import xmlschema

from stackbuild.ci_reports import (
    failed_step,
    github_annotation,
    github_annotations,
    junit_xml,
    markdown_summary,
)
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import Status

FP = "sha256:" + "ab" * 32
TAIL = [f"line {n}" for n in range(30)] + ["The command '/bin/sh -c false' returned 1 <&>"]


def results() -> list[ImageResult]:
    return [
        ImageResult("base", Status.UP_TO_DATE, FP, tags=["base:latest"]),
        ImageResult("app", Status.BUILT, FP, duration_s=12.3456, tags=["app:latest"]),
        ImageResult("bad", Status.FAILED, FP, duration_s=2.5, error="exit code 1",
                    log="/x/bad.log", log_tail=TAIL),
        ImageResult("bad-kid", Status.BLOCKED, FP, error="parent failed: bad"),
        ImageResult("late", Status.CANCELLED, FP, error="interrupted"),
    ]


# -- JUnit ---------------------------------------------------------------------------------

JUNIT_XSD = Path(__file__).parents[1] / "data" / "junit.xsd"


@cache
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(JUNIT_XSD)


def check_junit(document: str | Path) -> ET.Element:
    """Validate a JUnit document (its text, or the file) against the JUnit schema, check
    what a schema cannot say (the counts add up to the cases), and return its root."""
    source = document.read_bytes() if isinstance(document, Path) else document.encode()
    root = ET.fromstring(source)
    junit_schema().validate(root)  # raises XMLSchemaValidationError, naming what is wrong
    assert root.tag == "testsuites"
    all_cases = []
    for suite in root:
        cases = list(suite.iter("testcase"))
        all_cases += cases
        assert int(suite.get("tests", "")) == len(cases)
        failures = sum(c.find("failure") is not None for c in cases)
        errors = sum(c.find("error") is not None for c in cases)
        skipped = sum(c.find("skipped") is not None for c in cases)
        assert int(suite.get("failures", "")) == failures
        assert int(suite.get("errors", "")) == errors
        assert int(suite.get("skipped", "0")) == skipped
        assert float(suite.get("time", "0")) == pytest.approx(
            sum(float(c.get("time", "0")) for c in cases), abs=0.01
        )
    assert int(root.get("tests", "")) == len(all_cases)
    assert int(root.get("failures", "")) == sum(c.find("failure") is not None for c in all_cases)
    return root


def test_junit_has_one_case_per_image_with_its_outcome() -> None:
    document = junit_xml(results(), "acme", {"bad": "bad/Dockerfile"}, "2026-12-02T14:00:00")
    root = check_junit(document)
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("name") == "acme"
    assert suite.get("timestamp") == "2026-12-02T14:00:00"
    cases = {c.get("name"): c for c in suite}
    assert list(cases) == ["base", "app", "bad", "bad-kid", "late"]
    assert len(cases["base"]) == 0 and len(cases["app"]) == 0  # passed
    assert float(cases["app"].get("time", "")) == pytest.approx(12.346)
    failure = cases["bad"].find("failure")
    assert failure is not None
    assert failure.get("message") == "exit code 1"
    assert cases["bad"].get("file") is None  # junit-10.xsd has no such attribute
    text = failure.text or ""
    assert text.startswith("Dockerfile: bad/Dockerfile\n")
    assert "line 29" in text and "line 15" not in text  # the tail, not the whole log
    assert "returned 1 <&>" in text  # escaped in the file, the same text when read
    assert float(cases["bad"].get("time", "")) == 2.5
    blocked = cases["bad-kid"].find("skipped")
    cancelled = cases["late"].find("skipped")
    assert blocked is not None and "parent failed: bad" in blocked.get("message", "")
    assert cancelled is not None and "cancelled" in cancelled.get("message", "")
    assert suite.get("failures") == "1" and suite.get("skipped") == "2"
    assert root.get("tests") == "5"


def test_junit_survives_control_characters_in_a_log() -> None:
    bad = ImageResult("x", Status.FAILED, FP, error="boom\x1b", log_tail=["\x1b[31mred\x00"])
    root = check_junit(junit_xml([bad], "s"))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "red" in (failure.text or "")


def test_junit_times_stay_decimal_seconds_whatever_the_clock_said() -> None:
    odd = [ImageResult(name, Status.BUILT, FP, duration_s=value)
           for name, value in [("a", -1.0), ("b", float("nan")), ("c", float("inf"))]]
    root = check_junit(junit_xml(odd, "s"))
    assert {c.get("time") for c in root.iter("testcase")} == {"0.000"}


def test_junit_of_an_empty_run_is_valid() -> None:
    root = check_junit(junit_xml([], "s"))
    assert root.find("testsuite") is not None
    assert root.get("tests") == "0"


GOOD = """<?xml version="1.0"?>
<testsuites name="stackbuild" tests="1" failures="1" errors="0" time="2.500">
  <testsuite name="acme" tests="1" failures="1" errors="0" skipped="0" time="2.500"
             timestamp="2026-12-02T14:00:00">
    <testcase name="bad" classname="acme" time="2.500">
      <failure message="exit code 1" type="build">the log</failure>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_the_schema_takes_a_well_formed_report() -> None:
    check_junit(GOOD)


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ('<testcase name="bad" classname="acme" time="2.500">',
         '<testcase name="bad" classname="acme" time="2.5s">', "time"),
        ('<testcase name="bad" classname="acme" time="2.500">',
         '<testcase classname="acme" time="2.500">', "name"),
        ('<testsuite name="acme" tests="1"', '<testsuite name="acme" tests="one"', "tests"),
        ('failures="1" errors="0" skipped="0"', 'failures="1" skipped="0"', "errors"),
        ('time="2.500">\n      <failure', 'time="2.500" file="bad/Dockerfile">\n      <failure',
         "file"),
        ('<testsuites name="stackbuild" tests="1"', '<testsuites name="stackbuild" skipped="0" '
         'tests="1"', "skipped"),
        ('<failure message="exit code 1" type="build">the log</failure>',
         '<failure message="exit code 1" type="build">the log</failure><skipped/>', "skipped"),
        ('timestamp="2026-12-02T14:00:00"', 'timestamp="yesterday"', "timestamp"),
        ("</failure>", "</failure><stdout>x</stdout>", "stdout"),
    ],
    ids=["non-numeric time", "no name", "non-numeric count", "no errors count",
         "file on a testcase", "skipped on testsuites", "two outcomes", "bad timestamp",
         "unknown element"],
)
def test_the_schema_rejects_what_jenkins_would(old: str, new: str, why: str) -> None:
    assert old in GOOD
    with pytest.raises(xmlschema.XMLSchemaValidationError) as caught:
        check_junit(GOOD.replace(old, new))
    assert why in (caught.value.reason or "")  # rejected for that reason, not another


# -- Markdown --------------------------------------------------------------------------------


def test_markdown_summary_has_the_table_and_the_failed_tail() -> None:
    text = markdown_summary(results(), "stackbuild: stack.yaml")
    lines = text.splitlines()
    assert lines[0] == "### stackbuild: stack.yaml"
    header = next(line for line in lines if line.startswith("| IMAGE"))
    rows = [line for line in lines if line.startswith("| ") and line != header]
    assert [row.split("|")[1].strip() for row in rows] == [
        "base", "app", "bad", "bad-kid", "late"
    ]
    assert "| built | 12.3s |" in rows[1]
    assert "#### bad failed: exit code 1" in lines
    block = lines[lines.index("#### bad failed: exit code 1") + 2:]
    assert block[0] == "```" and TAIL[-1] in block and "line 15" not in block
    assert "1 up-to-date, 1 built, 1 failed, 1 blocked, 1 cancelled" in lines


def test_markdown_escapes_pipes_and_fences() -> None:
    bad = ImageResult("x", Status.FAILED, FP, error="a|b", log_tail=["```", "end"])
    text = markdown_summary([bad], "t")
    assert "#### x failed: a\\|b" in text
    assert "````\n```\nend\n````" in text


# -- the failed step ---------------------------------------------------------------------

DOCKERFILE = """\
ARG BASE=base
FROM ${BASE} AS build
RUN echo one
RUN echo two && \\
    false
FROM scratch
COPY --from=build /x /x
RUN echo one
"""

CLASSIC_LOG = [
    "=== stackbuild: build bad sha256:1 on unix:///var/run/docker.sock ===",
    "Step 1/6 : FROM ${BASE} AS build",
    " ---> 0123456789ab",
    "Step 2/6 : RUN echo one",
    "Step 3/6 : RUN echo two &&     false",
    " ---> Running in 3dcbe83d2e0d",
    "two",
    "The command '/bin/sh -c echo two &&     false' returned a non-zero code: 1",
]

BUILDKIT_LOG = [
    "#4 [build 2/3] RUN echo one",
    "#4 DONE 0.3s",
    "#5 [build 3/3] RUN echo two &&     false",
    "#5 0.324 two",
    "#5 ERROR: executor failed running [/bin/sh -c echo two &&     false]: exit code: 1",
    "------",
    " > [build 3/3] RUN echo two &&     false:",
    "------",
]


def test_failed_step_of_the_classic_builder() -> None:
    step = failed_step(CLASSIC_LOG, DOCKERFILE)
    assert step is not None and step.line == 4
    assert step.instruction == "RUN echo two &&     false"


def test_failed_step_of_buildkit() -> None:
    step = failed_step(BUILDKIT_LOG, DOCKERFILE)
    assert step is not None and step.line == 4


def test_the_same_instruction_twice_is_told_apart() -> None:
    # `RUN echo one` is at lines 3 and 8: the step number / the stage decide
    classic = ["Step 6/6 : RUN echo one", "boom"]
    step = failed_step(classic, DOCKERFILE)
    assert step is not None and step.line == 8
    buildkit = ["#9 [stage-1 3/3] RUN echo one", "#9 ERROR: boom"]
    step = failed_step(buildkit, DOCKERFILE)
    assert step is not None and step.line == 8
    step = failed_step(["#4 [build 2/3] RUN echo one", "#4 ERROR: boom"], DOCKERFILE)
    assert step is not None and step.line == 3


def test_no_step_when_the_log_names_none() -> None:
    assert failed_step(["=== stackbuild: error: context changed ==="], DOCKERFILE) is None
    assert failed_step(["Step 1/1 : RUN not in the file"], DOCKERFILE) is None


# -- annotations ---------------------------------------------------------------------------


def test_annotation_names_the_dockerfile_line_of_the_failed_step() -> None:
    step = failed_step(CLASSIC_LOG, DOCKERFILE)
    lines = github_annotations(
        results(), {"bad": "images/bad/Dockerfile"}, {"bad": step}, "stack.yaml", {"bad": 7}
    )
    assert lines == [
        "::error file=images/bad/Dockerfile,line=4,title=stackbuild%3A bad failed"
        "::RUN echo two &&     false: exit code 1"
    ]


def test_annotation_falls_back_to_the_manifest_entry() -> None:
    lines = github_annotations(results(), {"bad": "bad/Dockerfile"}, {"bad": None},
                               "ci/stack.yaml", {"bad": 7})
    assert lines == [
        "::error file=ci/stack.yaml,line=7,title=stackbuild%3A bad failed::exit code 1"
    ]


def test_annotation_escapes_what_github_reads_as_syntax() -> None:
    line = github_annotation("a,b:c.txt", 3, "t", "50% done\nnext")
    assert line == "::error file=a%2Cb%3Ac.txt,line=3,title=t::50%25 done%0Anext"


def test_junit_gives_each_check_a_case_and_a_test_failed_image_fails_only_there() -> None:
    from stackbuild.checks import CheckResult

    checks = [CheckResult("version", "passed", 0.25),
              CheckResult("page", "timed-out", 60.0, "timed out after 60s (killed)")]
    mid = ImageResult("mid", Status.TEST_FAILED, FP, duration_s=3.0, checks=checks,
                      error="check 'page' timed-out", log_tail=["stdout| nothing yet"])
    root = check_junit(junit_xml([mid], "acme"))
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite}
    assert list(cases) == ["mid", "mid / version", "mid / page"]
    assert len(cases["mid"]) == 0 and len(cases["mid / version"]) == 0  # passed
    assert cases["mid / page"].get("classname") == "acme.mid"
    failure = cases["mid / page"].find("failure")
    assert failure is not None
    assert failure.get("message") == "timed-out: timed out after 60s (killed)"
    assert "stdout| nothing yet" in (failure.text or "")
    assert suite.get("failures") == "1" and root.get("tests") == "3"


def test_the_markdown_summary_lists_each_check_and_a_test_failed_images_tail() -> None:
    """Issue 12.2: the job summary, like the terminal's, shows each check with its
    duration, and a test-failed image's failed check and log tail."""
    from stackbuild.checks import CheckResult

    checks = [CheckResult("version", "passed", 0.25),
              CheckResult("page", "timed-out", 60.0, "timed out after 60s (killed)")]
    mid = ImageResult("mid", Status.TEST_FAILED, FP, duration_s=3.0, checks=checks,
                      error="check 'page' timed-out: timed out after 60s (killed)",
                      log_tail=["stdout| nothing yet"])
    lines = markdown_summary([*results(), mid], "t").splitlines()
    assert "| IMAGE | CHECK | RESULT | DURATION | WHY |" in lines
    assert "| mid | version | passed | 0.2s |  |" in lines
    assert "| mid | page | timed-out | 60.0s | timed out after 60s (killed) |" in lines
    heading = "#### mid test-failed: check 'page' timed-out: timed out after 60s (killed)"
    assert heading in lines
    assert lines[lines.index(heading) + 2:][:3] == ["```", "stdout| nothing yet", "```"]
    assert "#### bad failed: exit code 1" in lines  # a failed build: as before


def test_a_stack_without_checks_has_no_checks_table_in_the_markdown() -> None:
    assert "| CHECK |" not in markdown_summary(results(), "t")


def test_annotation_of_a_test_failed_image_is_at_its_failed_check_in_stack_yaml(
    tmp_path: Path,
) -> None:
    from stackbuild.checks import CheckResult
    from stackbuild.cli.reports import write_reports
    from stackbuild.manifest import load_stack

    (tmp_path / "mid").mkdir()
    (tmp_path / "mid" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "stack.yaml").write_text(
        "version: 1\nimages:\n  mid:\n    context: mid\n    tests:\n"
        "      - {name: version, run: [mid, --version]}\n"
        "      - {name: page, run: [cat, /index.html]}\n"
    )
    stack = load_stack(tmp_path / "stack.yaml")
    mid = ImageResult("mid", Status.TEST_FAILED, FP, checks=[
        CheckResult("version", "passed", 0.1),
        CheckResult("page", "failed", 0.1, "exit code 1, expected 0")],
        error="check 'page' failed: exit code 1, expected 0")  # fmt: skip
    echoed: list[str] = []
    write_reports(stack, {}, [mid], None, "t", environ={
        "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)}, echo=echoed.append)
    assert echoed == [
        "::error file=stack.yaml,line=7,title=stackbuild%3A mid test-failed"
        "::check 'page' failed: exit code 1, expected 0"
    ]
