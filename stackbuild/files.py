"""Files written whole or not at all: the one atomic writer every stage shares.

State records, caches, stack.lock and saved tars go to a temporary file beside the
target and are renamed into place, so a crash, Ctrl-C or a full disk never leaves
half a file and readers see the old content or the new.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from stackbuild.errors import StateWriteError


def _read_umask() -> int:
    # reading the umask means setting it: done once, at import, before any thread runs
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """A handle whose content replaces ``path`` when the block ends without an error, so
    readers see the old or the new file, never half (a failed block leaves no trace).

    The new file gets the old one's mode, or the umask's default like a plain open():
    mkstemp's 0600 would make a committed stack.lock or a saved tar private.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_writer``); StateWriteError
    naming ``path`` when it cannot be written (the old file, if any, is left as it was)."""
    try:
        with atomic_writer(path) as handle:
            handle.write(data)
    except OSError as error:
        raise StateWriteError(path, error) from None
