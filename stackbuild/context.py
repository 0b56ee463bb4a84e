"""The build context exactly as ``docker build`` would send it.

``context_files`` lists what the docker CLI puts into the context tar for the
classic builder: ``.dockerignore`` read like moby's ``ignorefile.ReadAll``,
patterns compiled like ``moby/patternmatcher`` (``*``, ``?``, ``[...]``,
``**``, ``\\`` escapes, ``!`` exceptions, the last matching pattern wins, a
pattern matching a directory covers its subtree) and the directory walk of
moby's ``archive.TarWithOptions`` (an excluded directory is still walked when
a ``!`` pattern names something under it, but its own entry is not sent).
Like the CLI, ``.dockerignore`` and the Dockerfile are always sent (also in the
rare ``**`` cases where the CLI's own check misses and the engine would then
refuse the build).

Checked against the docker 28 CLI itself (tests/integration/test_context_docker.py
hands its tar to a fake engine), thousands of random trees and ``.dockerignore``s
agree, including two of its quirks kept here on purpose: ``|``, ``{`` and ``}``
act as regexp syntax (see ``_REGEX_SPECIAL``), and a pattern is only syntax-checked
up to its first chunk that fails to match "." (see ``_go_match``). Like Go's
regexp, matching takes time linear in the path whatever the pattern (see
``_Automaton``), and a repeat count above 1000 is an error.

``write_context_tar`` writes exactly those entries, so what is hashed is what
the engine receives. The docker SDK's ``docker.utils.build`` is not reused: it
matches case-insensitively, reads ``[!a]`` as a negation (Go: ``[^a]``), has
no ``\\`` escapes, checks only one parent directory against ``**`` patterns,
walks into excluded directories that no exception names, and stats every entry
twice.

Known differences from the CLI, on purpose: sockets, FIFOs and device files
are skipped (Docker would send FIFOs and devices); hard links are sent as
regular files; xattrs are not sent; mtimes are a fixed date, so layers are
reproducible (the classic builder's COPY cache ignores mtimes anyway).
BuildKit's per-Dockerfile ``<name>.dockerignore`` is not read: the classic
builder only knows the one at the context root.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from stackbuild.errors import ContextChanged, ContextError
from stackbuild.manifest import ImageSpec

if TYPE_CHECKING:
    # typeshed knows re's parser modules by their names before 3.11, which warn
    # (DeprecationWarning) when imported at run time
    import sre_constants as sre
    import sre_parse as _parser
    import tarfile  # imported on first use: plan never writes a tar
else:
    from re import _constants as sre  # loaded by `import re` already: costs nothing
    from re import _parser

DOCKERIGNORE = ".dockerignore"
# where a Dockerfile from outside the context goes in the tar (the CLI uses a random name)
EXTERNAL_DOCKERFILE = ".stackbuild.Dockerfile"
# 2000-01-01T00:00:00Z: fixed so layers are reproducible; after 1980 so zip-based
# tools (wheels, jars) built from the copied files do not reject the timestamps
TAR_MTIME = 946684800
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ContextFile:
    """One entry of a build context as Docker would receive it."""

    path: str  # posix, relative to the context root; directories too
    # absolute path on disk, as a string: what os.lstat and open take (a Path per entry
    # cost a fifth of a warm plan's time); it is also the hash cache's key
    source: str
    kind: str  # "f" file, "d" directory, "l" symlink


def context_entry(kind: str, mode: int, value: str = "") -> str:
    """How one context entry counts in a fingerprint: ``f<mode octal>:<sha256>`` for a
    file, ``d<mode>`` for a directory, ``l:<target>`` for a symlink (``value`` is the
    digest or the target). Written by the hashing and checked by the tar writer."""
    if kind == "f":
        return f"f{mode:o}:{value}"
    if kind == "d":
        return f"d{mode:o}"
    return "l:" + value


# --------------------------------------------------------------------------- .dockerignore


# Go's unicode.IsSpace, which strings.TrimSpace uses (str.strip() also strips \x1c-\x1f)
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on Unix (posixpath.normpath keeps a leading '//')."""
    if not path:
        return "."
    rooted = path[0] == "/"
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
        else:
            parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def parse_dockerignore(data: bytes) -> list[str]:
    """Patterns of a ``.dockerignore``, preprocessed like moby's ``ignorefile.ReadAll``.

    ``#`` starts a comment only in the first column; blanks are trimmed; each
    pattern is ``filepath.Clean``-ed and loses one leading ``/`` (``!`` kept in front).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    patterns = []
    for raw in lines:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = raw.decode("utf-8", "surrogateescape")
        if line.startswith("#"):
            continue
        pattern = line.strip(_GO_SPACE)
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip(_GO_SPACE)
        if pattern:
            pattern = _go_clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def read_dockerignore(context: str | os.PathLike[str]) -> list[str]:
    """Patterns of ``<context>/.dockerignore``; none when there is no such file."""
    path = os.path.join(context, DOCKERIGNORE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ContextError(f"cannot read {path}: {e.strerror}") from None
    return parse_dockerignore(data)


# --------------------------------------------------------------------------- patterns


class PatternError(ValueError):
    """A pattern Go's ``filepath.Match`` or regexp would reject."""


def _get_esc(chunk: str) -> tuple[str, str]:
    """Go's ``getEsc``: one possibly escaped character of a ``[...]`` range."""
    if not chunk or chunk[0] in "-]":
        raise PatternError("bad character range")
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise PatternError("trailing backslash in character range")
    if len(chunk) == 1:
        raise PatternError("unterminated character range")
    return chunk[0], chunk[1:]


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """Go's ``matchChunk``: after a mismatch it goes on checking the chunk's syntax."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = chunk[:1] == "^"
            if negated:
                chunk = chunk[1:]
            matched, ranges = False, 0
            while True:
                if chunk[:1] == "]" and ranges:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if not failed and lo <= r <= hi:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise PatternError("trailing backslash")
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    return ("", False) if failed else (s, True)


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    """Go's ``scanChunk``: leading stars, then everything up to the next unbracketed star."""
    stripped = pattern.lstrip("*")
    star = len(stripped) != len(pattern)
    pattern = stripped
    in_range = False
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 < n:
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match``, which patternmatcher.New calls with name "." as a syntax check.

    Without the "validate the rest of the pattern" step of recent Go releases: the
    docker CLI accepts ``a*[a-]`` (measured with docker 28.2), so the Go it is built
    with does not reject syntax past the first chunk that fails to match.
    """
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return "/" not in name  # a trailing * matches the rest unless it has a /
        rest, ok = _match_chunk(chunk, name)
        if ok and (not rest or pattern):
            name = rest
            continue
        if star:
            i, advanced = 0, False
            while i < len(name) and name[i] != "/":
                rest, ok = _match_chunk(chunk, name[i + 1 :])
                if ok and not (not pattern and rest):
                    name, advanced = rest, True
                    break
                i += 1
            if advanced:
                continue
        return False
    return not name


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
# escapes that mean the same in Go's RE2 and Python's re (with re.ASCII)
_SAME_ESCAPES = set("afnrtvdDsSwWbBA")


def _re2_to_python(src: str) -> str:
    """Translate the RE2 text patternmatcher builds into an equivalent Python regex."""
    out: list[str] = []
    i, n = 0, len(src)
    in_class = False
    while i < n:
        c = src[i]
        if c == "\\":
            if i + 1 >= n:
                raise PatternError("trailing backslash")
            e = src[i + 1]
            i += 2
            if e in _SAME_ESCAPES:
                out.append("\\" + e)
            elif e == "z":
                out.append("\\Z")
            elif e.isascii() and e.isalnum():
                raise PatternError(f"escape \\{e} is not supported")
            else:
                out.append(re.escape(e))
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append("]")
            elif c == "[" and src.startswith("[:", i):
                end = src.find(":]", i + 2)
                name = src[i + 2 : end] if end >= 0 else ""
                if name not in _POSIX_CLASSES:
                    raise PatternError(f"invalid character class [:{name}:]")
                out.append(_POSIX_CLASSES[name])
                i = end + 2
                continue
            elif c in "[&~|":  # literal in RE2; nested-set syntax (or a warning) in Python
                out.append("\\" + c)
            else:
                out.append(c)
        elif c == "{" and src.startswith(",", i + 1):
            out.append("\\{")  # Python reads "{,n}" as a repetition, RE2 as text
        elif c == "[":
            in_class = True
            out.append("[")
            if src.startswith("^", i + 1):
                out.append("^")
                i += 1
            if src.startswith("]", i + 1):  # RE2: a leading ']' is literal
                out.append("\\]")
                i += 1
        else:
            out.append(c)
        i += 1
    if in_class:
        raise PatternError("missing closing ]")
    return "".join(out)


# What a user's pattern may make of the regexp: Go's RE2 never backtracks, Python's re
# does, exponentially for "a*a*a*...b" or "**/**/**/...". So re only checks the syntax
# (its errors are the ones the agreement tests were measured with) and matches when its
# backtracking is provably linear; everything else runs on the parse tree re itself
# made, simulated as an automaton (Thompson's construction, states built lazily like
# RE2's DFA), which takes time linear in the path whatever the pattern.
_CHAR, _SPLIT, _ASSERT, _ACCEPT = range(4)
# Go's regexp refuses a repeat count above 1000 ("invalid repeat count"), which also
# bounds the automaton a pattern can make; and a few patterns' worth of states at most
_MAX_REPEAT_COUNT = 1000
_MAX_STATES = 200_000
_MAX_CACHED = 20_000  # automaton steps remembered per pattern before starting afresh
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class _Unsupported(Exception):
    """A construct our translation never produces: match with re, as before."""


def _category(code: object) -> Callable[[str], bool]:
    # re.ASCII meanings, which is how the translated regexps are compiled
    tests: dict[object, Callable[[str], bool]] = {
        sre.CATEGORY_DIGIT: lambda c: "0" <= c <= "9",
        sre.CATEGORY_NOT_DIGIT: lambda c: not "0" <= c <= "9",
        sre.CATEGORY_SPACE: lambda c: c in " \t\n\r\f\v",
        sre.CATEGORY_NOT_SPACE: lambda c: c not in " \t\n\r\f\v",
        sre.CATEGORY_WORD: _WORD.__contains__,
        sre.CATEGORY_NOT_WORD: lambda c: c not in _WORD,
    }
    if code not in tests:
        raise _Unsupported(code)
    return tests[code]


def _char_test(op: object, av: Any) -> Callable[[str], bool]:
    """The one-character test of a LITERAL, NOT_LITERAL, ANY or IN node."""
    if op is sre.LITERAL:
        literal = chr(av)
        return literal.__eq__
    if op is sre.NOT_LITERAL:
        literal = chr(av)
        return literal.__ne__
    if op is sre.ANY:
        return "\n".__ne__  # no DOTALL: "." is anything but a newline
    if op is sre.IN:
        negate = False
        ranges: list[tuple[str, str]] = []
        categories: list[Callable[[str], bool]] = []
        for item_op, item in av:
            if item_op is sre.NEGATE:
                negate = True
            elif item_op is sre.LITERAL:
                ranges.append((chr(item), chr(item)))
            elif item_op is sre.RANGE:
                ranges.append((chr(item[0]), chr(item[1])))
            elif item_op is sre.CATEGORY:
                categories.append(_category(item))
            else:
                raise _Unsupported(item_op)

        def test(c: str) -> bool:
            hit = any(lo <= c <= hi for lo, hi in ranges) or any(t(c) for t in categories)
            return hit != negate

        return test
    raise _Unsupported(op)


class _Automaton:
    """A search for a regexp (as ``re.search`` would find it) in time linear in the text."""

    def __init__(self, tree: Iterable[Any]) -> None:
        self.kind: list[int] = []
        self.arg: list[Any] = []
        self.out: list[list[int]] = []
        self.words = False  # any \b or \B: the word-ness of neighbours matters
        self.start = self._sequence(tree, self._node(_ACCEPT, None, []))
        self._ids: dict[frozenset[int], int] = {}
        self._sets: list[frozenset[int]] = []
        self._accepting: list[bool] = []
        self._steps: dict[tuple[int, str, bool, bool], int] = {}
        self._starts: dict[tuple[bool, bool, bool, bool], frozenset[int]] = {}
        # a state set that died stays dead when no match can start after position 0
        self._anchored = not any(
            self._closure((self.start,), (False, end, prev, nxt))
            for end in (False, True)
            for prev in (False, True)
            for nxt in (False, True)
        )

    # -- construction, from the last node backwards: each node knows its successor

    def _node(self, kind: int, arg: Any, out: list[int]) -> int:
        if len(self.kind) >= _MAX_STATES:
            raise PatternError("pattern too complex")
        self.kind.append(kind)
        self.arg.append(arg)
        self.out.append(out)
        return len(self.kind) - 1

    def _sequence(self, items: Iterable[Any], then: int) -> int:
        for op, av in reversed(list(items)):
            then = self._item(op, av, then)
        return then

    def _item(self, op: object, av: Any, then: int) -> int:
        if op is sre.MAX_REPEAT or op is sre.MIN_REPEAT:  # greed does not change *whether*
            low, high, body = av
            if high is sre.MAXREPEAT:
                loop = self._node(_SPLIT, None, [then])
                self.out[loop].insert(0, self._sequence(body, loop))
                then = loop
            else:
                tail = then
                for _ in range(high - low):  # (x(x(x)?)?)?
                    tail = self._node(_SPLIT, None, [self._sequence(body, tail), then])
                then = tail
            for _ in range(low):
                then = self._sequence(body, then)
            return then
        if op is sre.SUBPATTERN:
            return self._sequence(av[3], then)
        if op is sre.BRANCH:
            return self._node(_SPLIT, None, [self._sequence(b, then) for b in av[1]])
        if op is sre.AT:
            if av not in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_END_STRING,
                          sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY):  # fmt: skip
                raise _Unsupported(av)
            self.words = self.words or av in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY)
            return self._node(_ASSERT, av, [then])
        return self._node(_CHAR, _char_test(op, av), [then])

    # -- simulation

    def _closure(
        self, nodes: Iterable[int], where: tuple[bool, bool, bool, bool]
    ) -> frozenset[int]:
        """The character-reading and accepting nodes reachable without reading, at a
        position that is the start / the end / after a word char / before one."""
        at_start, at_end, prev_word, next_word = where
        seen: set[int] = set()
        found: set[int] = set()
        todo = list(nodes)
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            kind = self.kind[node]
            if kind == _SPLIT:
                todo.extend(self.out[node])
            elif kind == _ASSERT:
                at = self.arg[node]
                if at is sre.AT_BEGINNING or at is sre.AT_BEGINNING_STRING:
                    ok = at_start
                elif at is sre.AT_END_STRING:
                    ok = at_end
                elif at is sre.AT_BOUNDARY:
                    ok = prev_word != next_word
                else:
                    ok = prev_word == next_word
                if ok:
                    todo.append(self.out[node][0])
            else:
                found.add(node)
        return frozenset(found)

    def _state(self, nodes: frozenset[int]) -> int:
        state = self._ids.get(nodes)
        if state is None:
            state = self._ids[nodes] = len(self._sets)
            self._sets.append(nodes)
            self._accepting.append(any(self.kind[n] == _ACCEPT for n in nodes))
        return state

    def _start(self, where: tuple[bool, bool, bool, bool]) -> frozenset[int]:
        nodes = self._starts.get(where)
        if nodes is None:
            nodes = self._starts[where] = self._closure((self.start,), where)
        return nodes

    def _step(self, state: int, c: str, at_end: bool, next_word: bool) -> int:
        if len(self._steps) > _MAX_CACHED:  # a bounded cache, as RE2 keeps: start afresh
            nodes = self._sets[state]
            self._ids.clear()
            self._sets.clear()
            self._accepting.clear()
            self._steps.clear()
            state = self._state(nodes)
        where = (False, at_end, self.words and c in _WORD, next_word)
        kind, arg, out = self.kind, self.arg, self.out
        moved = [out[n][0] for n in self._sets[state] if kind[n] == _CHAR and arg[n](c)]
        nodes = self._closure(moved, where) | self._start(where)  # a match may start here
        nxt = self._steps[state, c, at_end, next_word] = self._state(nodes)
        return nxt

    def search(self, text: str) -> bool:
        """Whether the regexp matches somewhere in ``text`` (``re.search(...) is not None``)."""
        n = len(text)
        words = self.words
        first_word = words and n > 0 and text[0] in _WORD
        state = self._state(self._start((True, n == 0, False, first_word)))
        if self._accepting[state]:
            return True
        steps, accepting, sets = self._steps, self._accepting, self._sets
        anchored = self._anchored
        for i, c in enumerate(text):
            at_end = i + 1 == n
            next_word = words and not at_end and text[i + 1] in _WORD
            nxt = steps.get((state, c, at_end, next_word))
            if nxt is None:
                nxt = self._step(state, c, at_end, next_word)
            if accepting[nxt]:
                return True
            if anchored and not sets[nxt]:
                return False
            state = nxt
        return False


def _linear_in_re(tree: Iterable[Any]) -> bool:
    """Whether re's backtracking over this tree is linear in the text: no alternation
    and at most one repeat of variable length, so at most one choice point (the
    leading ``^`` stops a search from retrying at every position). Refuses the
    repeat counts Go's regexp refuses (the docker CLI then fails the build)."""
    variable, branches = 0, False
    todo = [tree]
    while todo:
        for op, av in todo.pop():
            if op is sre.BRANCH:
                branches = True
                todo.extend(av[1])
            elif op is sre.MAX_REPEAT or op is sre.MIN_REPEAT or op is sre.POSSESSIVE_REPEAT:
                low, high, body = av
                bounded = high is not sre.MAXREPEAT
                if low > _MAX_REPEAT_COUNT or (bounded and high > _MAX_REPEAT_COUNT):
                    raise PatternError("invalid repeat count")
                variable += low != high
                todo.append(body)
            elif op is sre.SUBPATTERN:
                todo.append(av[3])
    return not branches and variable <= 1


def _searcher(source: str) -> Callable[[str], bool]:
    """``bool(re.search(source))`` for a translated pattern, linear in the path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning on "--" inside a class
        regex = re.compile(source, re.ASCII)  # its syntax errors are the ones we report
        tree = _parser.parse(source, re.ASCII).data  # its (opcode, argument) items
    if not _linear_in_re(tree):
        try:
            return _Automaton(tree).search
        except _Unsupported:
            pass  # not produced by _re2_to_python; kept correct rather than fast
    search = regex.search
    return lambda path: search(path) is not None


_EXACT, _PREFIX, _SUFFIX, _REGEX = range(4)
# patternmatcher's shouldEscape means ".+()|{}$", but its bitmap is 8 bytes of 8 bits:
# '|', '{' and '}' (>= 64) fall off it, stay unescaped, and act as regexp syntax
# ("[p]|x" excludes everything starting with p). Docker 28 behaves so; so do we.
_REGEX_SPECIAL = frozenset(".+()$")


def _compile(cleaned: str) -> Callable[[str], bool] | str:
    """patternmatcher's ``Pattern.compile`` + ``match``: a predicate on a slash path,
    or the RE2 source (without the leading ``^``) when the pattern needs a regexp.

    Kept step for step, including its shortcuts, because they are observable:
    ``**foo`` is a plain suffix test ("xfoo" matches), ``a/**`` a prefix test.
    """
    reg: list[str] = []
    kind = _EXACT
    pos, n, step = 0, len(cleaned), 0
    while pos < n:
        ch = cleaned[pos]
        pos += 1
        if ch == "*":
            if pos < n and cleaned[pos] == "*":
                pos += 1
                if pos < n and cleaned[pos] == "/":  # treat **/ as **
                    pos += 1
                if pos >= n:  # trailing **: everything below
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        reg.append(".*")
                        kind = _REGEX
                else:  # any number of directories, even none
                    reg.append("(.*/)?")
                    kind = _REGEX
                if step == 0:
                    kind = _SUFFIX
            else:
                reg.append("[^/]*")
                kind = _REGEX
        elif ch == "?":
            reg.append("[^/]")
            kind = _REGEX
        elif ch in _REGEX_SPECIAL:
            reg.append("\\" + ch)
        elif ch == "\\":
            if pos < n:
                reg.append("\\" + cleaned[pos])
                pos += 1
                kind = _REGEX
            else:
                # Go appends a lone "\" and then "$": the regexp ends in a literal
                # dollar and is not anchored at the end
                reg.append("\\")
        elif ch in "[]":
            reg.append(ch)
            kind = _REGEX
        else:
            reg.append(ch)
        step += 1

    if kind == _EXACT:
        return cleaned.__eq__
    if kind == _PREFIX:
        prefix = cleaned[:-2]
        return lambda path: path.startswith(prefix)
    if kind == _SUFFIX:
        suffix = cleaned[2:]
        bare = suffix[1:] if suffix.startswith("/") else None  # "**/foo" matches "foo"
        return lambda path: path.endswith(suffix) or path == bare
    source = "".join(reg)  # compiled on first use, see _Pattern
    if cleaned.endswith("\\") and (len(cleaned) - len(cleaned.rstrip("\\"))) % 2:
        return source + "$"  # the lone backslash escapes it
    return source + "\\z"


class _Pattern:
    __slots__ = ("cleaned", "dirs", "exclusion", "match", "_regex_source")

    def __init__(self, cleaned: str, exclusion: bool) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.dirs = cleaned.split("/")
        compiled = _compile(cleaned)
        if isinstance(compiled, str):
            self._regex_source = compiled
            self.match: Callable[[str], bool] = self._compile_and_match
        else:
            self.match = compiled

    def _compile_and_match(self, path: str) -> bool:
        # compiled on first use, as patternmatcher does: a pattern whose regexp is
        # invalid fails the build only once some path is tested against it
        try:
            # "^...$" searched, as Go's MatchString does: with an unescaped '|'
            # only the first branch is anchored at the start
            self.match = _searcher("^" + _re2_to_python(self._regex_source))
        except (re.error, PatternError) as e:
            raise PatternError(f"bad pattern {self.cleaned!r}: {e}") from None
        return self.match(path)


class PatternMatcher:
    """moby/patternmatcher's ``PatternMatcher`` over slash-separated relative paths."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip(_GO_SPACE)
            if not p:
                continue
            p = _go_clean(p)
            exclusion = p[0] == "!"
            if exclusion:
                if len(p) == 1:
                    raise PatternError('illegal exclusion pattern: "!"')
                p = p[1:]
            try:
                _go_match(p, ".")
                self.patterns.append(_Pattern(p, exclusion))
            except PatternError as e:
                raise PatternError(f"bad pattern {raw!r}: {e}") from None
        self.exclusions = any(p.exclusion for p in self.patterns)
        # an excluded directory is walked anyway when an exception starts with it
        self._exception_prefixes = tuple(p.cleaned + "/" for p in self.patterns if p.exclusion)

    def matches_using_parent(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """``MatchesUsingParentResults``: (excluded?, per-pattern info for children).

        Without ``parent`` every ancestor directory is tried, as
        ``MatchesOrParentMatches`` does. Ported as is, including that a pattern
        the loop skips is recorded as "parent did not match".
        """
        matched = False
        info = [False] * len(self.patterns)
        for i, pattern in enumerate(self.patterns):
            m = parent[i] if parent is not None else False
            if not m:
                if pattern.exclusion != matched:
                    continue
                m = pattern.match(path)
                if not m and parent is None and "/" in path:
                    dirs = path.split("/")[:-1]
                    m = any(pattern.match("/".join(dirs[: j + 1])) for j in range(len(dirs)))
            info[i] = m
            if m:
                matched = not pattern.exclusion
        return matched, info

    def matches_legacy(self, path: str) -> bool:
        """The deprecated ``patternmatcher.Matches`` the CLI still uses for its build files."""
        path = _go_clean(path)
        if path == ".":
            return False
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        parent_dirs = parent.split("/")
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            m = pattern.match(path)
            if not m and parent != "." and len(pattern.dirs) <= len(parent_dirs):
                m = pattern.match("/".join(parent_dirs[: len(pattern.dirs)]))
            if m:
                matched = not pattern.exclusion
        return matched

    def walk_excluded_dir(self, path: str) -> bool:
        """Whether an excluded directory must still be walked for a ``!`` exception."""
        dir_slash = path + "/"
        return any(prefix.startswith(dir_slash) for prefix in self._exception_prefixes)


# --------------------------------------------------------------------------- listing


def _rel_inside(context: str, path: str) -> str | None:
    """``path``'s posix path inside the context (both absolute and normalized),
    or None when it lies outside."""
    prefix = context.rstrip("/") + "/"
    if path.startswith(prefix) and len(path) > len(prefix):
        return path[len(prefix) :]
    return None


def dockerfile_name_in_context(spec: ImageSpec) -> str:
    """The path the Dockerfile has inside the context tar (``dockerfile=`` of the build)."""
    rel = _rel_inside(os.path.abspath(spec.context), os.path.abspath(spec.dockerfile))
    return rel if rel is not None else EXTERNAL_DOCKERFILE


def _walk(
    root: str, matcher: PatternMatcher | None, skip: str | None = None
) -> list[tuple[str, str, str]]:
    """(relative path, source, kind) of every entry the CLI's walk would send, except the
    subtree at relative path ``skip``, which is not even read."""
    found: list[tuple[str, str, str]] = []
    # (directory, its relative path + "/", its per-pattern match info)
    todo: list[tuple[str, str, list[bool] | None]] = [(root, "", None)]
    while todo:
        directory, prefix, parent = todo.pop()
        try:
            entries = os.scandir(directory)
        except OSError as e:
            raise ContextError(f"cannot read directory {directory}: {e.strerror}") from None
        with entries:
            for entry in entries:
                # d_type answers these without a stat on the usual filesystems
                if entry.is_dir(follow_symlinks=False):
                    kind = "d"
                elif entry.is_symlink():
                    kind = "l"
                elif entry.is_file(follow_symlinks=False):
                    kind = "f"
                else:
                    continue  # socket, FIFO, device
                rel = prefix + entry.name
                if rel == skip:
                    continue
                info = None
                if matcher is not None:
                    excluded, info = matcher.matches_using_parent(rel, parent)
                    if excluded:
                        # its own entry is not sent, but a "!dir/file" may need its children
                        if kind == "d" and matcher.exclusions and matcher.walk_excluded_dir(rel):
                            todo.append((entry.path, rel + "/", info))
                        continue
                found.append((rel, entry.path, kind))
                if kind == "d":
                    todo.append((entry.path, rel + "/", info))
    return found


def _lstat_kind(path: str) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISLNK(mode):
        return "l"
    return None


@functools.lru_cache(maxsize=256)
def _matcher(patterns: tuple[str, ...]) -> PatternMatcher:
    # monorepos repeat the same .dockerignore; matchers are immutable once compiled
    return PatternMatcher(patterns)


def _matches_legacy(matcher: PatternMatcher, path: str) -> bool:
    try:
        return matcher.matches_legacy(path)
    except PatternError:
        return False  # the CLI ignores this error here (and fails later, if at all)


def _context_matcher(root: str, dockerfile_rel: str | None) -> PatternMatcher | None:
    """The matcher of ``root``'s .dockerignore, with the build files let through; None
    without patterns. Raises PatternError for a bad pattern."""
    patterns = read_dockerignore(root)
    if not patterns:
        return None
    matcher = _matcher(tuple(patterns))
    # docker CLI's TrimBuildFilesFromExcludes: the build files are always sent
    extra = [
        "!" + rel
        for rel in (DOCKERIGNORE, dockerfile_rel)
        if rel is not None and _matches_legacy(matcher, rel)
    ]
    return _matcher(tuple(patterns + extra)) if extra else matcher


def would_send(context: Path, dockerfile: Path, rel: str) -> bool:
    """Whether ``docker build`` would send ``rel`` (a posix path inside the context) if it
    existed, by the context's .dockerignore as it is now: for a file that is gone (a
    deleted file still changed what the context was). Raises ContextError like
    ``context_files``."""
    root = os.path.abspath(context)
    dockerfile_rel = _rel_inside(root, os.path.abspath(dockerfile))
    if rel in (DOCKERIGNORE, dockerfile_rel):
        return True
    try:
        matcher = _context_matcher(root, dockerfile_rel)
        return matcher is None or not matcher.matches_using_parent(rel, None)[0]
    except PatternError as e:
        raise ContextError(f"{os.path.join(root, DOCKERIGNORE)}: {e}") from None


def context_files(
    context: Path, dockerfile: Path, exclude: Path | None = None
) -> list[ContextFile]:
    """Every file, directory and symlink ``docker build`` would send, sorted by path.

    ``exclude``: a directory left out whole when it lies inside the context (the
    stack's ``.stackbuild/``, whose logs and records change with every run).

    Symlinks are entries, never followed. A directory that is excluded but
    walked for a ``!`` exception is not itself an entry (Docker creates it
    with mode 0755 when it unpacks the children). Raises ContextError for a
    bad ``.dockerignore`` or an unreadable directory.
    """
    root = os.path.abspath(context)
    dockerfile_rel = _rel_inside(root, os.path.abspath(dockerfile))
    where = os.path.join(root, DOCKERIGNORE)
    try:
        matcher = _context_matcher(root, dockerfile_rel)
        skip = _rel_inside(root, os.path.abspath(exclude)) if exclude is not None else None
        found = _walk(root, matcher, skip)
    except PatternError as e:
        raise ContextError(f"{where}: {e}") from None
    if matcher is not None:
        # the legacy check above misses some "**" cases; guarantee it here
        listed = {rel for rel, _, _ in found}
        for rel in (DOCKERIGNORE, dockerfile_rel):
            if rel is not None and rel not in listed:
                source = os.path.join(root, rel)
                kind = _lstat_kind(source)
                if kind is not None:
                    found.append((rel, source, kind))
    found.sort(key=itemgetter(0))
    return [ContextFile(rel, source, kind) for rel, source, kind in found]


# --------------------------------------------------------------------------- tar


def _tarinfo(name: str, mode: int, kind: str = "f") -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE}[kind]
    info.mode = mode
    info.mtime = TAR_MTIME
    info.uid = info.gid = 0  # like the CLI's ChownOpts{0, 0}
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, mode: int, data: bytes) -> None:
    info = _tarinfo(name, mode)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class _HashingReader:
    """A file read by tarfile, hashed on the way: the digest of the very bytes sent."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.sha256.update(data)
        return data


def _add_entry(
    tar: tarfile.TarFile, f: ContextFile, replace: bytes | None, on_disk: bytes | None = None
) -> str:
    """One context entry, as it is on disk now, or ``replace`` as its content; returns
    its ``context_entry``: of what was read, or of ``on_disk`` when ``replace`` was
    made from those bytes (the file's content as the fingerprint hashed it)."""
    source = f.source
    try:
        st = os.lstat(source)
        mode = stat.S_IMODE(st.st_mode)
        if replace is not None:
            _add_bytes(tar, f.path, mode if stat.S_ISREG(st.st_mode) else 0o644, replace)
            content = replace if on_disk is None else on_disk
            return context_entry("f", mode, hashlib.sha256(content).hexdigest())
        if f.kind == "f" and stat.S_ISREG(st.st_mode):
            info = _tarinfo(f.path, mode)
            info.size = st.st_size
            with open(source, "rb") as handle:
                reader = _HashingReader(handle)
                tar.addfile(info, reader)
            return context_entry("f", mode, reader.sha256.hexdigest())
        if f.kind == "d" and stat.S_ISDIR(st.st_mode):
            tar.addfile(_tarinfo(f.path, mode, "d"))
            return context_entry("d", mode)
        if f.kind == "l" and stat.S_ISLNK(st.st_mode):
            info = _tarinfo(f.path, mode, "l")
            info.linkname = os.readlink(source)
            tar.addfile(info)
            return context_entry("l", mode, info.linkname)
        raise ContextChanged(f"{source} changed type after it was hashed for this build")
    except OSError as e:
        # includes tarfile's "unexpected end of data": the file shrank meanwhile
        raise ContextError(f"cannot send {source}: {e.strerror or e}") from None


def write_context_tar(
    files: Iterable[ContextFile],
    dockerfile_bytes: bytes,
    dockerfile_name: str,
    fileobj: IO[bytes],
    *,
    expected: Mapping[str, str] | None = None,
) -> None:
    """Write the context tar of ``files`` plus the Dockerfile to ``fileobj``.

    Entries keep their mode bits; uid/gid are 0 and mtimes fixed, so
    rebuilding unchanged files hits the layer cache and yields the same
    layers. ``dockerfile_bytes`` is written at ``dockerfile_name``, replacing
    a context file of that name. When that name is not a context file (a
    Dockerfile from outside the context), ``.dockerignore`` in the tar gets
    the name appended, or is created as ``.dockerignore`` + the name, exactly
    as the docker CLI does: the engine then drops both from what ``COPY .``
    sees. Pass ``dockerfile=dockerfile_name`` to the build.

    ``expected`` (path -> ``context_entry``, the image's fingerprinted files): every
    entry is hashed as it is written and must equal what the fingerprint hashed,
    else ContextChanged names the file. A file edited between the plan and its
    build would otherwise ship under a fingerprint that does not describe it.
    The Dockerfile entry is the given bytes, hashed into the fingerprint on their own.
    """
    import tarfile  # lazily: plan never writes a tar

    files = list(files)
    paths = {f.path for f in files}
    external = dockerfile_name not in paths
    hide = b"\n" + os.fsencode(dockerfile_name) + b"\n"
    # TarFile itself, which is what open() with mode "w" returns: typeshed's open() does
    # not list copybufsize, which it hands on to it
    with tarfile.TarFile(
        fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_COPY_CHUNK
    ) as tar:
        for f in files:
            replace = on_disk = None
            if f.path == dockerfile_name:
                replace = dockerfile_bytes
            elif external and f.path == DOCKERIGNORE:
                # read through a symlink too: the engine reads the patterns as a file
                try:
                    on_disk = Path(f.source).read_bytes()
                except OSError as e:
                    raise ContextError(f"cannot read {f.source}: {e.strerror}") from None
                replace = on_disk + hide
            sent = _add_entry(tar, f, replace, on_disk)
            if expected is not None and f.path != dockerfile_name and expected.get(f.path) != sent:
                raise ContextChanged(
                    f"{f.source} changed after it was hashed for this build (while earlier "
                    "builds ran?); the image was not built, so no fingerprint names content "
                    "it does not have. Run the build again."
                )
        if external:
            _add_bytes(tar, dockerfile_name, 0o600, dockerfile_bytes)
            if DOCKERIGNORE not in paths:
                _add_bytes(tar, DOCKERIGNORE, 0o600, DOCKERIGNORE.encode() + hide)
