"""Load and validate stack.yaml into a ``Stack`` of frozen dataclasses.

Pure: reads stack.yaml and checks that contexts and Dockerfiles exist, never
talks to Docker. Every user mistake raises ``ManifestError`` located at
``stack.yaml:LINE:COL`` with what to do about it.

Loading happens in three passes, each stopping at its first error:

1. ``yaml_loader``: strict YAML (no anchors, aliases, merge keys, duplicate keys),
   keeping the line/column of every key and value.
2. The JSON Schema shipped as ``stackbuild/schema/stack.schema.json`` (draft 2020-12;
   point an editor at it for completion): structure, types, names, patterns. Of all
   schema errors the first in document order is reported, in words a person can act on.
3. What a schema cannot say: paths exist and stay inside the stack root, ``depends_on``
   names images of the stack, tag templates expand to valid Docker tags. Again the
   first problem in document order is reported.

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
* Errors name the file as the caller gave it (``stack.yaml``, not an absolute path).
* ``yaml`` and ``jsonschema`` are imported by ``load_stack`` only, so modules that
  merely use these dataclasses do not pay for them at start-up.
"""

from __future__ import annotations

import difflib
import functools
import gc
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackbuild.dockerfile import TAG
from stackbuild.errors import ManifestError

if TYPE_CHECKING:
    from jsonschema import ValidationError

    from stackbuild.manifest.yaml import YamlDocument, YamlPath


@dataclass(frozen=True)
class Location:
    """1-based line and column of a node in stack.yaml."""

    line: int
    col: int


@dataclass(frozen=True)
class ImageSpec:
    """One entry of ``images:``, with ``defaults`` already merged in."""

    name: str
    context: Path  # absolute, resolved
    dockerfile: Path  # absolute, resolved
    context_rel: str  # posix path relative to the stack root, as written
    dockerfile_rel: str  # posix path relative to the stack root
    depends_on: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)  # defaults overlaid
    labels: Mapping[str, str] = field(default_factory=dict)  # defaults overlaid
    target: str | None = None
    platform: str | None = None
    tags: tuple[str, ...] = ()  # templates: {fingerprint12} {git_sha} {date}
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> "env:NAME" | "file:PATH"
    location: Location = Location(1, 1)  # the image's key under images:
    # where individual keys sit, for errors found later (unknown depends_on, cycles)
    key_locations: Mapping[str, Location] = field(default_factory=dict)


@dataclass(frozen=True)
class Builder:
    """One Docker engine of the builder pool."""

    url: str
    slots: int = 1
    name: str | None = None
    # ca_cert, client_cert, client_key: absolute paths; verify: bool
    tls: Mapping[str, str | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    """The whole validated manifest."""

    path: Path  # absolute path of stack.yaml
    root: Path  # its directory; nothing may escape it
    version: int
    registry: str | None
    images: Mapping[str, ImageSpec]  # in file order
    builders: tuple[Builder, ...] = ()
    backend: str = "docker"  # "docker" (SDK, classic builder) | "buildkit"
    locations: Mapping[str, Location] = field(default_factory=dict)  # top-level keys
    given_path: str = ""  # stack.yaml as the user named it (for messages); "" if unknown

    def reference(self, name: str) -> str:
        """The repository name image ``name`` is built as: ``<registry>/name`` or ``name``."""
        return f"{self.registry}/{name}" if self.registry else name

    @property
    def display_path(self) -> str:
        """How errors name the file: as the user gave it, else relative to the cwd if possible."""
        if self.given_path:
            return self.given_path
        try:
            return str(self.path.relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)


# --- tag templates -------------------------------------------------------------------

TAG_PLACEHOLDERS: Mapping[str, str] = {
    "fingerprint12": "first 12 hex digits of the image's fingerprint",
    "git_sha": "the full 40-hex commit of the stack's git checkout",
    "date": "the UTC build date as YYYYMMDD",
}
# Worst-case values (longest) for checking that a template expands to a valid tag.
_TAG_SAMPLES = {"fingerprint12": "0" * 12, "git_sha": "0" * 40, "date": "20240131"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DOCKER_TAG = re.compile(TAG)


def render_tag(template: str, values: Mapping[str, str]) -> str:
    """Fill the ``{placeholders}`` of a tag template (``values`` keyed like TAG_PLACEHOLDERS)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@functools.lru_cache(maxsize=4096)  # stacks repeat the same few templates
def tag_template_problem(template: str) -> str | None:
    """What is wrong with a tag template and how to fix it, or None if it is valid."""
    for placeholder in _PLACEHOLDER.findall(template):
        if placeholder not in TAG_PLACEHOLDERS:
            close = difflib.get_close_matches(placeholder, list(TAG_PLACEHOLDERS), n=1)
            known = ", ".join("{" + p + "}" for p in TAG_PLACEHOLDERS)
            fix = f"did you mean {{{close[0]}}}?" if close else f"use {known}"
            return f"unknown placeholder {{{placeholder}}}; {fix}"
    sample = render_tag(template, _TAG_SAMPLES)
    if _DOCKER_TAG.fullmatch(sample):
        return None
    return (
        f"it does not make a valid Docker tag (filled in: {sample!r}); a tag starts with a "
        "letter, digit or '_', then holds letters, digits, '_', '.', '-', 128 characters at most"
    )


# --- the JSON Schema -------------------------------------------------------------------


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of stack.yaml shipped with the package (draft 2020-12)."""
    text = (resources.files("stackbuild") / "schema" / "stack.schema.json").read_text("utf-8")
    return json.loads(text)


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator  # lazy: ~70 ms of start-up

    return Draft202012Validator(schema())


# jsonschema needs ~0.9 s for a 10,000-image manifest (and ~70 ms to import). So a valid
# manifest is first checked by closures compiled from the same schema file for the few
# keywords it uses; they answer "certainly valid" or "not sure". Only then, which means
# for manifests with mistakes, does jsonschema run, and it alone decides and explains.
# A keyword the closures do not know disables them: the schema can grow safely.

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "title", "description", "examples", "default"}
    | {"patternErrorMessage"}
)
_OBJECT_KEYWORDS = frozenset(
    {"properties", "additionalProperties", "required", "propertyNames", "minProperties"}
)
_ARRAY_KEYWORDS = frozenset({"items", "minItems", "uniqueItems"})
_STRING_KEYWORDS = frozenset({"pattern", "minLength"})
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),  # floats such as 1.0 are left to jsonschema
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
Check = Callable[[Any], bool]


class _Unsupported(Exception):
    """The schema uses a keyword the fast checker does not implement."""


@functools.cache
def _fast_checker() -> Check | None:
    """``data -> True`` when ``data`` certainly satisfies the schema; None if unsupported."""
    root = schema()
    try:
        return _compile(root, root, {})
    except _Unsupported:
        return None


def _compile(node: dict[str, Any], root: dict[str, Any], refs: dict[str, Check]) -> Check:
    checks: list[Check] = []
    for keyword, value in node.items():
        if keyword in _ANNOTATIONS or keyword in _OBJECT_KEYWORDS:
            continue
        if keyword in _ARRAY_KEYWORDS or keyword in _STRING_KEYWORDS:
            continue
        if keyword == "$ref":
            checks.append(_compile_ref(value, root, refs))
        elif keyword == "type":
            checks.append(_type_check(value))
        elif keyword in ("enum", "const"):
            options = tuple(value) if keyword == "enum" else (value,)
            checks.append(lambda x, o=options: any(type(x) is type(v) and x == v for v in o))
        elif keyword == "minimum":
            checks.append(
                lambda x, m=value: type(x) not in (int, float) or x >= m  # bools: not numbers
            )
        else:
            raise _Unsupported(keyword)
    if _OBJECT_KEYWORDS.intersection(node):
        checks.append(_object_check(node, root, refs))
    if _ARRAY_KEYWORDS.intersection(node):
        checks.append(_array_check(node, root, refs))
    if _STRING_KEYWORDS.intersection(node):
        checks.append(_string_check(node))
    if len(checks) == 1:
        return checks[0]

    return lambda x: all(check(x) for check in checks)


def _compile_ref(ref: str, root: dict[str, Any], refs: dict[str, Check]) -> Check:
    if ref not in refs:
        if not ref.startswith("#/"):
            raise _Unsupported(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        cell: list[Check] = []
        refs[ref] = lambda x: cell[0](x)  # placeholder first: refs may be recursive
        cell.append(_compile(target, root, refs))
        refs[ref] = cell[0]
    return refs[ref]


def _type_check(types: str | list[str]) -> Check:
    names = [types] if isinstance(types, str) else types
    allowed = frozenset(t for name in names for t in _PY_TYPES[name])
    return lambda x: type(x) in allowed  # exact types: the YAML loader makes no subclasses


def _object_check(node: dict[str, Any], root: dict[str, Any], refs: dict[str, Check]) -> Check:
    properties = {k: _compile(v, root, refs) for k, v in node.get("properties", {}).items()}
    extra_schema = node.get("additionalProperties", True)
    reject_extra = extra_schema is False
    extra = _compile(extra_schema, root, refs) if isinstance(extra_schema, dict) else None
    names = _compile(node["propertyNames"], root, refs) if "propertyNames" in node else None
    required = tuple(node.get("required", ()))
    min_properties = node.get("minProperties", 0)

    def check(x: Any) -> bool:
        if type(x) is not dict:
            return True  # object keywords do not apply to other types
        if len(x) < min_properties:
            return False
        for key in required:
            if key not in x:
                return False
        for key, value in x.items():
            if names is not None and not names(key):
                return False
            check_value = properties.get(key)
            if check_value is None:
                if reject_extra or (extra is not None and not extra(value)):
                    return False
            elif not check_value(value):
                return False
        return True

    return check


def _array_check(node: dict[str, Any], root: dict[str, Any], refs: dict[str, Check]) -> Check:
    items = _compile(node["items"], root, refs) if "items" in node else None
    min_items = node.get("minItems", 0)
    unique = node.get("uniqueItems", False)

    def check(x: Any) -> bool:
        if type(x) is not list:
            return True
        if len(x) < min_items:
            return False
        if items is not None:
            for item in x:
                if not items(item):
                    return False
        # only strings are compared here; anything else is jsonschema's call
        return not unique or (all(type(i) is str for i in x) and len(set(x)) == len(x))

    return check


def _string_check(node: dict[str, Any]) -> Check:
    pattern = re.compile(node["pattern"]) if "pattern" in node else None
    min_length = node.get("minLength", 0)

    def check(x: Any) -> bool:
        if type(x) is not str:
            return True
        if len(x) < min_length:
            return False
        return pattern is None or pattern.search(x) is not None  # jsonschema uses search

    return check


# --- load_stack ------------------------------------------------------------------------


def load_stack(path: str | Path) -> Stack:
    """Read, validate and return the manifest at ``path``; raise ``ManifestError``."""
    from stackbuild.manifest.yaml import load_yaml_file  # lazy: keeps `import manifest` cheap

    display = os.fspath(path)
    absolute = Path(path).absolute()
    root = absolute.parent.resolve()
    stack_path = root / absolute.name
    # Loading allocates ~100 objects per image and no reference cycles; the cyclic GC
    # would walk the growing heap again and again (a third of the time for 10,000 images).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(load_yaml_file(str(stack_path), display), stack_path, root)
    finally:
        if gc_was_enabled:
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
            f"got {_kind(doc.data)}; start it with `version: 1` and an `images:` mapping"
        )
    _check_schema(doc)
    return _Builder(doc, stack_path, root).build()


def _check_schema(doc: YamlDocument) -> None:
    checker = _fast_checker()
    if checker is not None and checker(doc.data):
        return  # certainly valid: no need to import and run jsonschema
    errors = list(_validator().iter_errors(doc.data))
    if not errors:
        return
    # A typo such as `contxt:` yields "unknown key" and "'context' missing" for one
    # mapping; the unknown key is the cause, so the missing-key error is dropped.
    unknown_in = {tuple(e.absolute_path) for e in errors if e.validator == "additionalProperties"}
    problems: list[tuple[Location, str]] = []
    for error in errors:
        path = tuple(error.absolute_path)
        if error.validator == "required" and path in unknown_in:
            continue
        problems.extend(_explain(error, path, doc))
    if not problems:  # cannot happen with today's schema; never a traceback either way
        first = errors[0]
        path = tuple(first.absolute_path)
        problems.append((doc.location(path), f"{_describe(path)}: {first.message}"))
    loc, message = min(problems, key=lambda p: (p[0].line, p[0].col))
    raise ManifestError(message, doc.display_path, loc.line, loc.col)


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def _explain(error: ValidationError, path: YamlPath, doc: YamlDocument) -> Iterator[tuple]:
    """Yield (location, message) for one jsonschema error, in words a person can act on."""
    kind = error.validator
    instance = error.instance
    sub = error.schema if isinstance(error.schema, dict) else {}
    where = _describe(path)
    if path == ("version",):
        message = f"unsupported version {_show(instance)}; this stackbuild reads version 1"
        yield doc.location(path), message + ": write `version: 1`"
    elif kind == "additionalProperties":
        allowed = list(sub.get("properties", {}))
        inside = "at the top level" if not path else f"in {where}"
        for key in instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            fix = (
                f"did you mean {close[0]!r}?"
                if close
                else f"remove it; valid keys are: {', '.join(allowed)}"
            )
            yield doc.key_location(path + (key,)), f"unknown key {key!r} {inside}; {fix}"
    elif kind == "required":
        for key in error.validator_value:
            if key not in instance:
                owner = doc.display_path if not path else where
                example = _example(sub.get("properties", {}).get(key, {}))
                add = f"add it, e.g. `{key}: {example}`" if example else "add it"
                yield doc.key_location(path), f"{owner} has no {key!r}; {add}"
                break
    elif kind == "type":
        if path == ("images",) and instance is None:
            yield doc.location(path), _EMPTY_IMAGES
            return
        if len(path) == 2 and path[0] == "images":  # `name:` with nothing or a path under it
            name = path[1]
            problem = (
                f"image {name!r} is empty"
                if instance is None
                else f"expected a mapping for image {name!r}, got {_kind(instance)}"
            )
            fix = f"indent its settings under it, e.g. `{name}: {{context: images/{name}}}`"
            yield doc.location(path), f"{problem}; {fix}"
            return
        types = error.validator_value
        types = types if isinstance(types, list) else [types]
        words = [_TYPE_WORDS.get(t, t) for t in types]
        expected = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        example = _example(sub)
        fix = f"write e.g. {example}" if example else f"write {expected} here"
        yield doc.location(path), f"expected {expected} for {where}, got {_kind(instance)}; {fix}"
    elif kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        names = [str(o) for o in options]
        close = difflib.get_close_matches(str(instance), names, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(names)}"
        yield doc.location(path), f"{where} {_show(instance)} is not supported; {fix}"
    elif kind in ("minProperties", "minItems"):
        if path == ("images",):
            yield doc.location(path), _EMPTY_IMAGES
        elif path == ("builders",):
            yield doc.location(path), _EMPTY_BUILDERS
        else:
            yield doc.location(path), f"{where} is empty; add an entry or remove it"
    elif kind == "minLength":
        if "propertyNames" in error.relative_schema_path:
            yield doc.key_location(path + (instance,)), f"empty key in {where}; give it a name"
            return
        example = _example(sub)
        fix = f"write e.g. {example}" if example else "write a value or remove the key"
        yield doc.location(path), f"{where} is empty; {fix}"
    elif kind == "minimum":
        minimum = error.validator_value
        yield doc.location(path), f"{where} must be at least {minimum}, got {_show(instance)}"
    elif kind == "pattern":
        message = sub.get("patternErrorMessage", f"must match {error.validator_value}")
        if "propertyNames" in error.relative_schema_path:
            # jsonschema reports a bad key at its mapping's path; the key is the instance
            subject = _KEY_SUBJECTS.get(path[-1] if path else "", f"key in {where}")
            yield doc.key_location(path + (instance,)), f"{subject} {instance!r} {message}"
        else:
            yield doc.location(path), f"{where} ({_show(instance)}) {message}"
    elif kind == "uniqueItems":
        seen: set[Any] = set()
        for index, item in enumerate(instance):
            marker = json.dumps(item, sort_keys=True)
            if marker in seen:
                message = f"{_show(item)} is listed twice in {where}; remove one"
                yield doc.location(path + (index,)), message
                return
            seen.add(marker)
    else:  # keywords the schema does not use today; still located and explained
        hint = sub.get("description", "see stackbuild/schema/stack.schema.json")
        yield doc.location(path), f"{where}: {error.message}; {hint}"


_EMPTY_IMAGES = "images: is empty; add at least one image, e.g. `base: {context: images/base}`"
_EMPTY_BUILDERS = (
    "builders: is empty; list at least one engine, or remove builders: to use the local engine"
)
_KEY_SUBJECTS = {
    "images": "image name",
    "build_args": "build arg name",
    "secrets": "secret id",
}


def _describe(path: YamlPath) -> str:
    """How a message names the value at ``path``: "tags[0] of image 'httpd'", "registry"."""
    if not path:
        return "the top level"
    if path[0] == "images" and len(path) >= 2:
        name = f"image {path[1]!r}"
        return name if len(path) == 2 else f"{_dotted(path[2:])} of {name}"
    return _dotted(path)


def _dotted(path: YamlPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
    return "a list" if isinstance(value, list) else "a mapping"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value) if isinstance(value, int | float) else _flow(value)


def _example(subschema: Mapping[str, Any]) -> str | None:
    examples = subschema.get("examples")
    return _flow(examples[0]) if examples else None


_ABSOLUTE = re.compile(r"[/\\]|[A-Za-z]:[/\\]")  # posix, rooted/UNC, drive-letter paths
_PLAIN = re.compile(r"[A-Za-z0-9_./:-]+")


def _flow(value: Any) -> str:
    """Render a schema example as YAML flow text, e.g. ``{context: images/base}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) else json.dumps(value)
    return json.dumps(value)


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


class _Builder:
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

    def problem(self, message: str, path: YamlPath, *, at_key: bool = False) -> None:
        loc = self.doc.key_location(path) if at_key else self.doc.location(path)
        self.problems.append((loc, message))

    def build(self) -> Stack:
        data, doc = self.data, self.doc
        defaults = data.get("defaults", {})
        default_args = self.strings(("defaults", "build_args"), defaults.get("build_args", {}))
        default_labels = self.strings(("defaults", "labels"), defaults.get("labels", {}))
        default_platform = defaults.get("platform")
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
            backend=data.get("backend", "docker"),
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

    def builders(self, entries: list[dict[str, Any]]) -> tuple[Builder, ...]:
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
            out.append(Builder(entry["url"], entry.get("slots", 1), name, tls))
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
        default_platform: str | None,
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
        if paths is None:
            return None
        context, dockerfile, context_rel, dockerfile_rel = paths
        own_args = self.strings(base + ("build_args",), spec.get("build_args", {}))
        own_labels = self.strings(base + ("labels",), spec.get("labels", {}))
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
            platform=spec.get("platform", default_platform),
            tags=tuple(tags),
            secrets=secrets,
            location=doc.key_location(base),
            key_locations=_KeyLocations(doc, base, spec),
        )

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
