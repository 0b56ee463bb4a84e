"""Image checks (``tests:`` of stack.yaml), the pure half: their hash and their verdicts.

Pure: no engine, no files. ``checks_digest`` is what ``.stackbuild/`` records with an image
whose checks passed: the checks are not part of the image's fingerprint (changing a test
does not change the image), so a changed hash re-runs the checks, never the build.
``judge`` turns what a backend reports of one check (``CheckOutcome``) into a
``CheckResult``: passed, failed or timed out, and in words why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackbuild.manifest.model import CheckSpec

PASSED = "passed"
FAILED = "failed"
TIMED_OUT = "timed-out"

SHOWN = 200  # characters of an output quoted in a failure message


@dataclass(frozen=True)
class CheckOutcome:
    """What running one check in a container gave (``Backend.run_check``)."""

    exit_code: int | None = None  # None: it never ran to an end (timed out, not started)
    stdout: str = ""
    stderr: str = ""
    http_status: int | None = None  # serve: the answer's status
    body: str = ""  # serve: the answer
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None  # it could not run at all: command not found, port never open


@dataclass(frozen=True)
class CheckResult:
    """One check of one image in a run: for the summary, ``--json`` and the test log."""

    name: str
    status: str  # PASSED | FAILED | TIMED_OUT
    duration_s: float = 0.0
    detail: str | None = None  # why it failed, one line

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "detail": self.detail,
        }


def checks_digest(checks: Sequence[CheckSpec], scripts: Mapping[str, bytes]) -> str:
    """``sha256:...`` of an image's checks and the scripts they run; "" with no checks."""
    if not checks:
        return ""
    digest = hashlib.sha256()
    for check in checks:
        digest.update(json.dumps(check.definition(), sort_keys=True).encode())
        if check.script is not None:
            digest.update(hashlib.sha256(scripts.get(check.script, b"")).digest())
    return f"sha256:{digest.hexdigest()}"


def _quote(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...") if text else "nothing"


def judge(check: CheckSpec, outcome: CheckOutcome, duration_s: float) -> CheckResult:
    """The verdict on one check: the first expectation it misses, or passed."""

    def failed(detail: str, status: str = FAILED) -> CheckResult:
        return CheckResult(check.name, status, duration_s, detail)

    if outcome.timed_out:
        return failed(outcome.error or f"timed out after {check.timeout:g}s (killed)", TIMED_OUT)
    if outcome.cancelled:
        return failed("interrupted")
    if outcome.error:
        return failed(outcome.error)
    if check.kind == "serve":
        output, what = outcome.body, "the body"
        if outcome.http_status != check.expect_status:
            return failed(
                f"GET {check.path} answered HTTP {outcome.http_status}, expected "
                f"{check.expect_status}"
            )
    else:
        output, what = outcome.stdout, "stdout"
        if outcome.exit_code != check.expect_exit:
            said = outcome.stderr or outcome.stdout
            return failed(
                f"exit code {outcome.exit_code}, expected {check.expect_exit}; "
                f"it said {_quote(said)}"
            )
        if check.expect_stderr is not None and check.expect_stderr not in outcome.stderr:
            return failed(
                f"stderr does not contain {check.expect_stderr!r}; it is {_quote(outcome.stderr)}"
            )
    if check.expect_stdout is not None and check.expect_stdout not in output:
        wanted = check.expect_stdout
        return failed(f"{what} does not contain {wanted!r}; it is {_quote(output)}")
    regex = check.expect_regex
    if regex is not None and re.search(regex, output, re.MULTILINE) is None:
        return failed(f"{what} does not match /{regex}/; it is {_quote(output)}")
    return CheckResult(check.name, PASSED, duration_s)
