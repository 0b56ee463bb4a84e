"""Load and validate stack.yaml into a ``Stack`` of frozen dataclasses.

Pure: reads stack.yaml and checks that contexts and Dockerfiles exist, never
talks to Docker. Every user mistake raises ``ManifestError`` located at
``stack.yaml:LINE:COL`` with what to do about it.

Loading happens in three passes, each stopping at its first error:

1. ``manifest.yaml``: strict YAML (no anchors, aliases, merge keys, duplicate keys),
   keeping the line/column of every key and value.
2. ``manifest.schema``: the JSON Schema shipped as ``stackbuild/schema/stack.schema.json``
   (draft 2020-12; point an editor at it for completion): structure, types, names,
   patterns. Of all schema errors the first in document order is reported, in words a
   person can act on.
3. ``StackChecker``, here: what a schema cannot say: paths exist and stay inside the
   stack root, ``depends_on`` names images of the stack, tag templates expand to valid
   Docker tags. Again the first problem in document order is reported.

Decisions:

* ``context`` is relative to the directory of stack.yaml (the stack *root*).
  ``dockerfile`` is relative to the *context* directory, like ``docker build -f`` in
  the context; default ``Dockerfile``. Both must resolve (symlinks followed) to a path
  inside the root; absolute paths are refused, so a stack can move as one directory.
* ``context_rel``/``dockerfile_rel`` are lexically normalised posix paths relative to
  the root (``./images/base/`` becomes ``images/base``).
* Build arg and label values written as numbers or booleans are kept as written
  (``1.10`` stays ``"1.10"``, ``yes`` stays ``"yes"``), not as Python would print them.
* ``secrets``: ``env:NAME`` is kept; ``file:PATH`` is made absolute (``~`` expanded,
  relative to the root) but need not exist yet: it is read at build time.
* ``builders[].tls``: certificate paths are made absolute the same way and not checked
  (they may exist only on CI); ``verify`` stays a bool.
* ``ImageSpec.key_locations`` holds, for an image, the location of each key it sets
  (``"depends_on"``), of each list item (``"depends_on[0]"``, ``"tags[1]"``) and of
  each key of its mappings (``"build_args.GREETING"``). ``Stack.locations`` does the
  same for the top level (``"registry"``, ``"builders[0]"``, ``"defaults.build_args.TZ"``).
* ``tests``: ``defaults.tests`` come first, then the image's own; an own check with the
  name of a default one replaces it. A check is exactly one of ``run`` (a list is an
  argv, a string runs with ``sh -c``), ``script`` (a file of the context) or ``serve``;
  its name defaults to the command, the script or ``serve :PORT/PATH`` and is unique
  within the image.
* Errors name the file as the caller gave it (``stack.yaml``, not an absolute path).
* ``jsonschema`` is imported only for a manifest the fast schema check cannot certify
  (one with a mistake), so a valid stack never pays its ~70 ms at start-up.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stackbuild.errors import ManifestError
from stackbuild.manifest.model import (
    DEFAULT_CHECK_TIMEOUT,
    CheckSpec,
    EngineSpec,
    ImageSpec,
    Location,
    Stack,
)
from stackbuild.manifest.schema import check_schema, value_kind
from stackbuild.manifest.yaml import YamlDocument, YamlPath, load_yaml_file
from stackbuild.refs import is_reference, tag_template_problem


def load_stack(path: str | Path) -> Stack:
    """Read, validate and return the manifest at ``path``; raise ``ManifestError``."""
    display = os.fspath(path)
    absolute = Path(path).absolute()
    root = absolute.parent.resolve()
    stack_path = root / absolute.name
    # Loading allocates ~100 objects per image and no reference cycles (a third of the
    # time for 10,000 images went to the cyclic GC: see cyclic_gc_paused)
    with cyclic_gc_paused():
        return _load(load_yaml_file(str(stack_path), display), stack_path, root)


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one pass over a stack (loading it; a command's
    whole body, as a decorator), then as it was (tests run commands in-process). Such a
    pass allocates millions of objects on a 10,000-image stack and no cycles worth
    collecting: the collector would only walk the growing heap again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(doc: YamlDocument, stack_path: Path, root: Path) -> Stack:
    display = doc.display_path
    if doc.data is None:
        raise ManifestError(
            f"{display} is empty; start it with `version: 1` and an `images:` mapping", display
        )
    if not isinstance(doc.data, dict):
        raise doc.error(
            f"the top level of {display} must be a mapping (`key: value` lines), "
            f"got {value_kind(doc.data)}; start it with `version: 1` and an `images:` mapping"
        )
    check_schema(doc)
    return StackChecker(doc, stack_path, root).build()


_ABSOLUTE = re.compile(r"[/\\]|[A-Za-z]:[/\\]")  # posix, rooted/UNC, drive-letter paths


class _KeyLocations(Mapping[str, Location]):
    """``ImageSpec.key_locations``, worked out from the YAML marks on first use.

    Keys: each key the image sets (``"depends_on"``: where the key is written), each
    list item (``"depends_on[0]"``) and each key of its mappings (``"build_args.TZ"``).
    Lazy because only error reports read it, and building all of them up front costs a
    fifth of the load time of a 10,000-image stack. Pickles as a plain dict.
    """

    __slots__ = ("_doc", "_base", "_spec", "_table")

    def __init__(self, doc: YamlDocument, base: YamlPath, spec: Mapping[str, Any]) -> None:
        self._doc = doc
        self._base = base
        self._spec = spec
        self._table: dict[str, Location] | None = None

    def _locations(self) -> dict[str, Location]:
        table = self._table
        if table is None:
            doc, base = self._doc, self._base
            table = {}
            for key, value in self._spec.items():
                path = base + (key,)
                table[key] = doc.key_location(path)
                if isinstance(value, list):
                    for index in range(len(value)):
                        table[f"{key}[{index}]"] = doc.location(path + (index,))
                elif isinstance(value, dict):
                    for sub in value:
                        table[f"{key}.{sub}"] = doc.key_location(path + (sub,))
            self._table = table
        return table

    def __getitem__(self, key: str) -> Location:
        return self._locations()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations())

    def __len__(self) -> int:
        return len(self._locations())

    def __repr__(self) -> str:
        return repr(self._locations())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._locations(),))


# --- from validated data to dataclasses ---------------------------------------------------


class StackChecker:
    """Checks what the schema cannot (paths, references, tags) and builds the Stack."""

    def __init__(self, doc: YamlDocument, stack_path: Path, root: Path) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.stack_path = stack_path
        self.root = root
        self.problems: list[tuple[Location, str]] = []
        self.root_str = str(root)
        self.root_prefix = self.root_str.rstrip("/") + "/"
        self.realpaths: dict[str, str] = {}
        self.default_cache: str | list[str] | None = None  # defaults.cache_from as written

    def problem(self, message: str, path: YamlPath, *, at_key: bool = False) -> None:
        loc = self.doc.key_location(path) if at_key else self.doc.location(path)
        self.problems.append((loc, message))

    def build(self) -> Stack:
        data, doc = self.data, self.doc
        defaults = data.get("defaults", {})
        default_args = self.strings(("defaults", "build_args"), defaults.get("build_args", {}))
        default_labels = self.strings(("defaults", "labels"), defaults.get("labels", {}))
        default_platform = self.one_or_many(("defaults",), defaults)
        self.default_tests: list[tuple[YamlPath, dict[str, Any]]] = [
            (("defaults", "tests", index), check)
            for index, check in enumerate(defaults.get("tests", []))
        ]
        self.default_cache = defaults.get("cache_from")
        builders = self.builders(data.get("builders", []))
        images: dict[str, ImageSpec] = {}
        for name, spec in data["images"].items():
            image = self.image(name, spec, default_args, default_labels, default_platform)
            if image is not None:
                images[name] = image
        if self.problems:
            loc, message = min(self.problems, key=lambda p: (p[0].line, p[0].col))
            raise ManifestError(message, doc.display_path, loc.line, loc.col)
        return Stack(
            path=self.stack_path,
            root=self.root,
            version=int(data["version"]),
            registry=data.get("registry"),
            images=images,
            builders=builders,
            backend=data.get("backend", "auto"),
            locations=self.top_locations(),
            given_path=doc.display_path,
        )

    def top_locations(self) -> dict[str, Location]:
        doc = self.doc
        locations = {key: doc.key_location((key,)) for key in self.data}
        for index in range(len(self.data.get("builders", []))):
            locations[f"builders[{index}]"] = doc.location(("builders", index))
        for section, entries in self.data.get("defaults", {}).items():
            if isinstance(entries, dict):
                for key in entries:
                    path = ("defaults", section, key)
                    locations[f"defaults.{section}.{key}"] = doc.key_location(path)
        return locations

    def strings(self, path: YamlPath, mapping: Mapping[str, Any]) -> dict[str, str]:
        """Build args / labels as strings; numbers and booleans as written in the file."""
        out = {}
        for key, value in mapping.items():
            if isinstance(value, str):
                out[key] = value
            else:
                text = self.doc.source_text(path + (key,))
                out[key] = text if text is not None else str(value)
        return out

    def builders(self, entries: list[dict[str, Any]]) -> tuple[EngineSpec, ...]:
        out = []
        first_by_name: dict[str, int] = {}
        for index, entry in enumerate(entries):
            name = entry.get("name")
            if name is not None:
                if name in first_by_name:
                    self.problem(
                        f"builder name {name!r} is used twice (first by builders"
                        f"[{first_by_name[name]}]); give each builder its own name",
                        ("builders", index, "name"),
                    )
                first_by_name.setdefault(name, index)
            tls: dict[str, str | bool] = {}
            for key, value in entry.get("tls", {}).items():
                tls[key] = value if isinstance(value, bool) else str(self.outside_path(value))
            out.append(EngineSpec(entry["url"], entry.get("slots", 1), name, tls))
        return tuple(out)

    def outside_path(self, written: str) -> Path:
        """A path that may live outside the stack (secrets, certificates), made absolute."""
        return (self.root / os.path.expanduser(written)).absolute()

    def image(
        self,
        name: str,
        spec: dict[str, Any],
        default_args: dict[str, str],
        default_labels: dict[str, str],
        default_platform: str | tuple[str, ...] | None,
    ) -> ImageSpec | None:
        doc = self.doc
        base: YamlPath = ("images", name)
        if name == "scratch":
            self.problem(
                "the image name 'scratch' is reserved by Docker (FROM scratch means an empty "
                "image); choose another name",
                base,
                at_key=True,
            )
        paths = self.image_paths(name, spec)
        self.check_depends_on(name, spec.get("depends_on", []))
        tags = spec.get("tags", [])
        for index, tag in enumerate(tags):
            self.check_tag(name, index, tag)
        secrets = {}
        for secret_id, source in spec.get("secrets", {}).items():
            if source.startswith("file:"):
                source = "file:" + str(self.outside_path(source[len("file:") :]))
            secrets[secret_id] = source
        cache_from = self.cache_from(name, spec)
        if paths is None:
            return None
        context, dockerfile, context_rel, dockerfile_rel = paths
        own_args = self.strings(base + ("build_args",), spec.get("build_args", {}))
        own_labels = self.strings(base + ("labels",), spec.get("labels", {}))
        platform, platforms, per_platform = self.image_platforms(name, spec, default_platform)
        if len(platforms) == 1:  # one platform: the platform: form, fingerprinted as today
            own_args = {**own_args, **per_platform.pop(platforms[0], {})}
            platform, platforms = platforms[0], ()
        return ImageSpec(
            name=name,
            context=context,
            dockerfile=dockerfile,
            context_rel=context_rel,
            dockerfile_rel=dockerfile_rel,
            depends_on=tuple(spec.get("depends_on", ())),
            build_args={**default_args, **own_args},
            labels={**default_labels, **own_labels},
            target=spec.get("target"),
            platform=platform,
            platforms=platforms,
            platform_build_args=per_platform,
            tags=tuple(tags),
            secrets=secrets,
            cache_locations=cache_from,
            location=doc.key_location(base),
            key_locations=_KeyLocations(doc, base, spec),
            tests=self.image_tests(name, context, spec.get("tests", [])),
        )

    def image_tests(
        self, image: str, context: Path, own: list[dict[str, Any]]
    ) -> tuple[CheckSpec, ...]:
        """``defaults.tests`` then the image's own (an own check replaces a default of
        its name), each checked; problems are recorded, bad checks left out."""
        base: YamlPath = ("images", image, "tests")
        defaults: dict[str, CheckSpec] = {}
        for path, written in self.default_tests:
            check = self.check(image, context, path, written)
            if check is not None:
                defaults.setdefault(check.name, check)
        mine: dict[str, CheckSpec] = {}
        for index, written in enumerate(own):
            check = self.check(image, context, base + (index,), written)
            if check is None:
                continue
            if check.name in mine:
                self.problem(
                    f"image {image!r} has two checks named {check.name!r}; give one of them "
                    "another `name:`",
                    base + (index,),
                )
                continue
            mine[check.name] = check
        merged = {name: c for name, c in defaults.items() if name not in mine}
        return tuple(merged.values()) + tuple(mine.values())

    def check(
        self, image: str, context: Path, path: YamlPath, written: dict[str, Any]
    ) -> CheckSpec | None:
        """One check of ``tests:`` (schema-valid already): what a schema cannot say."""
        kinds = [kind for kind in ("run", "script", "serve") if kind in written]
        index = path[-1]
        where = f"tests[{index}] of image {image!r}"
        if path[0] == "defaults":
            where = f"defaults.tests[{index}]"
        if len(kinds) != 1:
            what = "none of" if not kinds else "more than one of"
            self.problem(
                f"{where} has {what} run, script and serve; give it exactly one, e.g. "
                "`run: [httpd, -h]`",
                path,
            )
            return None
        kind = kinds[0]
        expect = written.get("expect", {})
        if kind == "serve":
            wrong = [key for key in ("exit", "stderr") if key in expect]
        else:
            wrong = ["status"] if "status" in expect else []
        if wrong:
            fix = "use `status:` (the HTTP status)" if kind == "serve" else "use `exit:`"
            self.problem(
                f"expect.{wrong[0]} does not apply to a {kind} check ({where}); {fix}",
                path + ("expect", wrong[0]),
            )
            return None
        regex = expect.get("regex")
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as error:
                self.problem(
                    f"expect.regex of {where} is not a valid regular expression: {error}; "
                    "fix it (Python syntax)",
                    path + ("expect", "regex"),
                )
                return None
        argv: tuple[str, ...] = ()
        script = script_path = None
        port = None
        url_path = "/"
        if kind == "run":
            run = written["run"]
            argv = ("sh", "-c", run) if isinstance(run, str) else tuple(map(str, run))
            name = run if isinstance(run, str) else " ".join(argv)
        elif kind == "script":
            script = posixpath.normpath(written["script"])
            resolved = self.inside_root(
                str(context), written["script"], ("script", image), path + ("script",),
                "its context directory",
            )  # fmt: skip
            if resolved is None:
                return None
            if not os.path.isfile(resolved):
                self.problem(
                    f"script {written['script']!r} of {where} does not exist (looked for "
                    f"{resolved}); create it or fix the path (relative to the context "
                    f"directory of image {image!r})",
                    path + ("script",),
                )
                return None
            script_path = Path(resolved)
            name = script
        else:
            serve = written["serve"]
            port = serve["port"]
            if port > 65535:
                self.problem(
                    f"serve.port of {where} must be a port number (1-65535), got {port}",
                    path + ("serve", "port"),
                )
                return None
            url_path = serve.get("path", "/")
            name = f"serve :{port}{url_path}"
        return CheckSpec(
            name=written.get("name", name),
            kind=kind,
            argv=argv,
            script=script,
            script_path=script_path,
            port=port,
            path=url_path,
            expect_exit=expect.get("exit", 0),
            expect_status=expect.get("status", 200),
            expect_stdout=expect.get("stdout"),
            expect_stderr=expect.get("stderr"),
            expect_regex=regex,
            timeout=float(written.get("timeout", DEFAULT_CHECK_TIMEOUT)),
            network="bridge" if kind == "serve" else written.get("network", "none"),
            location=self.doc.location(path),
        )

    def cache_from(self, name: str, spec: dict[str, Any]) -> dict[str, Location]:
        """The image's ``cache_from`` (else ``defaults.cache_from``) as full references,
        each with where it is written: ``registry`` is the image's own repository in the
        stack's registry, at latest."""
        path: YamlPath = ("images", name, "cache_from")
        written = spec.get("cache_from")
        if written is None:
            path, written = ("defaults", "cache_from"), self.default_cache
        if written is None:
            return {}
        items = [(path, written)] if isinstance(written, str) else [
            (path + (index,), item) for index, item in enumerate(written)
        ]
        where = f"cache_from of image {name!r}" if path[0] == "images" else "defaults.cache_from"
        out: dict[str, Location] = {}
        for at, item in items:
            if item == "registry":
                registry = self.data.get("registry")
                if not registry:
                    self.problem(
                        f"{where}: `registry` means the image's own repository in the stack's "
                        "registry, and stack.yaml has none; set `registry:` (e.g. registry: "
                        "127.0.0.1:5000/acme) or list the cache images", at,
                    )
                    continue
                out.setdefault(f"{registry}/{name}:latest", self.doc.location(at))
            elif isinstance(written, str):
                self.problem(
                    f"{where} is {item!r}; write `registry` (the image's own repository in "
                    "the stack's registry) or a list of image references", at,
                )
            elif not is_reference(item):
                self.problem(
                    f"{where}: {item!r} is not an image reference; write e.g. "
                    "ghcr.io/acme/base:main, or `registry`", at,
                )
            else:
                out.setdefault(item, self.doc.location(at))
        return out
    def one_or_many(self, path: YamlPath, spec: Mapping[str, Any]) -> str | tuple[str, ...] | None:
        """``platform`` or ``platforms`` of a section; both given is a problem."""
        if "platform" in spec and "platforms" in spec:
            self.problem(
                "give either platform (one) or platforms (a list), not both; e.g. "
                f"platforms: [{spec['platform']}, ...]",
                path + ("platforms",),
                at_key=True,
            )
        if "platforms" in spec:
            return tuple(spec["platforms"])
        platform: str | None = spec.get("platform")
        return platform

    def image_platforms(
        self, name: str, spec: dict[str, Any], default: str | tuple[str, ...] | None
    ) -> tuple[str | None, tuple[str, ...], dict[str, dict[str, str]]]:
        """(platform, platforms, per-platform build args) of one image; the image's own
        platform or platforms win over the defaults'."""
        base: YamlPath = ("images", name)
        own = self.one_or_many(base, spec)
        chosen = own if ("platform" in spec or "platforms" in spec) else default
        platforms = chosen if isinstance(chosen, tuple) else ()
        platform = chosen if isinstance(chosen, str) else None
        per_platform: dict[str, dict[str, str]] = {}
        offered = set(platforms) if platforms else {platform}
        for key, args in spec.get("platform_build_args", {}).items():
            if key not in offered:
                built_for = ", ".join(p for p in sorted(offered, key=str) if p) or "none"
                self.problem(
                    f"platform_build_args names {key}, which image '{name}' is not built for "
                    f"(its platforms: {built_for}); "
                    "add it to platforms or remove this entry",
                    base + ("platform_build_args", key),
                    at_key=True,
                )
                continue
            per_platform[key] = self.strings(base + ("platform_build_args", key), args)
        return platform, platforms, per_platform

    def image_paths(self, name: str, spec: dict[str, Any]) -> tuple[Path, Path, str, str] | None:
        """Resolve and check context and Dockerfile; None (and a problem) when wrong."""
        base: YamlPath = ("images", name)
        written = spec["context"]
        context = self.inside_root(
            self.root_str,
            written,
            ("context", name),
            base + ("context",),
            "the directory of stack.yaml",
        )
        if context is None:
            return None
        context_rel = posixpath.normpath(written)
        if not os.path.isdir(context):
            what = "is a file, not a directory" if os.path.exists(context) else "does not exist"
            self.problem(
                f"context {written!r} of image {name!r} {what} (looked for {context}); "
                "create the directory or fix the path (relative to the directory of stack.yaml)",
                base + ("context",),
            )
            return None
        given = "dockerfile" in spec
        dockerfile_written = spec.get("dockerfile", "Dockerfile")
        at = base + ("dockerfile",) if given else base + ("context",)
        dockerfile = self.inside_root(
            context,
            dockerfile_written,
            ("dockerfile", name),
            at,
            "its context directory",
        )
        if dockerfile is None:
            return None
        dockerfile_rel = posixpath.normpath(posixpath.join(context_rel, dockerfile_written))
        if not os.path.isfile(dockerfile):
            state = "is a directory" if os.path.isdir(dockerfile) else "does not exist"
            if given:
                message = (
                    f"dockerfile {dockerfile_written!r} of image {name!r} {state} "
                    f"(looked for {dockerfile_rel}; dockerfile: is relative to the context "
                    "directory); create it or fix the path"
                )
            else:
                message = (
                    f"image {name!r} has no Dockerfile: {dockerfile_rel} {state}; add one, "
                    "or name it with `dockerfile:` (relative to the context directory)"
                )
            self.problem(message, at)
            return None
        return Path(context), Path(dockerfile), context_rel, dockerfile_rel

    def inside_root(
        self, base_dir: str, written: str, what: tuple[str, str], path: YamlPath, relative_to: str
    ) -> str | None:
        """``base_dir/written`` resolved, if it stays inside the root; else a problem.

        ``what`` is (key, image name), made into words only when there is a problem.
        """
        if _ABSOLUTE.match(written):
            self.problem(
                f"{what[0]} {written!r} of image {what[1]!r} is an absolute path; write it "
                f"relative to {relative_to} so the stack can move as one directory",
                path,
            )
            return None
        resolved = self.realpath(base_dir, written)
        root = self.root_str
        if resolved == root or resolved.startswith(self.root_prefix):
            return resolved
        lexical = os.path.normpath(os.path.join(base_dir, written))
        inside = lexical == root or lexical.startswith(self.root_prefix)
        how = f"resolves through a symlink to {resolved}" if inside else "points there"
        self.problem(
            f"{what[0]} {written!r} of image {what[1]!r} is outside the directory of "
            f"stack.yaml ({root}): it {how}; "
            "move the files into that directory or move stack.yaml up",
            path,
        )
        return None

    def realpath(self, real_base: str, relative: str) -> str:
        """``os.path.realpath(real_base/relative)``, one lstat per new directory entry.

        ``real_base`` is already free of symlinks, so each component needs only an
        lstat (cached: the contexts of a stack share their parents), where
        ``os.path.realpath`` would lstat every component of every path from ``/``.
        """
        current = real_base
        cache = self.realpaths
        for part in relative.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = os.path.dirname(current)  # physical parent: current is real
                continue
            candidate = os.path.join(current, part)
            real = cache.get(candidate)
            if real is None:
                real = os.path.realpath(candidate) if os.path.islink(candidate) else candidate
                cache[candidate] = real
            current = real
        return current

    def check_depends_on(self, name: str, depends_on: list[str]) -> None:
        images = self.data["images"]
        for index, dep in enumerate(depends_on):
            path = ("images", name, "depends_on", index)
            if dep == name:
                self.problem(f"image {name!r} depends_on itself; remove {dep!r}", path)
            elif dep not in images:
                known = list(images)
                close = difflib.get_close_matches(dep, known, n=1)
                listing = ", ".join(known[:10])
                if len(known) > 10:  # a 1,000-image stack: name a few, not all
                    listing += f", … ({len(known)} in all)"
                fix = f"did you mean {close[0]!r}?" if close else "fix the name or add that image"
                self.problem(
                    f"image {name!r} depends_on {dep!r}, which is not in images:; "
                    f"known images: {listing}; {fix}",
                    path,
                )

    def check_tag(self, name: str, index: int, template: str) -> None:
        problem = tag_template_problem(template)
        if problem is not None:
            path = ("images", name, "tags", index)
            self.problem(f"tag {template!r} of image {name!r}: {problem}", path)
