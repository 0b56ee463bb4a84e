"""One Docker engine: the one client every backend talks to it through.

``DockerEngine`` is the transport (the docker SDK's low-level ``APIClient``, one
connection pool shared by parallel builds) and every operation of the ``Backend``
contract but the build itself, which it hands to its ``Builder``: the classic
builder (``docker_api.ClassicBuilder``) or BuildKit (``buildkit.BuildKitBuilder``).
Composition, not inheritance: a builder gets the engine it builds on.

Why low-level: ``images.build`` of the high-level client reads the whole
output before it returns, so it can neither stream log lines nor be
cancelled. Here every streaming call (build, push, pull, load) goes
through :meth:`DockerEngine.stream`, which POSTs, yields the engine's JSON
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
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from stackbuild.backends import artifacts
from stackbuild.backends.checks import remove_check_containers, run_check
from stackbuild.backends.contract import (
    FINGERPRINT_LABEL,
    Attachment,
    Backend,
    BuildRequest,
    BuildResult,
    ByteWriter,
    Cancelled,
    CheckRequest,
    LocalImage,
    LogSink,
    engine_platform_of,
)
from stackbuild.backends.manifests import (
    fetch_config,
    fetch_manifest,
    put_manifest,
    retag_manifest,
)
from stackbuild.checks import CheckOutcome
from stackbuild.dockerfile import pin_references
from stackbuild.errors import (
    EngineUnreachable,
    RegistryError,
    RegistryNotFound,
    StackbuildError,
    UsageError,
    registry_error,
)
from stackbuild.layers import ImageLayers, layers_from_history
from stackbuild.refs import exact_reference, registry_host, repository_of, split_reference

if TYPE_CHECKING:
    import docker
    import requests
    from docker.tls import TLSConfig

DEFAULT_HOST = "unix:///var/run/docker.sock"
# s, a read timeout for every call that should return (inspect, list, tag, remove, registry
# look-ups): an engine silent for this long has stopped answering (frozen, SIGSTOP, a hung
# daemon), and waiting on longer would wait forever. Generous: removing or tagging on a busy
# engine can be slow. The build, push, pull and save streams have no read timeout at all
API_TIMEOUT = 120
PING_TIMEOUT = 15  # s, ping and the API version probe: "is anybody there?"
TIMEOUT_ENV = "STACKBUILD_ENGINE_TIMEOUT"  # s, overrides both (a slow engine, or tests)
CONNECT_TIMEOUT = 30  # s, connecting for a streaming call; reading it has no timeout
CANCEL_POLL = 0.1  # s, how often a watcher looks at the cancel event
READ_WORKERS = 8  # paths of an image read at once (read_image_files)
POOL_SIZE = 32  # connections kept per engine: one per concurrent build, -j can exceed 10


# (connect, read) seconds as requests takes them; a read timeout of None waits forever
Timeout = float | tuple[float, float | None] | None


class _SDKInternals(Protocol):
    """The private methods of the SDK's ``APIClient`` that stackbuild calls and the SDK's
    stubs do not declare: its URL building, raw requests with the client's headers,
    status checks and JSON stream decoding, which the public methods do not expose
    without reading a whole response first."""

    def _url(self, pathfmt: str, *args: str, versioned_api: bool = True) -> str: ...

    def _get(
        self,
        url: str,
        *,
        params: Mapping[str, object] | None = None,
        stream: bool = False,
        timeout: Timeout = None,
    ) -> requests.Response: ...

    def _post(
        self,
        url: str,
        *,
        params: Mapping[str, object] | None = None,
        data: Iterable[bytes] | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        stream: bool = False,
        timeout: Timeout = None,
    ) -> requests.Response: ...

    def _result(
        self, response: requests.Response, json: bool = False, binary: bool = False
    ) -> object: ...

    def _raise_for_status(self, response: requests.Response) -> None: ...

    def _stream_helper(
        self, response: requests.Response, decode: bool = False
    ) -> Iterator[object]: ...

    def _set_auth_headers(self, headers: MutableMapping[str, str | bytes]) -> None: ...


if TYPE_CHECKING:

    class _APIClient(docker.APIClient, _SDKInternals):
        """The client as stackbuild uses it: the SDK's, with the private methods named."""


class StreamError(Exception):
    """The engine reported an error in a streaming response (an error record or HTTP status)."""


def _timeout(default: float) -> float:
    """``default``, or ``STACKBUILD_ENGINE_TIMEOUT`` seconds when set (read on every use)."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e9:  # also refuses nan and inf
        raise UsageError(f"{TIMEOUT_ENV}={value!r} is not a positive number of seconds")
    return seconds


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


def _response_socket(response: requests.Response) -> socket.socket | None:
    """The socket under a streaming response, or None where the transport hides it."""
    raw = response.raw
    conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock: socket.socket | None = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    try:
        # http.client -> BufferedReader -> SocketIO, private all the way down: hence the
        # AttributeError below where a transport differs
        return raw._fp.fp.raw._sock  # type: ignore[union-attr]  # private attributes, see above
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


class CancelWatch:
    """A thread that calls ``abort(done)`` once ``cancel`` is set, until stopped.

    ``done`` is set by ``stop()``: an abort that escalates (the BuildKit backend's
    signals) stops waiting as soon as the work has ended.
    """

    def __init__(self, cancel: threading.Event, abort: Callable[[threading.Event], None]) -> None:
        self.fired = False
        self._cancel = cancel
        self._abort = abort
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stackbuild-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # sleeps on _done, not on cancel: stop() then returns at once instead of
        # waiting out a poll interval at the end of every build (~50 ms each)
        while not self._done.wait(CANCEL_POLL):
            if self._cancel.is_set():
                if not self._done.is_set():
                    self.fired = True
                    self._abort(self._done)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class Builder(Protocol):
    """How images are built on an engine: the classic builder or BuildKit."""

    kind: str  # "docker" | "buildkit", as --backend names it

    def build(
        self, engine: DockerEngine, request: BuildRequest, log: LogSink, cancel: threading.Event
    ) -> BuildResult:
        """Build ``request`` on ``engine`` (see ``Backend.build``)."""


_API_VERSION = re.compile(rb"1\.[0-9]{1,3}")  # what the SDK takes as version=


class DockerEngine:
    """One Docker engine, reached through the docker SDK: the ``Backend`` contract.

    ``base_url=None`` means ``docker.from_env()`` semantics (DOCKER_HOST,
    DOCKER_TLS_VERIFY, DOCKER_CERT_PATH). Nothing touches the engine, and
    ``docker`` is not imported, before the first call that needs it.
    Safe to share between threads: one connection pool serves parallel builds.
    """

    def __init__(
        self,
        builder: Builder,
        base_url: str | None = None,
        tls: TLSConfig | None = None,
        name: str | None = None,
        *,
        timeout: float = API_TIMEOUT,
    ) -> None:
        self.builder = builder
        self.base_url = base_url
        self.tls = tls
        self.timeout = timeout
        self.name = name or base_url or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self._client: _APIClient | None = None
        self._platform: str | None = None  # docker info's, once asked ("": it did not say)
        self._client_lock = threading.Lock()
        # cache_from registries that failed this run: host -> why (asked once, not per image)
        self._cache_unreachable: dict[str, str] = {}
        self._version: str | None = None  # the engine's, once asked
        # the API version the engine's ping named (its Api-Version header): the SDK client
        # then speaks it without asking /version again
        self._api_version: str | None = None

    def __repr__(self) -> str:
        return f"DockerEngine({self.name!r}, {self.builder.kind})"

    def build(self, request: BuildRequest, log: LogSink, cancel: threading.Event) -> BuildResult:
        """Build, tag and label one image with this engine's builder; the result names
        the builder that ran it (``auto``'s choice, not "auto")."""
        result = self.builder.build(self, request, log, cancel)
        if result.builder is None:
            result.builder = self.builder.kind
        return result

    # -- connection and errors ---------------------------------------------------------

    @property
    def api(self) -> _APIClient:
        """The SDK's low-level client, created (and the API version negotiated) on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> _APIClient:
        import docker
        from docker.utils import kwargs_from_env

        base_url, tls = self.base_url, self.tls
        if base_url is None:
            env = kwargs_from_env()  # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
            base_url = env.get("base_url")
            tls = tls or env.get("tls")
        with self.engine_errors():
            # version="auto" asks the engine which API it speaks, so old (20.10) and new
            # engines both work; that probe should fail fast, hence the short timeout first
            client = docker.APIClient(
                base_url=base_url, version=self._api_version or "auto", tls=tls or False,
                timeout=_timeout(PING_TIMEOUT),  # type: ignore[arg-type]  # seconds for requests, a float; the stub says int
                max_pool_size=POOL_SIZE,
            )
        # the read timeout of every call that does not pass its own (the streams do)
        client.timeout = _timeout(self.timeout)  # type: ignore[assignment]  # as above
        return cast("_APIClient", client)  # the one place the private methods are named

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
                hint = (
                    "it stopped answering (no answer in time): is the engine frozen or "
                    f"overloaded, or the address wrong? ({TIMEOUT_ENV} sets how long to wait)"
                )
                break
        if doing:
            return f"lost the connection to {where} while {doing}: {hint}"
        return f"cannot reach {where}: {hint}"

    @contextlib.contextmanager
    def engine_errors(self, doing: str | None = None) -> Iterator[None]:
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

    def _local_get(self, target: str, timeout: float) -> bytes | None:
        """GET ``target`` from a local unix-socket engine without importing the docker SDK.

        A no-op run asks the engine two things (ping, the fingerprinted images);
        the SDK (with requests) costs ~100 ms to import, a third of such a run.
        None, so the caller uses the SDK, once the SDK client exists, for a TCP
        or TLS engine, and for any answer but a plain 200.
        """
        if self._client is not None or self.tls is not None:
            return None
        url = self.base_url
        if url is None:
            if os.environ.get("DOCKER_TLS_VERIFY"):
                return None
            url = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        if not url.startswith("unix://") or len(url) == len("unix://"):
            return None
        timeout = _timeout(timeout)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(url[len("unix://") :])
                # HTTP/1.0: the engine answers without chunking and closes the connection
                sock.sendall(f"GET {target} HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii"))
                chunks = []
                while data := sock.recv(1 << 16):
                    chunks.append(data)
        except OSError as e:
            raise EngineUnreachable(self._unreachable_message(e)) from e
        head, separator, body = b"".join(chunks).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = lines[0].split()
        if not separator or len(status) < 2 or status[1] != b"200":
            return None
        if any(line.lower().startswith(b"transfer-encoding:") for line in lines[1:]):
            return None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"api-version" and _API_VERSION.fullmatch(value.strip()):
                self._api_version = value.strip().decode("ascii")
        return body

    def ping(self) -> None:
        """Raise EngineUnreachable with one clear sentence when the engine does not answer."""
        if self._local_get("/_ping", PING_TIMEOUT) is not None:
            return
        import docker.errors

        with self.engine_errors():
            api = self.api
            try:
                api._result(api._get(api._url("/_ping"), timeout=_timeout(PING_TIMEOUT)))
            except docker.errors.APIError as e:
                raise EngineUnreachable(
                    f"the Docker engine at {self.name} ({_docker_host_note()}) answers ping "
                    f"with an error: {e.explanation or e}"
                ) from e

    def engine_platform(self) -> str | None:
        """The engine's own platform (``docker info``), asked once."""
        if self._platform is None:
            with self.engine_errors():
                info = self.api.info()
            self._platform = engine_platform_of(info.get("OSType"), info.get("Architecture")) or ""
        return self._platform or None

    # -- the one streaming primitive: build now, push and pull later -------------------

    def stream(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: IO[bytes] | None = None,
        size: int | None = None,
        headers: Mapping[str, str | bytes] | None = None,
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
        body: Iterable[bytes] | None = data
        if data is not None and size is not None:
            body = _CancellableBody(data, size, cancel)
        with self.engine_errors():
            api = self.api
            url = api._url(path)
        try:
            with self.engine_errors(doing):
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
        watch = CancelWatch(cancel, lambda done: _abort(response))
        try:
            try:
                api._raise_for_status(response)
            except docker.errors.APIError as e:
                raise StreamError(str(e.explanation or e)) from e
            with self.engine_errors(doing):
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

    def run_check(
        self, request: CheckRequest, log: LogSink, cancel: threading.Event
    ) -> CheckOutcome:
        """Run one check in a fresh container (``backends.checks``); always removed."""
        return run_check(self, request, log, cancel)

    def remove_check_containers(self, run_id: str) -> list[str]:
        """Force-remove the containers of the checks of run ``run_id``."""
        return remove_check_containers(self, run_id)

    def fingerprinted_images(self) -> dict[str, list[LocalImage]]:
        """Every local image with a fingerprint label, by fingerprint, in one API call.

        A no-op run asks this once instead of once per image.
        """
        from urllib.parse import quote

        filters = quote(json.dumps({"label": [FINGERPRINT_LABEL]}), safe="")
        body = self._local_get(f"/images/json?filters={filters}", self.timeout)
        try:
            images = json.loads(body) if body is not None else None
        except ValueError:
            images = None
        if not isinstance(images, list):
            with self.engine_errors():
                images = self.api.images(filters={"label": FINGERPRINT_LABEL})
        found: dict[str, list[LocalImage]] = {}
        for image in sorted(images, key=lambda i: i.get("Created", 0), reverse=True):
            fingerprint = (image.get("Labels") or {}).get(FINGERPRINT_LABEL)
            if fingerprint:
                tags = tuple(t for t in image.get("RepoTags") or () if t != "<none>:<none>")
                found.setdefault(fingerprint, []).append(LocalImage(str(image["Id"]), tags))
        return found

    # -- helpers -----------------------------------------------------------------------

    def pinned_dockerfile(self, request: BuildRequest, log: LogSink) -> tuple[bytes, str | None]:
        """The Dockerfile to send, every pinned reference naming its exact image, or an error.

        Each pin's image gets a tag named after its own id (``exact_reference``), and
        the Dockerfile sent names that tag instead of the reference it writes. Retagging
        the written name (``base:latest``) instead would leave a window in which another
        run on the same engine (another checkout of the stack) retags it to its own
        parent. Image ids cannot be used directly: BuildKit reads ``FROM sha256:...`` as a
        Docker Hub name. A digest reference names one image already and stays.
        """
        if not request.pins:  # a root image: no need to import the SDK (~100 ms) for nothing
            return request.dockerfile_bytes, None
        import docker.errors

        exact: dict[str, str] = {}
        for ref, source in sorted(request.pins.items()):
            if split_reference(ref)[2]:
                log(f"pin {ref}: a digest reference names one image already; nothing to tag")
                continue
            image_id = source if source.startswith("sha256:") else self.image_id(source)
            target = exact_reference(ref, image_id) if image_id else ""
            try:
                if not image_id:
                    raise docker.errors.NotFound(source)
                self.tag(image_id, target)
            except docker.errors.NotFound:
                return b"", (
                    f"cannot pin {ref} to {source}: no such image on the engine at {self.name}"
                )
            except docker.errors.APIError as e:
                return b"", f"cannot pin {ref} to {source}: {e.explanation or e}"
            exact[ref] = target
            log(f"pinned {ref} -> {source} as {target}")
        text = request.dockerfile_bytes.decode("utf-8", "surrogateescape")
        pinned = pin_references(text, exact, request.build_args)
        return pinned.encode("utf-8", "surrogateescape"), None

    def cache_sources(
        self, request: BuildRequest, log: LogSink, pull: bool, cancel: threading.Event
    ) -> tuple[list[str], list[str]]:
        """The ``cache_from`` images the build can use, and one warning per registry that
        cannot be reached (the build goes on without its cache; it is asked once per run).

        ``pull``: the classic builder takes cache only from local images, so each is
        pulled first (best effort); BuildKit fetches cache itself: the tag is only looked
        up. A tag the registry does not have yet (the first build) is no warning.
        """
        usable: list[str] = []
        warnings: list[str] = []
        if request.no_cache:
            return usable, warnings
        for ref in request.cache_from:
            host = registry_host(ref)
            if host in self._cache_unreachable:
                log(f"cache_from {ref}: skipped, {host} failed earlier in this run")
                continue
            try:
                if pull:
                    log(f"cache_from {ref}: pulling")
                    self.pull(ref, log, cancel)
                elif not self.has_tag(ref):
                    raise RegistryNotFound(ref)
            except RegistryNotFound:
                log(f"cache_from {ref}: not in the registry (yet): nothing to reuse")
                continue
            except RegistryError as e:
                self._cache_unreachable[host] = str(e)
                message = f"cache_from {ref} cannot be used ({e}); building without it"
                log(f"warning: {message}")
                warnings.append(message)
                continue
            usable.append(ref)
        return usable, warnings

    def tag(self, image: str, ref: str) -> None:
        """Tag ``image`` (id or reference) as ``ref`` ("repo[:tag]", tag defaults to latest)."""
        repo, tag, digest = split_reference(ref)
        if digest:
            raise ValueError(f"cannot tag an image as a digest reference: {ref}")
        with self.engine_errors():
            self.api.tag(image, repo, tag or "latest")

    def remove_images(self, refs_or_ids: Iterable[str]) -> list[str]:
        """Force-remove images (already gone: skipped); returns the ones removed."""
        import docker.errors

        removed = []
        for ref in refs_or_ids:
            try:
                with self.engine_errors():
                    self.api.remove_image(ref, force=True)
            except docker.errors.NotFound:
                continue
            removed.append(ref)
        return removed

    def inspect(self, ref: str) -> dict[str, Any] | None:
        """The engine's inspect record of the local image ``ref`` (a reference,
        ``repo@digest`` or an id), None when there is no such image: the one lookup
        that ``image_id``, ``image_labels`` and ``local_digest`` read."""
        import docker.errors

        try:
            with self.engine_errors():
                return dict(self.api.inspect_image(ref))
        except docker.errors.NotFound:
            return None

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """Labels of a local image ({} when it has none), None when there is no such image."""
        info = self.inspect(ref)
        return None if info is None else dict((info.get("Config") or {}).get("Labels") or {})

    def image_id(self, ref: str) -> str | None:
        """Id of the local image ``ref`` (a reference, ``repo@digest`` or an id), else None."""
        info = self.inspect(ref)
        return None if info is None else str(info["Id"])

    def local_digest(self, ref: str) -> str | None:
        """What ``ref`` names on this engine: its registry digest in ``ref``'s repository
        (RepoDigests) when it came from or went to a registry, else its image id (an image
        that exists only here); None when the engine has no such image."""
        info = self.inspect(ref)
        if info is None:
            return None
        wanted = repository_of(ref)
        for repo_digest in info.get("RepoDigests") or ():
            repository, _, digest = repo_digest.partition("@")
            if digest and repository_of(repository) == wanted:
                return digest
        return str(info["Id"])

    def image_layers(self, ref: str) -> ImageLayers | None:
        """Inspect's ``RootFS.Layers`` and ``Size``, each layer's bytes and instruction
        from ``docker history`` (paired by ``layers_from_history``)."""
        import docker.errors

        info = self.inspect(ref)
        if info is None:
            return None
        try:
            with self.engine_errors():
                history = self.api.history(str(info["Id"]))
        except docker.errors.NotFound:
            return None
        diff_ids = [str(d) for d in (info.get("RootFS") or {}).get("Layers") or ()]
        return ImageLayers(
            str(info["Id"]), int(info.get("Size") or 0), layers_from_history(diff_ids, history)
        )

    # -- registries (push, pull, digests) ----------------------------------------------
    # Registry failures become the RegistryError family of stackbuild.errors (auth
    # refused, not found, unavailable = worth retrying); a vanished engine stays
    # EngineUnreachable.

    def registry_digest(self, ref: str) -> str:
        """The digest ``ref`` has in its registry, asked through the engine; pulls nothing.

        For a multi-platform image this is the index digest, as ``docker pull`` records
        it. The SDK sends the credentials of ~/.docker/config.json (and credential
        helpers) for ``ref``'s registry, as for push and pull.
        """
        import docker.errors

        try:
            with self.engine_errors(f"asking the registry about {ref}"):
                data = self.api.inspect_distribution(ref)
        except docker.errors.APIError as e:
            raise registry_error(str(e.explanation or e), ref, "look up") from e
        return str(data["Descriptor"]["digest"])

    def has_tag(self, ref: str) -> bool:
        """Whether ``ref``'s registry has this tag (a registry that fails to answer raises)."""
        try:
            self.registry_digest(ref)
        except RegistryNotFound:
            return False
        return True

    def registry_manifest(self, ref: str) -> tuple[bytes, str, str | None]:
        """``ref``'s manifest, fetched from its registry directly (``manifests``)."""
        return fetch_manifest(ref)

    def registry_retag(self, source: str, tag: str) -> str:
        """Re-point ``tag`` at ``source``'s manifest, straight in the registry (``manifests``)."""
        return retag_manifest(source, tag)

    def registry_config(self, ref: str, timeout: float) -> Mapping[str, Any]:
        """``ref``'s image config, fetched from its registry directly (``manifests``)."""
        return fetch_config(ref, timeout)
    def put_index(self, ref: str, body: bytes, media_type: str) -> str:
        """An image index put by stackbuild itself (``manifests``): the engine cannot."""
        return put_manifest(ref, body, media_type)

    def _registry_stream(
        self, path: str, ref: str, params: Mapping[str, Any], log: LogSink,
        cancel: threading.Event | None, doing: str,
    ) -> Iterator[dict[str, Any]]:
        """``_stream`` with ``ref``'s registry credentials, registry errors mapped."""
        from docker import auth

        registry, _ = auth.resolve_repository_name(ref)
        with self.engine_errors():
            header = auth.get_config_header(self.api, registry)
        # always send the header: without one, some engines refuse with "missing X-Registry-Auth"
        headers = {"X-Registry-Auth": header or auth.encode_header({})}
        try:
            for record in self.stream(
                path, params=params, headers=headers, cancel=cancel, doing=f"{doing} {ref}"
            ):
                if "status" in record:
                    log_status(record, log)
                yield record
        except StreamError as e:
            log(f"ERROR: {e}")
            raise registry_error(str(e), ref, doing) from e

    def push(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        """Push one tag (``repo:tag``) and return the manifest digest the registry stored.

        The engine reports a failed push as an error record in a stream that otherwise
        looks fine, so the whole stream is read: an error record raises RegistryError,
        and a stream that ends without the registry's digest is a failure too.
        """
        repository, tag, digest = split_reference(ref)
        if digest or not tag:
            raise ValueError(f"push needs a tag reference (repo:tag), not {ref}")
        pushed: str | None = None
        for record in self._registry_stream(
            f"/images/{repository}/push", ref, {"tag": tag}, log, cancel, "push"
        ):
            aux = record.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                pushed = str(aux["Digest"])
        if pushed is None:
            raise RegistryError(f"the engine ended the push of {ref} without a digest")
        return pushed

    def pull(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        """Pull ``ref`` (``repo:tag`` or ``repo@sha256:...``); the local image id."""
        repository, tag, digest = split_reference(ref)
        params = {"fromImage": repository, "tag": digest or tag or "latest"}
        for _record in self._registry_stream("/images/create", ref, params, log, cancel, "pull"):
            pass
        image_id = self.image_id(ref)
        if image_id is None:
            raise RegistryError(f"the engine reported pulling {ref} but has no such image")
        return image_id

    # -- attestations (provenance, SBOM) ----------------------------------------------

    def engine_version(self) -> str:
        """The engine's version and commit ("20.10.24+dfsg1 297e128"), asked once per
        connection: over a local socket without loading the SDK where it can (the
        BuildKit client cache keys on it at start-up), else through the SDK."""
        if self._version is None:
            body = self._local_get("/version", PING_TIMEOUT)
            try:
                info = json.loads(body) if body is not None else None
            except ValueError:
                info = None
            if not isinstance(info, dict) or not info.get("Version"):
                with self.engine_errors():
                    info = self.api.version()
            self._version = f"{info.get('Version', 'unknown')} {info.get('GitCommit', '')}".strip()
        return self._version

    def read_image_files(self, ref: str, paths: Iterable[str],
                         wanted: Callable[[str], bool]) -> dict[str, bytes]:
        """Files of ``ref``'s filesystem, from a container created (never started): each
        of ``paths`` is asked for on its own, in parallel (a missing one costs one quick
        404), a directory streamed and only its ``wanted`` files kept."""
        import docker.errors

        with self.engine_errors("reading an image's files"):
            # a command it never runs: an image with neither CMD nor ENTRYPOINT needs one
            container = self.api.create_container(ref, command=["stackbuild-read-only"],
                                                  labels={"stackbuild.reading": ref})
        found: dict[str, bytes] = {}
        try:
            with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
                for files in pool.map(
                    lambda path: self._archive_files(container["Id"], path, wanted), paths
                ):
                    found.update(files)
        finally:
            with contextlib.suppress(docker.errors.APIError), self.engine_errors():
                self.api.remove_container(container["Id"], force=True)
        return found

    def _archive_files(self, container: str, path: str,
                       wanted: Callable[[str], bool]) -> dict[str, bytes]:
        """The ``wanted`` regular files at or under ``path`` of a container ({} if none)."""
        import tarfile

        import docker.errors

        found: dict[str, bytes] = {}
        parent = path.strip("/").rpartition("/")[0]
        try:
            with self.engine_errors("reading an image's files"):
                stream, _stat = self.api.get_archive(container, "/" + path.strip("/"))
                reader = cast("IO[bytes]", _ChunkReader(stream))  # tarfile reads only read()
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    for member in tar:
                        # members are named from the path's last part: put its parent back
                        name = f"{parent}/{member.name}" if parent else member.name
                        if member.isreg() and wanted(name):
                            extracted = tar.extractfile(member)
                            if extracted is not None:
                                found[name] = extracted.read()
                        elif member.issym() and wanted(name):
                            found[name] = b"symlink:" + member.linkname.encode()
        except docker.errors.NotFound:
            return {}
        except (tarfile.TarError, docker.errors.APIError) as e:
            raise StackbuildError(f"cannot read {path} of an image: {e}") from e
        return found

    def attach(self, subject_ref: str, attachment: Attachment) -> str:
        """Push ``attachment`` as an OCI artifact with ``subject_ref`` as its subject."""
        import time

        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return artifacts.attach(subject_ref, attachment, created)

    def fetch_attachment(self, subject_ref: str, artifact_type: str,
                         tag_suffix: str) -> bytes | None:
        """The document of ``artifact_type`` attached to ``subject_ref`` in its registry."""
        return artifacts.fetch_attachment(subject_ref, artifact_type, tag_suffix)

    def registry_labels(self, ref: str) -> dict[str, str] | None:
        """The labels of ``ref``'s image config, read from its registry."""
        return artifacts.registry_labels(ref)

    def save(self, refs: Iterable[str], fileobj: ByteWriter) -> None:
        """Write ``docker save`` of ``refs`` (every tag kept) as one tar into ``fileobj``."""
        import docker.errors

        with self.engine_errors("saving images"):
            api = self.api
            response = api._get(
                api._url("/images/get"), params={"names": list(refs)}, stream=True,
                timeout=(CONNECT_TIMEOUT, None),
            )
            try:
                api._raise_for_status(response)
                for chunk in response.iter_content(chunk_size=1 << 20):
                    fileobj.write(chunk)
            except docker.errors.APIError as e:
                raise StackbuildError(f"docker save failed: {e.explanation or e}") from e
            finally:
                response.close()

    def load(self, fileobj: IO[bytes], size: int, log: LogSink) -> list[str]:
        """``docker load`` a tar; returns what the engine says it loaded (references, ids)."""
        loaded = []
        headers = {"Content-Type": "application/x-tar"}
        try:
            for record in self.stream(
                "/images/load", params={"quiet": 0}, data=fileobj, size=size, headers=headers,
                doing="loading images",
            ):
                text = str(record.get("stream", "")).strip()
                if text:
                    log(text)
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix) :])
        except StreamError as e:
            raise StackbuildError(f"docker load failed: {e}") from e
        return loaded


class _ChunkReader:
    """A file object over an iterator of byte chunks (an archive of the engine), for tarfile."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        size = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


# DockerEngine is the Backend: a method of the contract missing or mistyped here is a type
# error on this line
_: type[Backend] = DockerEngine


def pull_allowed(request: BuildRequest, log: LogSink) -> bool:
    """Whether to pass ``pull`` on to the engine (says so in ``log`` when it is dropped)."""
    if request.pull and request.pins:
        # the engine would pull every FROM, replacing the pinned local parents (which
        # may exist nowhere else); the pins already name exact images
        log("not pulling: this image's FROM references are pinned to exact local images")
        return False
    return request.pull


def log_status(record: Mapping[str, Any], log: LogSink) -> None:
    # pull progress inside a build ("Downloading [==>  ]") would flood the log: keep
    # the milestones ("Pull complete", "Digest: ...") and drop the progress ticks
    detail = record.get("progressDetail") or {}
    if detail.get("current") is not None or record.get("progress"):
        return
    status = str(record.get("status", "")).strip()
    if status:
        log(f"{record['id']}: {status}" if record.get("id") else status)
