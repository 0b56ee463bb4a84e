"""Image checks on a Docker engine: one fresh container per check, always removed.

``DockerEngine.run_check`` is ``run_check`` here. A check's container is created
labelled ``stackbuild.check=<run id>``, with no network unless the check asks for a
bridge (a ``serve`` check always has one, its port published on 127.0.0.1 only). A
``run`` or ``script`` check replaces the image's entrypoint with its argv (a script is
copied in first and is the argv); a ``serve`` check starts the image as it is, waits
for the port with a bounded retry and fetches the path. The container is killed when the
check's timeout passes or its cancel event is set (Ctrl-C), and removed in every case
before ``run_check`` returns; ``remove_check_containers`` sweeps a run's leftovers.

The engine is polled (inspect, every few tenths of a second), not waited on: a blocking
wait could neither be cancelled nor bounded without reading a timeout as a lost engine.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from stackbuild.backends.contract import CHECK_LABEL, SCRIPT_DIR, CheckRequest, LogSink
from stackbuild.checks import CheckOutcome

POLL = 0.1  # s, first interval between looks at a running check; it doubles up to POLL_MAX
POLL_MAX = 0.5
CONNECT_WAIT = 2.0  # s, one HTTP attempt of a serve check
OUTPUT_LIMIT = 1 << 20  # bytes of each of stdout and stderr kept from one check

# how the engine (runc) says the argv's program does not exist in the image
_NOT_FOUND = ("executable file not found", "no such file or directory", "not found in $path")


class _Engine(Protocol):
    """What of ``DockerEngine`` a check uses (engine.py imports this module)."""

    name: str

    @property
    def api(self) -> Any: ...

    def engine_errors(self, doing: str | None = None) -> contextlib.AbstractContextManager[None]:
        ...


def _script_tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(SCRIPT_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        info = tarfile.TarInfo(f"{SCRIPT_DIR.lstrip('/')}/{name}")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _text(data: bytes | str | None) -> str:
    if isinstance(data, str):
        return data
    return (data or b"")[:OUTPUT_LIMIT].decode("utf-8", "replace")


def _intervals() -> Iterator[float]:
    interval = POLL
    while True:
        yield interval
        interval = min(POLL_MAX, interval * 2)


def run_check(
    engine: _Engine, request: CheckRequest, log: LogSink, cancel: threading.Event
) -> CheckOutcome:
    """Run ``request`` in a fresh container on ``engine``; see the module docstring."""
    import docker.errors

    api = engine.api
    serve = request.port is not None
    argv = list(request.argv)
    if request.script is not None:
        argv = [f"{SCRIPT_DIR}/{request.script_name}"]
    with engine.engine_errors("creating a check container"):
        host_config = api.create_host_config(
            network_mode="bridge" if serve else request.network,
            port_bindings={request.port: ("127.0.0.1",)} if serve else None,
        )
        options: dict[str, Any] = {}
        if argv:  # the argv is the process: the image's entrypoint would wrap it
            options = {"entrypoint": argv[:1], "command": argv[1:]}
        try:
            container = api.create_container(
                request.ref, labels={CHECK_LABEL: request.run_id}, host_config=host_config,
                ports=[request.port] if serve else None, detach=True, **options,
            )  # fmt: skip
        except docker.errors.ImageNotFound:
            return CheckOutcome(error=f"no such image on the engine at {engine.name}: "
                                      f"{request.ref}")  # fmt: skip
    container_id = str(container["Id"])
    log(f"container {container_id[:12]}: {' '.join(argv) or '(the image command)'}")
    try:
        return _run(engine, api, container_id, request, argv, log, cancel)
    finally:
        with contextlib.suppress(docker.errors.APIError), engine.engine_errors():
            api.remove_container(container_id, force=True, v=True)


def _run(
    engine: _Engine, api: Any, container_id: str, request: CheckRequest, argv: list[str],
    log: LogSink, cancel: threading.Event,
) -> CheckOutcome:  # fmt: skip
    import docker.errors

    deadline = time.monotonic() + request.timeout
    with engine.engine_errors("starting a check container"):
        if request.script is not None:
            api.put_archive(container_id, "/", _script_tar(request.script_name, request.script))
        try:
            api.start(container_id)
        except docker.errors.APIError as error:
            said = str(error.explanation or error)
            if argv and any(words in said.lower() for words in _NOT_FOUND):
                return CheckOutcome(exit_code=127, error=(
                    f"command not found in the image: {argv[0]!r} ({said})"))  # fmt: skip
            return CheckOutcome(error=f"the check's container did not start: {said}")
    outcome = _serve(engine, api, container_id, request, deadline, log, cancel) if (
        request.port is not None) else None  # fmt: skip
    timed_out = cancelled = False
    exit_code: int | None = None
    if outcome is None:  # run / script: wait for the end
        for interval in _intervals():
            with engine.engine_errors("running a check"):
                state = api.inspect_container(container_id)["State"]
            if not state.get("Running"):
                exit_code = int(state.get("ExitCode", -1))
                break
            if cancel.is_set():
                cancelled = True
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            cancel.wait(min(interval, max(0.0, deadline - time.monotonic())))
        if timed_out or cancelled:
            with contextlib.suppress(docker.errors.APIError), engine.engine_errors():
                api.kill(container_id)
    else:
        with contextlib.suppress(docker.errors.APIError), engine.engine_errors():
            api.kill(container_id)
    with engine.engine_errors("reading a check's output"):
        stdout = _text(api.logs(container_id, stdout=True, stderr=False))
        stderr = _text(api.logs(container_id, stdout=False, stderr=True))
    for stream, text in (("stdout", stdout), ("stderr", stderr)):
        for line in text.splitlines():
            log(f"{stream}| {line}")
    if outcome is not None:
        return CheckOutcome(
            http_status=outcome.http_status, body=outcome.body, stdout=stdout, stderr=stderr,
            timed_out=outcome.timed_out, cancelled=outcome.cancelled, error=outcome.error,
        )  # fmt: skip
    if timed_out:
        log(f"killed after {request.timeout:g}s")
    return CheckOutcome(exit_code=exit_code, stdout=stdout, stderr=stderr,
                        timed_out=timed_out, cancelled=cancelled)  # fmt: skip


def _host_port(api: Any, container_id: str, port: int) -> int | None:
    ports = (api.inspect_container(container_id).get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{port}/tcp") or ():
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _serve(
    engine: _Engine, api: Any, container_id: str, request: CheckRequest, deadline: float,
    log: LogSink, cancel: threading.Event,
) -> CheckOutcome:  # fmt: skip
    """Fetch ``request.path`` from the published port, retrying until it answers."""
    port = request.port
    assert port is not None
    waited_for = f"nothing answered on 127.0.0.1 for port {port} within {request.timeout:g}s"
    for interval in _intervals():
        with engine.engine_errors("running a check"):
            info = api.inspect_container(container_id)
        state = info["State"]
        if not state.get("Running"):
            return CheckOutcome(error=f"the container exited (code {state.get('ExitCode')}) "
                                      f"before it answered on port {port}")  # fmt: skip
        host_port = _host_port(api, container_id, port)
        if host_port is not None:
            remaining = deadline - time.monotonic()
            connection = http.client.HTTPConnection(
                "127.0.0.1", host_port, timeout=max(0.1, min(CONNECT_WAIT, remaining))
            )
            try:
                connection.request("GET", request.path)
                response = connection.getresponse()
                body = _text(response.read(OUTPUT_LIMIT))
                log(f"GET {request.path} on 127.0.0.1:{host_port}: HTTP {response.status}")
                return CheckOutcome(http_status=response.status, body=body)
            except (OSError, http.client.HTTPException):
                pass  # not listening yet (the proxy accepts, then drops): try again
            finally:
                connection.close()
        if cancel.is_set():
            return CheckOutcome(cancelled=True)
        if time.monotonic() >= deadline:
            return CheckOutcome(timed_out=True, error=waited_for)
        cancel.wait(min(interval, max(0.0, deadline - time.monotonic())))
    raise AssertionError("unreachable")  # _intervals never ends


def remove_check_containers(engine: _Engine, run_id: str) -> list[str]:
    """Force-remove every container labelled ``stackbuild.check=<run_id>``."""
    import docker.errors

    removed = []
    with engine.engine_errors("removing check containers"):
        api = engine.api
        found = api.containers(all=True, filters={"label": f"{CHECK_LABEL}={run_id}"})
        for container in found:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True, v=True)
                removed.append(str(container["Id"]))
    return removed
