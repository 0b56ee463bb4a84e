"""Fingerprints: a content hash of every input that decides an image.

An image's ``ImageInputs`` hold its Dockerfile digest, every context file
Docker would send (path, mode, content digest; ``.dockerignore`` applied with
Docker's own semantics, see ``stackbuild.context``), build args, labels,
target, platform, the fingerprints of its in-stack parents and its upstream
references (pinned digest where known). The fingerprint is the sha256 of
their canonical JSON: no mtimes, no absolute paths, no listing order.

Reads files, never Docker. A ``HashCache`` keyed on (path, size, mtime_ns,
inode, mode) makes a second run over an unchanged tree reread nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from stackbuild.context import ContextError, ContextFile, context_entry
from stackbuild.errors import StateWriteError
from stackbuild.files import atomic_write
from stackbuild.manifest import ImageSpec

_STR_MAPPINGS = ("files", "build_args", "labels", "parents", "upstream")
_OPTIONAL_STRS = ("target", "platform")
# what json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=True) builds
# on every call, built once (a stack hashes thousands of images)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class ImageInputs:
    """Everything that decides one image's content; ``.fingerprint`` hashes it.

    Treat the mappings as read-only: the fingerprint is computed once.
    """

    dockerfile: str  # sha256 hex of the Dockerfile's bytes
    files: Mapping[str, str]  # context-relative posix path -> "<kind><mode>:<digest>"
    build_args: Mapping[str, str]
    labels: Mapping[str, str]
    target: str | None
    platform: str | None
    parents: Mapping[str, str]  # in-stack parent name -> its fingerprint
    upstream: Mapping[str, str]  # upstream reference -> pinned digest, or "" when unpinned

    @cached_property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical JSON (sorted keys, no whitespace, ASCII)."""
        blob = _CANONICAL.encode(self.to_json())
        return "sha256:" + hashlib.sha256(blob.encode("ascii")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; ``from_json`` reads it back."""
        return {
            "dockerfile": self.dockerfile,
            "files": dict(self.files),
            "build_args": dict(self.build_args),
            "labels": dict(self.labels),
            "target": self.target,
            "platform": self.platform,
            "parents": dict(self.parents),
            "upstream": dict(self.upstream),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageInputs:
        """Inverse of ``to_json``; ValueError for anything else (a stale state file)."""
        if not isinstance(data, Mapping):
            raise ValueError("image inputs: expected an object")
        values: dict[str, Any] = {}
        if not isinstance(data.get("dockerfile"), str):
            raise ValueError("image inputs: 'dockerfile' must be a string")
        values["dockerfile"] = data["dockerfile"]
        for name in _STR_MAPPINGS:
            mapping = data.get(name)
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ValueError(f"image inputs: '{name}' must map strings to strings")
            values[name] = dict(mapping)
        for name in _OPTIONAL_STRS:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"image inputs: '{name}' must be a string or null")
            values[name] = value
        return cls(**values)


# --------------------------------------------------------------------------- hashing

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str], size_hint: int = 0) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if size_hint < _CHUNK:
            # small file: one read of the right size (a 1 MiB read buffer costs an mmap)
            data = os.read(fd, size_hint + 1)
            h.update(data)
            if len(data) <= size_hint:
                return h.hexdigest()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := os.readv(fd, (buf,)):
            h.update(view[:n])  # hashlib releases the GIL for large updates
    finally:
        os.close(fd)
    return h.hexdigest()


def _racy_window_ns(mtime_ns: int) -> int:
    # whole-second mtimes mean a coarse filesystem; otherwise the kernel's coarse
    # clock stamps files with jiffy (1-10 ms) granularity
    return 2_000_000_000 if mtime_ns % 1_000_000_000 == 0 else 50_000_000


class HashCache:
    """File digests keyed on (path, size, mtime_ns, inode, mode).

    A hit never rereads the file. A digest taken while the file's mtime is
    within a clock tick of now ("racily clean", as git calls it) is used in
    this run but not saved: the file could still change without its mtime
    moving. ``hits``/``misses`` count lookups; ``dirty`` says ``save`` has
    something new to write.
    """

    VERSION = 1

    def __init__(self) -> None:
        # path -> [size, mtime_ns, inode, mode, hex digest], JSON-ready
        self._entries: dict[str, list[Any]] = {}
        self._racy: set[str] = set()
        self._used: set[str] = set()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.dirty = False

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HashCache:
        """The cache saved at ``path``; an empty one when it is missing or unreadable."""
        cache = cls()
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return cache
        if (
            isinstance(data, dict)
            and data.get("version") == cls.VERSION
            and isinstance(data.get("entries"), dict)
        ):
            # entries are checked when looked up, not here: loading stays one json.loads
            cache._entries = data["entries"]
        return cache

    def save(self, path: str | os.PathLike[str]) -> bool:
        """Write atomically (temp file + rename); racy digests are left out.

        Best effort, like the cache itself: False when ``path`` cannot be
        written (a read-only checkout still plans, it just hashes again).
        """
        entries = self._entries
        if self._racy:
            entries = {p: e for p, e in entries.items() if p not in self._racy}
        blob = json.dumps({"version": self.VERSION, "entries": entries}, separators=(",", ":"))
        try:
            atomic_write(Path(path), blob.encode("ascii"))
        except StateWriteError:
            return False
        self.dirty = False
        return True

    def forget_unused(self) -> None:
        """Drop entries this run did not look up (after hashing every image of a stack),
        so files deleted or moved out of every context do not stay in the cache forever."""
        kept = {p: e for p, e in self._entries.items() if p in self._used}
        if len(kept) != len(self._entries):  # a no-op run still writes nothing
            self._entries = kept
            self.dirty = True

    def digest(self, path: str | os.PathLike[str], st: os.stat_result) -> str:
        """Hex sha256 of the regular file at ``path`` whose stat result is ``st``."""
        key = os.fspath(path)
        entry = self._entries.get(key)
        if entry is not None:
            try:
                if (
                    entry[0] == st.st_size
                    and entry[1] == st.st_mtime_ns
                    and entry[2] == st.st_ino
                    and entry[3] == st.st_mode
                    and type(entry[4]) is str
                ):
                    self.hits += 1
                    self._used.add(key)
                    return entry[4]
            except (TypeError, IndexError, KeyError):
                pass  # a hand-edited or foreign cache file: treat as a miss
        digest = sha256_file(key, st.st_size)
        racy = st.st_mtime_ns >= time.time_ns() - _racy_window_ns(st.st_mtime_ns)
        with self._lock:
            self.misses += 1
            self.dirty = True
            self._entries[key] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, digest]
            self._used.add(key)
            if racy:
                self._racy.add(key)
            else:
                self._racy.discard(key)
        return digest


# --------------------------------------------------------------------------- inputs


def _file_entries(files: Iterable[ContextFile], cache: HashCache) -> dict[str, str]:
    entries: dict[str, str] = {}
    lstat, digest, s_imode, s_isreg = os.lstat, cache.digest, stat.S_IMODE, stat.S_ISREG
    for f in files:
        source, kind = f.source, f.kind
        try:
            st = lstat(source)
            mode = st.st_mode
            if kind == "f" and s_isreg(mode):
                entries[f.path] = context_entry("f", s_imode(mode), digest(source, st))
            elif kind == "d" and stat.S_ISDIR(mode):
                entries[f.path] = context_entry("d", s_imode(mode))
            elif kind == "l" and stat.S_ISLNK(mode):
                entries[f.path] = context_entry("l", 0, os.readlink(source))
            else:
                raise ContextError(f"{f.source} changed type while it was being read; run again")
        except OSError as e:
            raise ContextError(f"cannot read {f.source}: {e.strerror or e}") from None
    return entries


def image_inputs(
    spec: ImageSpec,
    dockerfile: bytes,
    files: list[ContextFile],
    parents: Mapping[str, str],
    upstream: Mapping[str, str],
    cache: HashCache,
) -> ImageInputs:
    """The inputs of one image: ``dockerfile``, the very bytes that will be sent, and
    ``files`` as ``context_files`` listed them, hashed.

    Files map to ``f<mode octal>:<sha256>``, directories to ``d<mode>``,
    symlinks to ``l:<target>``. Raises ContextError for an unreadable file.
    """
    entries = _file_entries(files, cache)
    return ImageInputs(
        dockerfile=hashlib.sha256(dockerfile).hexdigest(),
        files=entries,
        build_args=dict(spec.build_args),
        labels=dict(spec.labels),
        target=spec.target,
        platform=spec.platform,
        parents=dict(parents),
        upstream=dict(upstream),
    )
