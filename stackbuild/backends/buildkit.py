"""The BuildKit builder: ``docker build`` with BuildKit, run as a subprocess of the docker CLI.

Why the CLI: BuildKit's build API is a gRPC session (context, secrets and
the Dockerfile are pulled by the engine from the client), which the docker
SDK does not speak. Everything that is not the build itself (ping, finding
fingerprints, tagging, pins, removing) is the ``DockerEngine``'s it builds on.

Which client: a machine can hold several docker CLIs, and not every one can
build with BuildKit (a new client without the buildx plugin refuses
``DOCKER_BUILDKIT=1``). :func:`find_cli` prefers ``docker buildx build`` where a
client has the buildx plugin, else a client whose ``DOCKER_BUILDKIT=1 docker
build`` works, trying ``/usr/bin/docker`` (the distribution's client, which
matches its engine) before the others on PATH. ``STACKBUILD_DOCKER_CLI``
names the one to use. Each candidate is probed with a real build that sends a
secret and exports nothing, so what is chosen is known to work. The choice is
remembered for a day in ``~/.cache/stackbuild/buildkit-clients.json`` (local
engines), keyed on the clients' files, the buildx plugin directories and the
engine's version: the probes cost every run 0.5-2 s at its first build.

What is sent: the context tar of ``write_context_tar`` on stdin (``docker build
-f NAME -``), the same bytes the SDK backend sends, so both hash and send
exactly ``request.context_files``. Except when the Dockerfile is not one of those
files (it lies outside the context, or the context's .dockerignore names it): the
tar hides it through its .dockerignore, which the engine applies to a tar with the
classic builder and BuildKit does not (``COPY .`` would copy the Dockerfile). Then
the same tar is unpacked into a private directory, without the Dockerfile and the
.dockerignore made to hide it, and sent as a directory, the Dockerfile beside it
with a Dockerfile-specific ignore file that excludes nothing (the files are
filtered already): ``COPY .`` sees what the classic builder's sees.

Secrets: ``env:NAME`` goes to the CLI as ``--secret id=ID,env=NAME`` (a client
that lacks ``env=`` gets a 0600 file in a private temporary directory,
deleted after the build); ``file:PATH`` as ``src=PATH``. Values never appear
on the command line, and every occurrence of one in the build output is
replaced with ``***`` before a line reaches the log sink.

Cancellation: the CLI runs in its own process group and gets SIGINT (the
docker CLI treats it as Ctrl-C and cancels the build on the engine), then
SIGTERM, then SIGKILL, a second apart. Measured with the 20.10 client: it
ignores SIGTERM during a BuildKit build and reacts to only about every other
SIGINT, so SIGKILL is what usually ends it; that is safe, because the engine
aborts the build, and kills its RUN processes, as soon as the client's
connection ends.

``docker`` (the SDK) is imported only by the engine client's methods that need it,
never at import time.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stackbuild.backends.contract import BuildRequest, BuildResult, LogSink
from stackbuild.backends.engine import DEFAULT_HOST, CancelWatch, DockerEngine, pull_allowed
from stackbuild.context import DOCKERIGNORE, write_context_tar
from stackbuild.errors import BuildKitUnavailable, StackbuildError
from stackbuild.files import atomic_write

CLI_ENV = "STACKBUILD_DOCKER_CLI"  # path or name of the docker client to use
DISTRO_CLI = "/usr/bin/docker"  # probed first: the distribution's client matches its engine
PROBE_TIMEOUT = 60  # s, a probe build on a busy engine can queue behind others
# s, after SIGINT / SIGTERM: a CLI that reacts exits within ~50 ms; the 20.10 client
# ignores SIGTERM and about every other SIGINT, so do not wait long for it
INT_GRACE = 1.0
TERM_GRACE = 1.0
TAIL_LINES = 60  # output lines kept to find the error of a failed build
MASK = "***"

_STEP_LINE = re.compile(r"^#\d+ ")  # plain progress: "#5 [2/3] RUN ...", "#5 0.163 output"
_STEP_ERROR = re.compile(r"^#\d+ (ERROR: .*)$")
_EXCERPT_LINE = re.compile(r"^(\s*\d+ \|.*|Dockerfile(:\d+)?|-{3,})$")  # newer clients' excerpt
_SECRET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class DockerCli:
    """A docker client known to build with BuildKit, and how to call it."""

    path: str
    buildx: bool  # "docker buildx build"; else "DOCKER_BUILDKIT=1 docker build"
    secret_env: bool  # understands --secret id=ID,env=NAME

    def build_command(self) -> list[str]:
        if self.buildx:
            # the "default" builder is the engine's own BuildKit (docker driver): it sees
            # the local images pins tag, and its result lands in the engine's image store
            return [self.path, "buildx", "build", "--builder", "default", "--load"]
        return [self.path, "build"]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.buildx:
            env.pop("DOCKER_BUILDKIT", None)
        else:
            env["DOCKER_BUILDKIT"] = "1"
        env["DOCKER_CLI_HINTS"] = "false"  # newer clients' "What's next" is noise in a log
        return env


# --------------------------------------------------------------------------- client choice


def _candidates(env: Mapping[str, str]) -> list[str]:
    """Docker clients to probe, in order, without duplicates (by real path)."""
    override = env.get(CLI_ENV)
    if override:
        found = shutil.which(override, path=env.get("PATH"))
        return [found or override]
    paths = [DISTRO_CLI]
    for directory in (env.get("PATH") or os.defpath).split(os.pathsep):
        if directory:
            paths.append(os.path.join(directory, "docker"))
    result: list[str] = []
    seen: set[str] = set()
    for path in paths:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            result.append(path)
    return result


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _probe(cli: DockerCli, env: Mapping[str, str]) -> str | None:
    """Build an empty image with a secret and export nothing: None if it works, else why."""
    with tempfile.TemporaryDirectory(prefix="stackbuild-probe-") as tmp:
        context = Path(tmp, "context")
        context.mkdir()
        (context / "Dockerfile").write_text("FROM scratch\n")
        args = cli.build_command()
        if cli.buildx:
            args.remove("--load")  # a local export, not an image
        args += ["--quiet", "--output", f"type=local,dest={Path(tmp, 'out')}"]
        probe_env = cli.environment(env)
        if cli.secret_env:
            probe_env["STACKBUILD_PROBE_SECRET"] = "probe"
            args += ["--secret", "id=probe,env=STACKBUILD_PROBE_SECRET"]
        try:
            done = subprocess.run(
                [*args, str(context)],
                env=probe_env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=PROBE_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return f"no answer in {PROBE_TIMEOUT} s"
        except OSError as e:
            return e.strerror or str(e)
        if done.returncode != 0:
            return _last_line(done.stderr + "\n" + done.stdout)
    return None


def _has_buildx(path: str, env: Mapping[str, str]) -> bool:
    try:
        done = subprocess.run(
            [path, "buildx", "version"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_cli(env: Mapping[str, str]) -> DockerCli:
    """The docker client to build with, probed against the engine ``env`` points at.

    Raises BuildKitUnavailable, naming every client tried and why it failed.
    """
    paths = _candidates(env)
    if not paths:
        raise BuildKitUnavailable(
            "no docker client found (looked at /usr/bin/docker and PATH); install one "
            f"or name it in {CLI_ENV}"
        )
    # buildx first, wherever it is installed; then the classic CLI with BuildKit
    modes = [(p, True) for p in paths if _has_buildx(p, env)] + [(p, False) for p in paths]
    failures: list[str] = []
    for path, buildx in modes:
        why = _probe(DockerCli(path, buildx, secret_env=True), env)
        if why is None:
            return DockerCli(path, buildx, secret_env=True)
        # perhaps only "env=" in --secret is too new for this client
        if _probe(DockerCli(path, buildx, secret_env=False), env) is None:
            return DockerCli(path, buildx, secret_env=False)
        failures.append(f"{path}{' buildx' if buildx else ''}: {why}")
    raise BuildKitUnavailable(
        "no docker client here builds with BuildKit (" + "; ".join(failures) + "); "
        f"install the buildx plugin or name a working client in {CLI_ENV}"
    )


# --------------------------------------------------------------------------- probe cache
# The choice costs a `buildx version` per client and a probe build (0.5-2 s) on every run's
# first BuildKit build: it is remembered for a day, keyed on everything it depends on (the
# candidate clients' files, the buildx plugin directories, the engine and its version).

CACHE_TTL = 24 * 3600  # s
PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
               "/usr/libexec/docker/cli-plugins")  # fmt: skip


def _cache_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "stackbuild", "buildkit-clients.json")


def _cache_key(env: Mapping[str, str], engine_version: str) -> str:
    """What the choice of ``find_cli(env)`` depends on, as one string."""
    parts = [env.get("DOCKER_HOST", ""), env.get(CLI_ENV, ""), env.get("DOCKER_CONFIG", ""),
             engine_version]  # fmt: skip
    for path in [*_candidates(env), *(os.path.expanduser(d) for d in PLUGIN_DIRS)]:
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}")
    return json.dumps(parts)


def cached_cli(env: Mapping[str, str], engine_version: str, now: float) -> DockerCli | None:
    """The client ``find_cli(env)`` chose within the last ``CACHE_TTL``, if nothing it
    depends on changed since."""
    try:
        entry = json.loads(_cache_path(env).read_text()).get(_cache_key(env, engine_version))
        if entry and 0 <= now - float(entry["at"]) < CACHE_TTL:
            return DockerCli(str(entry["path"]), bool(entry["buildx"]), bool(entry["secret_env"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def remember_cli(env: Mapping[str, str], engine_version: str, cli: DockerCli, now: float) -> None:
    """Record ``find_cli(env)``'s choice (best effort: a cache that cannot be written
    costs the next run a probe, nothing else)."""
    path = _cache_path(env)
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries = {k: v for k, v in entries.items()
               if isinstance(v, dict) and now - float(v.get("at", 0)) < CACHE_TTL}  # fmt: skip
    entries[_cache_key(env, engine_version)] = {
        "path": cli.path, "buildx": cli.buildx, "secret_env": cli.secret_env, "at": now,
    }
    with contextlib.suppress(StackbuildError):
        atomic_write(path, json.dumps(entries, indent=1).encode())


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class _Secret:
    id: str
    env: str | None  # variable name, for "env:NAME"
    path: str | None  # absolute, for "file:PATH"
    value: bytes


def _resolve_secrets(secrets: Mapping[str, str], environ: Mapping[str, str]) -> list[_Secret]:
    """Check every secret and read its value (for masking); ValueError names the problem.

    Messages name the secret and where it comes from, never its value.
    """
    resolved = []
    for secret_id, spec in sorted(secrets.items()):
        if not _SECRET_ID.match(secret_id):
            raise ValueError(f"secret id {secret_id!r}: use letters, digits, '.', '_' and '-' only")
        kind, _, ref = spec.partition(":")
        if kind == "env" and ref:
            if ref not in environ:
                raise ValueError(f"secret {secret_id!r}: environment variable {ref} is not set")
            resolved.append(_Secret(secret_id, ref, None, os.fsencode(environ[ref])))
        elif kind == "file" and ref:
            path = os.path.abspath(os.path.expanduser(ref))
            try:
                value = Path(path).read_bytes()
            except OSError as e:
                raise ValueError(
                    f"secret {secret_id!r}: cannot read {path}: {e.strerror or e}"
                ) from None
            resolved.append(_Secret(secret_id, None, path, value))
        else:
            raise ValueError(
                f'secret {secret_id!r}: expected "env:NAME" or "file:PATH"'
                # not the text given: it may be the value itself, pasted by mistake
            )
    return resolved


def _csv_field(*parts: str) -> str:
    """One --secret value; quoted like the CLI's CSV parser wants when a path has a comma."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(parts)
    return out.getvalue()


class _Masker:
    """Replaces every secret value in a line with ``***``."""

    def __init__(self, values: Iterable[bytes]) -> None:
        needles: set[str] = set()
        for raw in values:
            text = raw.decode("utf-8", "replace")
            # the whole value, trimmed too, and each line of a multi-line one: the output
            # is cut into lines before it is masked
            for candidate in (text, text.strip(), *(line.strip() for line in text.splitlines())):
                if candidate.strip():
                    needles.add(candidate)
        # longest first, so a value containing another is masked whole
        self._needles = sorted(needles, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for needle in self._needles:
            if needle in line:
                line = line.replace(needle, MASK)
        return line


# --------------------------------------------------------------------------- output


def cache_args(cache_from: Sequence[str], request: BuildRequest, buildx: bool) -> list[str]:
    """The CLI's cache options: ``--cache-from`` per usable cache image (buildx writes
    ``type=registry,ref=``; the 20.10 client's ``docker build`` takes the bare reference),
    and, for an image that has a ``cache_from``, the cache metadata inlined in the image
    (``BUILDKIT_INLINE_CACHE=1``), so that once pushed it is a cache for the next runner."""
    args = []
    for ref in cache_from:
        args += ["--cache-from", f"type=registry,ref={ref}" if buildx else ref]
    if request.cache_from and not request.no_cache:
        args += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    return args


def error_line(tail: Sequence[str], returncode: int) -> str:
    """The line of a failed build's output a person should read first.

    The CLI ends a failed build with the error after the last ``------`` frame
    (20.10: ``executor failed running [...]: exit code: 1``; buildx: ``ERROR:
    failed to solve: ...``); progress lines, frames, quoted steps and Dockerfile
    excerpts are skipped. Without such a summary, the last ``#N ERROR: ...``.
    """
    summary = [
        line.strip()
        for line in tail
        if line.strip()
        and not _STEP_LINE.match(line)
        and not line.lstrip().startswith(">")
        and not _EXCERPT_LINE.match(line.strip())
    ]
    for line in reversed(summary):
        if line.lower().startswith("error"):
            return line
    meaningful = [line for line in summary if not line.startswith("WARNING")]
    if meaningful:
        return meaningful[-1]
    for line in reversed(tail):
        if m := _STEP_ERROR.match(line):
            return m.group(1)
    return f"docker build failed with exit code {returncode}"


def no_emulation(tail: Sequence[str], platform: str | None) -> str | None:
    """What to install, when a foreign platform's RUN step could not execute: the
    engine's kernel has no binfmt_misc interpreter (QEMU) for it, so every binary of
    that architecture fails with ``exec format error``. None for any other failure."""
    if platform and any("exec format error" in line for line in tail):
        return (
            f"RUN steps for {platform} cannot execute on this engine (exec format error): it "
            "has no emulation for that architecture. On the engine's host, as root: "
            "apt-get install qemu-user-static binfmt-support (or scripts/emulation.sh), and "
            "make sure binfmt_misc is mounted; images with only COPY steps build without it"
        )
    return None


class _ProcessGroup:
    """The docker CLI's process group: signalled as a whole (the CLI and any plugin)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._lock = threading.Lock()

    def stop(self, done: threading.Event) -> None:
        """Cancel: SIGINT, then SIGTERM, then SIGKILL, until the CLI has ended (``done``)."""
        # SIGINT first: the docker CLI cancels the build on the engine and exits cleanly
        for sig, grace in (
            (signal.SIGINT, INT_GRACE),
            (signal.SIGTERM, TERM_GRACE),
            (signal.SIGKILL, None),
        ):
            self.kill(sig)
            if grace is None or done.wait(grace):
                return

    def kill(self, sig: int) -> None:
        """Signal the whole group while it is still there."""
        with self._lock:
            # poll() first: once the leader is reaped its pid (the group id) may be reused
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, sig)


# --------------------------------------------------------------------------- backend


def _unpacked(
    tar: IO[bytes], tmp: Path, dockerfile: bytes, dockerfile_name: str, sent: set[str]
) -> tuple[str, str]:
    """The context tar unpacked into ``tmp/context``, but for the Dockerfile (written to
    ``tmp/dockerfile/``) and the .dockerignore that only hid it: ``(-f, context)`` paths.

    For a Dockerfile that is not a context file: BuildKit ignores a tar context's
    .dockerignore, so the tar's way of hiding it from ``COPY .`` does not work there.
    """
    import tarfile  # lazily, as context.py does

    directory, dockerfile_dir = tmp / "context", tmp / "dockerfile"
    directory.mkdir()
    dockerfile_dir.mkdir()
    hidden = {dockerfile_name} | ({DOCKERIGNORE} if DOCKERIGNORE not in sent else set())
    with tarfile.open(fileobj=tar, mode="r:") as archive:
        members = [m for m in archive.getmembers() if m.name not in hidden]
        # our own tar, checked against the fingerprint as it was written: trusted
        archive.extractall(directory, members=members, filter="fully_trusted")
    tar.seek(0)
    (dockerfile_dir / "Dockerfile").write_bytes(dockerfile)
    # beside the Dockerfile, it replaces the context's .dockerignore: nothing more to drop
    (dockerfile_dir / "Dockerfile.dockerignore").write_text(
        "# stackbuild: the context holds only the files it hashed\n"
    )
    return str(dockerfile_dir / "Dockerfile"), str(directory)


class BuildKitBuilder:
    """Builds with BuildKit through the docker CLI (``--backend buildkit``), on the engine
    it is given; every other operation is the engine client's.

    ``cli`` fixes the client (else :func:`find_cli` chooses one on the first
    build, once per builder: each engine has its own). Safe to share between threads.
    """

    kind = "buildkit"

    def __init__(self, cli: DockerCli | None = None) -> None:
        self._cli = cli
        self._cli_error: BuildKitUnavailable | None = None
        self._cli_lock = threading.Lock()

    @staticmethod
    def docker_host(engine: DockerEngine) -> str:
        """The engine's address as the docker CLI wants it in DOCKER_HOST."""
        host = engine.base_url or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        for scheme in ("http://", "https://"):  # the SDK's spellings of tcp://
            if host.startswith(scheme):
                return "tcp://" + host[len(scheme) :]
        return host

    def _cli_environ(self, engine: DockerEngine, tmp: str) -> dict[str, str]:
        """The CLI's environment: ``engine``, whatever the CLI's context says."""
        env = dict(os.environ)
        # DOCKER_HOST beats DOCKER_CONTEXT and the current context of ~/.docker/config.json
        env["DOCKER_HOST"] = self.docker_host(engine)
        tls = engine.tls
        if tls is True:
            env["DOCKER_TLS"] = "1"
        elif tls is not None and not isinstance(tls, bool):
            # the CLI reads certificates from one directory with fixed names
            cert_dir = Path(tmp, "tls")
            cert_dir.mkdir(mode=0o700)
            cert, key = getattr(tls, "cert", None) or (None, None)
            for name, source in (
                ("ca.pem", getattr(tls, "ca_cert", None)),
                ("cert.pem", cert),
                ("key.pem", key),
            ):
                if source:
                    (cert_dir / name).symlink_to(os.path.abspath(source))
            env["DOCKER_CERT_PATH"] = str(cert_dir)
            if getattr(tls, "verify", None):
                env["DOCKER_TLS_VERIFY"] = "1"
            else:
                env.pop("DOCKER_TLS_VERIFY", None)
                env["DOCKER_TLS"] = "1"
        return env

    def cli(self, engine: DockerEngine) -> DockerCli:
        """The client builds on ``engine`` use; probed on first use. Raises
        BuildKitUnavailable, or EngineUnreachable when the engine does not answer."""
        with self._cli_lock:
            if self._cli is None and self._cli_error is None:
                # an engine that is not there: EngineUnreachable, in the SDK backend's
                # words, rather than a probe failure blamed on the client
                engine.ping()
                version = engine.engine_version()
                with tempfile.TemporaryDirectory(prefix="stackbuild-") as tmp:
                    env = self._cli_environ(engine, tmp)
                    now = time.time()
                    if env.get("DOCKER_CERT_PATH") is None:
                        self._cli = cached_cli(env, version, now)
                    if self._cli is None:
                        try:
                            self._cli = find_cli(env)
                        except BuildKitUnavailable as e:
                            self._cli_error = e
                        else:
                            if env.get("DOCKER_CERT_PATH") is None:
                                remember_cli(env, version, self._cli, now)
            if self._cli_error is not None:
                raise self._cli_error
            assert self._cli is not None
            return self._cli

    def build(
        self, engine: DockerEngine, request: BuildRequest, log: LogSink, cancel: threading.Event
    ) -> BuildResult:
        """Build, tag and label one image on ``engine``, streaming its output to ``log``."""
        if cancel.is_set():
            return BuildResult(ok=False, cancelled=True, error="cancelled before it started")
        try:
            secrets = _resolve_secrets(request.secrets, os.environ)
        except ValueError as e:
            log(f"ERROR: {e}")
            return BuildResult(ok=False, error=str(e))
        try:
            cli = self.cli(engine)
        except BuildKitUnavailable as e:
            log(f"ERROR: {e}")
            return BuildResult(ok=False, error=str(e))
        dockerfile, error = engine.pinned_dockerfile(request, log)
        if error:
            log(error)
            return BuildResult(ok=False, error=error)
        pull = pull_allowed(request, log)
        cache_from, warnings = engine.cache_sources(request, log, False, cancel)

        with (
            tempfile.TemporaryDirectory(prefix="stackbuild-") as tmp,
            tempfile.TemporaryFile(prefix="stackbuild-context-") as context,
        ):
            write_context_tar(
                request.context_files, dockerfile, request.dockerfile_name, context,
                expected=request.context_entries,
            )
            context.seek(0)
            sent = {f.path for f in request.context_files}
            dockerfile_arg, context_arg = request.dockerfile_name, "-"  # in the tar on stdin
            if request.dockerfile_name not in sent:  # hidden by the tar's .dockerignore
                dockerfile_arg, context_arg = _unpacked(
                    context, Path(tmp), dockerfile, request.dockerfile_name, sent
                )
            iidfile = Path(tmp, "iid")
            args = [*cli.build_command(), "--progress=plain", "-f", dockerfile_arg]
            args += ["--iidfile", str(iidfile)]
            for tag in request.tags:
                args += ["-t", tag]
            for key, value in request.build_args.items():
                args += ["--build-arg", f"{key}={value}"]
            for key, value in request.labels.items():
                args += ["--label", f"{key}={value}"]
            if request.target:
                args += ["--target", request.target]
            if request.platform:
                args += ["--platform", request.platform]
            if request.no_cache:
                args.append("--no-cache")
            if pull:
                args.append("--pull")
            args += cache_args(cache_from, request, cli.buildx)
            args += self._secret_args(secrets, cli, Path(tmp))
            args.append(context_arg)  # "-": the context tar comes on stdin

            env = cli.environment(self._cli_environ(engine, tmp))
            mask = _Masker(s.value for s in secrets)
            returncode, tail, cancelled = self._run(args, env, context, tmp, log, mask, cancel)
            if cancelled:
                log("build cancelled")
                return BuildResult(ok=False, cancelled=True, error="cancelled")
            if returncode != 0:
                engine.ping()  # the engine went away mid-build: say that, not a build error
                error = no_emulation(tail, request.platform) or error_line(tail, returncode)
                return BuildResult(ok=False, error=error, warnings=tuple(warnings))
            try:
                image_id = iidfile.read_text().strip()
            except OSError:
                image_id = ""
        if not image_id:
            return BuildResult(ok=False, error="docker build finished without naming an image")
        return BuildResult(ok=True, image_id=image_id, warnings=tuple(warnings))

    @staticmethod
    def _secret_args(secrets: Sequence[_Secret], cli: DockerCli, tmp: Path) -> list[str]:
        args: list[str] = []
        for secret in secrets:
            if secret.env is not None and cli.secret_env:
                spec = _csv_field(f"id={secret.id}", f"env={secret.env}")
            elif secret.env is not None:
                # tmp is private (0700), outside any context, and removed after the build
                path = tmp / f"secret-{secret.id}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(secret.value)
                spec = _csv_field(f"id={secret.id}", f"src={path}")
            else:
                spec = _csv_field(f"id={secret.id}", f"src={secret.path}")
            args += ["--secret", spec]
        return args

    @staticmethod
    def _run(
        args: list[str],
        env: Mapping[str, str],
        stdin: IO[bytes],
        cwd: str,
        log: LogSink,
        mask: _Masker,
        cancel: threading.Event,
    ) -> tuple[int, list[str], bool]:
        """Run the CLI, logging masked output lines: (exit code, last lines, cancelled)."""
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # a session of its own: a terminal's Ctrl-C reaches stackbuild, which cancels
        # through ``cancel``, and the whole group (CLI and plugins) can be signalled
        proc = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        group = _ProcessGroup(proc)
        watch = CancelWatch(cancel, group.stop)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = mask(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if line.strip():
                    tail.append(line)
                    log(line)
            returncode = proc.wait()
        except BaseException:
            group.kill(signal.SIGKILL)  # a failing log sink must not leave a build running
            proc.wait()
            raise
        finally:
            watch.stop()
            if proc.stdout is not None:
                proc.stdout.close()
        return returncode, list(tail), watch.fired
