"""stack.lock: format, stable order, atomic rewrite, clear errors for a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackbuild.lockfile import (
    HEADER,
    LockfileError,
    lock_path,
    read_lock,
    render_lock,
    write_lock,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_the_lock_lives_next_to_the_manifest(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "sub" / "stack.yaml") == tmp_path / "sub" / "stack.lock"


def test_no_lock_yet_pins_nothing(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "stack.lock") == {}


def test_round_trip_sorted_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "stack.lock"
    pins = {"debian:bookworm-slim": A, "127.0.0.1:5000/acme/up:1": B}
    assert write_lock(path, pins) is True
    text = path.read_text()
    assert text.startswith(HEADER)
    assert text.index("127.0.0.1:5000/acme/up:1") < text.index("debian:bookworm-slim")
    assert f"  debian:bookworm-slim: {A}\n" in text  # one line per pin: readable diffs
    assert read_lock(path) == pins


def test_the_same_pins_render_the_same_bytes_in_any_order() -> None:
    assert render_lock({"b:1": B, "a:1": A}) == render_lock({"a:1": A, "b:1": B})


def test_an_unchanged_lock_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "stack.lock"
    write_lock(path, {"a:1": A})
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert write_lock(path, {"a:1": A}) is False
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert write_lock(path, {"a:1": B}) is True
    assert read_lock(path) == {"a:1": B}
    assert [p.name for p in tmp_path.iterdir()] == ["stack.lock"]  # no temp files left


def test_an_empty_lock_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "stack.lock"
    write_lock(path, {})
    assert read_lock(path) == {}
    (tmp_path / "empty.lock").write_text("")
    assert read_lock(tmp_path / "empty.lock") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nupstream: [a, b]\n", "'upstream' must map references to digests"),
        ("version: 2\nupstream: {}\n", "not a version 1 stackbuild lock"),
        ("- a\n", "not a version 1 stackbuild lock"),
        ("version: 1\nupstream:\n  a:1: latest\n", "'a:1' is pinned to 'latest'"),
        ("version: 1\nupstream: {a: [\n", "invalid YAML"),
    ],
)
def test_a_broken_lock_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "stack.lock"
    path.write_text(text)
    with pytest.raises(LockfileError) as error:
        read_lock(path)
    assert message in str(error.value)
    assert "stackbuild lock" in str(error.value)  # says how to get out of it
    assert error.value.exit_code == 2


@pytest.mark.parametrize(
    ("data", "line", "col", "message"),
    [
        (b"version: 1\nupstream:\n  a:1: sha256:caf\xe9\n", 3, 18, "not valid UTF-8"),
        (b"\xff\xfe", 1, 1, "not valid UTF-8"),
        (b"version: 2001-02-30\nupstream: {}\n", 1, 10, "not a version 1 stackbuild lock"),
        (b"version: !!int x\n", 1, 10, "'x' is not a whole number"),
        (b"version: !!float x\n", 1, 10, "'x' is not a number"),
        (b"version: !!bool 1\n", 1, 10, "'1' is not a !!bool"),
        (b"version: !!binary aGk=\n", 1, 10, "tag !!binary is not supported"),
        (b"version: !!python/object:os.system 1\n", 1, 10, "is not supported"),
        (b"version: " + b"1" * 5000 + b"\n", 1, 10, "5,000 characters long"),
        (b"version: 0b" + b"1" * 20000 + b"\n", 1, 10, "20,002 characters long"),
        (b"version: true\nupstream: {}\n", 1, 10, "not a version 1 stackbuild lock"),
        (b"upstream: {}\n", 1, 1, "not a version 1 stackbuild lock"),
        (b"version: 1\nupstream:\n  a:1: &x " + A.encode() + b"\n", 3, 8, "anchors"),
        (b"version: 1\nupstream:\n  a:1: [x]\n", 3, 8, "pinned to a list"),
        (b"version: 1\nupstream:\n  a:1: " + A.encode() + b"\n  a:1: " + B.encode() + b"\n",
         4, 3, "duplicate key 'a:1'"),
        ("# ─┬─\nversion: 1\nupstream:\n  ü:1: ─\x00\n".encode(), 4, 9, "U+0000"),
    ],
)
def test_a_corrupt_lock_is_located_with_the_way_out(
    tmp_path: Path, data: bytes, line: int, col: int, message: str
) -> None:
    path = tmp_path / "stack.lock"
    path.write_bytes(data)
    with pytest.raises(LockfileError) as caught:
        read_lock(path)
    error = caught.value
    assert (error.path, error.line, error.col) == (str(path), line, col), str(error)
    assert str(error).startswith(f"{path}:{line}:{col}: "), str(error)
    assert message in error.message, error.message
    assert "run `stackbuild lock` to rewrite it" in error.message
    assert "stack.yaml" not in error.message  # the loader's words fit the lock too
    assert len(str(error)) < 400 and "\n" not in str(error)
    assert error.exit_code == 2


def test_a_non_utf8_lock_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "stack.lock"
    path.write_bytes(b"\xff\xfe garbage")
    assert write_lock(path, {"a:1": A}) is True
    assert read_lock(path) == {"a:1": A}


def test_long_references_round_trip(tmp_path: Path) -> None:
    # PyYAML writes keys over 128 characters as explicit `? key` entries
    pins = {"r.example/" + "x" * 300 + ":1": A, "plain:1": B}
    path = tmp_path / "stack.lock"
    write_lock(path, pins)
    assert read_lock(path) == pins
