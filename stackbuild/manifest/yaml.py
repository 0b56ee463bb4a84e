"""Strict YAML loading for stack.yaml: plain values plus the position of every node.

Why not ``yaml.safe_load``:

* it forgets where things are, and every stackbuild error names ``stack.yaml:LINE:COL``;
* it accepts duplicate keys silently (the last one wins);
* it expands aliases and merge keys (``<<: [*a, *a, ...]``) eagerly, so a few hundred
  bytes of nested merges or a "billion laughs" document take seconds to minutes.

This loader reads the *event* stream of PyYAML's parser (libyaml's C parser when PyYAML
was built with it) and builds dicts, lists and scalars itself, in one iterative pass.
It refuses anchors, aliases, merge keys, duplicate keys, non-string keys, unknown tags,
more than one document, documents larger than ``MAX_BYTES`` and nesting deeper than
``MAX_DEPTH``. It stops at the first anchor, so attack documents fail in microseconds.

Decisions:

* Mapping keys are always strings, exactly as written: ``on:``, ``123:`` and ``null:`` are
  the keys ``"on"``, ``"123"`` and ``"null"`` (every key of stack.yaml is a name).
* Plain scalars are typed like YAML 1.1 / PyYAML (``1`` int, ``1.5`` float, ``yes`` bool,
  ``~`` None), except timestamps, which stay strings. The text of every non-string scalar
  is kept (``source_text``) so callers can use ``1.10`` as written rather than ``1.1``.
* A number written with more than ``MAX_NUMBER_CHARS`` characters, and a value an explicit
  tag contradicts (``!!int abc``, ``!!bool maybe``), is a located error, never a crash.
* Positions are 1-based lines and columns in characters, with YAML's line breaks: the
  text is checked for characters YAML refuses before parsing, because libyaml reports
  those by byte offset. stack.lock is read with this loader too (``lockfile.read_lock``),
  so a message is "problem; what to do" and the problem never names stack.yaml.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode

from stackbuild.errors import ManifestError
from stackbuild.manifest.model import Location

MAX_BYTES = 10 * 1024 * 1024  # far beyond any real stack; bounds memory and time
MAX_DEPTH = 64  # stack.yaml needs 5; deeper nesting is a mistake or an attack
# Longest number (as written) read as a number. Python refuses to convert decimal text of
# more than 4,300 digits (and to print such an int), so a 5,000-digit `version:` or a
# 20,000-digit `0b...` literal crashed; no field of stack.yaml needs more than a few digits.
MAX_NUMBER_CHARS = 100

# libyaml's C parser is ~10x faster than the pure-Python one; both give the same events.
_Loader: type = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

YamlPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_TIMESTAMP, _MAP, _SEQ, _MERGE = (_TAG + t for t in ("timestamp", "map", "seq", "merge"))

# What YAML accepts in a stream (the YAML 1.1 printable set, as both parsers check it).
# Checked here, on the decoded text, because libyaml reports the *byte* offset of a bad
# character, which is the wrong column after any non-ASCII character.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What both parsers count as a line break (YAML 1.1), so our positions match their marks.
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")

# Messages are "problem; what to do", and the problem names no file: stack.lock is read
# with this loader too, and gives its own advice (see lockfile.read_lock).
_ANCHOR_MESSAGE = "anchors and aliases are not supported; write the value out"
_MERGE_MESSAGE = "merge keys (<<) are not supported; write the keys out"


class YamlDocument:
    """The loaded values of one YAML document, and where each of them was written."""

    def __init__(
        self,
        data: Any,
        display_path: str,
        value_marks: dict[YamlPath, Any] | None = None,
        key_marks: dict[YamlPath, Any] | None = None,
        source_texts: dict[YamlPath, str] | None = None,
    ) -> None:
        self.data = data
        self.display_path = display_path
        # The parser's marks (0-based .line/.column), turned into Locations on lookup
        # only: building 100,000 Location objects up front would double the load time.
        self._values = value_marks or {}
        self._keys = key_marks or {}
        self._texts = source_texts or {}

    def location(self, path: YamlPath) -> Location:
        """Where the value at ``path`` starts; the nearest existing ancestor otherwise."""
        path = tuple(path)
        while True:
            mark = self._values.get(path)
            if mark is not None:
                return Location(mark.line + 1, mark.column + 1)
            if not path:
                return Location(1, 1)
            path = path[:-1]

    def key_location(self, path: YamlPath) -> Location:
        """Where the mapping key that ends ``path`` is written (its value's, for list items)."""
        mark = self._keys.get(tuple(path))
        if mark is None:
            return self.location(path)
        return Location(mark.line + 1, mark.column + 1)

    def source_text(self, path: YamlPath) -> str | None:
        """The text of a non-string scalar as written (``"1.10"``, ``"yes"``), else None."""
        return self._texts.get(tuple(path))

    def error(self, message: str, path: YamlPath = (), *, at_key: bool = False) -> ManifestError:
        """A ``ManifestError`` located at the value (or the key) of ``path``."""
        loc = self.key_location(path) if at_key else self.location(path)
        return ManifestError(message, self.display_path, loc.line, loc.col)


def load_yaml_file(path: str, display_path: str | None = None) -> YamlDocument:
    """Read and load the YAML file at ``path``; errors name it ``display_path``."""
    display = display_path if display_path is not None else str(path)
    try:
        with open(path, "rb") as f:
            # read one byte more than allowed: enough to tell "too big" without reading it all
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(
            f"{display} does not exist; create it (`stackbuild init`) or pass the right path",
            display,
        ) from None
    except IsADirectoryError:
        raise ManifestError(
            f"{display} is a directory; pass the path of the stack.yaml file", display
        ) from None
    except OSError as e:
        message = f"cannot read {display}: {e.strerror}; check its permissions"
        raise ManifestError(message, display) from None
    return load_yaml(raw, display)


def load_yaml(source: bytes | str, display_path: str) -> YamlDocument:
    """Load one YAML document from ``source``; raise ``ManifestError`` on anything suspect."""
    if len(source) > MAX_BYTES:
        raise ManifestError(
            f"{display_path} is larger than {MAX_BYTES // (1024 * 1024)} MiB; "
            "a stack manifest should be far smaller: split it or remove generated content",
            display_path,
        )
    text = _decode(source, display_path) if isinstance(source, bytes) else source
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        raise _character_error(text, bad.start(), display_path)
    loader = _Loader(text)
    try:
        return _EventReader(loader, display_path, text).read()
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, text, display_path) from None
    except yaml.YAMLError as e:  # ReaderError: no mark, only an offset (cannot happen now)
        position = getattr(e, "position", 0) or 0
        if _Loader is not yaml.SafeLoader:  # libyaml counts bytes of the UTF-8 text
            position = len(text.encode("utf-8")[:position].decode("utf-8", "ignore"))
        raise _character_error(text, position, display_path) from None
    finally:
        loader.dispose()


def _character_error(text: str, position: int, display_path: str) -> ManifestError:
    line, col = _line_col(text, position)
    code = ord(text[position]) if 0 <= position < len(text) else 0
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ManifestError(
        f"the character U+{code:04X} is not allowed in YAML; remove it, or write it as "
        f'"{escape}" inside a double-quoted value',
        display_path,
        line,
        col,
    )


def _decode(source: bytes, display_path: str) -> str:
    try:
        return source.decode("utf-8-sig")  # tolerate a UTF-8 byte order mark
    except UnicodeDecodeError as e:
        # the bytes before the bad one are valid UTF-8: count lines and columns in
        # characters, as an editor shows them, not in bytes
        before = source[: e.start].decode("utf-8-sig")
        line, col = _line_col(before, len(before))
        raise ManifestError(
            f"{display_path} is not valid UTF-8 (byte 0x{source[e.start]:02x}); save it as UTF-8",
            display_path,
            line,
            col,
        ) from None


def _shown(text: str) -> str:
    """A scalar for a message: quoted, and cut short (it may be megabytes)."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _line_col(text: str, position: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``text[position]``, lines split as
    the YAML parsers split them; a position past the end is the end of the text."""
    position = max(0, min(position, len(text)))
    line, start = 1, 0
    for match in _BREAK.finditer(text, 0, position):
        line += 1
        start = match.end()
    return line, position - start + 1


def _mark_line_col(mark: Any, text: str) -> tuple[int, int]:
    """A parser mark as 1-based line and column. libyaml puts the end of a text that does
    not end with a line break on a line of its own, past the end of the file: clamp it."""
    if mark is None:
        return 1, 1
    if mark.index >= len(text):
        return _line_col(text, len(text))
    return mark.line + 1, mark.column + 1


# Hints for the syntax errors people actually make; libyaml's wording is terse.
_SYNTAX_HINTS = (
    (
        "mapping values are not allowed",
        "put the value in quotes if it contains ': ', or fix the indentation of this line",
    ),
    (
        "could not find expected ':'",
        "write `key: value` (a space after the colon), and check the indentation",
    ),
    ("found unexpected end of stream", "close the quote or bracket opened here"),
    ("did not find expected key", "check the indentation: keys of one mapping must line up"),
    (
        "did not find expected '-' indicator",
        "check the indentation: items of one list must line up",
    ),
    ("found undefined tag handle", "remove the tag, or put the value in quotes"),
)


def _syntax_error(e: yaml.MarkedYAMLError, text: str, display_path: str) -> ManifestError:
    mark = e.problem_mark or e.context_mark
    line, col = _mark_line_col(mark, text)
    problem = (e.problem or "invalid YAML").strip()
    hint = "fix the YAML syntax at this position"
    offset = getattr(mark, "index", None)
    if offset is not None and 0 <= offset < len(text) and text[offset] == "\t":
        problem, hint = "found a tab", "YAML indentation must use spaces, not tabs"
        e.context = None
    else:
        for needle, candidate in _SYNTAX_HINTS:
            if needle in problem:
                hint = candidate
                break
    context = ""
    # the context only helps when it started elsewhere (an unclosed quote lines above)
    started = e.context_mark
    if e.context and started is not None and (mark is None or started.line != mark.line):
        context = f" ({e.context} started at line {started.line + 1})"
    return ManifestError(f"invalid YAML: {problem}{context}; {hint}", display_path, line, col)


class _EventReader:
    """Reads the parser's event stream into values and location tables, iteratively."""

    def __init__(self, loader: Any, display_path: str, text: str = "") -> None:
        self.loader = loader
        self.display_path = display_path
        self.text = text
        self.values: dict[YamlPath, Any] = {}
        self.keys: dict[YamlPath, Any] = {}
        self.texts: dict[YamlPath, str] = {}

    def fail(self, message: str, mark: Any) -> ManifestError:
        line, col = _mark_line_col(mark, self.text)
        return ManifestError(message, self.display_path, line, col)

    def read(self) -> YamlDocument:
        get_event = self.loader.get_event
        get_event()  # StreamStart
        event = get_event()
        if isinstance(event, yaml.StreamEndEvent):
            return YamlDocument(None, self.display_path)  # empty (or only comments)
        data = self.document(get_event)
        event = get_event()  # after DocumentEnd: StreamEnd, or another document
        if isinstance(event, yaml.DocumentStartEvent):
            raise self.fail(
                f"{self.display_path} must hold one YAML document, but a second one starts "
                "here; merge them or remove the extra '---'",
                event.start_mark,
            )
        return YamlDocument(data, self.display_path, self.values, self.keys, self.texts)

    def document(self, get_event: Any) -> Any:
        # The hot loop: one pass per event, locals only, no calls for the common cases
        # (a 10,000-image manifest is ~200,000 events).
        values, keys, texts = self.values, self.keys, self.texts
        scalar_event, mapping_start = yaml.ScalarEvent, yaml.MappingStartEvent
        mapping_end, sequence_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
        alias_event, document_end = yaml.AliasEvent, yaml.DocumentEndEvent
        # first characters that may start a non-string plain scalar (1, true, ~, null, ...)
        typed_starts = self.loader.yaml_implicit_resolvers
        # One frame per open container: [container, path, is_mapping, pending key or None].
        stack: list[list[Any]] = []
        frame: list[Any] | None = None
        root: Any = None
        while True:
            event = get_event()
            cls = type(event)
            if cls is mapping_end or cls is sequence_end:
                stack.pop()
                frame = stack[-1] if stack else None
                continue
            if cls is document_end:
                return root
            if cls is alias_event or event.anchor is not None:
                raise self.fail(_ANCHOR_MESSAGE, event.start_mark)

            if frame is None:
                path: YamlPath = ()
            elif frame[2]:
                if frame[3] is None:  # this node is a key of the open mapping
                    if cls is not scalar_event:
                        raise self.fail(
                            "mapping keys must be plain names, not lists or mappings; write a name",
                            event.start_mark,
                        )
                    name = event.value
                    if (name == "<<" and event.implicit[0]) or event.tag == _MERGE:
                        raise self.fail(_MERGE_MESSAGE, event.start_mark)
                    path = frame[1] + (name,)
                    if path in keys:
                        first = keys[path].line + 1
                        raise self.fail(
                            f"duplicate key {name!r} (first defined at line {first}); "
                            "remove one of them",
                            event.start_mark,
                        )
                    keys[path] = event.start_mark
                    frame[3] = name
                    continue
                path = frame[1] + (frame[3],)
            else:
                path = frame[1] + (len(frame[0]),)
            values[path] = event.start_mark

            if cls is scalar_event:
                value = event.value
                if not value and frame is not None and frame[2] and event.implicit[0]:
                    # `key:` with no value: the parsers disagree on where the nothing is
                    # (and it may be the next token); the key is what the user wrote
                    values[path] = keys[path]
                if event.tag is not None or (
                    event.implicit[0] and (not value or value[0] in typed_starts)
                ):
                    value = self.scalar(event, path, texts)
            else:
                is_map = cls is mapping_start
                tag = event.tag
                if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                    raise self.fail(
                        f"the YAML tag {_short(tag)} is not supported; remove it",
                        event.start_mark,
                    )
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(
                        f"nesting is deeper than {MAX_DEPTH} levels; stack.yaml needs only a "
                        "few: flatten it",
                        event.start_mark,
                    )
                value = {} if is_map else []

            if frame is None:
                root = value
            elif frame[2]:
                frame[0][frame[3]] = value
                frame[3] = None
            else:
                frame[0].append(value)
            if cls is not scalar_event:
                frame = [value, path, is_map, None]
                stack.append(frame)

    def scalar(self, event: Any, path: YamlPath, texts: dict[YamlPath, str]) -> Any:
        """A scalar that may not be a plain string: resolve its tag and construct it."""
        text = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:  # quoted or block scalar: always a string
                return text
            tag = self.loader.resolve(ScalarNode, text, event.implicit)
        if tag in (_STR, _TIMESTAMP):  # timestamps stay as written (see module doc)
            return text
        if tag == _NULL:
            value: Any = None
        elif tag == _BOOL:
            value = SafeConstructor.bool_values.get(text.lower())
            if value is None:  # only an explicit !!bool reaches here with other text
                raise self.fail(
                    f"{_shown(text)} is not a !!bool; write true or false, or remove the tag",
                    event.start_mark,
                )
        elif tag in (_INT, _FLOAT):
            value = self.number(event, tag, text)
        elif tag == _MERGE:
            raise self.fail(_MERGE_MESSAGE, event.start_mark)
        else:
            raise self.fail(
                f"the YAML tag {_short(tag)} is not supported; remove it or quote the value",
                event.start_mark,
            )
        texts[path] = text
        return value

    def number(self, event: Any, tag: str, text: str) -> int | float:
        """An int or float; text only an explicit tag calls a number is refused, located."""
        if len(text) > MAX_NUMBER_CHARS:
            raise self.fail(
                f"this number is {len(text):,} characters long, more than the "
                f"{MAX_NUMBER_CHARS} stackbuild reads; shorten it, or put it in quotes "
                "to keep it as text",
                event.start_mark,
            )
        node = ScalarNode(tag, text)
        try:
            if tag == _INT:
                return SafeConstructor.construct_yaml_int(self.loader, node)
            return SafeConstructor.construct_yaml_float(self.loader, node)
        except (ValueError, IndexError, TypeError, OverflowError):
            # PyYAML's constructors trust the resolver; an explicit tag skips it
            kind = "a whole number" if tag == _INT else "a number"
            raise self.fail(
                f"{_shown(text)} is not {kind}, as the tag {_short(tag)} says; "
                "fix the value, or remove the tag",
                event.start_mark,
            ) from None
