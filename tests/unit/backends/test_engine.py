"""DockerEngine's transport, against a stand-in engine on a unix socket (no Docker here):
what it asks the engine, not what the engine does (tests/integration/test_backends.py)."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackbuild.backends import open_backend
from stackbuild.backends.engine import DockerEngine


class _Engine(http.server.BaseHTTPRequestHandler):
    """Answers like dockerd 20.10 would, and remembers every request line."""

    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        if self.path.endswith("/_ping"):
            body = b"OK"
            self.send_response(200)
            self.send_header("Api-Version", "1.41")
            self.send_header("Content-Type", "text/plain")
        elif self.path.endswith("/version"):
            body = b'{"ApiVersion": "1.41", "Version": "20.10.24"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Engine,), {"seen": seen})
    path = tmp_path / "docker.sock"

    class Server(_UnixServer):
        def get_request(self):  # unix sockets have no peer address; http.server wants one
            request, _ = super().get_request()
            return request, ("local", 0)

    server = Server(str(path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_sdk_client_speaks_the_api_version_the_ping_named(
    engine_socket: tuple[str, list[str]],
) -> None:
    # every build run pings first; asking /version again would cost a round trip per run
    url, seen = engine_socket
    engine = open_backend("docker", url)
    assert isinstance(engine, DockerEngine)
    engine.ping()
    client = engine.api
    assert client.api_version == "1.41"
    assert not any(path.endswith("/version") for path in seen), seen


def test_without_a_ping_the_client_asks_the_engine_its_version(
    engine_socket: tuple[str, list[str]],
) -> None:
    url, seen = engine_socket
    engine = open_backend("docker", url)
    assert isinstance(engine, DockerEngine)
    assert engine.api.api_version == "1.41"
    assert any(path.endswith("/version") for path in seen), seen
