"""The user-facing errors of stackbuild and the exit code each one maps to.

Anything raised as a ``StackbuildError`` is a user's mistake or an outside
failure: the CLI prints ``str(error)`` and exits with ``error.exit_code``,
never a traceback.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from stackbuild.refs import registry_host

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class StackbuildError(Exception):
    """Base class: a message for a person and an exit code."""

    exit_code = EXIT_BUILD_FAILED


class LocatedError(StackbuildError):
    """A mistake at a place in a file: ``path:line:col: message`` (1-based), or just the
    message where no place is known."""

    exit_code = EXIT_USAGE

    def __init__(
        self, message: str, path: str | None = None, line: int | None = None, col: int = 1
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    def __str__(self) -> str:
        if self.path is None or self.line is None:
            return self.message
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class ManifestError(LocatedError):
    """A mistake in stack.yaml, located at ``path:line:col`` (1-based)."""

    path: str
    line: int

    def __init__(self, message: str, path: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message, path, line, col)


class DockerfileError(StackbuildError):
    """A Dockerfile that BuildKit would refuse, located at ``path:line`` (1-based).

    Raised by the parser with the default ``path``; callers that know the file name it
    with ``located``."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, line: int, path: str = "Dockerfile") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path

    def located(self, path: str) -> DockerfileError:
        return DockerfileError(self.message, self.line, path)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class UsageError(StackbuildError):
    """A wrong command line (unknown target, bad option value)."""

    exit_code = EXIT_USAGE


class GitError(StackbuildError):
    """``--since REF``: git cannot answer (no repository, a REF it does not know, no
    common history in a shallow clone)."""

    exit_code = EXIT_USAGE


class EngineUnreachable(StackbuildError):
    """The Docker engine (or a registry) does not answer."""

    exit_code = EXIT_UNREACHABLE


class RegistryError(StackbuildError):
    """A registry refused or failed a request after retries."""

    exit_code = EXIT_BUILD_FAILED


class LockBusy(StackbuildError):
    """Another stackbuild run holds the state lock of this stack."""

    exit_code = EXIT_USAGE


class ContextError(StackbuildError):
    """A build context Docker would refuse: a bad .dockerignore, an unreadable path."""

    exit_code = EXIT_USAGE


class ContextChanged(StackbuildError):
    """A context file differs, while its tar is written, from what its fingerprint hashed.

    The build of that image fails (exit 1): an image whose content its fingerprint
    does not describe would be taken as up to date by every later run.
    """


class LockfileError(LocatedError):
    """stack.lock cannot be read as a lock: a person has to fix or regenerate it.

    Located like a ``ManifestError`` (``PATH:LINE:COL: message``) when the mistake is at
    a place in the file."""


class StateWriteError(StackbuildError, OSError):
    """A file of stackbuild's own (state, run lock, stack.lock) cannot be written: the disk
    is full, the file system read-only, ... An outside failure, not a mistake in the stack.

    Still an OSError (errno, strerror, filename as the failure's), so callers that
    caught the raw error keep working; ``str()`` is the sentence for a person.
    """

    exit_code = EXIT_BUILD_FAILED

    def __init__(self, path: Path | str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.path = Path(path)
        hint = ""
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = "; free some space on that file system and run again"
        elif error.errno == errno.EROFS:
            hint = "; the file system is read-only"
        self.message = f"cannot write {self.path}: {self.strerror}{hint}"

    def __str__(self) -> str:
        return self.message


class SaveError(StackbuildError):
    """The output of ``save`` cannot be written (read-only or full file system, ...)."""


class BuildKitUnavailable(StackbuildError):
    """No docker client on this machine builds with BuildKit against the engine."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (or their absence)."""


class RegistryNotFound(RegistryError):
    """The registry does not have this repository, tag or digest."""


class RegistryUnavailable(RegistryError):
    """The registry did not answer, or answered 5xx / 429: worth retrying."""

    exit_code = EXIT_UNREACHABLE


# --- the registry failure classifier: the engine words a registry's refusal in prose

_AUTH = re.compile(
    r"unauthori[sz]ed|authentication required|no basic auth credentials|denied|forbidden"
    r"|\b40[13]\b|incorrect username or password",
    re.IGNORECASE,
)


_NOT_FOUND = re.compile(
    r"manifest unknown|name unknown|not found|no such manifest|does not exist|\b404\b",
    re.IGNORECASE,
)


_TRANSIENT = re.compile(
    r"\b5\d\d\b|\b429\b|too ?many ?requests|connection refused|connection reset|broken pipe"
    r"|\bEOF\b|i/o timeout|timed? ?out|TLS handshake timeout|server misbehaving"
    r"|service unavailable|bad gateway|no route to host|network is unreachable",
    re.IGNORECASE,
)


def registry_error(detail: str, ref: str, doing: str) -> RegistryError:
    """One sentence for a person from the engine's words for a failed ``doing`` of ``ref``."""
    host = registry_host(ref)
    detail = " ".join(detail.split()) or "no details"
    if _AUTH.search(detail):
        return RegistryAuthError(
            f"the registry {host} refused the credentials to {doing} {ref} ({detail}); "
            f"run `docker login {host}` or fix the Docker config (~/.docker/config.json)"
        )
    if _NOT_FOUND.search(detail):
        return RegistryNotFound(f"{ref} is not in the registry {host} ({detail})")
    if _TRANSIENT.search(detail):
        return RegistryUnavailable(
            f"the registry {host} is unavailable to {doing} {ref} ({detail})"
        )
    return RegistryError(f"the registry {host} failed to {doing} {ref}: {detail}")
