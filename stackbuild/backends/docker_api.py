"""The Docker engine backend: a thin layer over the docker SDK's low-level ``APIClient``.

Why low-level: ``images.build`` of the high-level client reads the whole
output before it returns, so it can neither stream log lines nor be
cancelled. Here every streaming call (build now; push and pull later) goes
through :meth:`DockerBackend._stream`, which POSTs, yields the engine's JSON
records one by one, raises :class:`StreamError` on an error record and
:class:`Cancelled` when a ``threading.Event`` fires.

Cancellation: the classic builder aborts a build (and, with ``forcerm``,
removes its container) when the client's HTTP connection closes. A watcher
thread therefore shuts down the socket of the streaming response as soon as
``cancel`` is set; while the context is still being uploaded, the request
body itself refuses to be read further.

``docker`` costs ~160 ms to import and ``plan --offline`` must never pay it:
it is imported inside methods only, never at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from stackbuild.backends.base import (
    FINGERPRINT_LABEL,
    IMAGE_LABEL,
    BuildRequest,
    BuildResult,
    LocalImage,
    LogSink,
)
from stackbuild.dockerfile import split_reference
from stackbuild.errors import EngineUnreachable

if TYPE_CHECKING:
    import docker
    import requests

DEFAULT_HOST = "unix:///var/run/docker.sock"
API_TIMEOUT = 600  # s, ordinary calls: removing or tagging on a busy engine can be slow
PING_TIMEOUT = 15  # s, ping and the API version probe: "is anybody there?"
CONNECT_TIMEOUT = 30  # s, connecting for a streaming call; reading it has no timeout
CANCEL_POLL = 0.1  # s, how often a watcher looks at the cancel event
SPOOL_MAX = 32 * 1024 * 1024  # context tars above this go to a temporary file
POOL_SIZE = 32  # connections kept per engine: one per concurrent build, -j can exceed 10

_SUCCESSFULLY_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})\s*$")


class StreamError(Exception):
    """The engine reported an error in a streaming response (an error record or HTTP status)."""


class Cancelled(Exception):
    """A streaming call was aborted because its cancel event was set."""


def _normalize_repository(repo: str) -> str:
    # the engine reports Docker Hub names short ("acme/base", "base"); compare like it does
    for prefix in ("docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
            break
    return repo.removeprefix("library/") if repo.count("/") == 1 else repo


def _docker_host_note() -> str:
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={host}" if host else "DOCKER_HOST is not set"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: requests and urllib3 nest the OSError in args."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


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


class _CancellableBody:
    """A request body that stops the upload (raises Cancelled) once ``cancel`` is set."""

    def __init__(self, fileobj: IO[bytes], size: int, cancel: threading.Event) -> None:
        self._f = fileobj
        self._size = size
        self._cancel = cancel

    def __len__(self) -> int:  # lets requests send a Content-Length instead of chunking
        return self._size

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled()
        return self._f.read(n)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 16):
            yield chunk


def _response_socket(response: requests.Response) -> Any:
    """The socket under a streaming response, or None where the transport hides it."""
    raw = response.raw
    conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    try:
        return raw._fp.fp.raw._sock  # http.client -> BufferedReader -> SocketIO
    except AttributeError:
        return None


def _abort(response: requests.Response) -> None:
    # shutdown() (unlike close()) wakes a recv() blocked in another thread, and the
    # engine sees the connection end, which is what makes it abort the build
    sock = _response_socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    else:
        with contextlib.suppress(Exception):
            response.close()


class _CancelWatch:
    """A thread that aborts ``response`` when ``cancel`` is set, until stopped."""

    def __init__(self, response: requests.Response, cancel: threading.Event) -> None:
        self.fired = False
        self._response = response
        self._cancel = cancel
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stackbuild-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            if self._cancel.wait(CANCEL_POLL):
                if not self._done.is_set():
                    self.fired = True
                    _abort(self._response)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class DockerBackend:
    """One Docker engine, reached through the docker SDK (``Backend`` protocol of base.py).

    ``base_url=None`` means ``docker.from_env()`` semantics (DOCKER_HOST,
    DOCKER_TLS_VERIFY, DOCKER_CERT_PATH). Nothing touches the engine, and
    ``docker`` is not imported, before the first call that needs it.
    Safe to share between threads: one connection pool serves parallel builds.
    """

    def __init__(
        self,
        base_url: str | None = None,
        tls: Any = None,
        name: str | None = None,
        *,
        timeout: float = API_TIMEOUT,
    ) -> None:
        self._base_url = base_url
        self._tls = tls
        self.timeout = timeout
        self.name = name or base_url or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DockerBackend({self.name!r})"

    # -- connection and errors ---------------------------------------------------------

    @property
    def api(self) -> docker.APIClient:
        """The SDK's low-level client, created (and the API version negotiated) on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> docker.APIClient:
        import docker

        kwargs: dict[str, Any]
        if self._base_url is None:
            kwargs = docker.utils.kwargs_from_env()
        else:
            kwargs = {"base_url": self._base_url}
        if self._tls is not None:
            kwargs["tls"] = self._tls
        with self._engine_errors():
            # version="auto" asks the engine which API it speaks, so old (20.10) and new
            # engines both work; that probe should fail fast, hence the short timeout first
            client = docker.APIClient(
                version="auto", timeout=PING_TIMEOUT, max_pool_size=POOL_SIZE, **kwargs
            )
        client.timeout = self.timeout
        return client

    def close(self) -> None:
        """Close the connection pool; the backend reconnects when used again."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _unreachable_message(self, exc: BaseException, doing: str | None = None) -> str:
        where = f"the Docker engine at {self.name} ({_docker_host_note()})"
        hint = "is dockerd running? Start it or set DOCKER_HOST."
        for cause in _causes(exc):
            if isinstance(cause, PermissionError):
                hint = "permission denied on its socket; run as root or join the docker group."
                break
            if isinstance(cause, FileNotFoundError):
                hint = f"its socket does not exist; {hint}"
                break
            if isinstance(cause, ConnectionRefusedError):
                hint = f"connection refused; {hint}"
                break
            if isinstance(cause, TimeoutError) or type(cause).__name__.endswith("Timeout"):
                hint = "it did not answer in time; is the engine overloaded or the address wrong?"
                break
        if doing:
            return f"lost the connection to {where} while {doing}: {hint}"
        return f"cannot reach {where}: {hint}"

    @contextlib.contextmanager
    def _engine_errors(self, doing: str | None = None) -> Iterator[None]:
        """Turn "the engine is not there" (in any SDK disguise) into EngineUnreachable.

        APIError (the engine answered, with an error) passes through unchanged.
        Only SDK calls belong inside: an OSError of our own would be misread.
        """
        import docker.errors
        import requests.exceptions
        import urllib3.exceptions

        try:
            yield
        except (
            docker.errors.APIError,  # the engine answered, with an error
            docker.errors.NullResource,  # and these three are mistakes in the call itself
            docker.errors.InvalidArgument,
            docker.errors.InvalidVersion,
        ):
            raise
        except (
            docker.errors.DockerException,  # e.g. "Error while fetching server API version"
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError,
            ConnectionError,
            FileNotFoundError,
            PermissionError,
        ) as e:
            raise EngineUnreachable(self._unreachable_message(e, doing)) from e

    def ping(self) -> None:
        """Raise EngineUnreachable with one clear sentence when the engine does not answer."""
        import docker.errors

        with self._engine_errors():
            api = self.api
            try:
                api._result(api._get(api._url("/_ping"), timeout=PING_TIMEOUT))
            except docker.errors.APIError as e:
                raise EngineUnreachable(
                    f"the Docker engine at {self.name} ({_docker_host_note()}) answers ping "
                    f"with an error: {e.explanation or e}"
                ) from e

    # -- the one streaming primitive: build now, push and pull later -------------------

    def _stream(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: IO[bytes] | None = None,
        size: int | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
        doing: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """POST ``path`` and yield the engine's JSON progress records as they arrive.

        Raises StreamError on an error record or an error status, Cancelled when
        ``cancel`` is set (the connection is closed, which aborts the operation on
        the engine), EngineUnreachable when the engine goes away.
        """
        import docker.errors

        cancel = cancel or threading.Event()
        doing = doing or f"streaming {path}"
        body: Any = data
        if data is not None and size is not None:
            body = _CancellableBody(data, size, cancel)
        with self._engine_errors():
            api = self.api
            url = api._url(path)
        try:
            with self._engine_errors(doing):
                # no read timeout: a build step may be silent for an hour
                response = api._post(
                    url,
                    params=dict(params or {}),
                    data=body,
                    headers=dict(headers or {}),
                    stream=True,
                    timeout=(CONNECT_TIMEOUT, None),
                )
        except EngineUnreachable:
            if cancel.is_set():  # the upload was cut short on purpose
                raise Cancelled() from None
            raise
        watch = _CancelWatch(response, cancel)
        try:
            try:
                api._raise_for_status(response)
            except docker.errors.APIError as e:
                raise StreamError(str(e.explanation or e)) from e
            with self._engine_errors(doing):
                try:
                    for record in api._stream_helper(response, decode=True):
                        if not isinstance(record, dict):
                            continue
                        if "errorDetail" in record or "error" in record:
                            detail = record.get("errorDetail") or {}
                            message = detail.get("message") or record.get("error") or "error"
                            raise StreamError(str(message).strip())
                        yield record
                except docker.errors.StreamParseError as e:
                    raise StreamError(f"unreadable response from the engine: {e}") from e
                except (StreamError, GeneratorExit):
                    raise
                except Exception:
                    if watch.fired:  # the read failed because we closed the socket
                        raise Cancelled() from None
                    raise
            if watch.fired:  # the stream may also just end when the socket is shut down
                raise Cancelled()
        finally:
            watch.stop()
            response.close()

    # -- Backend protocol --------------------------------------------------------------

    def find_fingerprint(self, repository: str, fingerprint: str) -> str | None:
        """Id of a local image labelled with ``fingerprint`` and tagged in ``repository``.

        Tagged in the repository, not merely labelled: children pin their FROM to
        ``<repository>:<tag>``, and an untagged look-alike (say another stack image
        with identical inputs) would leave that reference dangling.
        """
        with self._engine_errors():
            images = self.api.images(filters={"label": f"{FINGERPRINT_LABEL}={fingerprint}"})
        wanted = _normalize_repository(repository)
        for image in sorted(images, key=lambda i: i.get("Created", 0), reverse=True):
            for ref in image.get("RepoTags") or ():
                if _normalize_repository(split_reference(ref)[0]) == wanted:
                    return str(image["Id"])
        return None

    def fingerprinted_images(self) -> dict[str, list[LocalImage]]:
        """Every local image with a fingerprint label, by fingerprint, in one API call.

        A no-op run asks this once instead of once per image.
        """
        with self._engine_errors():
            images = self.api.images(filters={"label": FINGERPRINT_LABEL})
        found: dict[str, list[LocalImage]] = {}
        for image in sorted(images, key=lambda i: i.get("Created", 0), reverse=True):
            fingerprint = (image.get("Labels") or {}).get(FINGERPRINT_LABEL)
            if fingerprint:
                tags = tuple(t for t in image.get("RepoTags") or () if t != "<none>:<none>")
                found.setdefault(fingerprint, []).append(LocalImage(str(image["Id"]), tags))
        return found

    def build(self, request: BuildRequest, log: LogSink, cancel: threading.Event) -> BuildResult:
        """Build, tag and label one image, streaming its output lines to ``log``."""
        if cancel.is_set():
            return BuildResult(ok=False, cancelled=True, error="cancelled before it started")
        if request.secrets:
            return BuildResult(
                ok=False,
                error="build secrets need BuildKit; the classic Docker builder cannot mount them",
            )
        error = self._apply_pins(request.pins, log)
        if error:
            log(error)
            return BuildResult(ok=False, error=error)

        import tempfile

        from stackbuild.context import write_context_tar

        pull = request.pull
        if pull and request.pins:
            # the engine would pull every FROM, replacing the pinned local parents (which
            # may exist nowhere else); the pins already name exact images
            log("not pulling: this image's FROM references are pinned to exact local images")
            pull = False
        labels = {**request.labels, FINGERPRINT_LABEL: request.fingerprint}
        labels.setdefault(IMAGE_LABEL, request.image)
        params: dict[str, Any] = {
            "t": list(request.tags),  # repeated t=: the engine tags only on success
            "dockerfile": request.dockerfile_name,
            "buildargs": json.dumps(dict(request.build_args)),
            "labels": json.dumps(labels),
            "nocache": int(request.no_cache),
            "pull": int(pull),
            "rm": 1,
            "forcerm": 1,  # remove the intermediate container of a failed step too
        }
        if request.target:
            params["target"] = request.target
        if request.platform:
            params["platform"] = request.platform
        headers = {"Content-Type": "application/x-tar"}
        with self._engine_errors():
            self.api._set_auth_headers(headers)  # registry credentials for FROM pulls

        lines = _LineBuffer(log)
        image_id: str | None = None
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX) as context:
            write_context_tar(
                request.context_files, request.dockerfile_bytes, request.dockerfile_name, context
            )
            size = context.tell()
            context.seek(0)
            try:
                for record in self._stream(
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
                        _log_status(record, log)
            except StreamError as e:
                lines.flush()
                log(f"ERROR: {e}")
                return BuildResult(ok=False, error=str(e))
            except Cancelled:
                lines.flush()
                log("build cancelled")
                return BuildResult(ok=False, cancelled=True, error="cancelled")
        lines.flush()
        if image_id is None:  # engines before API 1.30 only say it in words
            for line in reversed(lines.last_lines):
                if m := _SUCCESSFULLY_BUILT.match(line):
                    with self._engine_errors():
                        image_id = str(self.api.inspect_image(m.group(1))["Id"])
                    break
        if image_id is None:
            return BuildResult(ok=False, error="the engine finished without naming an image")
        return BuildResult(ok=True, image_id=image_id)

    # -- helpers -----------------------------------------------------------------------

    def _apply_pins(self, pins: Mapping[str, str], log: LogSink) -> str | None:
        """Tag each pin's source as the reference the Dockerfile writes; an error or None."""
        import docker.errors

        for ref, source in sorted(pins.items()):
            if split_reference(ref)[2]:
                log(f"pin {ref}: a digest reference names one image already; nothing to tag")
                continue
            try:
                self.tag(source, ref)
            except docker.errors.NotFound:
                return f"cannot pin {ref} to {source}: no such image on the engine at {self.name}"
            except docker.errors.APIError as e:
                return f"cannot pin {ref} to {source}: {e.explanation or e}"
            log(f"pinned {ref} -> {source}")
        return None

    def tag(self, image: str, ref: str) -> None:
        """Tag ``image`` (id or reference) as ``ref`` ("repo[:tag]", tag defaults to latest)."""
        repo, tag, digest = split_reference(ref)
        if digest:
            raise ValueError(f"cannot tag an image as a digest reference: {ref}")
        with self._engine_errors():
            self.api.tag(image, repo, tag or "latest")

    def remove_images(self, refs_or_ids: Iterable[str]) -> list[str]:
        """Force-remove images (already gone: skipped); returns the ones removed."""
        import docker.errors

        removed = []
        for ref in refs_or_ids:
            try:
                with self._engine_errors():
                    self.api.remove_image(ref, force=True)
            except docker.errors.NotFound:
                continue
            removed.append(ref)
        return removed

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """Labels of a local image ({} when it has none), None when there is no such image."""
        import docker.errors

        try:
            with self._engine_errors():
                info = self.api.inspect_image(ref)
        except docker.errors.NotFound:
            return None
        return dict((info.get("Config") or {}).get("Labels") or {})


def _log_status(record: Mapping[str, Any], log: LogSink) -> None:
    # pull progress inside a build ("Downloading [==>  ]") would flood the log: keep
    # the milestones ("Pull complete", "Digest: ...") and drop the progress ticks
    detail = record.get("progressDetail") or {}
    if detail.get("current") is not None or record.get("progress"):
        return
    status = str(record.get("status", "")).strip()
    if status:
        log(f"{record['id']}: {status}" if record.get("id") else status)
