"""CI reports of a real build: ``--junit``, ``$GITHUB_STEP_SUMMARY``, GitHub annotations.

A stack with a good image, a failing one and a child of the failing one is built by the
CLI on the real engine with each builder, as GitHub Actions runs it
(``GITHUB_ACTIONS=true``, ``GITHUB_STEP_SUMMARY`` and ``GITHUB_WORKSPACE`` set); the test
reads what CI would: the JUnit file (validated against the JUnit schema), the summary
file and the ``::error`` lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_build import child, run_cli, short, write_stack
from tests.unit.test_ci_reports import check_junit

docker = pytest.mark.docker

FAILING = "FROM {r}/base\nRUN echo one\nRUN echo two && \\\n    false\nRUN echo three\n"


@docker
@pytest.mark.parametrize("backend", ["docker", "buildkit"])
def test_a_failed_build_is_reported_where_ci_looks(
    tmp_path: Path, unique: str, cleanup_images: set[str], backend: str,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "buildkit":
        request.getfixturevalue("buildkit_backend")  # skips where BuildKit cannot build
    root = write_stack(
        tmp_path / "repo" / "stack", unique,
        {"good": child("base", "good"), "bad": FAILING, "kid": child("bad", "kid")},
    )
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    junit = tmp_path / "reports" / "junit.xml"
    proc = run_cli(
        root, "build", "--backend", backend, "--junit", str(junit),
        GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_WORKSPACE=str(tmp_path / "repo"),
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr

    # JUnit: one case per image; the failed one with its log, its child skipped
    document = check_junit(junit)  # valid under the JUnit schema, counts that add up
    cases = {short(c.get("name", "")): c for c in document.iter("testcase")}
    assert set(cases) == {"base", "good", "bad", "kid"}
    assert len(cases["good"]) == 0 and float(cases["good"].get("time", "0")) > 0
    failure = cases["bad"].find("failure")
    assert failure is not None and "two" in (failure.text or "")
    assert (failure.text or "").startswith("Dockerfile: stack/bad/Dockerfile\n")
    skipped = cases["kid"].find("skipped")
    assert skipped is not None and f"{unique}/bad" in skipped.get("message", "")

    # the job summary is appended to: the table, then the failed image's last lines
    text = summary.read_text()
    assert text.startswith("earlier step\n### stackbuild:")
    assert f"| {unique}/good | built |" in text
    assert f"#### {unique}/bad failed" in text

    # the annotation names the Dockerfile line of the RUN that failed (line 3)
    errors = [line for line in proc.stdout.splitlines() if line.startswith("::error ")]
    assert errors == [errors[0]] and errors[0].startswith(
        "::error file=stack/bad/Dockerfile,line=3,title=stackbuild%3A "
    ), proc.stdout


@docker
def test_no_report_outside_ci(tmp_path: Path, unique: str, cleanup_images: set[str]) -> None:
    root = write_stack(tmp_path, unique, {"bad": FAILING})
    proc = run_cli(root, "build", GITHUB_ACTIONS="", GITHUB_STEP_SUMMARY="")
    assert proc.returncode == 1
    assert "::error" not in proc.stdout + proc.stderr
