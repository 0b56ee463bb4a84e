"""Attestations of a build run: each built image's provenance and SBOM, and their push.

After a build, ``Attestor.built`` writes ``.stackbuild/provenance/<image>.json`` (the
statement of ``stackbuild.provenance``, its subject the image id) and
``.stackbuild/sbom/<image>.cdx.json`` (``stackbuild.sbom``, from the package databases
the engine reads out of the image without running it, or from
``.stackbuild/sbom-cache/`` when an image of the same layers was read before), on a
thread of its own so the next builds do not wait for it. After a push,
``Attestor.attach`` names the pushed manifest as the subject and attaches both
documents to it in the registry.

A failure to write them is reported, never a failed build (what was written is still
attached); a failure to attach them is that image's push failure (its documents must
be found from its digest).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from stackbuild import __version__, provenance, sbom
from stackbuild.analyze import Analysis
from stackbuild.backends.contract import Attachment, Backend, LogSink
from stackbuild.files import atomic_write
from stackbuild.refs import split_reference

SECRET_FILE_LIMIT = 1 << 20  # bytes of a secret file read to keep its value out


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def secret_values(secrets: Mapping[str, str]) -> list[str]:
    """What ``secrets:`` (id -> env:NAME | file:PATH) resolve to now, to keep them out of
    every document; one that cannot be read has no value to leak."""
    values = []
    for source in secrets.values():
        kind, _, name = source.partition(":")
        if kind == "env" and os.environ.get(name):
            values.append(os.environ[name])
        elif kind == "file":
            try:
                with open(name, "rb") as f:
                    text = f.read(SECRET_FILE_LIMIT).decode("utf-8", "replace").strip()
            except OSError:
                continue
            if text:
                values.append(text)
    return values


class Attestor:
    """Writes and attaches the attestations of one run; see the module docstring."""

    def __init__(self, analysis: Analysis, builder: str, notify: Callable[[str], None]) -> None:
        self.analysis = analysis
        self.builder = builder  # as --backend names it: "auto" | "buildkit" | "docker"
        self.notify = notify
        self.invocation_id = str(uuid.uuid4())
        self.sbom_cache = analysis.state.sbom_cache  # by sbom.filesystem_key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stackbuild-attest")
        self._jobs: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def provenance_path(self, image: str) -> Path:
        return self.analysis.state.provenance_path(image)

    def sbom_path(self, image: str) -> Path:
        return self.analysis.state.sbom_path(image)

    def built(self, name: str, backend: Backend, image_id: str,
              parent_ids: Mapping[str, str], started: float, finished: float,
              builder: str | None = None) -> None:
        """Queue the documents of ``name``, just built as ``image_id`` on ``backend`` from
        parents ``parent_ids`` (name -> image id or local reference); unix times;
        ``builder`` the one that ran the build ("buildkit" | "docker", auto's choice)."""
        job = self._pool.submit(self._write, name, backend, image_id, dict(parent_ids),
                                started, finished, builder or self.builder)  # fmt: skip
        with self._lock:
            self._jobs[name] = job

    def _write(self, name: str, backend: Backend, image_id: str, parent_ids: dict[str, str],
               started: float, finished: float, builder: str) -> None:
        # the last build's documents describe another image: never attach those
        for stale in (self.provenance_path(name), self.sbom_path(name)):
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            spec = self.analysis.stack.images[name]
            inputs = self.analysis.inputs[name]
            repository = self.analysis.stack.reference(name)
            # a registry-only parent is pinned by reference: by now it is on the engine
            parents = {p: i if i.startswith("sha256:") else (backend.image_id(i) or i)
                       for p, i in parent_ids.items()}  # fmt: skip
            secrets = secret_values(spec.secrets)
            run = provenance.RunInfo(
                stackbuild_version=__version__, engine_version=backend.engine_version(),
                backend=builder, invocation_id=self.invocation_id,
                started_on=rfc3339(started), finished_on=rfc3339(finished),
            )
            statement = provenance.statement(spec, repository, image_id, inputs, parents, run,
                                             secrets)  # fmt: skip
            atomic_write(self.provenance_path(name), _json(statement))
            found, distro = self._contents(backend, image_id)
            document = sbom.document(
                name, repository, image_id, found, distro,
                {p: (d, inputs.parents[p]) for p, d in parents.items() if p in inputs.parents},
                inputs.upstream, str(uuid.uuid5(uuid.NAMESPACE_URL, self.invocation_id + name)),
                run.finished_on,
            )
            atomic_write(self.sbom_path(name), document.encode())
        except Exception as error:  # reported; the image is built all the same, and what
            # was written (the provenance, when only the SBOM failed) is attached
            self.notify(f"attest  {name}: provenance/SBOM not written: {error}")

    def _contents(self, backend: Backend, image_id: str) -> tuple[list[sbom.Package], str]:
        """The packages and distribution of ``image_id``'s filesystem: read through the
        engine (a created container, ~50-300 ms), or from the cache when a filesystem
        with the same layers was read before (one inspect)."""
        layers = backend.image_layers(image_id)
        diff_ids = [layer.diff_id for layer in layers.layers] if layers else []
        cached = self.sbom_cache / f"{sbom.filesystem_key(diff_ids)}.json" if diff_ids else None
        if cached is not None:
            with contextlib.suppress(OSError, ValueError):  # absent or damaged: read again
                return sbom.contents_from_json(cached.read_bytes())
        files = backend.read_image_files(image_id, sbom.SEARCH_PATHS, sbom.wanted)
        site_dirs = sbom.python_dirs(files)
        if site_dirs:  # a second look, only at an image that has a python3
            files.update(backend.read_image_files(image_id, site_dirs, sbom.wanted))
        found, distro = sbom.packages(files), sbom.os_id(files)
        if cached is not None:
            with contextlib.suppress(OSError):  # a cache: the next run reads the image again
                atomic_write(cached, sbom.contents_to_json(found, distro))
        return found, distro

    def attach(self, name: str, subject_ref: str, log: LogSink, *, backend: Backend) -> None:
        """Attach ``name``'s documents to ``subject_ref`` ("repo@sha256:...", the pushed
        manifest), its provenance's subject now that manifest. Raises when refused."""
        with self._lock:
            job = self._jobs.get(name)
        if job is not None:
            job.result()  # written (or reported as not written)
        path = self.provenance_path(name)
        try:
            statement = json.loads(path.read_bytes())
        except (OSError, ValueError):  # built before provenance existed, or with it off
            log(f"=== stackbuild: no provenance for {name}: nothing attached ===")
            return
        repository, _, digest = split_reference(subject_ref)
        statement = provenance.with_subject(statement, repository, digest or "")
        data = _json(statement)
        atomic_write(path, data)
        documents = [Attachment(provenance.MEDIA_TYPE, data, "att")]
        with contextlib.suppress(OSError):  # an SBOM that could not be made: the provenance
            documents.append(Attachment(sbom.MEDIA_TYPE, self.sbom_path(name).read_bytes(),
                                        "sbom"))  # fmt: skip
        for document in documents:
            attached = backend.attach(subject_ref, document)
            log(f"=== stackbuild: attached {document.artifact_type} to {subject_ref} as "
                f"{attached} ===")

    def wait(self) -> None:
        """Once every queued document is written (failures were reported)."""
        self._pool.shutdown(wait=True)


def _json(document: object) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()
