"""The user-facing errors of stackbuild and the exit code each one maps to.

Anything raised as a ``StackbuildError`` is a user's mistake or an outside
failure: the CLI prints ``str(error)`` and exits with ``error.exit_code``,
never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class StackbuildError(Exception):
    """Base class: a message for a person and an exit code."""

    exit_code = EXIT_BUILD_FAILED


class ManifestError(StackbuildError):
    """A mistake in stack.yaml, located at ``path:line:col`` (1-based)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, path: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


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


class EngineUnreachable(StackbuildError):
    """The Docker engine (or a registry) does not answer."""

    exit_code = EXIT_UNREACHABLE


class RegistryError(StackbuildError):
    """A registry refused or failed a request after retries."""

    exit_code = EXIT_BUILD_FAILED


class LockBusy(StackbuildError):
    """Another stackbuild run holds the state lock of this stack."""

    exit_code = EXIT_USAGE
