"""Reports for CI: JUnit XML, a Markdown job summary, GitHub annotations.

Pure: from the run's ``ImageResult``s (and the failed builds' log lines and Dockerfiles,
which the caller reads) to strings; ``cli/reports.py`` writes them where CI looks.

- JUnit XML (``--junit FILE``), valid under the schema Jenkins validates against (the
  xunit plugin's junit-10.xsd; GitLab reads the same shape), ``testsuites > testsuite >
  testcase`` with ``failure`` / ``skipped`` and no attribute that schema lacks: one test
  case per image; built and up-to-date pass, failed fails with its Dockerfile and log
  tail, blocked and cancelled are skipped; times in seconds.
- Markdown for ``$GITHUB_STEP_SUMMARY``: the summary table, each check that ran (with its
  duration), and each failed or test-failed image's last log lines.
- ``::error file=...,line=...::`` workflow commands naming the Dockerfile line of the
  step that failed, found by matching the log's last step against the Dockerfile's
  instructions (the classic builder's ``Step N/M : ...``, BuildKit's ``[stage N/M] ...``);
  for a test-failed image, the line of stack.yaml the caller names (its failed check's).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stackbuild.dockerfile import instructions
from stackbuild.errors import DockerfileError
from stackbuild.plan import short
from stackbuild.run.results import ImageResult
from stackbuild.scheduler import Status

TAIL_LINES = 15  # log lines of a failed image in the summary and the JUnit failure

# JUnit outcome of each image status; an unknown status counts as a failure, never a pass
_OUTCOME = {
    Status.BUILT: "passed",
    Status.UP_TO_DATE: "passed",
    Status.TESTED: "passed",
    Status.FAILED: "failed",
    Status.TEST_FAILED: "failed",
    Status.BLOCKED: "skipped",
    Status.CANCELLED: "skipped",
}


def summary_rows(results: Sequence[ImageResult], engines: bool = False) -> tuple[
    list[str], list[list[str]]
]:
    """The summary table's header and rows (the terminal's and the Markdown summary's)."""
    headers = ["IMAGE", "STATUS", "DURATION", "FINGERPRINT", "TAGS"]
    timed = ("built", "failed", "test-failed", "tested")
    rows = [
        [
            r.image,
            r.status,
            f"{r.duration_s:.1f}s" if r.status in timed else "-",
            short(r.fingerprint),
            ", ".join(r.tags) if r.status in ("built", "up-to-date", "tested") else "-",
        ]
        for r in results
    ]
    if any(r.checks or r.tests_skipped for r in results):  # a stack without tests: as before
        headers.insert(4, "TESTS")
        for row, r in zip(rows, results, strict=True):
            row.insert(4, tests_cell(r))
    if engines:
        headers.insert(2, "ENGINE")
        for row, r in zip(rows, results, strict=True):
            row.insert(2, r.engine or "-")
    return headers, rows


def tests_cell(result: ImageResult) -> str:
    """The TESTS column: how many checks passed, "skipped", or "-" when none ran."""
    if result.tests_skipped:
        return "skipped"
    if not result.checks:
        return "-"
    passed = sum(check.passed for check in result.checks)
    return f"{passed}/{len(result.checks)} passed"


def status_counts(results: Iterable[ImageResult]) -> str:
    """``"2 built, 1 failed"``: how many images ended in each status, in order of first use."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


BUILDER_NAMES = {"docker": "docker (the classic builder)"}


def builders_line(results: Iterable[ImageResult]) -> str | None:
    """``"builder: buildkit"``: which builder ran this run's builds (``--backend auto``
    chooses per engine), the images of each when they differ; None when none ran."""
    images: dict[str, list[str]] = {}
    for r in results:
        if r.builder:
            images.setdefault(r.builder, []).append(r.image)
    if not images:
        return None
    named = {BUILDER_NAMES.get(builder, builder): names for builder, names in images.items()}
    if len(named) == 1:
        return f"builder: {next(iter(named))}"
    return "builder: " + "; ".join(f"{b}: {', '.join(names)}" for b, names in named.items())


# -- JUnit


@dataclass(frozen=True)
class Case:
    """One JUnit test case: an image's build, or (later) one check run on an image."""

    name: str
    classname: str
    outcome: str  # "passed" | "failed" | "skipped"
    time_s: float = 0.0
    message: str = ""  # why it failed or was skipped, one line
    output: str = ""  # the failure's text: the log tail
    file: str | None = None  # the Dockerfile: the first line of a failure's text


def image_cases(result: ImageResult, suite: str, file: str | None = None) -> list[Case]:
    """The test cases of one image: its build, then each check that ran on it, named
    ``<image> / <check>`` with classname ``<suite>.<image>`` (a test-failed image's build
    case passes: its check cases fail)."""
    outcome = _OUTCOME.get(result.status, "failed")
    message = ""
    if outcome != "passed":
        message = result.error or str(result.status)
    build = Case(
        name=result.image,
        classname=suite,
        outcome=outcome,
        time_s=result.duration_s,
        message=f"{result.status}: {message}" if outcome == "skipped" else message,
        output="\n".join(result.log_tail[-TAIL_LINES:]) if outcome == "failed" else "",
        file=file,
    )
    if result.status is Status.TEST_FAILED:  # its build passed; the check cases fail
        build = Case(result.image, suite, "passed", result.duration_s, file=file)
    checks = [
        Case(
            name=f"{result.image} / {check.name}",
            classname=f"{suite}.{result.image}",
            outcome="passed" if check.passed else "failed",
            time_s=check.duration_s,
            message="" if check.passed else f"{check.status}: {check.detail}",
            output="" if check.passed else "\n".join(result.log_tail[-TAIL_LINES:]),
        )
        for check in result.checks
    ]
    return [build, *checks]


def junit_xml(
    results: Sequence[ImageResult],
    suite: str,
    files: Mapping[str, str] | None = None,
    timestamp: str | None = None,
) -> str:
    """The JUnit XML document of a run: one ``testsuite`` named ``suite`` (the stack),
    one case per image (see ``image_cases``); ``files``: image -> its Dockerfile's path;
    ``timestamp``: when the run started, ISO 8601 without a zone, as the schema wants."""
    cases = [c for r in results for c in image_cases(r, suite, (files or {}).get(r.image))]
    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(c.outcome == "failed" for c in cases)),
        "errors": "0",
        "skipped": str(sum(c.outcome == "skipped" for c in cases)),
        "time": _seconds(sum(c.time_s for c in cases)),
    }
    # junit-10.xsd has no `skipped` on testsuites (Jenkins' xunit plugin would drop the file)
    totals = {key: value for key, value in counts.items() if key != "skipped"}
    root = ET.Element("testsuites", {"name": "stackbuild", **totals})
    attributes = {"name": suite, **counts}
    if timestamp:
        attributes["timestamp"] = timestamp
    testsuite = ET.SubElement(root, "testsuite", attributes)
    for case in cases:
        # no `file` attribute: junit-10.xsd has none on a testcase, so the Dockerfile is
        # named in the failure's text instead
        attributes = {"name": case.name, "classname": case.classname,
                      "time": _seconds(case.time_s)}  # fmt: skip
        element = ET.SubElement(testsuite, "testcase", attributes)
        if case.outcome == "failed":
            message = _xml_text(case.message)
            failure = ET.SubElement(element, "failure", {"message": message, "type": "build"})
            text = f"Dockerfile: {case.file}\n{case.output}" if case.file else case.output
            failure.text = _xml_text(text)
        elif case.outcome == "skipped":
            ET.SubElement(element, "skipped", {"message": _xml_text(case.message)})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _seconds(value: float) -> str:
    """A duration as the schema's decimal seconds: never negative, never "nan"."""
    return f"{value:.3f}" if math.isfinite(value) and value > 0 else "0.000"


# characters XML 1.0 cannot hold at all (a build's output may print any byte); compiled
# on first use: the Unicode ranges cost every run ~7 ms, and only --junit needs them
_NOT_XML = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def _xml_text(text: str) -> str:
    return re.sub(_NOT_XML, "\ufffd", text)  # re caches the compiled pattern


# -- Markdown


def markdown_summary(
    results: Sequence[ImageResult], title: str, engines: bool = False,
    tail_lines: int = TAIL_LINES,
) -> str:
    """The job summary: a heading, the summary table, each check that ran, then each
    failed or test-failed image's error and last log lines in a fenced block."""
    headers, rows = summary_rows(results, engines)
    lines = [f"### {_md_cell(title)}", "", status_counts(results), ""]
    lines += _md_table(headers, rows)
    checks = [[r.image, c.name, c.status, f"{c.duration_s:.1f}s", c.detail or ""]
              for r in results for c in r.checks]  # fmt: skip
    if checks:
        lines += ["", *_md_table(["IMAGE", "CHECK", "RESULT", "DURATION", "WHY"], checks)]
    for r in results:
        if r.status not in (Status.FAILED, Status.TEST_FAILED):
            continue
        why = _md_cell(r.error or "see log")
        lines += ["", f"#### {_md_cell(r.image)} {r.status}: {why}", ""]
        tail = r.log_tail[-tail_lines:]
        fence = "```"
        while any(fence in line for line in tail):  # a log line may itself hold a fence
            fence += "`"
        lines += [fence, *tail, fence]
    return "\n".join(lines) + "\n"


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- GitHub annotations


@dataclass(frozen=True)
class FailedStep:
    """The Dockerfile instruction a failed build stopped at."""

    line: int
    instruction: str  # as the log named it: "RUN make"


_CLASSIC_STEP = re.compile(r"^Step (\d+)/\d+ : (.*)$")
_BUILDKIT_STEP = re.compile(r"^#(\d+) \[(?:(\S+) )?(\d+)/\d+\] (.*)$")
_BUILDKIT_ERROR = re.compile(r"^#(\d+) ERROR: ")
_BUILDKIT_SUMMARY = re.compile(r"^ > \[(?:(\S+) )?(\d+)/\d+\] (.*):$")


def failed_step(log_lines: Sequence[str], dockerfile: str) -> FailedStep | None:
    """Which instruction of ``dockerfile`` (its text) the build of ``log_lines`` (one
    build's output, oldest first) failed at; None when the log names no step (the build
    failed before one ran) or the step is not in the file."""
    try:
        parsed = instructions(dockerfile)
    except DockerfileError:
        return None
    step = _last_step(log_lines)
    if step is None:
        return None
    stage, number, text = step
    wanted = _normal(text)
    candidates = [i for i in parsed if _normal(f"{i.keyword} {i.arguments}") == wanted]
    if stage is not None:  # BuildKit names the stage: "stage-1" or its AS name
        in_stage = [i for i in candidates if stage in (i.stage_name, f"stage-{i.stage}")]
        candidates = in_stage or candidates
    if not candidates:
        return None
    if stage is None and number is not None:
        # the classic builder counts every instruction from the first FROM: the Nth
        counted = [i for i in parsed if i.stage >= 0]
        if 0 < number <= len(counted) and counted[number - 1] in candidates:
            return FailedStep(counted[number - 1].line, text)
    return FailedStep(candidates[0].line, text)


def _last_step(lines: Sequence[str]) -> tuple[str | None, int | None, str] | None:
    """(BuildKit stage, step number, instruction text) of the step that failed."""
    for line in reversed(lines):  # BuildKit's closing summary names the failed step
        if m := _BUILDKIT_SUMMARY.match(line):
            return m.group(1), int(m.group(2)), m.group(3)
    vertices: dict[str, tuple[str | None, int, str]] = {}
    failed = None
    last_classic = None
    for line in lines:
        if m := _BUILDKIT_STEP.match(line):
            vertices[m.group(1)] = (m.group(2), int(m.group(3)), m.group(4))
        elif (m := _BUILDKIT_ERROR.match(line)) and failed is None:
            failed = m.group(1)
        elif m := _CLASSIC_STEP.match(line):
            last_classic = (None, int(m.group(1)), m.group(2))
    if failed in vertices:
        return vertices[failed]
    return last_classic


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(file: str, line: int | None, title: str, message: str) -> str:
    """One ``::error`` workflow command (GitHub shows it on that line of the file)."""
    properties = [f"file={_escape_property(file)}"]
    if line:
        properties.append(f"line={line}")
    properties.append(f"title={_escape_property(title)}")
    return f"::error {','.join(properties)}::{_escape_data(message)}"


def github_annotations(
    results: Sequence[ImageResult],
    dockerfiles: Mapping[str, str],
    steps: Mapping[str, FailedStep | None],
    manifest: str,
    manifest_lines: Mapping[str, int],
) -> list[str]:
    """An ``::error`` per failed image: at its Dockerfile's failed step when the log names
    one, else at the image's entry in stack.yaml; per test-failed image, at its entry in
    stack.yaml. ``dockerfiles``: image -> its path as the annotation names it;
    ``manifest``/``manifest_lines``: stack.yaml's, and each image's line in it (for a
    test-failed image, its failed check's)."""
    out = []
    for r in results:
        if r.status not in (Status.FAILED, Status.TEST_FAILED):
            continue
        message = r.error or ("a check failed" if r.status == Status.TEST_FAILED
                              else "build failed")  # fmt: skip
        step = steps.get(r.image) if r.status == Status.FAILED else None
        title = f"stackbuild: {r.image} {r.status}"
        if step is not None and r.image in dockerfiles:
            out.append(github_annotation(
                dockerfiles[r.image], step.line, title, f"{step.instruction}: {message}"
            ))
        else:
            out.append(github_annotation(manifest, manifest_lines.get(r.image), title, message))
    return out

