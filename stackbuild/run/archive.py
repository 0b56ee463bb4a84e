"""``stackbuild save`` / ``load``: move a built hierarchy without a registry.

The tar is ``docker save`` of every selected image (targets plus their
ancestors) with all its tags in its repository, the fingerprint tag among
them. Images carry their fingerprint as a label, which ``docker save``
keeps, so after ``docker load`` (or ``stackbuild load``) on another engine
``plan`` finds every image up to date.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Backend, LogSink
from stackbuild.errors import SaveError, StackbuildError, UsageError
from stackbuild.files import atomic_writer
from stackbuild.refs import is_exact_reference, repository_of
from stackbuild.run.existing import find_existing


@dataclass(frozen=True)
class Saved:
    image: str
    fingerprint: str
    tags: tuple[str, ...]

    def to_json(self) -> dict:
        return {"image": self.image, "fingerprint": self.fingerprint, "tags": list(self.tags)}


def images_to_save(analysis: Analysis, backend: Backend) -> list[Saved]:
    """Each selected image's local build and its tags; refuses when one is not built."""
    local = find_existing(analysis, backend)
    missing = [name for name in analysis.selected if name not in local]
    if missing:
        raise StackbuildError(
            f"not built on this engine: {', '.join(missing)}; run `stackbuild build` first"
        )
    saved = []
    for name in analysis.selected:
        repository = repository_of(analysis.stack.reference(name))
        tags = sorted(
            t for t in local[name].tags
            if repository_of(t) == repository and not is_exact_reference(t)
        )
        saved.append(Saved(name, analysis.inputs[name].fingerprint, tuple(tags)))
    return saved


class _Checked:
    """The output handle as ``backend.save`` sees it: a failed write is a SaveError naming
    the file, never an OSError the engine client could take for its own (a FIFO whose
    reader left raises BrokenPipeError, a ConnectionError)."""

    def __init__(self, handle: IO[bytes], shown: Path) -> None:
        self._handle = handle
        self._shown = shown

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as error:
            raise SaveError(f"cannot write {self._shown}: {error.strerror or error}") from None


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@contextlib.contextmanager
def open_output(output: Path) -> Iterator[_Checked]:
    """Where ``save -o`` writes, as ``docker save -o`` users expect.

    A new or regular file (also through a symlink, which stays) is replaced
    atomically: the tar goes to a temporary file beside it, renamed over it when
    complete. A FIFO or a character device (``/dev/stdout``, a pipe to a compressor)
    is written into, never replaced. Anything else is refused; a file system that
    refuses the file is a SaveError: never a traceback, never a half tar at ``output``.
    """
    output = Path(output)
    target = Path(os.path.realpath(output))  # a symlink: write where it points
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise SaveError(f"cannot write {output}: {error.strerror}") from None
    if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        try:
            handle: IO[bytes] = open(target, "wb")  # noqa: SIM115 - a FIFO waits here for its reader
        except OSError as error:
            raise SaveError(f"cannot write {output}: {error.strerror}") from None
        try:
            yield _Checked(handle, output)
        finally:
            with contextlib.suppress(OSError):  # a reader gone: the write said so already
                handle.close()
        return
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(
            f"cannot write {output}: it is {_kind_of(mode)}; give a file name (a regular "
            "file there is replaced), a FIFO or a character device"
        )
    in_block = False  # an error of the block itself passes unchanged
    try:
        with atomic_writer(target) as handle:
            in_block = True
            yield _Checked(handle, output)
            in_block = False
    except OSError as error:
        if in_block:
            raise
        raise SaveError(f"cannot write {output}: {error.strerror or error}") from None


def save(analysis: Analysis, backend: Backend, output: Path) -> list[Saved]:
    """Write the tar (see ``open_output``): a failed or interrupted save leaves no half file."""
    saved = images_to_save(analysis, backend)
    with open_output(Path(output)) as handle:
        backend.save([tag for item in saved for tag in item.tags], handle)
    return saved


def load(backend: Backend, archive: Path, log: LogSink | None = None) -> list[str]:
    """Load a tar written by ``save`` (or ``docker save``); what the engine loaded."""
    archive = Path(archive)
    try:
        handle = archive.open("rb")
    except OSError as error:
        raise StackbuildError(f"cannot read {archive}: {error.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        return backend.load(handle, size, log or (lambda line: None))
