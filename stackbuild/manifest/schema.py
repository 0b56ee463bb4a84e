"""stack.yaml against its JSON Schema: a fast path for valid manifests, and explanations.

The schema itself is package data, ``stackbuild/schema/stack.schema.json`` (draft 2020-12;
``stackbuild schema`` prints it, editors can point at it). ``check_schema`` raises the
first schema error in document order as a located ``ManifestError``, in words a person
can act on. jsonschema is imported only when the fast path cannot certify a manifest.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackbuild.errors import ManifestError
from stackbuild.manifest.model import Location
from stackbuild.manifest.yaml import YamlDocument, YamlPath

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError


# Package data beside the code: stackbuild is installed as files (never imported from a
# zip), and importlib.resources would add ~5 ms of start-up (it imports zipfile, tempfile).
SCHEMA_FILE = Path(__file__).parent.parent / "schema" / "stack.schema.json"


@functools.cache
def stack_schema() -> dict[str, Any]:
    """The JSON Schema of stack.yaml shipped with the package (draft 2020-12)."""
    return json.loads(SCHEMA_FILE.read_text("utf-8"))


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # lazy: ~70 ms of start-up

    return Draft202012Validator(stack_schema())



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
    root = stack_schema()
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
            checks.append(_const_check(tuple(value) if keyword == "enum" else (value,)))
        elif keyword == "minimum":
            checks.append(_minimum_check(value))
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


def _const_check(options: tuple[Any, ...]) -> Check:
    return lambda x: any(type(x) is type(v) and x == v for v in options)


def _minimum_check(minimum: float) -> Check:
    return lambda x: type(x) not in (int, float) or x >= minimum  # bools: not numbers


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


# --- explaining schema errors ------------------------------------------------------------


def check_schema(doc: YamlDocument) -> None:
    """Raise the first schema error of ``doc`` in document order, located and explained."""
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


def _explain(
    error: ValidationError, path: YamlPath, doc: YamlDocument
) -> Iterator[tuple[Location, str]]:
    """Yield (location, message) for one jsonschema error, in words a person can act on."""
    kind = error.validator
    # what failed and the keyword's value: YAML data of any type (the stubs' Unset is
    # only the default of an error made by hand; iter_errors sets both)
    instance: Any = error.instance
    keyword_value: Any = error.validator_value
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
        for key in keyword_value:
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
                else f"expected a mapping for image {name!r}, got {value_kind(instance)}"
            )
            fix = f"indent its settings under it, e.g. `{name}: {{context: images/{name}}}`"
            yield doc.location(path), f"{problem}; {fix}"
            return
        # the schema's names of types, e.g. "string" or ["string", "null"]
        types: list[str] = keyword_value if isinstance(keyword_value, list) else [keyword_value]
        words = [_TYPE_WORDS.get(t, t) for t in types]
        expected = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        example = _example(sub)
        fix = f"write e.g. {example}" if example else f"write {expected} here"
        got = value_kind(instance)
        yield doc.location(path), f"expected {expected} for {where}, got {got}; {fix}"
    elif kind in ("enum", "const"):
        options = keyword_value if kind == "enum" else [keyword_value]
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
        minimum = keyword_value
        yield doc.location(path), f"{where} must be at least {minimum}, got {_show(instance)}"
    elif kind == "pattern":
        message = sub.get("patternErrorMessage", f"must match {keyword_value}")
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
_KEY_SUBJECTS: dict[str | int, str] = {
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


def value_kind(value: Any) -> str:
    """What ``value`` is, for a message: "a list", "a string ('x')", "nothing (...)"."""
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
