"""The classic builder: ``POST /build`` through the docker SDK, on a ``DockerEngine``.

Labels: the classic builder turns the ``labels`` parameter into one LABEL step per
label (~55 ms each), so they are appended to the Dockerfile sent as one LABEL line
(``with_label_line``) where that is plainly safe. Build secrets need BuildKit and are
refused here with one sentence.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from stackbuild.backends.contract import BuildRequest, BuildResult, Cancelled, LogSink
from stackbuild.backends.engine import DockerEngine, StreamError, log_status, pull_allowed
from stackbuild.context import write_context_tar

SPOOL_MAX = 32 * 1024 * 1024  # context tars above this go to a temporary file

_SUCCESSFULLY_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})\s*$")


class _LineBuffer:
    """Turns the engine's text fragments into whole lines for the log sink."""

    def __init__(self, log: LogSink) -> None:
        self._log = log
        self._rest = ""
        self.last_lines: list[str] = []  # a few recent lines, to find "Successfully built"

    def feed(self, text: str) -> None:
        *lines, self._rest = (self._rest + text).split("\n")
        for line in lines:
            self._emit(line)

    def flush(self) -> None:
        rest, self._rest = self._rest, ""
        self._emit(rest)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self._log(line)
            self.last_lines = [*self.last_lines[-4:], line]


class ClassicBuilder:
    """Builds with the engine's classic builder (``--backend docker``; ``auto``'s fallback)."""

    kind = "docker"

    def build(
        self, engine: DockerEngine, request: BuildRequest, log: LogSink, cancel: threading.Event
    ) -> BuildResult:
        """Build, tag and label one image on ``engine``, streaming its output to ``log``."""
        if cancel.is_set():
            return BuildResult(ok=False, cancelled=True, error="cancelled before it started")
        if request.secrets:
            return BuildResult(
                ok=False,
                error="build secrets need BuildKit; the classic Docker builder cannot mount them",
            )
        dockerfile, error = engine.pinned_dockerfile(request, log)
        if error:
            log(error)
            return BuildResult(ok=False, error=error)

        pull = pull_allowed(request, log)
        # the classic builder reuses the layers of local images only: pull the cache first
        cache_from, warnings = engine.cache_sources(request, log, True, cancel)
        labels = dict(request.labels)
        # the classic builder turns the labels parameter into one LABEL step per label
        # (~55 ms each); one LABEL line appended to the Dockerfile costs one step
        dockerfile_bytes = None if request.target else with_label_line(dockerfile, labels)
        params: dict[str, Any] = {
            "t": list(request.tags),  # repeated t=: the engine tags only on success
            "dockerfile": request.dockerfile_name,
            "buildargs": json.dumps(dict(request.build_args)),
            "nocache": int(request.no_cache),
            "pull": int(pull),
            "rm": 1,
            "forcerm": 1,  # remove the intermediate container of a failed step too
        }
        if dockerfile_bytes is None:
            dockerfile_bytes = dockerfile
            params["labels"] = json.dumps(labels)
        if request.target:
            params["target"] = request.target
        if request.platform:
            params["platform"] = request.platform
        if cache_from:
            params["cachefrom"] = json.dumps(cache_from)
        headers: dict[str, str | bytes] = {"Content-Type": "application/x-tar"}
        with engine.engine_errors():
            engine.api._set_auth_headers(headers)  # registry credentials for FROM pulls

        lines = _LineBuffer(log)
        image_id: str | None = None
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX) as context:
            write_context_tar(
                request.context_files, dockerfile_bytes, request.dockerfile_name, context,
                expected=request.context_entries,
            )
            size = context.tell()
            context.seek(0)
            try:
                for record in engine.stream(
                    "/build",
                    params=params,
                    data=context,
                    size=size,
                    headers=headers,
                    cancel=cancel,
                    doing=f"building {request.image}",
                ):
                    if "stream" in record:
                        lines.feed(str(record["stream"]))
                    elif "aux" in record:
                        aux = record["aux"]
                        if isinstance(aux, dict) and aux.get("ID"):
                            image_id = str(aux["ID"])
                    elif "status" in record:
                        lines.flush()
                        log_status(record, log)
            except StreamError as e:
                lines.flush()
                log(f"ERROR: {e}")
                return BuildResult(ok=False, error=str(e), warnings=tuple(warnings))
            except Cancelled:
                lines.flush()
                log("build cancelled")
                return BuildResult(ok=False, cancelled=True, error="cancelled")
        lines.flush()
        if image_id is None:  # engines before API 1.30 only say it in words
            for line in reversed(lines.last_lines):
                if m := _SUCCESSFULLY_BUILT.match(line):
                    with engine.engine_errors():
                        image_id = str(engine.api.inspect_image(m.group(1))["Id"])
                    break
        if image_id is None:
            return BuildResult(ok=False, error="the engine finished without naming an image")
        return BuildResult(ok=True, image_id=image_id, warnings=tuple(warnings))


_ESCAPE_DIRECTIVE = re.compile(rb"^[ \t]*#[ \t]*escape[ \t]*=", re.IGNORECASE | re.MULTILINE)


def with_label_line(dockerfile: bytes, labels: Mapping[str, str]) -> bytes | None:
    """``dockerfile`` plus one ``LABEL "k"="v" ...`` line for its last stage, or None.

    None (send the labels as the build parameter instead) when appending is not
    plainly safe: an ``escape`` parser directive, a last line continued with
    ``\\``, or a key or value with a line break or control character. Inside
    double quotes ``\\``, ``"`` and ``$`` are escaped, so nothing is expanded.
    """
    if not labels or _ESCAPE_DIRECTIVE.search(dockerfile):
        return None
    if dockerfile.rstrip().endswith(b"\\"):
        return None
    pairs = []
    for key, value in labels.items():
        for text in (key, value):
            if any(ord(c) < 32 or ord(c) == 127 for c in text):
                return None
        pairs.append(f"{_dockerfile_quote(key)}={_dockerfile_quote(value)}")
    body = dockerfile if dockerfile.endswith(b"\n") or not dockerfile else dockerfile + b"\n"
    return body + ("LABEL " + " ".join(pairs) + "\n").encode("utf-8")


def _dockerfile_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'
