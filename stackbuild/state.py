"""``.stackbuild/``: what stackbuild remembers between runs.

    .stackbuild/
      images/<image>.json   inputs, fingerprint, duration, tags of the last good build
      hashcache.json        file digests keyed on (path, size, mtime, inode)
      graph.json            the resolved DAG, keyed on what decides it (see graph.py)
      logs/                 one log per image (and its checks) + stackbuild.log (logs.py)
      run.lock              held by a running build; a second run waits or refuses

Every write goes to a temporary file in the same directory and is renamed
into place, so a crash or Ctrl-C never leaves half a file; a record that
cannot be read is treated as absent (the image is rebuilt), never an error.
A file that cannot be written (a full disk, a read-only checkout) is one
``StateWriteError`` naming it, and the file it would have replaced is intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from stackbuild.errors import LockBusy, StateWriteError
from stackbuild.files import atomic_write
from stackbuild.fingerprint import ImageInputs

STATE_DIRNAME = ".stackbuild"


def safe_filename(image: str) -> str:
    """A file name for an image name, which may contain '/'."""
    return quote(image, safe="")


@dataclass
class BuildRecord:
    """What the last successful build of one image was made of."""

    image: str
    fingerprint: str
    inputs: ImageInputs
    duration_s: float
    built_at: float  # unix time
    tags: list[str] = field(default_factory=list)
    image_id: str | None = None
    engine: str | None = None
    # the tests hash (checks.checks_digest) whose checks passed on this build; "" when it
    # has none, None when they were not run (--no-test): the next run runs them
    tests: str | None = None

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "fingerprint": self.fingerprint,
            "inputs": self.inputs.to_json(),
            "duration_s": self.duration_s,
            "built_at": self.built_at,
            "tags": self.tags,
            "image_id": self.image_id,
            "engine": self.engine,
            "tests": self.tests,
        }

    @classmethod
    def from_json(cls, data: dict) -> BuildRecord:
        return cls(
            image=data["image"],
            fingerprint=data["fingerprint"],
            inputs=ImageInputs.from_json(data["inputs"]),
            duration_s=float(data.get("duration_s", 0.0)),
            built_at=float(data.get("built_at", 0.0)),
            tags=list(data.get("tags", [])),
            image_id=data.get("image_id"),
            engine=data.get("engine"),
            tests=data.get("tests"),
        )


class StateDir:
    """The ``.stackbuild/`` directory of one stack."""

    def __init__(self, root: Path) -> None:
        self.path = root / STATE_DIRNAME
        self.images = self.path / "images"
        self.logs = self.path / "logs"
        self.hash_cache = self.path / "hashcache.json"
        self.graph_cache = self.path / "graph.json"
        self.provenance = self.path / "provenance"
        self.sboms = self.path / "sbom"
        self.sbom_cache = self.path / "sbom-cache"  # packages per filesystem (run/attest.py)
        self.lock_file = self.path / "run.lock"

    def record_path(self, image: str) -> Path:
        return self.images / f"{safe_filename(image)}.json"

    def provenance_path(self, image: str) -> Path:
        """``provenance/<image>.json``: the last build's provenance statement."""
        return self.provenance / f"{safe_filename(image)}.json"

    def sbom_path(self, image: str) -> Path:
        """``sbom/<image>.cdx.json``: the last build's CycloneDX SBOM."""
        return self.sboms / f"{safe_filename(image)}.cdx.json"

    def log_path(self, image: str, suffix: str = ".log") -> Path:
        """``logs/<image>.log``, the build's; ``suffix=".test.log"``: its checks'."""
        return self.logs / f"{safe_filename(image)}{suffix}"

    def load_record(self, image: str) -> BuildRecord | None:
        try:
            data = json.loads(self.record_path(image).read_bytes())
            return BuildRecord.from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load_records(self, images: Iterable[str]) -> dict[str, BuildRecord | None]:
        """``load_record`` of each image, with ``images/`` listed once: an image never
        built here costs no failed open (every image, on a stack's first plans)."""
        try:
            present = set(os.listdir(self.images))
        except FileNotFoundError:
            present = set()
        except OSError:  # not listable, maybe still readable: ask for each record
            return {image: self.load_record(image) for image in images}
        return {
            image: self.load_record(image) if f"{safe_filename(image)}.json" in present else None
            for image in images
        }

    def save_record(self, record: BuildRecord) -> None:
        data = json.dumps(record.to_json(), sort_keys=True, indent=1).encode()
        atomic_write(self.record_path(record.image), data)

    def forget(self, image: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record_path(image).unlink()

    @contextlib.contextmanager
    def run_lock(
        self, wait: bool = True, notify: Callable[[str], None] = print
    ) -> Iterator[None]:
        """Hold ``run.lock`` for the duration of a build.

        A second run on the same stack waits for the first (``wait``) or
        refuses with a clear message; flock is released by the kernel when
        the process dies, so a crashed run never leaves a stale lock.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # a bare descriptor, not a buffered file: a write that fails (a full disk) fails
            # once, here, instead of again when a buffer is flushed at close
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise StateWriteError(self.lock_file, error) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._lock_holder(fd)
                if not wait:
                    raise LockBusy(
                        f"another stackbuild run (pid {holder}) is building this stack "
                        f"({self.lock_file}); wait for it to finish or run without --no-wait"
                    ) from None
                notify(
                    f"another stackbuild run (pid {holder}) is building this stack; "
                    "waiting for it to finish"
                )
                started = time.monotonic()
                fcntl.flock(fd, fcntl.LOCK_EX)
                notify(f"lock acquired after {time.monotonic() - started:.1f}s")
            # the pid is for the message of a run that waits; but a state directory that
            # cannot take these few bytes cannot take a build's records and logs either:
            # refuse now, before building anything, rather than fail every image after it
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
            except OSError as error:
                raise StateWriteError(self.lock_file, error) from None
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _lock_holder(fd: int) -> str:
        try:
            return os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        except OSError:
            return "unknown"
