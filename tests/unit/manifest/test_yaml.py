"""The strict YAML loader: what it refuses, and the one located error for each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from stackbuild.manifest import load_stack
from stackbuild.manifest import yaml as yaml_loader
from tests.unit.manifest.stacks import EXAMPLE, REPO, assert_error, error_for, write


def test_yaml_keys_are_always_names(stack_root: Path) -> None:
    (stack_root / "images" / "on").mkdir()
    (stack_root / "images" / "on" / "Dockerfile").write_text("FROM scratch\n")
    write(stack_root, "version: 1\nimages:\n  on: {context: images/on}\n")
    assert list(load_stack("stack.yaml").images) == ["on"]


# --- YAML the loader refuses --------------------------------------------------------------


def test_yaml_syntax_error_is_located(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n  base: {context: images/base\n")
    assert_error(error, 4, 1, "invalid YAML", "started at line 3")


def test_yaml_value_with_colon_suggests_quotes(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nregistry: a: b\n")
    assert_error(error, 2, 12, "invalid YAML", "quotes")


def test_tabs_for_indentation_are_named(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nimages:\n\tbase: {context: images/base}\n")
    assert_error(error, 3, 1, "tab", "spaces")


def test_empty_file(stack_root: Path) -> None:
    assert_error(error_for(stack_root, ""), 1, 1, "stack.yaml is empty", "version: 1")
    assert_error(error_for(stack_root, "# nothing yet\n"), 1, 1, "is empty")


def test_top_level_must_be_a_mapping(stack_root: Path) -> None:
    error = error_for(stack_root, "- version: 1\n")
    assert_error(error, 1, 1, "top level", "must be a mapping", "got a list")


def test_duplicate_keys_name_both_lines(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base:
            context: images/base
          base:
            context: images/httpd
        """,
    )
    assert_error(error, 5, 3, "duplicate key 'base' (first defined at line 3)", "remove one")


def test_anchors_and_aliases_are_refused(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base: &common
            context: images/base
          httpd: *common
        """,
    )
    assert_error(error, 3, 9, "anchors and aliases are not supported", "write the value out")


def test_merge_keys_are_refused(stack_root: Path) -> None:
    error = error_for(
        stack_root,
        """\
        version: 1
        images:
          base:
            <<: {context: images/base}
        """,
    )
    assert_error(error, 4, 5, "merge keys (<<) are not supported", "write the keys out")


def test_billion_laughs_is_refused_at_once(stack_root: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    started = time.perf_counter()
    error = error_for(stack_root, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert_error(error, 1, 5, "anchors and aliases are not supported")


def test_nested_merge_keys_attack_is_refused_at_once(stack_root: Path) -> None:
    # PyYAML's safe_load needs more than 10 s for this: each level merges the last 7 times
    lines = ["l0: &l0 {a: 1, b: 2, c: 3, d: 4}"]
    for level in range(1, 8):
        refs = ", ".join([f"*l{level - 1}"] * 7)
        lines.append(f"l{level}: &l{level} {{<<: [{refs}], k{level}: {level}}}")
    started = time.perf_counter()
    error = error_for(stack_root, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert_error(error, 1, 5, "anchors and aliases are not supported")


def test_merge_without_anchors_is_also_refused_quickly(stack_root: Path) -> None:
    text = "version: 1\nx: " + "{<<: " * 30 + "{a: 1}" + "}" * 30 + "\n"
    started = time.perf_counter()
    error = error_for(stack_root, text)
    assert time.perf_counter() - started < 1.0
    assert_error(error, 2, 5, "merge keys (<<) are not supported")


def test_documents_over_the_size_cap_are_refused(stack_root: Path) -> None:
    error = error_for(stack_root, b"#" * (yaml_loader.MAX_BYTES + 1))
    assert_error(error, 1, 1, "larger than 10 MiB")


def test_deep_nesting_is_refused(stack_root: Path) -> None:
    error = error_for(stack_root, "x: " + "[" * 100 + "]" * 100 + "\n")
    assert_error(error, 1, 4 + yaml_loader.MAX_DEPTH - 1, "nesting is deeper than")


def test_a_second_yaml_document_is_refused(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\n---\nimages: {}\n")
    assert_error(error, 2, 1, "one YAML document", "'---'")


def test_python_tags_are_refused(stack_root: Path) -> None:
    error = error_for(stack_root, "version: !!python/object:os.system 1\n")
    assert_error(error, 1, 10, "tag !!python/object:os.system is not supported")


def test_invalid_utf8_is_located(stack_root: Path) -> None:
    error = error_for(stack_root, b"version: 1\nregistry: caf\xe9\n")
    assert_error(error, 2, 14, "not valid UTF-8", "save it as UTF-8")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("!!int abc", ("'abc' is not a whole number", "remove the tag")),
        ('!!int ""', ("'' is not a whole number", "remove the tag")),
        ("!!int 1.5", ("'1.5' is not a whole number",)),
        ("!!float x", ("'x' is not a number", "remove the tag")),
        ("!!bool maybe", ("'maybe' is not a !!bool", "true or false")),
        ("!!bool 1", ("'1' is not a !!bool",)),
        ("1" * 5000, ("5,000 characters long", "put it in quotes")),
        ("0b" + "1" * 20000, ("20,002 characters long", "put it in quotes")),
        ("0x" + "f" * 5000, ("5,002 characters long",)),
        ("1:" * 3000 + "1", ("6,001 characters long",)),  # base 60
    ],
)
def test_scalars_the_constructors_refuse_are_located(
    stack_root: Path, parser: str, value: str, words: tuple[str, ...]
) -> None:
    error = error_for(stack_root, f"# base ─┬─ httpd\nversion: {value}\nimages: {{}}\n")
    assert_error(error, 2, 10, *words)
    assert len(str(error)) < 300  # printing it works, and it stays one short line


def test_long_numbers_within_the_limit_are_still_numbers(stack_root: Path) -> None:
    digits = "9" * yaml_loader.MAX_NUMBER_CHARS
    doc = yaml_loader.load_yaml(f"a: {digits}\nb: !!int '12'\nc: !!float '1'\n", "x.yaml")
    assert doc.data == {"a": int(digits), "b": 12, "c": 1.0}
    assert doc.source_text(("a",)) == digits


def test_a_bad_character_after_non_ascii_text_is_located_in_characters(
    stack_root: Path, parser: str
) -> None:
    # libyaml reports the byte offset; applied to the text it was 4 lines and columns off
    error = error_for(stack_root, "# ─┬─ tree\nregistry: ─┬─\x00\n".encode())
    assert_error(error, 2, 14, "U+0000 is not allowed in YAML", "remove it")
    error = error_for(stack_root, "version: 1\nlabels: {é: \"ü\x07\"}\n".encode())
    assert_error(error, 2, 15, "U+0007 is not allowed", '"\\x07"')


def test_a_nul_in_the_example_stacks_tree_comment_is_located(
    stack_root: Path, parser: str
) -> None:
    # the repository's own stack.yaml draws its tree with box-drawing characters
    lines = (REPO / "stack.yaml").read_text(encoding="utf-8").split("\n")
    number = next(i for i, line in enumerate(lines) if "└─ (site-ops)" in line)
    col = lines[number].index("(site-ops)")
    lines[number] = lines[number][:col] + "\x00" + lines[number][col:]
    error = error_for(stack_root, "\n".join(lines).encode("utf-8"))
    assert_error(error, number + 1, col + 1, "U+0000")


def test_invalid_utf8_after_non_ascii_text_is_located_in_characters(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\nregistry: ─caf".encode() + b"\xe9\n")
    assert_error(error, 2, 15, "not valid UTF-8", "save it as UTF-8")


def test_an_error_at_the_end_of_the_text_is_inside_the_file(
    stack_root: Path, parser: str
) -> None:
    # without a final newline libyaml put the end of the text on a line past the last one
    assert_error(error_for(stack_root, "version: 1\nimages: [a"), 2, 11, "invalid YAML")
    assert_error(error_for(stack_root, "version: 1\nimages: [a\n"), 3, 1, "invalid YAML")


def test_keys_must_be_names(stack_root: Path) -> None:
    error = error_for(stack_root, "version: 1\n? [a, b]\n: 1\n")
    assert_error(error, 2, 3, "keys must be plain names")


def test_pure_python_parser_gives_the_same_result(
    stack_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(stack_root, EXAMPLE)
    fast = load_stack("stack.yaml")
    monkeypatch.setattr(yaml_loader, "_Loader", yaml.SafeLoader)
    slow = load_stack("stack.yaml")
    assert slow == fast
    assert dict(slow.images["httpd"].key_locations) == dict(fast.images["httpd"].key_locations)
    assert_error(error_for(stack_root, "a: 1\na: 2\n"), 2, 1, "duplicate key 'a'")
