"""What the benchmarks need from the Docker engine, without the docker SDK.

A few raw API calls over the unix socket (build a tar, list, remove), the
``docker build`` CLI baselines, and the clean-up that removes every image a
benchmark run created: tagged with the run's prefix, labelled with its run
label, recorded from a build, or descended (``ParentId`` chain) from the
run's own base image, which is built ``--no-cache`` so no one else shares it.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

DOCKER_CLI = "/usr/bin/docker"  # the client that matches the 20.10 engine
SOCKET = "/var/run/docker.sock"
RUN_LABEL = "sbbench.run"


class EngineError(RuntimeError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 600) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Engine:
    """Raw Docker engine API calls; one short-lived connection per call."""

    def __init__(self, path: str = SOCKET) -> None:
        self.path = path

    def _call(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = _UnixConnection(self.path)
        try:
            conn.request(method, url, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def version(self) -> dict:
        status, data = self._call("GET", "/version")
        if status != 200:
            raise EngineError(f"GET /version: HTTP {status}")
        return json.loads(data)

    def images(self) -> list[dict]:
        status, data = self._call("GET", "/images/json?all=1")
        if status != 200:
            raise EngineError(f"GET /images/json: HTTP {status}")
        return json.loads(data)

    def remove(self, ref: str, force: bool = True) -> bool:
        quoted = urllib.parse.quote(ref, safe="")
        status, _ = self._call("DELETE", f"/images/{quoted}?force={int(force)}")
        return status == 200

    def build(self, files: Mapping[str, bytes], params: Mapping[str, str | int]) -> str:
        """Build a context given as {path: content}; return the image id."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 946684800
                tar.addfile(info, io.BytesIO(data))
        query = urllib.parse.urlencode(dict(params))
        status, data = self._call(
            "POST", f"/build?{query}", buf.getvalue(), {"Content-Type": "application/x-tar"}
        )
        image_id = None
        for line in data.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if "error" in record:
                raise EngineError(f"build failed: {record['error']}")
            aux = record.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
        if status != 200 or not image_id:
            raise EngineError(f"build failed: HTTP {status}: {data[-300:]!r}")
        return image_id


def docker_env() -> dict[str, str]:
    """The classic builder for the CLI too, so both sides build the same way."""
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0"
    return env


def docker_build(
    context: Path, tag: str, *, no_cache: bool = False, env: Mapping[str, str] | None = None
) -> tuple[float, str]:
    """``docker build -q -t TAG CONTEXT``; returns (seconds, image id)."""
    cmd = [DOCKER_CLI, "build", "-q", "-t", tag]
    if no_cache:
        cmd.append("--no-cache")
    cmd.append(str(context))
    started = time.perf_counter()
    out = subprocess.run(cmd, env=dict(env or docker_env()), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise EngineError(f"docker build {context} failed: {out.stderr.strip()[-500:]}")
    return elapsed, out.stdout.strip()


class Cleanup:
    """Everything a benchmark run created, removed at the end (also after Ctrl-C)."""

    def __init__(self, engine: Engine, prefix: str, run_label: str) -> None:
        self.engine = engine
        self.prefix = prefix
        self.run_label = run_label
        self.roots: set[str] = set()  # our base images: whatever descends from them is ours
        self.ids: set[str] = set()

    def record(self, image_ids: Iterable[str]) -> None:
        self.ids.update(i for i in image_ids if i)

    def ours(self) -> tuple[list[str], list[str]]:
        """(our tags, our image ids ordered children first)."""
        images = self.engine.images()
        by_id = {i["Id"]: i for i in images}
        mine: set[str] = set()
        tags: list[str] = []
        for image in images:
            labels = image.get("Labels") or {}
            repo_tags = [t for t in image.get("RepoTags") or () if t != "<none>:<none>"]
            own_tags = [t for t in repo_tags if t.startswith(self.prefix)]
            tags += own_tags
            if (
                labels.get(RUN_LABEL) == self.run_label
                or image["Id"] in self.ids
                or image["Id"] in self.roots
                or (own_tags and len(own_tags) == len(repo_tags))
            ):
                mine.add(image["Id"])
        depth: dict[str, int] = {}

        def depth_of(image_id: str) -> int:  # steps to the top of its ParentId chain
            chain = []
            current: str | None = image_id
            while current and current in by_id and current not in depth:
                chain.append(current)
                current = by_id[current].get("ParentId") or None
            d = depth.get(current, -1) if current else -1
            for node in reversed(chain):
                d += 1
                depth[node] = d
            return depth[image_id]

        def descends_from_ours(image_id: str) -> bool:
            current: str | None = image_id
            while current and current in by_id:
                if current in mine or current in self.roots:
                    return True
                current = by_id[current].get("ParentId") or None
            return False

        mine |= {i["Id"] for i in images if descends_from_ours(i["Id"])}
        # an image someone else also tagged keeps living: we only drop our tags from it
        shared = {
            i["Id"]
            for i in images
            if any(not t.startswith(self.prefix) for t in i.get("RepoTags") or ()
                   if t != "<none>:<none>")
        }
        ordered = sorted(mine - shared, key=lambda i: (-depth_of(i), -by_id[i]["Created"]))
        return tags, ordered

    def run(self) -> int:
        """Remove our tags and images; returns how many images are gone (roughly)."""
        before = len(self.engine.images())
        for _attempt in range(3):
            tags, ids = self.ours()
            if not tags and not ids:
                break
            for tag in tags:
                self.engine.remove(tag, force=False)
            for image_id in ids:
                self.engine.remove(image_id, force=True)
        return before - len(self.engine.images())  # others may build meanwhile: about
