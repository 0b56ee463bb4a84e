"""The pure half of image checks: verdicts on what a check reported, and the tests hash."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stackbuild.checks import CheckOutcome, checks_digest, judge
from stackbuild.manifest.model import CheckSpec

RUN = CheckSpec(name="version", kind="run", argv=("tool", "--version"))
SERVE = CheckSpec(name="page", kind="serve", port=8080, path="/", network="bridge")


@pytest.mark.parametrize(
    ("check", "outcome", "status", "detail"),
    [
        (RUN, CheckOutcome(exit_code=0), "passed", None),
        (RUN, CheckOutcome(exit_code=2, stderr="bad flag"), "failed",
         "exit code 2, expected 0; it said 'bad flag'"),
        (replace(RUN, expect_exit=2), CheckOutcome(exit_code=2), "passed", None),
        (replace(RUN, expect_stdout="1.0"), CheckOutcome(exit_code=0, stdout="tool 0.9\n"),
         "failed", "stdout does not contain '1.0'; it is 'tool 0.9'"),
        (replace(RUN, expect_stderr="warn"), CheckOutcome(exit_code=0), "failed",
         "stderr does not contain 'warn'; it is nothing"),
        (replace(RUN, expect_regex=r"^tool \d+\.\d+$"),
         CheckOutcome(exit_code=0, stdout="banner\ntool 1.2\n"), "passed", None),
        (replace(RUN, expect_regex=r"^v\d"), CheckOutcome(exit_code=0, stdout="tool"), "failed",
         "stdout does not match /^v\\d/; it is 'tool'"),
        (RUN, CheckOutcome(timed_out=True), "timed-out", "timed out after 60s (killed)"),
        (RUN, CheckOutcome(exit_code=127, error="command not found in the image: 'tool'"),
         "failed", "command not found in the image: 'tool'"),
        (RUN, CheckOutcome(cancelled=True), "failed", "interrupted"),
        (replace(SERVE, expect_stdout="<h1>Hi</h1>"),
         CheckOutcome(http_status=200, body="<h1>Hi</h1>\n"), "passed", None),
        (SERVE, CheckOutcome(http_status=404, body="nope"), "failed",
         "GET / answered HTTP 404, expected 200"),
        (replace(SERVE, expect_stdout="<h1>"), CheckOutcome(http_status=200, body="x" * 300),
         "failed", "the body does not contain '<h1>'; it is '" + "x" * 200 + "...'"),
        (SERVE, CheckOutcome(timed_out=True, error="nothing answered on port 8080 within 60s"),
         "timed-out", "nothing answered on port 8080 within 60s"),
    ],
)
def test_judge(check: CheckSpec, outcome: CheckOutcome, status: str, detail: str | None) -> None:
    result = judge(check, outcome, 1.5)
    assert (result.name, result.status, result.detail) == (check.name, status, detail)
    assert result.duration_s == 1.5
    assert result.passed == (status == "passed")


def test_the_tests_hash_follows_the_checks_and_their_scripts_not_where_they_are_written():
    script = CheckSpec(name="smoke", kind="script", script="smoke.sh")
    base = checks_digest([RUN, script], {"smoke.sh": b"echo 1"})
    assert checks_digest([], {}) == ""
    assert base.startswith("sha256:")
    assert checks_digest([replace(RUN, location=replace(RUN.location, line=9)), script],
                      {"smoke.sh": b"echo 1"}) == base  # fmt: skip
    assert checks_digest([RUN, script], {"smoke.sh": b"echo 2"}) != base
    assert checks_digest([replace(RUN, timeout=5.0), script], {"smoke.sh": b"echo 1"}) != base
    assert checks_digest([script, RUN], {"smoke.sh": b"echo 1"}) != base
