"""``tests:`` in stack.yaml: the checks an image runs, merged with ``defaults.tests``, and
every mistake in them located with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackbuild.manifest import load_stack
from stackbuild.manifest import schema as manifest_schema
from stackbuild.manifest import yaml as yaml_loader
from tests.unit.manifest.stacks import assert_error, error_for, write

HEAD = "version: 1\nimages:\n  base:\n    context: images/base\n    tests:\n"


def checks(root: Path, text: str):
    write(root, text)
    return load_stack("stack.yaml").images


def test_run_script_and_serve_checks_with_their_defaults(stack_root: Path) -> None:
    (stack_root / "images/base/smoke.sh").write_text("#!/bin/sh\necho ok\n")
    images = checks(stack_root, HEAD + (
        "      - run: [httpd, -h]\n"
        "        expect: {exit: 1, stderr: Usage, regex: '^BusyBox'}\n"
        "      - run: echo hi | grep hi\n"
        "        network: bridge\n"
        "        timeout: 5\n"
        "      - script: ./smoke.sh\n"
        "      - name: page\n"
        "        serve: {port: 8080, path: /index.html}\n"
        "        expect: {status: 200, stdout: '<h1>'}\n"
    ))  # fmt: skip
    argv, shell, script, serve = images["base"].tests

    assert (argv.name, argv.kind, argv.argv) == ("httpd -h", "run", ("httpd", "-h"))
    assert (argv.expect_exit, argv.expect_stderr, argv.expect_regex) == (1, "Usage", "^BusyBox")
    assert (argv.timeout, argv.network) == (60.0, "none")
    assert argv.location.line == 6
    assert shell.argv == ("sh", "-c", "echo hi | grep hi") and shell.name == "echo hi | grep hi"
    assert (shell.network, shell.timeout) == ("bridge", 5.0)
    assert (script.kind, script.name, script.script) == ("script", "smoke.sh", "smoke.sh")
    assert script.script_path == stack_root / "images/base/smoke.sh"
    assert (serve.name, serve.port, serve.path) == ("page", 8080, "/index.html")
    assert (serve.expect_status, serve.expect_stdout, serve.network) == (200, "<h1>", "bridge")


def test_defaults_tests_come_first_and_an_own_check_of_their_name_replaces_one(
    stack_root: Path,
) -> None:
    images = checks(stack_root, (
        "version: 1\n"
        "defaults:\n"
        "  tests:\n"
        "    - {name: shell, run: [sh, -c, 'true']}\n"
        "    - {name: id, run: [id]}\n"
        "images:\n"
        "  base: {context: images/base}\n"
        "  httpd:\n"
        "    context: images/httpd\n"
        "    tests:\n"
        "      - {name: id, run: [id, -u], expect: {stdout: '0'}}\n"
        "      - {run: [httpd, -h], expect: {exit: 1}}\n"
    ))  # fmt: skip
    assert [c.name for c in images["base"].tests] == ["shell", "id"]
    httpd = images["httpd"].tests
    assert [c.name for c in httpd] == ["shell", "id", "httpd -h"]
    assert httpd[1].argv == ("id", "-u")


def test_an_image_without_tests_has_none(stack_root: Path) -> None:
    assert checks(stack_root, "version: 1\nimages:\n  base: {context: images/base}\n")[
        "base"].tests == ()  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "line", "col", "words"),
    [
        ("      - run: x\n        expct: {exit: 1}\n", 7, 9,
         ["unknown key 'expct' in tests[0] of image 'base'", "did you mean 'expect'?"]),
        ("      - run: x\n        expect: {exitcode: 1}\n", 7, 18,
         ["unknown key 'exitcode' in tests[0].expect of image 'base'", "did you mean 'exit'"]),
        ("      - serve: {port: 80, host: x}\n", 6, 27, ["unknown key 'host'", "port, path"]),
        ("      - run: x\n        script: s.sh\n", 6, 9,
         ["has more than one of run, script and serve", "give it exactly one"]),
        ("      - name: nothing\n", 6, 9, ["has none of run, script and serve"]),
        ("      - serve: {port: 8080}\n        expect: {exit: 1}\n", 7, 24,
         ["expect.exit does not apply to a serve check", "use `status:`"]),
        ("      - run: x\n        expect: {status: 200}\n", 7, 26,
         ["expect.status does not apply to a run check", "use `exit:`"]),
        ("      - script: nope.sh\n", 6, 17,
         ["script 'nope.sh' of tests[0] of image 'base' does not exist", "create it"]),
        ("      - script: ../../../etc/passwd\n", 6, 17, ["is outside the directory of"]),
        ("      - script: /etc/passwd\n", 6, 17, ["is an absolute path"]),
        ("      - run: x\n      - run: x\n", 7, 9,
         ["image 'base' has two checks named 'x'", "another `name:`"]),
        ("      - run: x\n        expect: {regex: '('}\n", 7, 25,
         ["expect.regex of tests[0] of image 'base' is not a valid regular expression"]),
        ("      - run: x\n        timeout: 0\n", 7, 18,
         ["tests[0].timeout of image 'base' must be at least 1"]),
        ("      - run: x\n        network: host\n", 7, 18, ["is not supported", "none, bridge"]),
        ("      - serve: {port: 70000}\n", 6, 23, ["must be a port number (1-65535)"]),
        ("      - serve: {port: 80, path: index.html}\n", 6, 33, ["must start with '/'"]),
        ("      - run: []\n", 6, 14, ["is empty"]),
        ("      - run: [1, 2]\n", 6, 15, ["expected a string for tests[0].run[0]"]),
        ("      - {run: x, timeout: soon}\n", 6, 27, ["expected a number"]),
    ],
)
def test_mistakes_in_checks_are_located_with_the_fix(
    stack_root: Path, lines: str, line: int, col: int, words: list[str]
) -> None:
    assert_error(error_for(stack_root, HEAD + lines), line, col, *words)


def test_a_mistake_in_defaults_tests_is_located_there(stack_root: Path) -> None:
    error = error_for(stack_root, (
        "version: 1\ndefaults:\n  tests:\n    - {run: x, serve: {port: 80}}\n"
        "images:\n  base: {context: images/base}\n"
    ))  # fmt: skip
    assert_error(error, 4, 7, "defaults.tests[0] has more than one of run, script and serve")


FAST_CHECK_CASES = [
    HEAD + "      - {run: [a, b], expect: {exit: 0, stdout: x}, timeout: 1.5}\n",
    HEAD + "      - {run: 'a b', network: bridge}\n",
    HEAD + "      - {serve: {port: 80, path: /x}, expect: {status: 200}}\n",
    HEAD + "      - {run: x, timeout: 0.5}\n",
    HEAD + "      - {run: x, network: hostt}\n",
    HEAD + "      - {run: 7}\n",
    HEAD + "      - {serve: {path: /}}\n",
    HEAD + "      - {run: x, expect: {exit: -1}}\n",
    "version: 1\ndefaults: {tests: []}\nimages: {b: {context: x}}\n",
]


@pytest.mark.parametrize("text", FAST_CHECK_CASES)
def test_the_fast_schema_check_agrees_with_jsonschema_on_checks(text: str) -> None:
    data = yaml_loader.load_yaml(text, "stack.yaml").data
    fast = manifest_schema._fast_checker()
    assert fast is not None  # the keywords of tests: keep the fast path
    valid = not list(manifest_schema._validator().iter_errors(data))
    assert valid or not fast(data)  # "certainly valid" only for what jsonschema accepts
