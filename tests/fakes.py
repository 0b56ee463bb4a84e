"""The one fake backend of the unit tests: a Docker engine in memory.

``FakeBackend`` implements every method of ``stackbuild.backends.contract.Backend``
(checked by mypy, see ``_implements_the_contract`` at the end), so orchestration
(``stackbuild.run``) runs on it exactly as on a real engine:

- local images by id and by reference (``add_image``, or ``local=`` as the listing
  ``fingerprinted_images`` returns), with labels and RepoDigests; a build adds one
  labelled and tagged like the request says, a pull adds the registry's copy;
- a registry, ``FakeRegistry`` (a dict: tag reference -> ``Manifest``), which several
  fakes may share: what one engine pushes, another pulls;
- a log of every call (``calls``: every attempt; ``completed``: the ones that did
  their work, i.e. did not raise and, for a build, built), read with
  ``attempts(name)``, ``done(name)`` and ``history(*names)``;
- attestations: ``FakeImage.files`` is an image's filesystem (``read_image_files``), and
  ``FakeRegistry.attachments`` what was attached to each manifest digest;
- failures on request: ``fail=`` (builds that fail), ``die_building=`` (builds that
  kill the engine), ``dead`` (the engine stops answering: every call raises
  ``EngineUnreachable``), ``check_pins`` (a build whose pin names no local image fails,
  as on a real engine), and ``fail_next`` / ``fail_always`` to make any call raise;
- checks (``run_check``): each passes (exit 0, HTTP 200) unless ``check_outcomes`` maps
  ``(image, check name)`` to what it should report instead; a check of an image the
  engine does not hold reports that, as the real one does.

Registry failures use ``stackbuild.errors.registry_error``, the classifier the real
engine's errors go through, so "not found" is ``RegistryNotFound`` here as there.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from stackbuild.backends.contract import (
    FINGERPRINT_LABEL,
    Attachment,
    Backend,
    BuildRequest,
    BuildResult,
    ByteWriter,
    Cancelled,
    CheckRequest,
    LocalImage,
    LogSink,
    ManifestUnreachable,
)
from stackbuild.checks import CheckOutcome
from stackbuild.errors import EngineUnreachable, StackbuildError, registry_error
from stackbuild.layers import ImageLayers, Layer
from stackbuild.refs import fingerprint12, repository_of, split_reference
from stackbuild.run.build import Reporter

SAVE_CHUNK = 1 << 16  # bytes per write of ``save``, like an engine streaming its tar
ARCHIVE_INDEX = "fake-index.json"  # the member of a fake ``docker save`` tar naming its images


def normal_ref(ref: str) -> str:
    """``ref`` as an engine spells a local tag: Docker Hub names short, ``:latest`` added;
    ``repo@digest`` with its repository short. An image id stays as it is."""
    if ref.startswith("sha256:"):
        return ref
    repository, tag, digest = split_reference(ref)
    if digest:
        return f"{repository_of(repository)}@{digest}"
    return f"{repository_of(repository)}:{tag or 'latest'}"


def manifest_digest(image_id: str) -> str:
    """The digest a registry gives an image's manifest: the same image, the same digest."""
    return "sha256:" + hashlib.sha256(f"manifest of {image_id}".encode()).hexdigest()


def image_id_of(digest: str) -> str:
    """The image id of a manifest seeded into a registry without one."""
    return "sha256:" + hashlib.sha256(f"image of {digest}".encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a registry serves for a tag: the manifest's digest and the image it describes."""

    digest: str
    image_id: str = ""  # "" : derived from the digest
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = ""  # the image config's creation time, RFC 3339; "" : none

    def __post_init__(self) -> None:
        if not self.image_id:
            object.__setattr__(self, "image_id", image_id_of(self.digest))


class FakeRegistry(dict[str, Manifest]):
    """Tag reference -> what the registry serves for it. Seed it with ``{ref: digest}``
    or ``{ref: Manifest(...)}``; give the same one to several fakes to share it."""

    def __init__(self, entries: Mapping[str, str | Manifest] | None = None) -> None:
        super().__init__()
        # (repository, subject digest) -> what was attached to it, in order
        self.attachments: dict[tuple[str, str], list[Attachment]] = {}
        for ref, entry in (entries or {}).items():
            self.put(ref, entry if isinstance(entry, Manifest) else Manifest(entry))

    def put(self, ref: str, manifest: Manifest) -> None:
        self[normal_ref(ref)] = manifest

    def find(self, ref: str) -> Manifest | None:
        """The manifest ``ref`` names: by tag, or by digest within its repository."""
        repository, _, digest = split_reference(ref)
        if digest is None:
            return self.get(normal_ref(ref))
        wanted = repository_of(repository)
        for tag_ref, manifest in list(self.items()):
            if manifest.digest == digest and repository_of(tag_ref) == wanted:
                return manifest
        return None


@dataclass
class FakeImage:
    """One local image of a ``FakeBackend``."""

    id: str
    labels: dict[str, str] = field(default_factory=dict)
    repo_digests: set[str] = field(default_factory=set)  # "repository@sha256:..."
    size: int = 0  # bytes of its layer in a saved tar
    files: dict[str, bytes] = field(default_factory=dict)  # its filesystem: path -> content
    layers: tuple[Layer, ...] = ()  # bottom first; a build: its first pin's, plus its own


class FakeBackend:
    """A Docker engine in memory; see the module docstring."""

    def __init__(
        self,
        name: str = "fake://engine",
        registry: FakeRegistry | None = None,
        local: Mapping[str, Iterable[LocalImage]] | None = None,
        *,
        fail: Iterable[str] = (),
        die_building: Iterable[str] = (),
        check_pins: bool = True,
        id_format: str = "sha256:id-{image}",
        platform: str | None = None,
    ) -> None:
        self.name = name
        self.platform = platform  # what engine_platform answers (docker info's)
        self.registry = FakeRegistry() if registry is None else registry
        self.images: dict[str, FakeImage] = {}  # id -> image
        self.refs: dict[str, str] = {}  # normal_ref -> image id
        self.fail = set(fail)  # images whose build ends with a non-zero step
        self.die_building = set(die_building)  # building one of these kills the engine
        self.check_pins = check_pins
        self.id_format = id_format  # the id of a build: {image}, {fingerprint12}
        self.dead = False
        self.requests: dict[str, BuildRequest] = {}  # image -> its last build request
        # (image, check name) -> what run_check reports; any other check passes
        self.check_outcomes: dict[tuple[str, str], CheckOutcome] = {}
        self.check_requests: list[CheckRequest] = []  # every check asked for, in order
        # image -> the warnings its build reports (a real one: a cache_from out of reach)
        self.build_warnings: dict[str, tuple[str, ...]] = {}
        self.indexes: dict[str, Any] = {}  # normal_ref -> the image index put there
        self.filesystems: dict[str, dict[str, bytes]] = {}  # image name -> what a build holds
        self.calls: list[tuple[str, str]] = []  # (method, what it was asked about), in order
        self.completed: list[tuple[str, str]] = []  # the calls that did their work
        self._next: dict[tuple[str, str | None], list[Exception]] = {}
        self._always: dict[tuple[str, str | None], Exception] = {}
        self.lock = threading.RLock()
        for fingerprint, found in (local or {}).items():
            for image in found:
                self.add_image(image.id, image.tags, labels={FINGERPRINT_LABEL: fingerprint})

    def __repr__(self) -> str:
        return f"FakeBackend({self.name!r})"

    # -- setting it up -------------------------------------------------------------------

    def add_image(
        self,
        image_id: str,
        tags: Iterable[str] = (),
        *,
        labels: Mapping[str, str] | None = None,
        repo_digests: Iterable[str] = (),
        size: int = 0,
        layers: Iterable[Layer] = (),
    ) -> FakeImage:
        """Put an image on the engine (or add tags, labels and digests to one it holds)."""
        with self.lock:
            image = self.images.setdefault(image_id, FakeImage(image_id))
            image.layers = tuple(layers) or image.layers
            image.labels.update(labels or {})
            image.repo_digests.update(normal_ref(d) for d in repo_digests)
            image.size = max(image.size, size)
            for tag in tags:
                self.refs[normal_ref(tag)] = image_id
            return image

    def fail_next(self, call: str, *errors: Exception, ref: str | None = None) -> None:
        """The next calls of method ``call`` about ``ref`` (None: about anything) raise
        ``errors``, one each, in turn; the calls after them behave normally."""
        with self.lock:
            self._next.setdefault((call, ref), []).extend(errors)

    def fail_always(self, call: str, error: Exception, ref: str | None = None) -> None:
        """Every call of method ``call`` about ``ref`` (None: about anything) raises ``error``."""
        with self.lock:
            self._always[(call, ref)] = error

    # -- what it was asked ---------------------------------------------------------------

    def attempts(self, call: str) -> list[str]:
        """What each call of method ``call`` was about (an image, a reference), in order."""
        with self.lock:
            return [arg for name, arg in self.calls if name == call]

    def done(self, call: str) -> list[str]:
        """Like ``attempts``, for the calls that did their work (did not raise; a build: built)."""
        with self.lock:
            return [arg for name, arg in self.completed if name == call]

    def history(self, *calls: str) -> list[tuple[str, str]]:
        """Every (method, argument) attempted, of the methods ``calls`` (all without)."""
        with self.lock:
            return [c for c in self.calls if not calls or c[0] in calls]

    def tags_of(self, image_id: str) -> tuple[str, ...]:
        with self.lock:
            return tuple(sorted(ref for ref, i in self.refs.items() if i == image_id))

    # -- inner workings ------------------------------------------------------------------

    def _enter(self, call: str, arg: str = "") -> None:
        """Log the call; raise when the engine is dead or a failure was asked for."""
        with self.lock:
            self.calls.append((call, arg))
            if self.dead:
                raise EngineUnreachable(f"cannot reach the Docker engine at {self.name}")
            for key in ((call, arg), (call, None)):
                queue = self._next.get(key)
                if queue:
                    raise queue.pop(0)
                if key in self._always:
                    raise copy.copy(self._always[key])  # a fresh one: threads may share it

    def _leave(self, call: str, arg: str = "") -> None:
        with self.lock:
            self.completed.append((call, arg))

    def _find(self, ref: str) -> FakeImage | None:
        """The local image ``ref`` names: an id, ``repo@digest`` or a reference."""
        with self.lock:
            if ref in self.images:
                return self.images[ref]
            normal = normal_ref(ref)
            if "@" in normal:
                return next((i for i in self.images.values() if normal in i.repo_digests), None)
            image_id = self.refs.get(normal)
            return self.images.get(image_id) if image_id else None

    # -- the Backend contract ------------------------------------------------------------

    def ping(self) -> None:
        self._enter("ping")
        self._leave("ping")

    def engine_platform(self) -> str | None:
        return self.platform

    def close(self) -> None:
        with self.lock:
            self.calls.append(("close", ""))
            self.completed.append(("close", ""))

    def build(self, request: BuildRequest, log: LogSink, cancel: threading.Event) -> BuildResult:
        with self.lock:
            self.requests[request.image] = request
        self._enter("build", request.image)
        log(f"Step 1/1 : FROM whatever for {request.image}")
        if cancel.is_set():
            return BuildResult(ok=False, error="cancelled", cancelled=True)
        if self.check_pins:
            for ref, source in sorted(request.pins.items()):
                if self._find(source) is None:  # the real engine's words
                    return BuildResult(ok=False, error=(
                        f"cannot pin {ref} to {source}: no such image on the engine at "
                        f"{self.name}"
                    ))  # fmt: skip
        if request.image in self.die_building:
            self.dead = True
            raise EngineUnreachable(f"lost the connection to {self.name} while building")
        if request.image in self.fail:
            log(f"{request.image}: something broke")
            return BuildResult(ok=False, error="returned a non-zero code: 1")
        image_id = self.id_format.format(
            image=request.image, fingerprint12=fingerprint12(request.fingerprint)
        )
        below = next((self._find(s) for _r, s in sorted(request.pins.items())), None)
        own = Layer(f"sha256:layer-of-{image_id}", 100, f"COPY . / for {request.image}")
        layers = (below.layers if below else ()) + (own,)
        built = self.add_image(image_id, request.tags, labels=request.labels, layers=layers)
        built.files.update(self.filesystems.get(request.image, {}))
        self._leave("build", request.image)
        warnings = self.build_warnings.get(request.image, ())
        return BuildResult(ok=True, image_id=image_id, warnings=warnings)

    def run_check(
        self, request: CheckRequest, log: LogSink, cancel: threading.Event
    ) -> CheckOutcome:
        what = f"{request.image}:{request.name}"
        with self.lock:
            self.check_requests.append(request)
        self._enter("run_check", what)
        if self._find(request.ref) is None:
            return CheckOutcome(error=f"no such image on the engine at {self.name}: "
                                      f"{request.ref}")  # fmt: skip
        if cancel.is_set():
            return CheckOutcome(cancelled=True)
        outcome = self.check_outcomes.get((request.image, request.name))
        outcome = outcome or CheckOutcome(exit_code=0, http_status=200)
        for line in (outcome.stdout + outcome.stderr).splitlines():
            log(line)
        self._leave("run_check", what)
        return outcome

    def remove_check_containers(self, run_id: str) -> list[str]:
        self._enter("remove_check_containers", run_id)
        self._leave("remove_check_containers", run_id)
        return []  # its checks leave no containers

    def fingerprinted_images(self) -> dict[str, list[LocalImage]]:
        self._enter("fingerprinted_images")
        found: dict[str, list[LocalImage]] = {}
        with self.lock:
            for image in self.images.values():
                fingerprint = image.labels.get(FINGERPRINT_LABEL)
                if fingerprint:
                    found.setdefault(fingerprint, []).append(
                        LocalImage(image.id, self.tags_of(image.id))
                    )
        self._leave("fingerprinted_images")
        return found

    def image_id(self, ref: str) -> str | None:
        self._enter("image_id", ref)
        image = self._find(ref)
        self._leave("image_id", ref)
        return image.id if image else None

    def image_labels(self, ref: str) -> dict[str, str] | None:
        self._enter("image_labels", ref)
        image = self._find(ref)
        self._leave("image_labels", ref)
        return dict(image.labels) if image else None

    def local_digest(self, ref: str) -> str | None:
        self._enter("local_digest", ref)
        image = self._find(ref)
        self._leave("local_digest", ref)
        if image is None:
            return None
        wanted = repository_of(ref)
        for repo_digest in sorted(image.repo_digests):
            repository, _, digest = repo_digest.partition("@")
            if repository_of(repository) == wanted:
                return digest
        return image.id

    def image_layers(self, ref: str) -> ImageLayers | None:
        self._enter("image_layers", ref)
        image = self._find(ref)
        self._leave("image_layers", ref)
        if image is None:
            return None
        return ImageLayers(image.id, sum(layer.size for layer in image.layers), image.layers)

    def tag(self, image: str, ref: str) -> None:
        self._enter("tag", ref)
        if split_reference(ref)[2]:
            raise ValueError(f"cannot tag an image as a digest reference: {ref}")
        found = self._find(image)
        if found is None:
            raise StackbuildError(f"no such image on the engine at {self.name}: {image}")
        with self.lock:
            self.refs[normal_ref(ref)] = found.id
        self._leave("tag", ref)

    def remove_images(self, refs_or_ids: Iterable[str]) -> list[str]:
        removed = []
        for ref in refs_or_ids:
            self._enter("remove_images", ref)
            with self.lock:
                image = self._find(ref)
                if image is None:
                    continue
                if ref == image.id:  # by id: the image and every tag of it
                    del self.images[image.id]
                    for tag in self.tags_of(image.id):
                        del self.refs[tag]
                else:  # by reference: that tag; the image goes with its last one
                    self.refs.pop(normal_ref(ref), None)
                    if not self.tags_of(image.id):
                        del self.images[image.id]
            removed.append(ref)
            self._leave("remove_images", ref)
        return removed

    def registry_digest(self, ref: str) -> str:
        self._enter("registry_digest", ref)
        manifest = self.registry.find(ref)
        if manifest is None:
            raise registry_error(f"manifest for {ref} not found: manifest unknown", ref,
                                 "look up")  # fmt: skip
        self._leave("registry_digest", ref)
        return manifest.digest

    def has_tag(self, ref: str) -> bool:
        self._enter("has_tag", ref)
        found = self.registry.find(ref) is not None
        self._leave("has_tag", ref)
        return found

    def registry_manifest(self, ref: str) -> tuple[bytes, str, str | None] | None:
        self._enter("registry_manifest", ref)
        self._leave("registry_manifest", ref)
        return None  # a registry in a dict has no manifest bytes to check a digest against

    def registry_retag(self, source: str, tag: str) -> str:
        target = f"{split_reference(source)[0]}:{tag}"
        self._enter("registry_retag", target)
        manifest = self.registry.find(source)
        if manifest is None:
            raise registry_error(f"manifest for {source} not found: manifest unknown", source,
                                 "read the manifest of")  # fmt: skip
        self.registry.put(target, manifest)
        self._leave("registry_retag", target)
        return manifest.digest

    def registry_config(self, ref: str, timeout: float) -> Mapping[str, Any]:
        self._enter("registry_config", ref)
        manifest = self.registry.find(ref)
        if manifest is None:
            raise ManifestUnreachable(f"{ref}: HTTP Error 404: Not Found", 404)
        self._leave("registry_config", ref)
        config: dict[str, Any] = {"config": {"Labels": dict(manifest.labels)}}
        if manifest.created:
            config["created"] = manifest.created
        return config
    def put_index(self, ref: str, body: bytes, media_type: str) -> str:
        self._enter("put_index", ref)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.registry.put(ref, Manifest(digest))
        self.indexes[normal_ref(ref)] = json.loads(body)
        self._leave("put_index", ref)
        return digest

    def push(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        self._enter("push", ref)
        repository, tag, digest = split_reference(ref)
        if digest or not tag:
            raise ValueError(f"push needs a tag reference (repo:tag), not {ref}")
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        image = self._find(ref)
        if image is None:
            raise registry_error(
                f"An image does not exist locally with the tag: {repository}", ref, "push"
            )
        pushed = manifest_digest(image.id)
        self.registry.put(ref, Manifest(pushed, image.id, dict(image.labels)))
        with self.lock:
            image.repo_digests.add(normal_ref(f"{repository}@{pushed}"))
        log(f"{tag}: digest: {pushed} size: {image.size}")
        self._leave("push", ref)
        return pushed

    def pull(self, ref: str, log: LogSink, cancel: threading.Event | None = None) -> str:
        self._enter("pull", ref)
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        manifest = self.registry.find(ref)
        if manifest is None:
            raise registry_error(f"manifest for {ref} not found: manifest unknown", ref, "pull")
        repository, tag, digest = split_reference(ref)
        self.add_image(
            manifest.image_id,
            () if digest else (ref,),  # a pull by digest adds no tag, only the RepoDigest
            labels=manifest.labels,
            repo_digests=(f"{repository}@{manifest.digest}",),
        )
        log(f"Digest: {manifest.digest}")
        self._leave("pull", ref)
        return manifest.image_id

    def archive(self, refs: Iterable[str]) -> bytes:
        """What ``save(refs)`` writes: a tar of the images ``refs`` name, with those tags
        (``ARCHIVE_INDEX``), each image's layer ``size`` bytes; the same bytes every time."""
        refs = list(refs)
        index: dict[str, dict] = {}
        with self.lock:
            for ref in refs:
                image = self._find(ref)
                if image is None:
                    raise StackbuildError(f"docker save failed: reference does not exist: {ref}")
                entry = index.setdefault(image.id, {"labels": image.labels, "tags": [],
                                                    "size": image.size})  # fmt: skip
                if ref != image.id:
                    entry["tags"].append(normal_ref(ref))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            members = [(ARCHIVE_INDEX, json.dumps(index, sort_keys=True).encode())]
            members += [(f"{i.removeprefix('sha256:')}/layer.tar", b"x" * e["size"])
                        for i, e in sorted(index.items())]  # fmt: skip
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def engine_version(self) -> str:
        self._enter("engine_version")
        self._leave("engine_version")
        return "fake-1.0"

    def read_image_files(self, ref: str, paths: Iterable[str],
                         wanted: Callable[[str], bool]) -> dict[str, bytes]:
        self._enter("read_image_files", ref)
        image = self._find(ref)
        if image is None:
            raise StackbuildError(f"cannot read the files of {ref}: no such image")
        self._leave("read_image_files", ref)
        roots = [p.strip("/") for p in paths]
        return {path: data for path, data in image.files.items() if wanted(path) and any(
            path == root or path.startswith(root + "/") for root in roots)}

    def attach(self, subject_ref: str, attachment: Attachment) -> str:
        self._enter("attach", subject_ref)
        repository, _, digest = split_reference(subject_ref)
        if not digest or self.registry.find(subject_ref) is None:
            raise registry_error(f"manifest unknown: {subject_ref}", subject_ref, "attach")
        with self.lock:
            self.registry.attachments.setdefault(
                (repository_of(repository), digest), []).append(attachment)
        self._leave("attach", subject_ref)
        return "sha256:" + hashlib.sha256(attachment.payload).hexdigest()

    def fetch_attachment(self, subject_ref: str, artifact_type: str,
                         tag_suffix: str) -> bytes | None:
        self._enter("fetch_attachment", subject_ref)
        repository, _, digest = split_reference(subject_ref)
        found = [a for a in self.registry.attachments.get(
            (repository_of(repository), digest or ""), []) if a.artifact_type == artifact_type]
        self._leave("fetch_attachment", subject_ref)
        return found[-1].payload if found else None

    def registry_labels(self, ref: str) -> dict[str, str] | None:
        self._enter("registry_labels", ref)
        manifest = self.registry.find(ref)
        self._leave("registry_labels", ref)
        return None if manifest is None else dict(manifest.labels)

    def save(self, refs: Iterable[str], fileobj: ByteWriter) -> None:
        refs = list(refs)
        self._enter("save", " ".join(refs))
        data = self.archive(refs)
        for start in range(0, len(data), SAVE_CHUNK):
            fileobj.write(data[start : start + SAVE_CHUNK])
        self._leave("save", " ".join(refs))

    def load(self, fileobj: IO[bytes], size: int, log: LogSink) -> list[str]:
        self._enter("load")
        try:
            with tarfile.open(fileobj=fileobj, mode="r|") as tar:
                index = None
                for member in tar:
                    if member.name == ARCHIVE_INDEX:
                        handle = tar.extractfile(member)
                        index = json.loads(handle.read()) if handle else None
        except (tarfile.TarError, ValueError) as error:
            raise StackbuildError(f"docker load failed: {error}") from None
        if not isinstance(index, dict):
            raise StackbuildError("docker load failed: not an archive of docker save")
        loaded = []
        for image_id, entry in index.items():
            self.add_image(image_id, entry["tags"], labels=entry["labels"], size=entry["size"])
            lines = [f"Loaded image: {t}" for t in entry["tags"]]
            lines = lines or [f"Loaded image ID: {image_id}"]
            for line in lines:
                log(line)
                loaded.append(line.partition(": ")[2])
        self._leave("load")
        return loaded


def _implements_the_contract(backend: FakeBackend) -> Backend:
    return backend  # mypy checks that a FakeBackend is a Backend



class QuietReporter:
    """The one fake of ``run.build.Reporter``: hears everything, says nothing. Tests
    subclass it and override only what they record, so a new Reporter method is added
    here once."""

    def start(self, to_build: int, up_to_date: int, to_test: int = 0) -> None:
        pass

    def scheduled(self, schedule: Any, slots: int, durations: Mapping[str, float]) -> None:
        pass

    def image_started(self, image: str, engine: str | None = None) -> None:
        pass

    def image_output(self, image: str, line: str) -> None:
        pass

    def image_requeued(self, image: str, why: str) -> None:
        pass

    def image_finished(self, result: Any) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


_: type[Reporter] = QuietReporter
