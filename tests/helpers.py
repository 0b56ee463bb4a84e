"""Plain helpers for tests that build real images (no fixtures here; see integration/conftest).

No public registry is reachable, so every test image starts ``FROM scratch``
with a root filesystem made of Debian's static busybox.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stackbuild.backends.contract import FINGERPRINT_LABEL, IMAGE_LABEL, BuildRequest
from stackbuild.context import context_files

BUSYBOX = Path("/usr/bin/busybox")
# outside test data (BuildKit's parser tests, real Dockerfiles): shared/ beside the clone,
# as in CI; a worktree elsewhere names it
ORACLE = Path(
    os.environ.get("STACKBUILD_ORACLE_DATA")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "oracle-data"
)
TEST_LABEL = "stackbuild.test"  # value: the test's unique prefix; lets cleanup find dangling images

BASE_DOCKERFILE = 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n'

# used when `busybox --list` cannot run; enough for the tests and example images
# fmt: off
_FALLBACK_APPLETS = (
    "sh", "ash", "cat", "chmod", "cp", "echo", "env", "false", "find", "grep", "head",
    "httpd", "id", "ln", "ls", "mkdir", "mv", "printf", "ps", "pwd", "rm", "sed", "sleep",
    "sort", "tail", "test", "touch", "tr", "true", "uname", "wc", "wget", "which",
)
# fmt: on


@functools.cache
def busybox_applets() -> tuple[str, ...]:
    """Every applet the installed busybox offers (what ``busybox --install -s`` would link)."""
    try:
        out = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return _FALLBACK_APPLETS
    applets = tuple(sorted({a for a in out.split() if a and "/" not in a and a != "busybox"}))
    return applets or _FALLBACK_APPLETS


def busybox_rootfs(directory: Path) -> Path:
    """Write ``directory/rootfs``: bin/busybox, a relative symlink per applet, tmp, etc.

    Returns the rootfs path. Raises FileNotFoundError when busybox-static is missing
    (scripts/ensure-docker.sh installs it).
    """
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    rootfs = Path(directory) / "rootfs"
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUSYBOX, bin_dir / "busybox")
    (bin_dir / "busybox").chmod(0o755)
    for applet in busybox_applets():
        link = bin_dir / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    )
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    # A file of its own makes every rootfs layer distinct: tests share no layer,
    # so one test's cleanup can never delete a layer another test is building on.
    (etc / "stackbuild-test-id").write_text(uuid.uuid4().hex + "\n")
    return rootfs


def write_base_context(directory: Path, extra: str = "") -> Path:
    """A busybox base image context: Dockerfile (plus ``extra`` instructions) and rootfs."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    busybox_rootfs(directory)
    (directory / "Dockerfile").write_text(BASE_DOCKERFILE + extra)
    return directory


def fake_fingerprint(*parts: str) -> str:
    """A well-formed fingerprint; tests don't need the real hashing."""
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def make_request(
    directory: Path,
    repository: str,
    *,
    unique: str,
    tags: tuple[str, ...] | None = None,
    fingerprint: str | None = None,
    dockerfile: str = "Dockerfile",
    pins: Mapping[str, str] | None = None,
    **kwargs: object,
) -> BuildRequest:
    """A BuildRequest for the context in ``directory``, labelled for cleanup by ``unique``."""
    directory = Path(directory)
    fingerprint = fingerprint or fake_fingerprint(repository, unique, str(directory))
    return BuildRequest(
        image=repository.rsplit("/", 1)[-1],
        repository=repository,
        fingerprint=fingerprint,
        tags=tags if tags is not None else (f"{repository}:{fingerprint[7:19]}",),
        context_files=tuple(
            f for f in context_files(directory, directory / dockerfile) if f.path != dockerfile
        ),
        dockerfile_bytes=(directory / dockerfile).read_bytes(),
        dockerfile_name=dockerfile,
        labels={FINGERPRINT_LABEL: fingerprint, IMAGE_LABEL: repository.rsplit("/", 1)[-1],
                TEST_LABEL: unique},
        pins=dict(pins or {}),
        **kwargs,  # type: ignore[arg-type]
    )


def write_dockerfile(directory: Path, dockerfile: str) -> Path:
    """A context of just ``directory/Dockerfile`` holding ``dockerfile``; the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    return directory


def wait_until(predicate: Callable[[], Any], timeout: float) -> bool:
    """Poll ``predicate`` every 0.1 s for up to ``timeout`` seconds; whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def containers_mentioning(client: Any, marker: str, running_only: bool = False) -> list[dict]:
    """Containers whose command mentions ``marker`` (build steps echo it)."""
    return [
        c
        for c in client.api.containers(all=not running_only)
        if marker in str(c.get("Command", ""))
    ]


def buildkit_printed(lines: list[str], text: str) -> bool:
    """Whether a RUN step printed exactly ``text`` (BuildKit plain progress: "#7 0.123 text")."""
    return any(re.fullmatch(rf"#\d+ \d+\.\d+ {re.escape(text)}", line) for line in lines)


EXAMPLE_PARENTS = ("base", "httpd", "tools")  # the example's images others build on


def example_stack(root: Path, prefix: str) -> Path:
    """The repository's example stack (stack.yaml and images/) in ``root``, every image
    named ``<prefix>/<name>`` and labelled for cleanup; its stack.yaml."""
    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "images", root / "images", symlinks=True)
    busybox_rootfs(root / "images" / "base")  # its own layer: shared with no other test
    for dockerfile in (root / "images").glob("*/Dockerfile"):
        text = dockerfile.read_text()
        for name in EXAMPLE_PARENTS:
            text = re.sub(rf"(FROM\s+|--from=){name}\b", rf"\g<1>{prefix}/{name}", text)
        dockerfile.write_text(text)
    manifest = (repo / "stack.yaml").read_text()
    head, images = manifest.split("\nimages:\n")
    manifest = head + "\nimages:\n" + re.sub(r"(?m)^  ([a-z-]+):$", rf"  {prefix}/\1:", images)
    manifest = manifest.replace("  labels:\n", f"  labels:\n    {TEST_LABEL}: {prefix}\n", 1)
    (root / "stack.yaml").write_text(manifest)
    return root / "stack.yaml"


def fake_stack(root: Path, dockerfiles: Mapping[str, str], *, registry: str = "reg",
               each: tuple[str, ...] = (), extra: Mapping[str, tuple[str, ...]] | None = None,
               ) -> Path:  # fmt: skip
    """stack.yaml under ``root`` for the fake engine: one context per image (its
    Dockerfile and a file ``f`` holding its name), ``each`` line under every image and
    ``extra`` lines under one."""
    lines = ["version: 1", f"registry: {registry}", "images:"]
    for name, dockerfile in dockerfiles.items():
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text(dockerfile)
        (root / name / "f").write_text(name)
        lines += [f"  {name}:", f"    context: {name}"]
        lines += [f"    {line}" for line in (*each, *(extra or {}).get(name, ()))]
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root / "stack.yaml"


def run_importing(stack_file: Path, args: Sequence[str], modules: Sequence[str]
                  ) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Run ``stackbuild -f stack_file ARGS`` as the program (a fresh interpreter, as a user
    runs it); which of ``modules`` (each with its submodules) it had imported at its end,
    and the finished process."""
    code = (
        "import atexit, json, sys\n"
        f"wanted = {tuple(modules)!r}\n"
        # atexit: main() ends the process with os._exit once its atexit handlers have run
        "atexit.register(lambda: sys.stderr.write('\\nIMPORTED ' + json.dumps(sorted(\n"
        "    m for m in sys.modules if any(m == w or m.startswith(w + '.') for w in wanted)))))\n"
        "from stackbuild.cli import main\n"
        f"sys.argv = ['stackbuild', '-f', {str(stack_file)!r}, *{list(args)!r}]\n"
        "main()\n"
    )
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(repo)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith("IMPORTED "), proc.stderr
    return json.loads(last[len("IMPORTED "):]), proc
