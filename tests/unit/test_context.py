"""The build context: what ``docker build`` would send, and the tar that sends exactly that."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from stackbuild.context import (
    EXTERNAL_DOCKERFILE,
    TAR_MTIME,
    ContextChanged,
    ContextError,
    context_files,
    dockerfile_name_in_context,
    parse_dockerignore,
    write_context_tar,
)
from stackbuild.manifest import ImageSpec

DOCKERFILE = b"FROM scratch\nCOPY . /ctx\n"


def make_tree(root: Path, spec: dict) -> Path:
    """``spec``: name -> bytes (file), dict (directory) or ("link", target)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in spec.items():
        path = root / name
        if isinstance(value, dict):
            make_tree(path, value)
        elif isinstance(value, tuple):
            path.symlink_to(value[1])
        else:
            path.write_bytes(value)
    return root


def context(tmp_path: Path, tree: dict, ignore: str | None = None) -> Path:
    root = make_tree(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, **tree})
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    return root


def listed(root: Path, dockerfile: Path | None = None) -> list[str]:
    return [f.path for f in context_files(root, dockerfile or root / "Dockerfile")]


# --------------------------------------------------------------------------- listing


def test_an_excluded_directory_inside_the_context_is_left_out_whole(tmp_path):
    root = context(tmp_path, {"app.py": b"x", ".stackbuild": {"logs": {"a.log": b"l"}}})
    files = context_files(root, root / "Dockerfile", exclude=root / ".stackbuild")
    assert [f.path for f in files] == ["Dockerfile", "app.py"]
    # outside the context it changes nothing
    assert [f.path for f in context_files(root, root / "Dockerfile", exclude=tmp_path / "x")] \
        == listed(root)


def test_without_dockerignore_everything_is_sent_sorted_with_kinds(tmp_path):
    root = context(tmp_path, {"b.txt": b"b", "a": {"x": b"x", "sub": {"y": b"y"}}})
    files = context_files(root, root / "Dockerfile")
    assert [(f.path, f.kind) for f in files] == [
        ("Dockerfile", "f"),
        ("a", "d"),
        ("a/sub", "d"),
        ("a/sub/y", "f"),
        ("a/x", "f"),
        ("b.txt", "f"),
    ]
    assert files[3].source == str(root / "a" / "sub" / "y")


def test_a_pattern_matching_a_directory_excludes_its_whole_subtree(tmp_path):
    tree = {"build": {"out": {"deep.o": b""}, "a.o": b""}, "src": {"m.c": b""}}
    root = context(tmp_path, tree, "build\n")
    assert listed(root) == [".dockerignore", "Dockerfile", "src", "src/m.c"]


def test_double_star_matches_any_number_of_directories(tmp_path):
    tree = {"a.log": b"", "x": {"b.log": b"", "y": {"c.log": b"", "keep.txt": b""}}}
    root = context(tmp_path, tree, "**/*.log\n")
    assert listed(root) == [".dockerignore", "Dockerfile", "x", "x/y", "x/y/keep.txt"]


def test_bang_re_includes_and_later_patterns_win(tmp_path):
    tree = {"a.md": b"", "b.md": b"", "c.md": b"", "README.md": b""}
    root = context(tmp_path, tree, "*.md\n!README.md\n!b.md\nb.md\n")
    assert listed(root) == [".dockerignore", "Dockerfile", "README.md"]


def test_an_excluded_directory_is_walked_for_an_exception_but_not_sent_itself(tmp_path):
    tree = {"vendor": {"big": {"blob": b""}, "keep": {"this.txt": b"", "not.txt": b""}}}
    root = context(tmp_path, tree, "vendor\n!vendor/keep/this.txt\n")
    # no "vendor" or "vendor/keep" entries: Docker creates them (0755) when unpacking
    assert listed(root) == [".dockerignore", "Dockerfile", "vendor/keep/this.txt"]


def test_an_exception_with_a_wildcard_above_the_directory_does_not_reopen_it(tmp_path):
    # Docker only walks an excluded dir when an exception's text starts with "<dir>/"
    root = context(tmp_path, {"vendor": {"keep": b""}}, "vendor\n!*/keep\n")
    assert listed(root) == [".dockerignore", "Dockerfile"]


def test_leading_slash_and_dot_slash_and_trailing_slash_are_stripped(tmp_path):
    tree = {"a": {"x": b""}, "b": {"x": b""}, "c": {"x": b""}, "d": b""}
    root = context(tmp_path, tree, "/a\n./b\nc/\nsub/../d\n")
    assert listed(root) == [".dockerignore", "Dockerfile"]


def test_patterns_are_relative_to_the_root_unless_they_say_otherwise(tmp_path):
    root = context(tmp_path, {"x": b"", "sub": {"x": b""}}, "x\n")
    assert listed(root) == [".dockerignore", "Dockerfile", "sub", "sub/x"]
    (root / ".dockerignore").write_text("*/x\n")
    assert listed(root) == [".dockerignore", "Dockerfile", "sub", "x"]


def test_matching_is_go_syntax_and_case_sensitive(tmp_path):
    tree = {"a1": b"", "b1": b"", "!1": b"", "A.TXT": b"", "a.txt": b"", "star*": b"", "q": b""}
    # [^a] negates (Go); [!a] means '!' or 'a'; \* is a literal star; ? is one char
    root = context(tmp_path, tree, "[^a]1\n*.txt\nstar\\*\n?\n")
    assert listed(root) == [".dockerignore", "A.TXT", "Dockerfile", "a1"]
    (root / ".dockerignore").write_text("[!a]1\n")
    assert listed(root) == [".dockerignore", "A.TXT", "Dockerfile", "a.txt", "b1", "q", "star*"]


def test_comments_blank_lines_crlf_and_bom(tmp_path):
    tree = {"#x": b"", "y": b"", "z": b"", "keep": b""}
    root = context(tmp_path, tree)
    (root / ".dockerignore").write_bytes(b"\xef\xbb\xbf# comment\r\n\r\n  y  \r\n #x\r\nz")
    assert listed(root) == [".dockerignore", "Dockerfile", "keep"]
    assert parse_dockerignore(b"\xef\xbb\xbfa\r\n#c\n !/b/../c \n\n") == ["a", "!c"]


def test_the_dockerfile_and_dockerignore_are_always_sent(tmp_path):
    root = context(tmp_path, {"app.py": b""}, "*\n")
    assert listed(root) == [".dockerignore", "Dockerfile"]
    (root / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    assert listed(root) == [".dockerignore", "Dockerfile", "app.py"]


def test_a_dockerfile_in_an_excluded_directory_is_still_sent(tmp_path):
    root = context(tmp_path, {"docker": {"Dockerfile.app": DOCKERFILE, "secret": b""}}, "docker\n")
    assert listed(root, root / "docker" / "Dockerfile.app") == [
        ".dockerignore",
        "Dockerfile",
        "docker/Dockerfile.app",
    ]


def test_symlinks_are_recorded_not_followed(tmp_path):
    outside = make_tree(tmp_path / "outside", {"secret": b"s"})
    tree = {
        "real": {"f": b""},
        "to_dir": ("link", "real"),
        "to_outside": ("link", str(outside)),
        "dangling": ("link", "nowhere"),
    }
    root = context(tmp_path, tree)
    files = context_files(root, root / "Dockerfile")
    assert [(f.path, f.kind) for f in files] == [
        ("Dockerfile", "f"),
        ("dangling", "l"),
        ("real", "d"),
        ("real/f", "f"),
        ("to_dir", "l"),
        ("to_outside", "l"),
    ]


def test_sockets_and_fifos_are_skipped(tmp_path, monkeypatch):
    root = context(tmp_path, {"f": b""})
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        monkeypatch.chdir(root)  # AF_UNIX paths are short: bind relative to the context
        sock.bind("sock")
        assert listed(root) == ["Dockerfile", "f"]
    finally:
        sock.close()


def test_bad_patterns_are_a_clear_error(tmp_path):
    root = context(tmp_path, {}, "[a-\n")
    with pytest.raises(ContextError, match=r"\.dockerignore: bad pattern '\[a-'"):
        context_files(root, root / "Dockerfile")
    (root / ".dockerignore").write_text("!\n")
    with pytest.raises(ContextError, match="illegal exclusion pattern"):
        context_files(root, root / "Dockerfile")


def test_a_missing_context_is_a_clear_error(tmp_path):
    with pytest.raises(ContextError, match="cannot read directory"):
        context_files(tmp_path / "nope", tmp_path / "nope" / "Dockerfile")


def spec_for(context_dir: Path, dockerfile: Path) -> ImageSpec:
    return ImageSpec(
        name="app",
        context=context_dir,
        dockerfile=dockerfile,
        context_rel="ctx",
        dockerfile_rel="ctx/Dockerfile",
    )


def test_dockerfile_name_in_context(tmp_path):
    root = context(tmp_path, {"docker": {"Dockerfile.dev": DOCKERFILE}})
    assert dockerfile_name_in_context(spec_for(root, root / "Dockerfile")) == "Dockerfile"
    nested = root / "docker" / "Dockerfile.dev"
    assert dockerfile_name_in_context(spec_for(root, nested)) == "docker/Dockerfile.dev"
    outside = tmp_path / "Dockerfile.shared"
    assert dockerfile_name_in_context(spec_for(root, outside)) == EXTERNAL_DOCKERFILE


# --------------------------------------------------------------------------- the tar


def read_tar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert len(names) == len(set(names)), "duplicate entries"
        return {m.name: m for m in members}


def tar_bytes(files, dockerfile_name="Dockerfile", dockerfile=DOCKERFILE, **kw) -> bytes:
    out = io.BytesIO()
    write_context_tar(files, dockerfile, dockerfile_name, out, **kw)
    return out.getvalue()


def test_the_tar_holds_exactly_the_listed_entries(tmp_path):
    tree = {
        "app": {"main.py": b"print(1)\n", "data": {"big.bin": os.urandom(3 << 20)}},
        "ignored": {"x": b"x"},
        "note.tmp": b"",
        "link": ("link", "app/main.py"),
    }
    root = context(tmp_path, tree, "ignored\n*.tmp\n")
    (root / "app" / "main.py").chmod(0o750)
    files = context_files(root, root / "Dockerfile")
    members = read_tar(tar_bytes(files))

    assert sorted(members) == sorted(f.path for f in files)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(files))) as tar:
        for f in files:
            m = members[f.path]
            st = os.lstat(f.source)
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", TAR_MTIME)
            assert m.mode == stat.S_IMODE(st.st_mode)
            if f.kind == "f":
                assert m.isfile() and tar.extractfile(m).read() == Path(f.source).read_bytes()
            elif f.kind == "d":
                assert m.isdir()
            else:
                assert m.issym() and m.linkname == "app/main.py"
    assert members["app/main.py"].mode == 0o750


def test_the_tar_is_reproducible(tmp_path):
    root = context(tmp_path, {"a": {"b": b"b"}})
    files = context_files(root, root / "Dockerfile")
    first = tar_bytes(files)
    os.utime(root / "a" / "b", (1, 1))  # mtimes are not sent
    assert tar_bytes(files) == first


def test_the_dockerfile_bytes_given_replace_the_file_in_the_context(tmp_path):
    root = context(tmp_path, {})
    files = context_files(root, root / "Dockerfile")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(files, dockerfile=b"FROM x\n"))) as tar:
        assert tar.getnames() == ["Dockerfile"]
        assert tar.extractfile("Dockerfile").read() == b"FROM x\n"


def test_an_outside_dockerfile_is_added_and_hidden_from_copy_like_the_cli_does(tmp_path):
    root = context(tmp_path, {"a": b""})
    (root / "Dockerfile").unlink()
    outside = tmp_path / "Dockerfile.shared"
    outside.write_bytes(DOCKERFILE)
    name = dockerfile_name_in_context(spec_for(root, outside))
    files = context_files(root, outside)
    assert [f.path for f in files] == ["a"]

    with tarfile.open(fileobj=io.BytesIO(tar_bytes(files, name))) as tar:
        assert sorted(tar.getnames()) == sorted([EXTERNAL_DOCKERFILE, ".dockerignore", "a"])
        assert tar.extractfile(EXTERNAL_DOCKERFILE).read() == DOCKERFILE
        # the engine drops both files matched by this from what COPY sees
        ignore = tar.extractfile(".dockerignore").read()
        assert ignore == b".dockerignore\n" + EXTERNAL_DOCKERFILE.encode() + b"\n"

    (root / ".dockerignore").write_text("*.tmp")
    files = context_files(root, outside)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(files, name))) as tar:
        assert sorted(tar.getnames()) == sorted([EXTERNAL_DOCKERFILE, ".dockerignore", "a"])
        ignore = tar.extractfile(".dockerignore").read()
        assert ignore == b"*.tmp\n" + EXTERNAL_DOCKERFILE.encode() + b"\n"


def test_a_re_included_file_in_an_excluded_dir_has_no_parent_entry_in_the_tar(tmp_path):
    root = context(tmp_path, {"vendor": {"keep": b"k", "drop": b"d"}}, "vendor\n!vendor/keep\n")
    members = read_tar(tar_bytes(context_files(root, root / "Dockerfile")))
    assert sorted(members) == [".dockerignore", "Dockerfile", "vendor/keep"]


def test_a_file_that_vanished_since_listing_is_a_clear_error(tmp_path):
    root = context(tmp_path, {"gone": b"x"})
    files = context_files(root, root / "Dockerfile")
    (root / "gone").unlink()
    with pytest.raises(ContextError, match="gone"):
        tar_bytes(files)


# --------------------------------------------------------------------------- sent = hashed


def hashed(root: Path, dockerfile: Path | None = None) -> tuple[list, dict[str, str]]:
    """The context files and their fingerprint entries, as the plan takes them."""
    from stackbuild.fingerprint import HashCache, image_inputs

    dockerfile = dockerfile or root / "Dockerfile"
    files = context_files(root, dockerfile)
    inputs = image_inputs(spec_for(root, dockerfile), DOCKERFILE, files, {}, {}, HashCache())
    return files, dict(inputs.files)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r: (r / "data.txt").write_bytes(b"BBBB"), id="same-size-content"),
        pytest.param(lambda r: (r / "data.txt").write_bytes(b"AAAA+"), id="grown"),
        pytest.param(lambda r: (r / "data.txt").chmod(0o755), id="mode"),
        pytest.param(lambda r: (r / "sub").chmod(0o700), id="directory-mode"),
        pytest.param(
            lambda r: ((r / "link").unlink(), (r / "link").symlink_to("sub")), id="link-target"
        ),
        pytest.param(lambda r: (r / ".dockerignore").write_text("*.md\n"), id="dockerignore"),
    ],
)
def test_a_file_changed_after_hashing_fails_the_tar_naming_it(tmp_path, edit):
    root = context(
        tmp_path,
        {"data.txt": b"AAAA", "sub": {"x": b"x"}, "link": ("link", "data.txt")},
        ignore="*.tmp\n",
    )
    files, entries = hashed(root)
    tar_bytes(files, expected=entries)  # unchanged: sent as hashed

    edit(root)
    with pytest.raises(ContextChanged, match="changed after it was hashed"):
        tar_bytes(files, expected=entries)


def test_an_outside_dockerfiles_dockerignore_is_checked_as_hashed_not_as_sent(tmp_path):
    root = context(tmp_path, {"a": b""}, ignore="*.tmp\n")
    (root / "Dockerfile").unlink()
    outside = tmp_path / "Dockerfile.shared"
    outside.write_bytes(DOCKERFILE)
    name = dockerfile_name_in_context(spec_for(root, outside))
    files, entries = hashed(root, outside)
    tar_bytes(files, name, expected=entries)  # the name appended to it is no change

    (root / ".dockerignore").write_text("*.log\n")
    with pytest.raises(ContextChanged, match=r"\.dockerignore changed"):
        tar_bytes(files, name, expected=entries)
