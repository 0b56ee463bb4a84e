"""The Dockerfile reader against BuildKit: its parser's test files, real Dockerfiles, the
cases of issue 10, and a seeded fuzz loop (issue 16)."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from stackbuild import dockerfile as module
from stackbuild.dockerfile import parse_dockerfile
from stackbuild.errors import DockerfileError
from tests.helpers import ORACLE

buildkit = pytest.importorskip("dockerfile")  # BuildKit's own parser, a dependency

needs_oracle = pytest.mark.skipif(
    not ORACLE.is_dir(), reason=f"oracle data not checked out beside the repo ({ORACLE})"
)


def refs(text: str, **kwargs) -> list[str]:
    return [r.ref for r in parse_dockerfile(text, **kwargs).references]


def instructions(text: str) -> list[tuple[str, int]]:
    return [(keyword, line) for keyword, _, line in module._instructions(text)[1]]


def buildkit_instructions(text: str) -> list[tuple[str, int]]:
    try:
        commands = buildkit.parse_string(text.replace("\x00", "\ufffd"))  # a C string
        return [(c.cmd.lower(), c.start_line) for c in commands if c.cmd]
    except buildkit.GoParseError as error:
        if str(error) == "file with no instructions":
            return []
        raise


# --- issue 10's cases: (id, Dockerfile, references BuildKit builds on) ------------
CASES = [
    ('heredoc <<E"OF"', 'FROM a\nRUN <<E"OF"\nFROM x\nEOF\nFROM b\n', ["a", "b"]),
    ("heredoc <<eo'f'", "FROM a\nRUN <<eo'f'\nFROM x\neof\nFROM b\n", ["a", "b"]),
    ("heredoc <<E\\OF", "FROM a\nRUN <<E\\OF\nFROM x\nEOF\nFROM b\n", ["a", "b"]),
    ("heredoc <<eo\\'f", "FROM a\nRUN <<eo\\'f\nFROM x\neo'f\nFROM b\n", ["a", "b"]),
    # BuildKit frontend 1.16+: a blank after << still opens a heredoc
    ("heredoc << EOF", "FROM a\nRUN << EOF\nFROM x\nEOF\nFROM b\n", ["a", "b"]),
    ("heredoc <<- EOF", "FROM a\nRUN <<- EOF\n\tFROM x\n\tEOF\nFROM b\n", ["a", "b"]),
    ("heredoc <<  EOF  > f", "FROM a\nCOPY <<  EOF  /f\nFROM x\nEOF\nFROM b\n", ["a", "b"]),
    ("quoted << is no heredoc", 'FROM a\nRUN echo "<< EOF"\nFROM b\n', ["a", "b"]),
    ("ONBUILD heredoc", "FROM a\nONBUILD RUN <<EOF\nFROM x\nEOF\nFROM b\n", ["a", "b"]),
    ("ONBUILD spaced heredoc", "FROM a\nONBUILD RUN << EOF\nFROM x\nEOF\nFROM b\n", ["a", "b"]),
    ("escaped escape ends the line", "FROM a\nRUN echo C:\\\\\nFROM b\n", ["a", "b"]),
    ("escape then blanks continues", "FROM a\nRUN echo \\  \nFROM x\nFROM b\n", ["a", "b"]),
    ("ONBUILD makes no edge", "FROM a\nONBUILD COPY --from=x / /\n", ["a"]),
    ("TARGETARCH predefined", "FROM ${TARGETARCH}/debian\n", ["amd64/debian"]),
    (
        "TARGETARCH with :+",
        "FROM debian${TARGETARCH:+-}${TARGETARCH}\n",
        ["debian-amd64"],
    ),
    (
        "TARGETARCH in a stage after bare ARG",
        "FROM a\nARG TARGETOS\nCOPY --from=b / /\n",
        ["a", "b"],
    ),
    ("255-character name is a reference", f"FROM {'a' * 255}\n", ["a" * 255]),
    ("256-character name is not", f"FROM {'a' * 256}\n", []),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_issue_10_cases(text, expected):
    assert refs(text, platform="linux/amd64") == expected
    # BuildKit 1.16+ reads `<< EOF` as the embedded (older) parser reads `<<EOF`
    assert instructions(text) == buildkit_instructions(re.sub(r"(<<-?)[ \t]+", r"\1", text))


def test_platform_args_follow_the_image_platform():
    text = (
        "FROM --platform=$BUILDPLATFORM golang AS build\n"
        "FROM ${TARGETARCH}/debian:${TARGETVARIANT:-none}\n"
    )
    assert refs(text, platform="linux/arm64") == ["golang", "arm64/debian:none"]
    assert refs(text, platform="linux/arm/v7") == ["golang", "arm/debian:v7"]


def test_a_long_name_is_explained_in_warnings():
    info = parse_dockerfile(f"FROM {'a' * 256}:1\n")
    assert info.references == ()
    assert info.warnings and info.warnings[0].startswith("line 1: FROM ")


@pytest.mark.parametrize("depth", [65, 500, 5000])
def test_deeply_nested_defaults_are_a_located_error(depth):
    text = "FROM a\nRUN true\nFROM " + "${A:-" * depth + "x" + "}" * depth + "\n"
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text)
    assert str(caught.value).startswith("Dockerfile:3: FROM: variables nested more than 64")


def test_nesting_up_to_the_bound_is_read():
    assert refs("FROM " + "${A:-" * 64 + "x" + "}" * 64 + "\n") == ["x"]


def test_unterminated_heredoc_is_located_at_its_instruction():
    text = "FROM a\nRUN <<A\nA\nCOPY <<EOF /x\nRUN <<B\nFROM b\n"
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text)
    assert caught.value.line == 4


def test_custom_frontend_and_open_continuation_are_warnings():
    info = parse_dockerfile("# syntax=example.com/frontend:1\nFROM a\nRUN x \\\n")
    assert info.warnings[0].startswith("line 1: # syntax=example.com/frontend:1: a custom")
    assert info.warnings[1].startswith("line 3: the file ends inside a continuation of RUN")
    assert parse_dockerfile("# syntax=docker/dockerfile:1.7\nFROM a\n").warnings == ()


@pytest.mark.parametrize(
    "text",
    [
        "# syntax=x" + " \t" * 40_000 + "y\nFROM a\n",
        "# syntax=x\n" + "\n" * 40_000 + "FROM a\n",
        "#" + " " * 40_000 + "syntax" + " " * 40_000 + "=x\nFROM a\n",
    ],
    ids=["blanks in the directive", "blank lines after it", "blanks around the key"],
)
def test_directives_are_read_in_linear_time(text):
    # not a timing assertion: the quadratic regex took 13.5 s here, linear takes ~ms;
    # the call would time out the suite rather than fail if it came back
    assert refs(text) == ["a"]


# --- oracle data --------------------------------------------------------------------


def _oracle_files(folder: str) -> list[Path]:
    return sorted((ORACLE / folder).rglob("Dockerfile")) if ORACLE.is_dir() else []


@needs_oracle
@pytest.mark.parametrize("path", _oracle_files("buildkit/testfiles"), ids=lambda p: p.parent.name)
def test_buildkit_parser_test_files_split_as_their_expected_result(path):
    text = path.read_text(encoding="utf-8")
    expected = [
        re.match(r"\((\S+?)[ )]", line).group(1)
        for line in (path.parent / "result").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert [keyword for keyword, _ in instructions(text)] == expected
    assert instructions(text) == buildkit_instructions(text)


@needs_oracle
def test_buildkit_heredoc_test_file_has_its_28_instructions():
    path = ORACLE / "buildkit-inline" / "TestParseExtractsHeredoc.Dockerfile"
    text = path.read_text(encoding="utf-8")
    assert len(instructions(text)) == 28  # it has `<<  EOF`: 30 for the embedded parser
    assert instructions(text) == buildkit_instructions(re.sub(r"(<<-?)[ \t]+", r"\1", text))


@needs_oracle
@pytest.mark.parametrize(
    "path",
    _oracle_files("buildkit/testfiles-negative") + _oracle_files("buildkit/testfile-line"),
    ids=lambda p: p.parent.name,
)
def test_buildkit_other_test_files_never_crash(path):
    text = path.read_text(encoding="utf-8")
    try:
        parse_dockerfile(text)
    except DockerfileError:
        return
    assert instructions(text) == buildkit_instructions(text)


def _substitute(word: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), ""), word)


def _pulled(text: str) -> list[str]:
    """What BuildKit would pull, worked out from its own parse: FROM and COPY --from
    operands after global ARG defaults, minus stages, numbers, scratch and templates."""
    commands = buildkit.parse_string(text)
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    pulled: list[str] = []
    seen_from = False
    for command in commands:
        cmd = command.cmd.lower()
        if cmd == "arg" and not seen_from:
            for word in command.value:
                name, _, value = word.partition("=")
                defaults[name] = _substitute(value.strip('"'), defaults)
        elif cmd == "from":
            seen_from = True
            image = _substitute(command.value[0], defaults)
            if image.lower() not in stages and image.lower() != "scratch":
                pulled.append(image)
            if len(command.value) == 3:
                stages.add(command.value[2].lower())
        elif cmd == "copy":
            for flag in command.flags:
                if flag.startswith("--from="):
                    source = flag[len("--from=") :]
                    if source.lower() not in stages and not source.isdigit():
                        pulled.append(source)
    return [ref for ref in dict.fromkeys(pulled) if "{{" not in ref]


@needs_oracle
@pytest.mark.parametrize(
    "path", _oracle_files("real"), ids=lambda p: str(p.relative_to(ORACLE / "real"))
)
def test_real_dockerfiles_read_as_buildkit_reads_them(path):
    text = path.read_text(encoding="utf-8")
    assert instructions(text) == buildkit_instructions(text)
    assert refs(text) == _pulled(text)


# --- fuzz (issue 16): 0 tracebacks, errors at the line of an instruction ------------

_NOISE = [
    "\\",
    "\\\\",
    "`",
    "<<",
    "<< EOF",
    "<<-EOF",
    "EOF",
    "$",
    "${",
    "}",
    "${A:-",
    '"',
    "'",
    "--from=",
    "--mount=from=",
    ",",
    "=",
    " ",
    "\t",
    "#",
    "\r",
    "\ufeff",
    "é",
    "\x00",
    "FROM ",
    "COPY --from=$X ",
    "ARG A=",
    "ONBUILD ",
    'RUN <<E"OF"',
    "\n",
]


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        index = rng.randrange(len(lines))
        if choice < 0.3:
            line = lines[index]
            at = rng.randint(0, len(line))
            lines[index] = line[:at] + rng.choice(_NOISE) + line[at:]
        elif choice < 0.5 and len(lines) > 1:
            del lines[index]
        elif choice < 0.7:
            lines.insert(index, rng.choice(lines))
        elif choice < 0.85:
            lines.insert(index, rng.choice(_NOISE).strip() or "")
        else:
            lines[index] = lines[index][: rng.randint(0, len(lines[index]))]
    return "\n".join(lines)


def test_fuzzed_dockerfiles_never_crash_and_errors_name_an_instruction_line():
    seeds = _oracle_files("real")[:20] + _oracle_files("buildkit/testfiles")
    corpus = [p.read_text(encoding="utf-8") for p in seeds] or [
        "ARG B=a\nFROM $B AS x\nRUN <<EOF\nx\nEOF\nCOPY --from=x / /\nRUN --mount=from=y true\n"
    ]
    rng = random.Random(16)
    deadline = time.monotonic() + 4.0  # bounded: a few seconds, however fast the machine
    tried = 0
    while time.monotonic() < deadline and tried < 3000:
        text = _mutate(rng, rng.choice(corpus))
        tried += 1
        try:
            info = parse_dockerfile(text, {"X": "y"})
        except DockerfileError as error:
            count = text.count("\n") + 1
            assert 1 <= error.line <= count, (text, str(error))
            assert str(error).startswith(f"Dockerfile:{error.line}: ")
            if "does not expand variables" in error.message:
                # the line of the instruction that has the flag, as BuildKit numbers it
                starts = {line for _, line in buildkit_instructions(text)}
                assert error.line in starts, (text, str(error))
            continue
        for reference in info.references:
            assert 1 <= reference.line <= text.count("\n") + 1
    assert tried >= 100


def test_a_refused_dockerfile_is_a_located_error_of_the_stack(tmp_path):
    from stackbuild.analyze import read_dockerfiles
    from stackbuild.errors import EXIT_USAGE
    from stackbuild.manifest import load_stack

    (tmp_path / "images" / "x").mkdir(parents=True)
    (tmp_path / "images" / "x" / "Dockerfile").write_text("FROM a\nARG X=b\nCOPY --from=$X / /\n")
    (tmp_path / "stack.yaml").write_text("version: 1\nimages:\n  x:\n    context: images/x\n")
    with pytest.raises(DockerfileError) as caught:
        read_dockerfiles(load_stack(tmp_path / "stack.yaml"))
    assert str(caught.value).startswith("images/x/Dockerfile:3: COPY --from=$X: ")
    assert caught.value.exit_code == EXIT_USAGE
