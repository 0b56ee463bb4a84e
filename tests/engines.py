"""Extra Docker engines for tests: ``dockerd`` processes of a test's own (plain helpers).

Each engine gets its own socket, data root, exec root, pid file and bridge:

- its own bridge (``sbtbr<N>``, 10.213.<N>.1/24), never ``--bridge=none``: a second
  dockerd started with ``--bridge=none`` deletes the main engine's ``docker0``,
  after which every RUN step on the main engine fails;
- ``--iptables=false --ip-masq=false``: the main engine's rules stay untouched
  (builds need no network; a RUN step still runs, on the engine's own bridge);
- its own cgroup parent (``/sbt-engine<N>``), so what it runs can be found and killed;
- its own (managed) containerd, under its exec root.

``close()`` stops the engine (SIGTERM, wait, SIGKILL), kills what a crashed engine
leaves behind (containerd shims and their containers, found by the engine's
directory on their command line), unmounts what is mounted under its directory,
removes it and deletes the bridge. ``kill()`` is a crash: SIGKILL, nothing else.

Needs root and Debian's docker.io; ``EnginesUnavailable`` says why not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.daemons import start_daemon, stop_daemon

DOCKERD = "dockerd"
START_TIMEOUT = 60.0  # s: a fresh data root on a busy machine
STOP_TIMEOUT = 20.0  # s after SIGTERM, before SIGKILL
BRIDGE_PREFIX = "sbtbr"
SUBNET = "10.213.{n}.1/24"  # far from docker0's 172.17.0.0/16 and the main engine's pools


class EnginesUnavailable(Exception):
    """dockerd cannot be started here (not root, not installed)."""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def docker0_exists() -> bool:
    """Whether the main engine's default bridge is still there (the canary of these tests)."""
    return _ip("link", "show", "docker0").returncode == 0


def _new_bridge() -> tuple[str, int]:
    """Create and raise ``sbtbr<N>`` for the first free N; its name and N."""
    for n in range(100):
        name = f"{BRIDGE_PREFIX}{n}"
        if _ip("link", "add", name, "type", "bridge").returncode != 0:
            continue  # taken (another test run's engine), try the next
        for args in (("addr", "add", SUBNET.format(n=n), "dev", name), ("link", "set", name, "up")):
            done = _ip(*args)
            if done.returncode != 0:
                _ip("link", "del", name)
                raise EnginesUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")
        return name, n
    raise EnginesUnavailable(f"no free bridge name {BRIDGE_PREFIX}0..99")


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            )
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), cmdline)
    return found


def _kill_tree_mentioning(text: str) -> None:
    """SIGKILL every process whose command line has ``text``, and all their descendants."""
    procs = _processes()
    doomed = {pid for pid, (_, cmd) in procs.items() if text in cmd and pid != os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in doomed} - doomed
        doomed |= more
        grew = bool(more)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_cgroup(parent: str) -> None:
    """SIGKILL every process in a cgroup at or under ``parent`` (any hierarchy)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            lines = Path(entry.path, "cgroup").read_text().splitlines()
        except OSError:
            continue
        paths = {line.split(":", 2)[2] for line in lines if line.count(":") >= 2}
        if any(p == parent or p.startswith(parent + "/") for p in paths):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def _unmount_under(directory: Path) -> None:
    prefix = str(directory) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):  # deepest first
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


class ExtraEngine:
    """One test dockerd; ``url`` is what open_backend or stack.yaml's builders take."""

    def __init__(self, directory: Path) -> None:
        if os.geteuid() != 0:
            raise EnginesUnavailable("extra Docker engines need root")
        if shutil.which(DOCKERD) is None:
            raise EnginesUnavailable("dockerd is not installed (Debian: apt-get install docker.io)")
        self.directory = Path(directory)
        self.socket = self.directory / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_path = self.directory / "dockerd.log"
        self.bridge, n = _new_bridge()
        self.name = f"engine{n}"
        self.cgroup = f"/sbt-{self.name}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        d = self.directory
        return [
            DOCKERD,
            "--host", self.url,
            "--data-root", str(d / "data"),
            "--exec-root", str(d / "exec"),
            "--pidfile", str(d / "docker.pid"),
            "--bridge", self.bridge,  # never "none": see the module docstring
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            # BuildKit's RUN processes are runc children of dockerd itself, outliving a
            # killed engine with nothing of ours on their command line: a cgroup finds them
            "--cgroup-parent", self.cgroup,
            "--containerd-namespace", f"sbt-{self.name}",
            "--containerd-plugins-namespace", f"sbt-{self.name}-plugins",
            "--log-level", "warn",
        ]  # fmt: skip

    def start(self) -> None:
        """Start dockerd and wait until it answers /_ping."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = start_daemon(
            self.command(), self.log_path, self.answers, f"dockerd at {self.url}", START_TIMEOUT
        )

    def answers(self) -> bool:
        import docker

        try:
            client = docker.APIClient(base_url=self.url, timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # not (yet) listening: any error means "no"
            return False

    def kill(self) -> None:
        """A crash: SIGKILL dockerd (its containerd follows; shims and builds stay)."""
        if self.running:
            assert self._process is not None
            self._process.kill()
            self._process.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM without waiting: ``stop`` (or ``close``) waits for the end. Lets several
        engines shut down side by side (a dockerd takes a second or so to stop)."""
        if self.running:
            assert self._process is not None
            self._process.terminate()

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL; then kill whatever the engine left running."""
        stop_daemon(self._process, STOP_TIMEOUT)
        # a crashed engine leaves its containerd shims (and their containers) behind,
        # every one naming this directory on its command line, and BuildKit's RUN steps
        _kill_tree_mentioning(str(self.directory))
        _kill_cgroup(self.cgroup)

    def restart(self) -> None:
        """After ``kill()``: clean up what the crash left and start on the same images.

        The exec root is runtime state (a reboot would clear it): left as the crash
        left it, containerd waits for shims that are gone and dockerd gives up.
        """
        self.stop()
        time.sleep(0.2)  # let the killed shims' mounts go
        _unmount_under(self.directory)
        shutil.rmtree(self.directory / "exec", ignore_errors=True)
        self.start()

    def close(self) -> None:
        """Stop, unmount, remove the directory and the bridge."""
        self.stop()
        time.sleep(0.2)
        _unmount_under(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)
        _ip("link", "del", self.bridge)


@contextlib.contextmanager
def extra_engines(count: int, parent: Path | None = None) -> Iterator[list[ExtraEngine]]:
    """``count`` running test engines, closed (and docker0 checked) on exit.

    Raises EnginesUnavailable before starting anything when this machine cannot
    run them, and AssertionError on exit when docker0 went missing meanwhile.
    """
    if not docker0_exists():
        raise EnginesUnavailable("the main engine's docker0 is missing before the test")
    # short paths: unix sockets under the exec root must stay below 108 bytes
    base = Path(tempfile.mkdtemp(prefix="sbt-e", dir=parent or "/tmp"))
    engines: list[ExtraEngine] = []
    try:
        for i in range(count):
            engine = ExtraEngine(base / str(i))
            engines.append(engine)
            engine.start()
        yield engines
    finally:
        for engine in engines:
            engine.terminate()  # all at once: their shutdowns overlap
        for engine in engines:
            engine.close()
        shutil.rmtree(base, ignore_errors=True)
    assert docker0_exists(), "docker0 disappeared while the test engines ran"


@contextlib.contextmanager
def engines_or_skip(count: int) -> Iterator[list[ExtraEngine]]:
    """``extra_engines`` for a fixture: a machine that cannot run them skips the test,
    or fails it when STACKBUILD_REQUIRE_DOCKER=1 (CI must not skip silently)."""
    import pytest  # here, not at the top: bench/pool.py uses this module without pytest

    try:
        with extra_engines(count) as started:
            yield started
    except EnginesUnavailable as e:
        if os.environ.get("STACKBUILD_REQUIRE_DOCKER") == "1":
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))
