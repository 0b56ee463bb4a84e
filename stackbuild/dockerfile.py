"""Find the images a Dockerfile builds on: FROM, COPY --from, RUN --mount=from.

Pure text processing. Returns every reference to an image outside the
Dockerfile itself (stage names, stage numbers and ``scratch`` removed), after
ARG substitution; ``graph`` decides which of them are in-stack parents.

The rules follow BuildKit's Dockerfile frontend, so that what we infer is what
``docker build`` will pull:

- parser directives (``# escape=`` `` ` ``) only at the very top; comment lines
  (also inside a continuation) and blank lines are skipped; heredoc bodies of
  RUN/COPY/ADD are skipped, never parsed as instructions;
- FROM sees only global ARGs (declared before the first FROM); a build arg
  overrides an ARG's default but does not declare it;
- COPY --from / RUN --mount from= see the stage's ARGs (a bare ``ARG X``
  inherits the global value) and ENVs; they may name any stage of the file,
  FROM only an earlier one (``FROM base AS base`` builds on the image);
- an unset variable expands to ``""``; a reference that is then not a valid
  image name (``:latest``, ``/foo``) is dropped and explained in ``warnings``.

The split into instructions is BuildKit's own parser (the ``dockerfile``
package embeds it; see ``_instructions`` for its fast path and
``_join_spaced_heredoc`` for the one place it lags current BuildKit); the
ARG, stage and reference rules on top of it are written here, each after
BuildKit's rule. A Dockerfile BuildKit refuses raises ``DockerfileError``
at its line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stackbuild.errors import DockerfileError
from stackbuild.refs import is_reference

if TYPE_CHECKING:
    import dockerfile as buildkit  # imported where it parses: the fast path needs none


@dataclass(frozen=True)
class ImageReference:
    """One image a Dockerfile names, e.g. ``FROM debian:bookworm-slim`` at line 3."""

    ref: str  # after ARG substitution, e.g. "127.0.0.1:5000/acme/base:latest"
    instruction: str  # "FROM" | "COPY --from" | "RUN --mount"
    line: int  # 1-based line of the instruction in the Dockerfile
    stage: int = 0  # 0-based index of the build stage the instruction is in


@dataclass(frozen=True)
class DockerfileInfo:
    references: tuple[ImageReference, ...]  # in file order, duplicates kept once
    stages: tuple[str, ...]  # names declared with AS, lower-cased
    # human-readable notes ("line 3: FROM: variable BASE is not set ..."), for plan output
    warnings: tuple[str, ...] = ()
    # the ONBUILD triggers of the stage that becomes the image (the target, else the last):
    # they make no edge here but run in every image built FROM this one
    onbuild: tuple[Onbuild, ...] = ()
    # every FROM of a counted stage that names an image (not a stage), in file order and
    # not deduplicated as ``references`` are: a child runs a parent's ONBUILD triggers
    # only when a stage of it is built FROM that parent
    bases: tuple[ImageReference, ...] = ()
    # the global ARGs (declared before the first FROM) with their values, build args
    # applied; BuildKit's predefined platform ARGs left out. ``adopt`` tries overrides
    global_args: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Onbuild:
    """One ``ONBUILD`` instruction, e.g. ``ONBUILD COPY --from=assets . /app`` at line 7."""

    trigger: str  # the instruction it defers, as written: "COPY --from=assets . /app"
    line: int
    # the ``--from`` / ``--mount from=`` operands as written: BuildKit reads them in the
    # child's build, where they name a stage of the child's Dockerfile or an image
    names: tuple[str, ...] = ()


def parse_dockerfile(
    text: str,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: str | None = None,
) -> DockerfileInfo:
    """Parse Dockerfile ``text``; ``build_args`` override the ARG defaults.

    With ``target`` (a stage name), only the stages that target needs count,
    as BuildKit builds no others; an unknown target is a warning and every
    stage counts. ``platform`` (``linux/arm64``) is the image's target platform,
    default the machine's; it gives BuildKit's predefined ``TARGET*``/``BUILD*`` ARGs.
    A Dockerfile BuildKit refuses raises ``DockerfileError`` at its line.
    """
    return _Analysis(build_args or {}, _platform_args(platform, None)).run(text, target)


@dataclass(frozen=True)
class Instruction:
    """One instruction of a Dockerfile as BuildKit splits it, e.g. ``RUN make`` at line 4."""

    keyword: str  # lower-cased: "run"
    arguments: str  # its first logical line after the keyword (continuations joined)
    line: int  # 1-based line where it starts
    stage: int  # 0-based index of its build stage; -1 for an ARG before the first FROM
    stage_name: str | None = None  # the stage's ``AS`` name, lower-cased


def instructions(text: str) -> list[Instruction]:
    """Every instruction of Dockerfile ``text``, with its line and stage: what a build log's
    step is matched against to name the line that failed. Raises ``DockerfileError``."""
    result = []
    stage, name = -1, None
    for keyword, rest, line in _instructions(text)[1]:
        if keyword == "from":
            words = rest.split()
            stage += 1
            name = words[-1].lower() if len(words) >= 3 and words[-2].lower() == "as" else None
        result.append(Instruction(keyword, rest, line, stage, name))
    return result


@functools.cache
def _host_platform() -> str:
    import platform as host

    machine = host.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    if machine.startswith("armv7"):
        arch = "arm/v7"
    elif machine.startswith("armv6"):
        arch = "arm/v6"
    return f"linux/{arch}"


def platform_args(platform: str | None = None, build: str | None = None) -> dict[str, str]:
    """BuildKit's predefined platform ARGs: ``TARGET*`` from ``platform`` (the image's),
    ``BUILD*`` from ``build`` (the builder's); either defaults to this machine's."""
    return dict(_platform_args(platform, build))


@functools.lru_cache(maxsize=64)  # one per platform of the stack; read-only copies
def _platform_args(platform: str | None, build: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for prefix, spec in (("TARGET", platform), ("BUILD", build)):
        spec = (spec or _host_platform()).strip().lower()
        parts = spec.split("/")
        values[f"{prefix}PLATFORM"] = spec
        values[f"{prefix}OS"] = parts[0]
        values[f"{prefix}ARCH"] = parts[1] if len(parts) > 1 else ""
        values[f"{prefix}VARIANT"] = parts[2] if len(parts) > 2 else ""
    return values


def pin_references(
    text: str,
    pins: Mapping[str, str],
    build_args: Mapping[str, str] | None = None,
    *,
    platform: str | None = None,
) -> str:
    """Dockerfile ``text`` with every FROM, COPY --from and RUN --mount from= whose image
    reference (after ARG substitution: exactly the ``ImageReference.ref`` that
    ``parse_dockerfile`` reports) is a key of ``pins`` rewritten to name ``pins[ref]``
    literally.

    Stage names, stage numbers and ``scratch`` are never touched (``FROM base AS base``
    rewrites that FROM's image; a later ``COPY --from=base`` names the stage and stays).
    Only the operand itself is replaced, so flags (``--platform``), ``AS name``, other
    ``--mount`` fields (in their order), heredoc bodies and every other byte stay as
    they are, and so do the physical line count and the line of every instruction.
    Used to build a child on exactly the parent image it was hashed against (a tag
    nothing else can move) rather than on a shared name another run may re-tag.
    """
    if not pins:
        return text
    analysis = _Analysis(build_args or {}, _platform_args(platform, None))
    escape = analysis.walk(text)
    by_name = analysis.stage_numbers()
    # start line -> [(instruction, slot, new reference)]
    edits: dict[int, list[tuple[str, int, str]]] = {}
    for use in analysis.uses:
        new = pins.get(use.value)
        if new is None or analysis.stage_of(use, by_name) is not None:
            continue
        if use.value.lower() == "scratch" or not is_reference(use.value):
            continue  # not an image parse_dockerfile would report
        edits.setdefault(use.line, []).append((use.instruction, use.slot, new))
    if not edits:
        return text
    raw_lines = text.split("\n")
    # the analysis saw lines without a BOM and without trailing "\r"s: edit those
    bom = "\ufeff" if raw_lines[0].startswith("\ufeff") else ""
    clean = [line.rstrip("\r") for line in raw_lines]
    clean[0] = clean[0][len(bom) :]
    for line, wanted in edits.items():
        _pin_instruction(clean, line - 1, escape, wanted)
    clean[0] = bom + clean[0]
    # put back each line's trailing "\r"s
    return "\n".join(
        line + raw[len(raw.rstrip("\r")) :] for raw, line in zip(raw_lines, clean, strict=True)
    )


# one piece of a logical line: (offset in it, length, physical line index, column)
_Segment = tuple[int, int, int, int]


def _logical_spans(lines: list[str], index: int, escape: str) -> tuple[str, list[_Segment]]:
    """The logical line starting at ``lines[index]`` joined as ``_instructions`` joins
    it, with where each of its pieces sits in the physical lines."""
    line = lines[index]
    stripped = line.lstrip()
    column = len(line) - len(stripped)
    part, more = _trim_continuation(stripped, escape)
    parts, segments = [part], [(0, len(part), index, column)]
    offset = len(part)
    index += 1
    while more and index < len(lines):
        line = lines[index]
        bare = line.lstrip()
        if bare and bare[0] != "#":  # comment and blank lines are dropped, as there
            part, more = _trim_continuation(line, escape)
            parts.append(part)
            segments.append((offset, len(part), index, 0))
            offset += len(part)
        index += 1
    return "".join(parts), segments


def _pin_instruction(
    lines: list[str], index: int, escape: str, wanted: list[tuple[str, int, str]]
) -> None:
    logical, segments = _logical_spans(lines, index, escape)
    words = logical.split(None, 1)
    rest = words[1] if len(words) > 1 else ""
    base = len(logical) - len(rest)  # offset of ``rest`` in the logical line
    flags, operands = _flag_spans(rest)
    replacements: list[tuple[int, int, str]] = []
    for instruction, slot, new in wanted:
        if instruction == "FROM":
            _, start, end = operands[0]
            replacements.append((base + start, base + end, new))
        else:
            _, _, start, end = flags[slot]
            if instruction == "RUN --mount":
                new = _pin_mount(rest[start:end], new)
            replacements.append((base + start, base + end, new))
    # right to left, so that the columns of the edits still to make stay valid
    for start, end, new in sorted(set(replacements), reverse=True):
        _replace(lines, segments, start, end, new, logical[end:].strip() == "")


def _replace(
    lines: list[str], segments: list[_Segment], start: int, end: int, new: str, last: bool
) -> None:
    """Replace ``[start, end)`` of the logical line by ``new`` in the physical lines."""
    first = next(n for n, s in enumerate(segments) if s[0] <= start < s[0] + s[1])
    final = next(n for n, s in enumerate(segments) if s[0] < end <= s[0] + s[1])
    offset, _, row, column = segments[first]
    left = column + start - offset
    if first == final:
        lines[row] = lines[row][:left] + new + lines[row][left + end - start :]
        return
    # the operand is split by continuations (rare): put it whole on its first line,
    # remove its other pieces and keep each escape so the instruction still joins up
    tail_offset, tail_length, tail_row, tail_column = segments[final]
    if last:
        # nothing follows it: end the instruction on the first line, as a continuation
        # into a now blank line would swallow the next instruction
        lines[row] = lines[row][:left] + new
        for segment in segments[first + 1 : final + 1]:
            lines[segment[2]] = ""
        return
    head_end = segments[first][3] + segments[first][1]
    lines[row] = lines[row][:left] + new + lines[row][head_end:]
    for _, length, middle, column in segments[first + 1 : final]:
        lines[middle] = lines[middle][:column] + lines[middle][column + length :]
    cut = tail_column + end - tail_offset
    lines[tail_row] = lines[tail_row][:tail_column] + lines[tail_row][cut:]


def _pin_mount(raw: str, new: str) -> str:
    """A ``--mount`` value as written with its (last) ``from=`` field set to ``new``."""
    if "'" not in raw and '"' not in raw and "\\" not in raw:
        fields = raw.split(",")  # keep every other field byte for byte
        for position in range(len(fields) - 1, -1, -1):
            key, equals, _ = fields[position].partition("=")
            if equals and key.strip().lower() == "from":
                fields[position] = f"{key}={new}"
                break
        return ",".join(fields)
    # quoted: rebuild the CSV (same fields, same order) and quote it for the flag scanner
    fields = _csv_fields(_unquote(raw))
    for position in range(len(fields) - 1, -1, -1):
        key, equals, _ = fields[position].partition("=")
        if equals and key.strip().lower() == "from":
            fields[position] = f"{key}={new}"
            break
    csv = ",".join(
        '"' + field.replace('"', '""') + '"' if "," in field or '"' in field else field
        for field in fields
    )
    return '"' + csv.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# Physical lines -> instructions


# BuildKit's directive keys; any other ``# key=value`` line ends the directive block
_DIRECTIVE_KEYS = frozenset({"syntax", "escape", "check"})
_GO_SPACE = " \t\n\f\r"  # Go's regexp \s, which BuildKit's directive syntax uses
_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})
# a heredoc word split from its name by blanks: `<< EOF`, `<<- EOF`, `2<< EOF`
_SPACED_HEREDOC = re.compile(r"[0-9]*<<-?")
# text on which a plain line split is exactly BuildKit's (see _instructions)
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]|<<")
# instructions whose arguments BuildKit's parser checks (ENV needs a value, JSON forms)
_CHECKED = frozenset({"env", "label", "healthcheck", "onbuild"})
# the user-facing name of BuildKit's own parser: the `dockerfile` package embeds it
_PARSER = "BuildKit's Dockerfile parser"


def _directive(line: str) -> tuple[str, str] | None:
    r"""``(key lower-cased, value)`` of a ``# key=value`` parser directive line, else None.

    BuildKit's rule is ``#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$``, read here by hand
    because that pattern backtracks quadratically in Python's re on a long run of blanks.
    """
    if not line.startswith("#"):
        return None
    rest = line[1:].lstrip(_GO_SPACE)
    end = 0
    while (
        end < len(rest)
        and rest[end].isascii()
        and (rest[end].isalpha() if end == 0 else rest[end].isalnum())
    ):
        end += 1
    key, rest = rest[:end], rest[end:].lstrip(_GO_SPACE)
    if not key or not rest.startswith("="):
        return None
    value = rest[1:].strip(_GO_SPACE)
    return (key.lower(), value) if value and "\n" not in value else None


def _instructions(
    text: str, warnings: list[str] | None = None
) -> tuple[str, list[tuple[str, str, int]]]:
    """The escape character and ``(keyword lower-cased, arguments, start line)`` list.

    The split into instructions is BuildKit's own parser (the ``dockerfile`` package
    embeds it): continuations, comments inside them, heredoc bodies and terminators
    exactly as ``docker build`` reads them. A file without continuations, heredocs or
    non-ASCII text takes a fast path instead, where BuildKit's split is one instruction
    per non-blank, non-comment line; it is what large generated stacks contain.
    """
    lines = text.split("\n")
    if lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    escape = "\\"
    seen: set[str] = set()
    first = 0  # index of the first line after the directives
    for line in lines:
        directive = _directive(line.lstrip(_GO_SPACE))
        if directive is None or directive[0] in seen or directive[0] not in _DIRECTIVE_KEYS:
            break
        key, value = directive
        seen.add(key)
        if key == "escape" and value in ("\\", "`"):
            escape = value
        elif key == "syntax" and warnings is not None and not _is_stock_frontend(value):
            warnings.append(
                f"line {first + 1}: # syntax={value}: a custom Dockerfile frontend; "
                "it may read the file differently, so the parents found may be incomplete"
            )
        first += 1
    body = lines[first:]
    if not _NOT_PLAIN.search(text) and (
        escape not in text or not any(line.rstrip(" \t").endswith(escape) for line in body)
    ):
        result = []
        for number, line in enumerate(body, first + 1):
            words = line.split(None, 1)
            if words and words[0][0] != "#":
                keyword, rest = words[0].lower(), words[1] if len(words) > 1 else ""
                if keyword in _CHECKED or rest.startswith("["):
                    break  # instructions BuildKit's parser validates: let it
                result.append((keyword, rest, number))
        else:
            return escape, result
    return escape, _buildkit_instructions(lines, escape, warnings)


def _is_stock_frontend(value: str) -> bool:
    name = value.split("@", 1)[0].split(":", 1)[0]
    return name in ("docker/dockerfile", "docker.io/docker/dockerfile")


def _buildkit_instructions(
    lines: list[str], escape: str, warnings: list[str] | None
) -> list[tuple[str, str, int]]:
    import dockerfile as buildkit  # only here: the fast path needs no import

    # the parser takes a C string: a NUL would silently end the file there
    lines = [line.replace("\x00", "\ufffd") for line in lines]
    while True:
        try:
            commands = buildkit.parse_string("\n".join(lines))
        except buildkit.GoParseError as error:
            message = str(error)
            if message == "file with no instructions":
                return []
            if message == "unterminated heredoc":
                line = _unterminated_heredoc(lines)
                raise DockerfileError(
                    f"a heredoc opened here is never closed ({_PARSER} refuses the file); "
                    "end it with its delimiter on a line of its own",
                    line,
                ) from None
            raise DockerfileError(
                f"{_PARSER} refuses this instruction: {message}", _failing_line(lines, message)
            ) from None
        # BuildKit 1.16 and later read `<< EOF` (blanks before the delimiter) as a
        # heredoc; the embedded parser is older. The one correction: join such a
        # word to its delimiter and read the file again, first such instruction first.
        if not _join_spaced_heredoc(lines, commands):
            break
    # a lone escape at the very end yields an empty command: nothing to read in it
    commands = tuple(command for command in commands if command.cmd)
    result = []
    for command in commands:
        logical = command.original.split("\n", 1)[0]
        words = logical.split(None, 1)
        rest = words[1] if len(words) > 1 else ""
        result.append((command.cmd.lower(), rest, command.start_line))
    filled = [line for line in lines if line.strip()]
    ends_open = bool(filled) and _trim_continuation(filled[-1], escape)[1]
    if warnings is not None and commands and not commands[-1].heredocs and ends_open:
        warnings.append(
            f"line {commands[-1].start_line}: the file ends inside a continuation of "
            f"{commands[-1].cmd.upper()}: a line may be missing"
        )
    return result


def _join_spaced_heredoc(lines: list[str], commands: tuple[buildkit.Command, ...]) -> bool:
    """Rewrite the first RUN/COPY/ADD (also under ONBUILD) whose `<<` stands apart from
    its delimiter into `<<EOF` form in ``lines``; False if there is none."""
    for command in commands:
        keyword = (command.cmd or "").lower()
        if keyword == "onbuild":
            keyword = (command.sub_cmd or "").lower()
        if keyword not in _HEREDOC_KEYWORDS or command.heredocs:
            continue
        changed = False
        start, end = command.start_line - 1, command.end_line
        for index in range(start, min(end, len(lines))):
            line = lines[index]
            if "<<" not in line or line.lstrip().startswith("#"):
                continue
            words = _word_spans(line, "\\")
            for (word, _, word_end), (after, after_start, _) in zip(
                reversed(words[:-1]), reversed(words[1:]), strict=True
            ):
                if _SPACED_HEREDOC.fullmatch(word) and not after.startswith(("<", "-")):
                    line = line[:word_end] + line[after_start:]
                    changed = True
            lines[index] = line
        if changed:
            return True
    return False


def _failing_line(lines: list[str], message: str) -> int:
    """The line of the instruction the parser refuses with ``message`` (its errors carry
    no line): the shortest start of the file it refuses so, by bisection."""
    import dockerfile as buildkit

    def fails(count: int) -> bool:
        try:
            buildkit.parse_string("\n".join(lines[:count]))
        except buildkit.GoParseError as error:
            return str(error) == message
        return False

    low, high = 1, len(lines)
    while low < high:
        middle = (low + high) // 2
        if fails(middle):
            high = middle
        else:
            low = middle + 1
    line = low  # the instruction's last line: go back to its first
    while line > 1 and _trim_continuation(lines[line - 2], "\\")[1]:
        line -= 1
    return line


def _unterminated_heredoc(lines: list[str]) -> int:
    """The line of the instruction whose heredoc is never closed: the last instruction
    line with ``<<`` before which the file still parses."""
    import dockerfile as buildkit

    candidates = [
        index
        for index, line in enumerate(lines)
        if "<<" in line and line.lstrip()[:7].lower().startswith(("run", "copy", "add", "onbuild"))
    ]
    for index in reversed(candidates[-50:]):  # bounded: each try reads the file again
        try:
            buildkit.parse_string("\n".join(lines[:index]))
        except buildkit.GoParseError as error:
            if str(error) != "file with no instructions":
                continue
        return index + 1
    return candidates[-1] + 1 if candidates else 1


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    # BuildKit: the escape character, then only blanks, ends the line; an escaped
    # escape (`C:\\`) does not (its rule looks one character back, no further)
    trimmed = line.rstrip(" \t")
    if trimmed.endswith(escape) and not trimmed.endswith(escape * 2):
        return trimmed[:-1], True
    return line, False


# ---------------------------------------------------------------------------
# Words, flags, variable expansion


_WORD: dict[str, re.Pattern[str]] = {}  # per escape character, compiled when first needed


def _word_pattern(escape: str) -> re.Pattern[str]:
    pattern = _WORD.get(escape)
    if pattern is None:
        # runs of plain characters, escaped characters and quoted strings;
        # the escape character works inside "..." but not inside '...'
        e = re.escape(escape)
        pattern = _WORD[escape] = re.compile(
            rf"""(?:[^\s'"{e}]+|{e}.?|"(?:[^"{e}]|{e}.)*"?|'[^']*'?)+""", re.DOTALL
        )
    return pattern


_PLAIN_WORD = re.compile(r"\S+")


def _words(text: str, escape: str) -> list[str]:
    """The blank-separated words of ``text``, quotes and escapes kept."""
    if "'" not in text and '"' not in text and escape not in text:
        return text.split()
    return _word_pattern(escape).findall(text)


def _word_spans(text: str, escape: str) -> list[tuple[str, int, int]]:
    """``_words`` with the ``(start, end)`` of each word in ``text``."""
    plain = "'" not in text and '"' not in text and escape not in text
    pattern = _PLAIN_WORD if plain else _word_pattern(escape)
    return [(match.group(), match.start(), match.end()) for match in pattern.finditer(text)]


# flags that take a value; accepted also as `--from x` although Docker wants `--from=x`
_VALUE_FLAGS = frozenset(
    {"from", "mount", "platform", "chown", "chmod", "network", "security", "exclude", "checksum"}
)


def _flags(rest: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The leading ``--name=value`` flags (values unquoted) and the remaining words."""
    if not rest.startswith("--"):  # most FROM lines: no flags, no spans needed
        return [], _words(rest, "\\")
    flags, words = _flag_spans(rest)
    return [(name, value) for name, value, _, _ in flags], [word for word, _, _ in words]


def _flag_spans(
    rest: str,
) -> tuple[list[tuple[str, str, int, int]], list[tuple[str, int, int]]]:
    """``_flags`` with the ``(start, end)`` in ``rest`` of each flag's value as written
    and of each remaining word (for ``pin_references``)."""
    words = _word_spans(rest, "\\")  # BuildKit's flag scanner always escapes with a backslash
    flags: list[tuple[str, str, int, int]] = []
    index = 0
    while index < len(words) and words[index][0].startswith("--"):
        word, start, end = words[index]
        index += 1
        if word == "--":
            break
        name, equals, value = word[2:].partition("=")
        value_start = start + 2 + len(name) + len(equals)
        if not equals and name.lower() in _VALUE_FLAGS and index < len(words):
            value, value_start, end = words[index]
            index += 1
        flags.append((name.lower(), _unquote(value), value_start, end))
    return flags, words[index:]


def _unquote(raw: str) -> str:
    # as BuildKit's flag scanner: quotes removed, backslash escapes anything
    if "'" not in raw and '"' not in raw and "\\" not in raw:
        return raw
    out, quote, index = [], "", 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            index += 1
            out.append(raw[index : index + 1])
        elif quote and char == quote:
            quote = ""
        elif not quote and char in "'\"":
            quote = char
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _onbuild(rest: str, line: int) -> Onbuild:
    """An ONBUILD line's trigger and the stages or images it names (read, never expanded:
    they belong to the child's build)."""
    words = rest.split(None, 1)
    keyword, args = (words[0].lower(), words[1]) if len(words) == 2 else ("", "")
    names: list[str] = []
    if keyword in ("copy", "run") and args.startswith("--"):
        for name, value in _flags(args)[0]:
            if name == "from" and keyword == "copy":
                names.append(value)
            elif name == "mount" and keyword == "run":
                source = _mount_from(value)
                if source is not None:
                    names.append(source)
    return Onbuild(rest.strip(), line, tuple(names))


def _mount_from(spec: str) -> str | None:
    """The ``from=`` of a ``--mount`` (CSV, any key order), for bind and cache mounts."""
    fields: dict[str, str] = {}
    for field in _csv_fields(spec):
        key, _, value = field.partition("=")
        fields[key.strip().lower()] = value
    if fields.get("type", "bind").lower() not in ("bind", "cache"):
        return None
    return fields.get("from")


def _csv_fields(text: str) -> list[str]:
    # BuildKit reads --mount with encoding/csv: "a,b" is one field, "" a quote
    if '"' not in text:
        return text.split(",")
    fields, current, index, quoted = [], [], 0, False
    while index < len(text):
        char = text[index]
        if quoted:
            if char == '"' and text[index + 1 : index + 2] == '"':
                current.append('"')
                index += 1
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == ",":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    fields.append("".join(current))
    return fields


_Scope = Mapping[str, "str | None"]  # None: declared without a value, i.e. unset


def _expand(word: str, scope: _Scope, escape: str, missing: list[str]) -> str:
    """Shell-style word processing as BuildKit does it; unset names go to ``missing``."""
    if "$" not in word and "'" not in word and '"' not in word and escape not in word:
        return word
    return _process(word, 0, "", scope, escape, missing)[0]


# deepest ${a:-${b:-...}} nesting read: far beyond any real file, well within Python's stack
_MAX_NESTING = 64


class _TooDeep(Exception):
    pass


def _process(
    word: str,
    index: int,
    stop: str,
    scope: _Scope,
    escape: str,
    missing: list[str],
    depth: int = 0,
) -> tuple[str, int]:
    if depth > _MAX_NESTING:
        raise _TooDeep
    out: list[str] = []
    length = len(word)
    while index < length:
        char = word[index]
        if char == stop:
            return "".join(out), index + 1
        if char == "'":
            end = word.find("'", index + 1)
            end = length if end < 0 else end
            out.append(word[index + 1 : end])
            index = end + 1
        elif char == '"':
            index += 1
            while index < length and word[index] != '"':
                char = word[index]
                if char == escape and word[index + 1 : index + 2] in ('"', "$", escape):
                    out.append(word[index + 1 : index + 2])
                    index += 2
                elif char == "$":
                    text, index = _dollar(word, index, scope, escape, missing, depth)
                    out.append(text)
                else:
                    out.append(char)
                    index += 1
            index += 1
        elif char == escape:
            out.append(word[index + 1 : index + 2])
            index += 2
        elif char == "$":
            text, index = _dollar(word, index, scope, escape, missing, depth)
            out.append(text)
        else:
            out.append(char)
            index += 1
    return "".join(out), index


def _name(word: str, index: int) -> tuple[str, int]:
    if index < len(word) and word[index].isdigit():
        end = index
        while end < len(word) and word[end].isdigit():
            end += 1
        return word[index:end], end
    if index < len(word) and word[index] in "@*#?-$!":
        return word[index], index + 1
    end = index
    while end < len(word) and (word[end].isalnum() or word[end] == "_"):
        end += 1
    return word[index:end], end


def _dollar(
    word: str, index: int, scope: _Scope, escape: str, missing: list[str], depth: int
) -> tuple[str, int]:
    """Expand the ``$name`` / ``${name...}`` starting at ``word[index] == "$"``."""
    index += 1
    if not word.startswith("{", index):
        name, index = _name(word, index)
        if not name:
            return "$", index
        return _lookup(name, scope, missing), index
    name, index = _name(word, index + 1)
    operator = word[index : index + 1]
    if operator == "}":
        return _lookup(name, scope, missing), index + 1
    value = scope.get(name)
    colon = operator == ":"
    if colon:
        index += 1
        operator = word[index : index + 1]
    if operator in ("-", "+", "?"):
        inner_missing: list[str] = []
        argument, index = _process(word, index + 1, "}", scope, escape, inner_missing, depth + 1)
        present = value is not None and (value != "" or not colon)
        if operator == "+":
            if present:
                missing += inner_missing
            return (argument if present else ""), index
        if operator == "-":
            if not present:
                missing += inner_missing
            return (value if present and value is not None else argument), index
        # "?": Docker fails the build with `argument` as the message
        if not present:
            missing.append(name)
        return (value or ""), index
    if operator in ("#", "%") and not colon:
        longest = word.startswith(operator * 2, index)
        start = index + (2 if longest else 1)
        pattern, index = _process(word, start, "}", scope, escape, missing, depth + 1)
        return _trim(_lookup(name, scope, missing), pattern, operator == "#", longest), index
    # an operator we do not model (${x/a/b}): skip it, expand to the value
    end = word.find("}", index)
    return _lookup(name, scope, missing), (len(word) if end < 0 else end + 1)


def _lookup(name: str, scope: _Scope, missing: list[str]) -> str:
    value = scope.get(name)
    if value is None:
        missing.append(name)
        return ""
    return value


def _trim(value: str, pattern: str, prefix: bool, longest: bool) -> str:
    from fnmatch import fnmatchcase  # rare: only for ${x#pattern} and ${x%pattern}

    cuts = range(len(value) + 1)
    if prefix:
        for cut in reversed(cuts) if longest else cuts:
            if fnmatchcase(value[:cut], pattern):
                return value[cut:]
    else:
        for cut in cuts if longest else reversed(cuts):
            if fnmatchcase(value[cut:], pattern):
                return value[:cut]
    return value


def _assignments(rest: str, escape: str, legacy: bool) -> list[tuple[str, str | None]]:
    """``ARG a=1 b`` / ``ENV a=1 b=2`` / legacy ``ENV a 1 2`` -> raw (name, value)."""
    words = _words(rest, escape)
    if legacy and words and "=" not in words[0]:
        parts = rest.split(None, 1)
        return [(parts[0], parts[1].strip() if len(parts) > 1 else "")]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        name, equals, value = word.partition("=")
        pairs.append((name, value if equals else None))
    return pairs


# ---------------------------------------------------------------------------
# Stages, scopes and references

_STAGE_NUMBER = re.compile(r"[0-9]+")
class _Use:
    """A reference-bearing operand, before it is known to be a stage or an image."""

    __slots__ = ("stage", "instruction", "line", "value", "raw", "missing", "base_stage", "slot")

    def __init__(
        self,
        stage: int,
        instruction: str,
        line: int,
        value: str,
        raw: str,
        missing: list[str],
        slot: int = -1,
    ) -> None:
        self.stage = stage
        self.instruction = instruction
        self.line = line
        self.value = value  # after substitution
        self.raw = raw  # as written, for warnings
        self.missing = missing
        self.base_stage: int | None = None  # FROM resolved to an earlier stage
        self.slot = slot  # index of the flag among the instruction's flags; -1: FROM's image


class _Analysis:
    def __init__(
        self, build_args: Mapping[str, str], predefined: Mapping[str, str] | None = None
    ) -> None:
        self.build_args = build_args
        # BuildKit predefines the platform ARGs in the global scope: FROM sees them, a
        # stage after a bare `ARG TARGETARCH`
        self.predefined: Mapping[str, str] = predefined or {}
        self.global_args: dict[str, str | None] = dict(self.predefined)
        self.uses: list[_Use] = []
        self.names: list[str | None] = []  # per stage
        self.envs: list[dict[str, str]] = []  # per stage, ENV as of now
        self.warnings: list[str] = []
        self.onbuild: list[tuple[int, Onbuild]] = []  # (stage, trigger)

    def run(self, text: str, target: str | None) -> DockerfileInfo:
        self.walk(text)
        return self._result(target)

    def walk(self, text: str) -> str:
        """Collect the stages and uses of ``text``; returns its escape character."""
        escape, instructions = _instructions(text, self.warnings)
        args: dict[str, str | None] = {}
        env: dict[str, str] = {}
        for keyword, rest, line in instructions:
            try:
                args, env = self._instruction(keyword, rest, line, escape, args, env)
            except _TooDeep:
                raise DockerfileError(
                    f"{keyword.upper()}: variables nested more than {_MAX_NESTING} deep "
                    "(${a:-${b:-...}}); flatten them with intermediate ARGs",
                    line,
                ) from None
        return escape

    def _instruction(
        self,
        keyword: str,
        rest: str,
        line: int,
        escape: str,
        args: dict[str, str | None],
        env: dict[str, str],
    ) -> tuple[dict[str, str | None], dict[str, str]]:
        if keyword == "from":
            return self._from(rest, line, escape)
        if keyword == "arg":
            self._arg(rest, escape, args if self.names else None, env)
        elif not self.names:
            pass  # Docker allows only ARG before the first FROM
        elif keyword == "onbuild":
            self.onbuild.append((len(self.names) - 1, _onbuild(rest, line)))
        elif keyword == "env":
            missing: list[str] = []
            scope = {**args, **env}
            for name, raw in _assignments(rest, escape, legacy=True):
                env[name] = scope[name] = _expand(raw or "", scope, escape, missing)
        elif keyword == "copy" and rest.startswith("--"):
            for slot, (name, value) in enumerate(_flags(rest)[0]):
                if name == "from":
                    self._operand("COPY --from", value, line, escape, args, env, slot)
        elif keyword == "run" and rest.startswith("--"):
            for slot, (name, value) in enumerate(_flags(rest)[0]):
                source = _mount_from(value) if name == "mount" else None
                if source is not None:
                    self._operand("RUN --mount", source, line, escape, args, env, slot)
        return args, env

    def _arg(
        self,
        rest: str,
        escape: str,
        args: dict[str, str | None] | None,
        env: dict[str, str],
    ) -> None:
        scope: dict[str, str | None]
        scope = self.global_args if args is None else {**args, **env}
        for name, raw in _assignments(rest, escape, legacy=False):
            value: str | None
            if name in self.build_args:  # --build-arg wins over the default, unexpanded
                value = self.build_args[name]
            elif raw is not None:
                value = _expand(raw, scope, escape, [])
            elif args is not None:
                value = self.global_args.get(name)  # bare ARG in a stage: the global value
            else:
                value = self.predefined.get(name)
            if args is None:
                self.global_args[name] = value
            else:
                args[name] = value
                if name not in env:  # ENV beats ARG of the same name
                    scope[name] = value

    def _from(
        self, rest: str, line: int, escape: str
    ) -> tuple[dict[str, str | None], dict[str, str]]:
        stage = len(self.names)
        words = _flags(rest)[1]
        name = words[2].lower() if len(words) == 3 and words[1].lower() == "as" else None
        env: dict[str, str] = {}
        if words:
            missing: list[str] = []
            value = _expand(words[0], self.global_args, escape, missing)
            use = _Use(stage, "FROM", line, value, words[0], missing)
            # only earlier stages: `FROM base AS base` builds on the image `base`
            lowered = value.lower()
            for index in range(stage - 1, -1, -1):
                if self.names[index] == lowered:
                    use.base_stage = index
                    env = dict(self.envs[index])  # a stage inherits its base's ENV
                    break
            self.uses.append(use)
        self.names.append(name)
        self.envs.append(env)
        return {}, env

    def _operand(
        self,
        instruction: str,
        raw: str,
        line: int,
        escape: str,
        args: dict[str, str | None],
        env: dict[str, str],
        slot: int,
    ) -> None:
        if "$" in raw:
            # BuildKit: "variable expansion is not supported for --from"; the build fails
            raise DockerfileError(
                f"{instruction}{'=' if instruction == 'COPY --from' else ' from='}{raw}: "
                "BuildKit does not expand variables in --from / "
                "from= and refuses this Dockerfile; name the stage or image literally",
                line,
            )
        missing: list[str] = []
        value = _expand(raw, {}, escape, missing)
        self.uses.append(_Use(len(self.names) - 1, instruction, line, value, raw, missing, slot))

    def stage_of(self, use: _Use, by_name: Mapping[str, int]) -> int | None:
        """The stage ``use`` names (``COPY --from=0``, ``--from=builder``), else None."""
        if use.base_stage is not None or use.instruction == "FROM":
            return use.base_stage
        if _STAGE_NUMBER.fullmatch(use.value):
            return int(use.value)
        return by_name.get(use.value.lower())

    def stage_numbers(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names) if name}

    def _result(self, target: str | None) -> DockerfileInfo:
        by_name = self.stage_numbers()
        needs: list[set[int]] = [set() for _ in self.names]  # stage -> stages it uses
        found: list[ImageReference] = []
        for use in self.uses:
            for variable in dict.fromkeys(use.missing):
                self._warn(
                    use,
                    f"variable {variable} is not set (an ARG without a value and "
                    "no build arg, or not declared where it is used)",
                )
            stage = self.stage_of(use, by_name)
            if stage is not None:
                if stage < len(needs):  # a number past the last stage: Docker's error
                    needs[use.stage].add(stage)
            elif use.value.lower() == "scratch":
                continue
            elif is_reference(use.value):
                found.append(ImageReference(use.value, use.instruction, use.line, use.stage))
            else:
                self._warn(use, f"{use.value!r} is not an image reference; ignored")
        output = len(self.names) - 1  # the stage that becomes the image
        if target is not None and self.names:
            wanted = by_name.get(target.lower())
            if wanted is None:
                self.warnings.append(
                    f"target stage {target!r} is not in the Dockerfile; counting every stage"
                )
            else:
                reached, todo = {wanted}, [wanted]
                while todo:
                    for stage in needs[todo.pop()] - reached:
                        reached.add(stage)
                        todo.append(stage)
                found = [reference for reference in found if reference.stage in reached]
                output = wanted
        bases = tuple(reference for reference in found if reference.instruction == "FROM")
        unique: dict[str, ImageReference] = {}
        for reference in found:
            unique.setdefault(reference.ref, reference)
        return DockerfileInfo(
            references=tuple(unique.values()),
            stages=tuple(name for name in self.names if name),
            warnings=tuple(self.warnings),
            onbuild=tuple(trigger for stage, trigger in self.onbuild if stage == output),
            bases=bases,
            global_args=tuple(
                (name, value)
                for name, value in self.global_args.items()
                if name not in self.predefined
            ),
        )

    def _warn(self, use: _Use, message: str) -> None:
        self.warnings.append(f"line {use.line}: {use.instruction} {use.raw}: {message}")
