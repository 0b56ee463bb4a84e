"""Debian's ``docker-registry``, run by a test on 127.0.0.1 (plain helpers; fixtures are in
integration/conftest.py).

The engine treats registries on 127.0.0.0/8 as insecure, so plain HTTP works
without configuring the daemon. Storage lives in the given directory, so a
registry stopped mid-test comes back (``start`` again) with the same content
on the same port. With ``users``, the registry asks for htpasswd (bcrypt)
credentials: ``htpasswd`` (apache2-utils) or the ``bcrypt`` package writes them.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.daemons import start_daemon, stop_daemon

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 15.0  # s


class RegistryUnavailable(Exception):
    """docker-registry (or a way to hash htpasswd passwords) is not installed."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bcrypt_hash(password: str) -> str:
    """An htpasswd-ready bcrypt hash, from ``htpasswd -B`` or the bcrypt package."""
    if shutil.which("htpasswd"):
        out = subprocess.run(
            ["htpasswd", "-nbB", "user", password], capture_output=True, text=True, check=True
        ).stdout
        return out.strip().partition(":")[2]
    try:
        import bcrypt
    except ImportError:
        raise RegistryUnavailable(
            "htpasswd auth needs `htpasswd` (apache2-utils) or the bcrypt package"
        ) from None
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


class LocalRegistry:
    """One docker-registry process on 127.0.0.1:<free port>; ``close`` removes its data."""

    def __init__(self, directory: Path, users: Mapping[str, str] | None = None) -> None:
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise RegistryUnavailable(
                f"{REGISTRY_BINARY} is not installed (Debian: apt-get install docker-registry)"
            )
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = self.directory / "registry.log"
        self.config = self.directory / "config.yml"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.directory / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.address, "secret": "stackbuild-tests"},
        }
        if self.users:
            htpasswd = self.directory / "htpasswd"
            htpasswd.write_text(
                "".join(f"{user}:{bcrypt_hash(pw)}\n" for user, pw in self.users.items())
            )
            config["auth"] = {"htpasswd": {"realm": "stackbuild-tests", "path": str(htpasswd)}}
        # JSON is YAML: no need for a YAML writer here
        self.config.write_text(json.dumps(config, indent=2))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart) the registry and wait until it answers on /v2/."""
        if self.running:
            return
        self._process = start_daemon(
            [self.binary, "serve", str(self.config)], self.log_path,
            lambda: self._status("/v2/") in (200, 401),
            f"docker-registry on {self.address}", START_TIMEOUT, poll=0.05,
        )

    def stop(self) -> None:
        """Stop the registry (its data stays, for ``start``)."""
        process, self._process = self._process, None
        stop_daemon(process, timeout=10)

    def close(self) -> None:
        """Stop and delete everything pushed to it."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- looking inside, as a test would with curl ---------------------------------

    def _request(self, path: str, method: str = "GET") -> urllib.request.Request:
        request = urllib.request.Request(f"http://{self.address}{path}", method=method)
        request.add_header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json",
        )
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return request

    def _status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self._request(path), timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def tags(self, repository: str, attachments: bool = False) -> list[str]:
        """The tags of ``repository`` (without the address); [] when there is none.
        The ``sha256-<hex>.att``/``.sbom`` tags of attached documents only with
        ``attachments``: they name no image."""
        try:
            request = self._request(f"/v2/{repository}/tags/list")
            with urllib.request.urlopen(request, timeout=5) as response:
                tags = sorted(json.load(response).get("tags") or [])
                return tags if attachments else [
                    t for t in tags if not (t.startswith("sha256-") and "." in t)]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise

    def digest(self, repository: str, tag: str) -> str | None:
        """The manifest digest of ``repository:tag``, None when the tag does not exist."""
        try:
            request = self._request(f"/v2/{repository}/manifests/{tag}", method="HEAD")
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def docker_config(self, directory: Path, user: str, password: str) -> Path:
        """A Docker config dir (for DOCKER_CONFIG) holding these credentials for this registry."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        (directory / "config.json").write_text(
            json.dumps({"auths": {self.address: {"auth": token}}})
        )
        return directory
