"""Fuzzing stack.yaml and stack.lock: no input gives a traceback, every error is located
inside the file, and where the mistake's position is known it is located exactly.

A seeded mutation loop (deterministic, well under a few seconds): the repository's own
stack.yaml and a valid lock, with bytes changed, deleted, duplicated, and tags, anchors,
huge numbers, NULs, non-ASCII text and line breaks inserted.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackbuild.errors import ManifestError, StackbuildError
from stackbuild.lockfile import LockfileError, read_lock, render_lock
from stackbuild.manifest import load_stack

REPO = Path(__file__).resolve().parents[2]
SEED_STACK = (REPO / "stack.yaml").read_bytes()
SEED_LOCK = render_lock(
    {
        "debian:bookworm-slim": "sha256:" + "a" * 64,
        "127.0.0.1:5000/acme/up:1": "sha256:" + "b" * 64,
        "registry.example/" + "x" * 200 + ":1": "sha256:" + "c" * 64,  # a `? key` entry
    }
).encode()

INSERTS = [
    b"\x00", b"\x01", b"\x1b", b"\x7f", b"\t", b"\r", b"\r\n", b"\n", b" ", b"#",
    b"!!int ", b"!!float ", b"!!bool ", b"!!str ", b"!!null ", b"!!binary ", b"!!timestamp ",
    b"!!map ", b"!!seq ", b"!!python/object:os.system ", b"!x ", b"!", b"!<tag:x> ",
    b"&a ", b"*a", b"<<: ", b"? ", b"- ", b": ", b"[", b"]", b"{", b"}", b"'", b'"', b"|", b">",
    b"---\n", b"...\n", b"%YAML 1.1\n", b"%TAG ! tag:x,2000:\n",
    b"1" * 5000, b"-" + b"9" * 4400, b"0b" + b"1" * 20000, b"0x" + b"f" * 3000,
    b"0" + b"7" * 3000, b"1:" * 2000 + b"1", b"1." + b"1" * 5000, b"1.0e+999", b".nan",
    b"2001-02-30", b"2001-02-03 04:05:06", b"1_000", b"0o7", b"~", b"null", b"maybe", b"yes",
    "─┬─".encode(), "é".encode(), "😀".encode(), "\u2028".encode(), "\x85".encode(),
    "\ufeff".encode(), "\ufffe".encode(), b"\xff", b"\xe2\x94", b"\xc3", b"\xed\xa0\x80",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(out))
        roll = rng.random()
        if roll < 0.5:
            out[pos:pos] = rng.choice(INSERTS)
        elif roll < 0.7:
            del out[pos : pos + rng.randint(1, 8)]
        elif roll < 0.85 and pos < len(out):
            out[pos] = rng.randrange(256)
        else:
            start = rng.randint(0, len(out))
            out[pos:pos] = out[start : start + rng.randint(1, 40)]
    return bytes(out)


# Line breaks as YAML 1.1 (and both parsers) count them; written out here, not imported,
# so the test does not share the code it checks.
_LINES = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def inside(data: bytes, line: int, col: int) -> bool:
    """Is 1-based LINE:COL (columns in characters) a position of the decoded file, or
    the position just past its end?"""
    text = data.decode("utf-8-sig", errors="replace")  # invalid bytes: one character each
    lines = _LINES.split(text)
    return 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]) + 1


def expected_position(text: str, index: int) -> tuple[int, int]:
    """LINE:COL of ``text[index]`` for a text whose only line breaks are \\n."""
    before = text[:index]
    return before.count("\n") + 1, index - before.rfind("\n")




@pytest.fixture
def stack_root(tmp_path: Path) -> Path:
    """A copy of the example stack's images, so mutated manifests can load to the end."""
    shutil.copytree(REPO / "images", tmp_path / "images", symlinks=True)
    return tmp_path


def check_located(error: StackbuildError, data: bytes, path: Path) -> None:
    line = getattr(error, "line", None)
    if line is None:
        return
    assert getattr(error, "path", None) in (str(path), path.name), str(error)
    assert inside(data, line, error.col), (str(error)[:300], data[-200:])
    assert str(error).startswith(f"{error.path}:{line}:{error.col}: "), str(error)[:300]


def test_mutated_manifests_give_located_errors_never_tracebacks(
    stack_root: Path, parser: str
) -> None:
    rng = random.Random(16)
    path = stack_root / "stack.yaml"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(400):
        data = mutate(rng, SEED_STACK)
        path.write_bytes(data)
        try:
            load_stack(path)
        except ManifestError as error:  # anything else fails the test with its traceback
            outcomes["refused"] += 1
            check_located(error, data, path)
        else:
            outcomes["loaded"] += 1
    assert outcomes["loaded"] > 20 and outcomes["refused"] > 200, outcomes  # the loop bites


def test_mutated_locks_give_located_errors_never_tracebacks(tmp_path: Path, parser: str) -> None:
    rng = random.Random(4)
    path = tmp_path / "stack.lock"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        data = mutate(rng, SEED_LOCK)
        path.write_bytes(data)
        try:
            read_lock(path)
        except LockfileError as error:
            outcomes["refused"] += 1
            assert error.line is not None, str(error)  # a corrupt file is always located
            check_located(error, data, path)
            assert "`stackbuild lock`" in error.message
        else:
            outcomes["read"] += 1
    assert outcomes["read"] > 20 and outcomes["refused"] > 200, outcomes


NON_ASCII = ["─", "┬", "└", "é", "ü", "ß", "€", "😀", "中", "\u00a0"]  # none is a line break
BAD_CHARACTERS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x9f", "\ufffe"]


def with_non_ascii(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 12)):
        pos = rng.randint(0, len(text))
        text = text[:pos] + rng.choice(NON_ASCII) * rng.randint(1, 3) + text[pos:]
    return text


@pytest.mark.parametrize("seed", ["stack", "lock"])
def test_a_bad_character_anywhere_is_located_exactly(
    tmp_path: Path, parser: str, seed: str
) -> None:
    rng = random.Random(8)
    base = (SEED_STACK if seed == "stack" else SEED_LOCK).decode("utf-8")
    path = tmp_path / f"stack.{'yaml' if seed == 'stack' else 'lock'}"
    for _ in range(150):
        text = with_non_ascii(rng, base)
        index = rng.randint(0, len(text))
        bad = rng.choice(BAD_CHARACTERS)
        if rng.random() < 0.5:
            data = (text[:index] + bad + text[index:]).encode("utf-8")
        else:  # a byte that is not UTF-8 at all
            data = text[:index].encode("utf-8") + b"\xff" + text[index:].encode("utf-8")
        path.write_bytes(data)
        with pytest.raises((ManifestError, LockfileError)) as caught:
            load_stack(path) if seed == "stack" else read_lock(path)
        error = caught.value
        assert (error.line, error.col) == expected_position(text, index), (
            str(error)[:200],
            text[max(0, index - 40) : index],
        )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("!!int abc", "not a whole number"),
        ('!!int ""', "not a whole number"),
        ("!!float x", "not a number"),
        ("!!bool maybe", "not a !!bool"),
        ("1" * 5000, "5,000 characters long"),
        ("0b" + "1" * 20000, "characters long"),
        ("&anchor 1", "anchors and aliases are not supported"),
        ("!!python/object:os.system 1", "is not supported"),
    ],
)
def test_a_bad_value_after_non_ascii_text_is_located_exactly(
    tmp_path: Path, parser: str, value: str, words: str
) -> None:
    rng = random.Random(value)
    path = tmp_path / "stack.yaml"
    for _ in range(20):
        before = "".join(f"# {with_non_ascii(rng, words)}\n" for words in ("the", "tree"))
        key = with_non_ascii(rng, "k")
        line = f"labels: {{{key}: \"{rng.choice(NON_ASCII)}\", x: "
        text = f"{before}version: 1\n{line}{value}}}\n"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ManifestError) as caught:
            load_stack(path)
        error = caught.value
        assert words in error.message
        assert (error.line, error.col) == expected_position(text, text.index(line) + len(line))


# --- end to end: one clear line, exit 2, no traceback ------------------------------------


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example")
    shutil.copy(REPO / "stack.yaml", root / "stack.yaml")
    shutil.copytree(REPO / "images", root / "images", symlinks=True)
    return root


def stackbuild(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(root / "stack.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize(
    ("version", "where", "words"),
    [
        ("!!int abc", "10:10", "not a whole number"),
        ("0b" + "1" * 20000, "10:10", "20,002 characters long"),
        ("1 # └─\x00", "10:16", "U+0000 is not allowed"),
    ],
)
def test_the_cli_reports_a_bad_manifest_in_one_line(
    example: Path, version: str, where: str, words: str
) -> None:
    original = SEED_STACK.decode("utf-8")
    assert "\nversion: 1\n" in original and original.count("\n") > 10
    broken = original.replace("\nversion: 1\n", f"\nversion: {version}\n")
    (example / "stack.yaml").write_text(broken, encoding="utf-8")
    try:
        result = stackbuild(example, "plan", "--offline")
    finally:
        (example / "stack.yaml").write_bytes(SEED_STACK)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"stack.yaml:{where}: " in result.stderr and words in result.stderr, result.stderr


@pytest.mark.parametrize("command", [("plan", "--offline"), ("lock",)])
@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"version: 1\nupstream:\n  debian:bookworm-slim: caf\xe9\n", "3:28"),
        (b"version: 2001-02-30\n", "1:10"),
        (b"version: !!int " + b"1" * 5000 + b"\n", "1:10"),
    ],
)
def test_the_cli_reports_a_corrupt_lock_in_one_line(
    example: Path, command: tuple[str, ...], data: bytes, where: str
) -> None:
    lock = example / "stack.lock"
    lock.write_bytes(data)
    try:
        result = stackbuild(example, *command)
    finally:
        lock.unlink()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"stack.lock:{where}: " in result.stderr, result.stderr
    assert "run `stackbuild lock` to rewrite it" in result.stderr
