"""A tiny registry (http.server on 127.0.0.1) that serves one image manifest for any tag or
digest and can lie about its digest in the ``Docker-Content-Digest`` header (plain helper)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
    "type": "layers", "diff_ids": []}}).encode()  # fmt: skip
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
               "size": len(CONFIG), "digest": CONFIG_DIGEST},
    "layers": [],
}, indent=3).encode()  # fmt: skip
TRUE_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
LIE = "sha256:" + "0" * 64


class LyingRegistry:
    """``address`` (127.0.0.1:port); ``lie`` decides the header; ``close()`` stops it."""

    def __init__(self, lie: bool = True) -> None:
        self.lie = lie
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, with_body: bool) -> None:
                registry.requests.append(f"{self.command} {self.path}")
                if self.path in ("/v2/", "/v2"):
                    body, kind, digest = b"{}", "application/json", None
                elif "/manifests/" in self.path:
                    body, kind = MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"
                    digest = LIE if registry.lie else TRUE_DIGEST
                elif self.path.endswith(f"/blobs/{CONFIG_DIGEST}"):
                    body, kind, digest = CONFIG, "application/octet-stream", CONFIG_DIGEST
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        # serve_forever looks for shutdown() every poll_interval (0.5 s by default):
        # every close() would wait that long
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
