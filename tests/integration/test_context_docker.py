"""The context as Docker sees it.

Two oracles:

- a real engine: our tar is built with ``COPY . /ctx`` and a busybox in the image
  lists /ctx with modes, sha256 and link targets, which must equal what
  ``image_inputs`` hashed (plus the directories the engine creates for
  re-included children of an excluded directory);
- the docker CLI itself (>= 25, classic builder): pointed at a fake engine on a
  unix socket, it hands over the context tar it would send; its entries must
  equal ``context_files``, for hand-picked and for random ``.dockerignore``s.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import shutil
import socketserver
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from stackbuild.context import (
    EXTERNAL_DOCKERFILE,
    context_files,
    dockerfile_name_in_context,
    write_context_tar,
)
from stackbuild.fingerprint import HashCache, image_inputs
from stackbuild.manifest import ImageSpec
from tests.helpers import TEST_LABEL, busybox_rootfs

# --------------------------------------------------------------------------- real engine

LIST_CTX = r"""cd /ctx && find . ! -name . | while IFS= read -r p; do
  if [ -L "$p" ]; then echo "${p#./}|l:$(readlink "$p")"
  elif [ -d "$p" ]; then echo "${p#./}|d$(stat -c %a "$p")"
  else echo "${p#./}|f$(stat -c %a "$p"):$(sha256sum "$p" | cut -d' ' -f1)"; fi
done"""


def _spec(context: Path, dockerfile: Path) -> ImageSpec:
    return ImageSpec(
        name="ctx",
        context=context,
        dockerfile=dockerfile,
        context_rel=context.name,
        dockerfile_rel=dockerfile.name,
    )


def _build_and_list(client: Any, unique: str, context: Path, dockerfile: Path) -> dict[str, str]:
    """Build ``context`` from our own tar; /ctx of the image as ``image_inputs`` file entries."""
    spec = _spec(context, dockerfile)
    files = context_files(context, dockerfile)
    name = dockerfile_name_in_context(spec)
    tar = io.BytesIO()
    write_context_tar(files, dockerfile.read_bytes(), name, tar)
    tar.seek(0)
    tag = f"{unique}-ctx:latest"
    for record in client.api.build(
        fileobj=tar,
        custom_context=True,
        dockerfile=name,
        tag=tag,
        labels={TEST_LABEL: unique},
        rm=True,
        forcerm=True,
        decode=True,
    ):
        assert "error" not in record, record
    out = client.containers.run(tag, ["sh", "-c", LIST_CTX], name=f"{unique}-ls", remove=True)
    return dict(line.split("|", 1) for line in out.decode().splitlines())


def _tree(root: Path) -> Path:
    busybox_rootfs(root)  # root/rootfs: COPY rootfs/ / gives the image a shell
    (root / "app").mkdir()
    (root / "app" / "main.sh").write_text("echo hi\n")
    (root / "app" / "main.sh").chmod(0o750)
    (root / "app" / "conf.d").mkdir(mode=0o700)
    (root / "app" / "conf.d" / "a b.conf").write_text("x=1\n")
    (root / "app" / "latest").symlink_to("main.sh")
    (root / "dangling").symlink_to("../nowhere")
    (root / "logs").mkdir()
    (root / "logs" / "x.log").write_text("log\n")
    (root / "vendor" / "keep").mkdir(parents=True)
    (root / "vendor" / "keep" / "this.txt").write_text("kept\n")
    (root / "vendor" / "keep" / "not.txt").write_text("dropped\n")
    (root / "vendor" / "big.bin").write_bytes(os.urandom(1 << 20))
    (root / "notes.tmp").write_text("tmp\n")
    (root / ".dockerignore").write_text("**/*.log\n*.tmp\n/vendor\n!vendor/keep/this.txt\n")
    return root


def _expected(context: Path, dockerfile: Path) -> dict[str, str]:
    files = context_files(context, dockerfile)
    spec = _spec(context, dockerfile)
    inputs = image_inputs(spec, spec.dockerfile.read_bytes(), files, {}, {}, HashCache())
    expected = dict(inputs.files)
    for path in list(expected):  # parents the engine creates for re-included children
        parts = path.split("/")
        for i in range(1, len(parts)):
            expected.setdefault("/".join(parts[:i]), "d755")
    return expected


@pytest.mark.docker
def test_copy_dot_holds_exactly_what_was_listed_and_hashed(
    docker_client: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    context = _tree(tmp_path / "ctx")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text('FROM scratch\nCOPY rootfs/ /\nCOPY . /ctx\nCMD ["sh"]\n')
    seen = _build_and_list(docker_client, unique, context, dockerfile)
    assert seen == _expected(context, dockerfile)
    assert "vendor/keep/this.txt" in seen and "vendor/big.bin" not in seen
    assert seen["app/main.sh"].startswith("f750:") and seen["app/conf.d"] == "d700"


@pytest.mark.docker
def test_an_outside_dockerfile_is_not_in_copy_dot(
    docker_client: Any, unique: str, cleanup_images: set[str], tmp_path: Path
) -> None:
    context = _tree(tmp_path / "ctx")
    (context / ".dockerignore").unlink()
    dockerfile = tmp_path / "Dockerfile.outside"
    dockerfile.write_text('FROM scratch\nCOPY rootfs/ /\nCOPY . /ctx\nCMD ["sh"]\n')
    seen = _build_and_list(docker_client, unique, context, dockerfile)
    assert EXTERNAL_DOCKERFILE not in seen and ".dockerignore" not in seen
    assert seen == _expected(context, dockerfile)


# --------------------------------------------------------------------------- the docker CLI


def _modern_docker_cli() -> str | None:
    """A docker CLI whose classic builder uses today's moby/patternmatcher (>= 25)."""
    for candidate in (shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        version = re.search(r"version (\d+)\.", out)
        if version and int(version.group(1)) >= 25:
            return candidate
    return None


class _FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers /_ping and keeps the body of POST /build: the context tar the CLI sent."""

    daemon_threads = True
    body: bytes = b""

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FakeEngine

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Api-Version", "1.41")
        self.send_header("Ostype", "linux")
        self.send_header("Builder-Version", "1")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._reply(b"")

    def do_GET(self) -> None:
        self._reply(b"OK" if "_ping" in self.path else b"{}")

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            self.server.body = b"".join(chunks)
        else:
            self.server.body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply(b'{"stream":"ok\\n"}\n', "application/json")


@pytest.fixture(scope="module")
def cli_context() -> Iterator[Any]:
    """``send(context, dockerfile)``: the CLI's context entries, or "ERROR" if it refused."""
    cli = _modern_docker_cli()
    if cli is None:
        pytest.skip("no docker CLI >= 25 to compare with")
    home = tempfile.mkdtemp(prefix="sbcli")  # short: unix socket paths are limited
    server = _FakeEngine(os.path.join(home, "engine.sock"), _Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()  # fmt: skip  # shutdown() waits one interval
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        "DOCKER_CONFIG": home,
        "DOCKER_HOST": f"unix://{home}/engine.sock",
        "DOCKER_BUILDKIT": "0",  # the classic builder: the CLI itself makes the tar
    }

    def send(context: Path, dockerfile: Path) -> list[tuple[str, str]] | str:
        server.body = b""
        done = subprocess.run(
            [cli, "build", "-q", "-f", str(dockerfile), str(context)],
            env=env,
            capture_output=True,
            timeout=60,
        )
        if done.returncode:
            return "ERROR"
        with tarfile.open(fileobj=io.BytesIO(server.body)) as tar:
            return sorted(
                (m.name.rstrip("/"), "d" if m.isdir() else "l" if m.issym() else "f")
                for m in tar.getmembers()
            )

    yield send
    server.shutdown()
    server.server_close()
    shutil.rmtree(home, ignore_errors=True)


def _ours(context: Path, dockerfile: Path) -> list[tuple[str, str]] | str:
    try:
        return [(f.path, f.kind) for f in context_files(context, dockerfile)]
    except Exception:  # any refusal counts as "ERROR", like the CLI's
        return "ERROR"


TREE = {
    "a": {"b": {"c.txt": "", "d.log": ""}, "keep.log": "", "x": ""},
    "b": {"a": ""},
    "build": {"out": {"bin": ""}},
    "docs": {"README.md": "", "api.md": ""},
    "A.TXT": "",
    "a.txt": "",
    "a+b": "",
    "p|q": "",
    "star*": "",
    "vendor": {"keep": {"this": "", "not": ""}, "drop": ""},
}

CASES = [
    "*\n!a\n",
    "**/*.log\n!a/keep.log\n",
    "a/**\n!a/b/c.txt\n",
    "build\n!build/out/bin\n",
    "vendor\n!vendor/keep/this\n",
    "vendor\n!*/keep\n",
    "/a\n./b\ndocs/\n",
    "*.md\n!README.md\n",
    "**/README.md\n",
    "[^a]*\n",
    "[!a]*\n",
    "star\\*\n",
    "*.TXT\n",
    "a?b\n",
    "[a-c]\n!b/a\n",
    "a*\n!a/b\na/b/c.txt\n",
    "**\n!docs\n",
    "**foo\n**b\n",
    "[p]|x\n",  # a regexp alternation in Docker, see stackbuild.context
    "Dockerfile\n.dockerignore\n",
    "# comment\n\n  a  \n",
    "!\n",
    "[a-\n",
]


def _write(root: Path, tree: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, value in tree.items():
        if isinstance(value, dict):
            _write(root / name, value)
        else:
            (root / name).write_text(value)


@pytest.mark.parametrize("ignore", CASES)
def test_same_entries_as_the_docker_cli(cli_context: Any, tmp_path: Path, ignore: str) -> None:
    _write(tmp_path, TREE)
    (tmp_path / "link").symlink_to("a")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text(ignore)
    dockerfile = tmp_path / "Dockerfile"
    assert _ours(tmp_path, dockerfile) == cli_context(tmp_path, dockerfile)


def test_same_entries_as_the_docker_cli_for_random_dockerignores(
    cli_context: Any, tmp_path: Path
) -> None:
    names = ["a", "b", "ab", "a.b", "x", "Foo", "c d", "[a]", "a-b", "é", "dd", "a$"]
    parts = ["a", "b", "*", "?", "**", "[ab]", "[^a]", "a*", "*b", "a.b", "\\*", "[a-c]*"]
    parts += ["dd", "x", "Foo", "c d", "a|b", "(a)", "a+b", "..", ".", "[", "[]a]", "[z-a]"]
    rng = random.Random(20240601)

    def tree(root: Path, depth: int) -> None:
        for _ in range(rng.randint(1, 4)):
            path = root / rng.choice(names)
            if os.path.lexists(path):
                continue
            roll = rng.random()
            if roll < 0.35 and depth < 3:
                path.mkdir()
                tree(path, depth + 1)
            elif roll < 0.42:
                path.symlink_to(rng.choice(["a", "../x", "nowhere"]))
            else:
                path.write_text(path.name)

    mismatches = []
    for case in range(120):
        root = tmp_path / str(case)
        root.mkdir()
        tree(root, 0)
        dockerfile = root / "Dockerfile"
        if rng.random() < 0.3:
            (root / "df").mkdir(exist_ok=True)
            dockerfile = root / "df" / "Dockerfile"
        dockerfile.write_text("FROM scratch\n")
        patterns = []
        for _ in range(rng.randint(1, 5)):
            pattern = "/".join(rng.choice(parts) for _ in range(rng.randint(1, 3)))
            patterns.append(("!" if rng.random() < 0.3 else "") + pattern)
        (root / ".dockerignore").write_text("\n".join(patterns) + "\n")
        ours, theirs = _ours(root, dockerfile), cli_context(root, dockerfile)
        rel = (dockerfile.relative_to(root).as_posix(), "f")
        if isinstance(theirs, list) and rel not in theirs and isinstance(ours, list):
            # the CLI's build-file check misses some "**" patterns and leaves the
            # Dockerfile out (an engine would refuse that build); we always send it
            ours.remove(rel)
        if ours != theirs:
            mismatches.append((patterns, ours, theirs))
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    assert not mismatches, mismatches[:3]
