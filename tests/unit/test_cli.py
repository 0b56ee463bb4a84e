"""The command line without an engine: help, plan --offline, graph, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from stackbuild.cli import cli
from tests.helpers import run_importing

REPO = Path(__file__).resolve().parents[2]

EXAMPLE_EDGES = {
    ("base", "httpd"),
    ("base", "tools"),
    ("base", "site-hello"),  # its checker stage is FROM base
    ("httpd", "site-hello"),
    ("httpd", "site-ops"),
    ("tools", "site-ops"),  # COPY --from=tools
    ("tools", "runner"),
}
EXAMPLE_PARENTS = {
    "base": [],
    "httpd": ["base"],
    "tools": ["base"],
    "site-hello": ["base", "httpd"],
    "site-ops": ["httpd", "tools"],
    "runner": ["tools"],
}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's example stack, so its .stackbuild/ stays untouched."""
    root = tmp_path_factory.mktemp("example")
    shutil.copy(REPO / "stack.yaml", root / "stack.yaml")
    shutil.copytree(REPO / "images", root / "images", symlinks=True)
    return root / "stack.yaml"


def run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stackbuild", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_every_command_has_help() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0, top.output
    commands = cli.list_commands(click.Context(cli))  # loaded when they run
    assert set(commands) >= {"plan", "build", "graph", "ls", "why", "schema"}
    for name in commands:
        for flag in ("--help", "-h"):
            result = runner.invoke(cli, [name, flag])
            assert result.exit_code == 0, (name, result.output)
            assert result.output.startswith(f"Usage: cli {name}"), result.output
            assert name in top.output
    build_help = runner.invoke(cli, ["build", "--help"]).output
    for option in ("--jobs", "--keep-going", "--fail-fast", "--no-cache", "--pull", "--force",
                   "--json", "--no-wait"):  # fmt: skip
        assert option in build_help
    assert "130 interrupted" in build_help


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("stackbuild, version ")


def test_plan_offline_json_on_the_example_stack(example: Path) -> None:
    proc = run("-f", str(example), "plan", "--offline", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    steps = {s["image"]: s for s in data["steps"]}
    assert {name: s["parents"] for name, s in steps.items()} == EXAMPLE_PARENTS
    assert all(s["action"] == "build" for s in data["steps"])
    assert data["summary"] == {"build": 6, "skip": 0, "test": 0, "promote": 0}
    order = [s["image"] for s in data["steps"]]
    for parent, child in EXAMPLE_EDGES:
        assert order.index(parent) < order.index(child)
    assert all(s["upstream"] == [] for s in data["steps"])  # all FROM scratch / in-stack
    assert len({s["fingerprint"] for s in data["steps"]}) == 6
    assert all(s["warnings"] == [] for s in data["steps"])  # its Dockerfiles are clean
    assert all(
        {"code": "not-checked", "detail": "not checked (offline)"} in s["reasons"]
        for s in data["steps"]
    )


def test_plan_offline_imports_no_engine_side(example: Path) -> None:
    # no docker SDK, and not plan's engine half (plan_online, loaded only when a plan asks
    # the engines) nor anything of the backends or orchestration
    engine_side = ("docker", "stackbuild.backends", "stackbuild.run", "stackbuild.cli.engines",
                   "stackbuild.cli.commands.plan_online")  # fmt: skip
    imported, _ = run_importing(example, ["plan", "--offline"], engine_side)
    assert imported == []


def test_graph_json_on_the_example_stack(example: Path) -> None:
    proc = run("-f", str(example), "graph", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {tuple(edge) for edge in data["edges"]} == EXAMPLE_EDGES
    assert len(data["edges"]) == len(EXAMPLE_EDGES)
    assert {n["name"]: n["parents"] for n in data["nodes"]} == EXAMPLE_PARENTS
    assert {n["name"]: n["context"] for n in data["nodes"]}["site-ops"] == "images/site-ops"


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
def test_graph_formats_on_the_example_stack(example: Path, fmt: str) -> None:
    result = CliRunner().invoke(cli, ["-f", str(example), "graph", "--format", fmt])
    assert result.exit_code == 0, result.output
    for name in EXAMPLE_PARENTS:
        assert name in result.output


def test_ls_json_on_the_example_stack(example: Path) -> None:
    result = CliRunner().invoke(cli, ["-f", str(example), "ls", "--json"])
    assert result.exit_code == 0, result.output
    assert [n["name"] for n in json.loads(result.output)] == list(EXAMPLE_PARENTS)


def test_why_offline_on_the_example_stack(example: Path) -> None:
    result = CliRunner().invoke(cli, ["-f", str(example), "why", "site-ops", "--offline"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("site-ops will be built (sha256:")
    assert "parents: httpd, tools" in result.output


def test_schema_is_json() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert "images" in json.loads(result.output)["properties"]


BROKEN = {
    "unknown key": ("version: 1\nimages:\n  app:\n    context: app\n    contxt: x\n", "5:5"),
    "bad yaml": ("version: 1\nimages:\n  app:\n    context: [app\n", None),
    "missing context": ("version: 1\nimages:\n  app:\n    context: nowhere\n", "4:"),
    "duplicate key": ("version: 1\nimages:\n  app:\n    context: app\n  app:\n    context: app\n",
                      "5:3"),  # fmt: skip
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("command", [["plan", "--offline"], ["build"], ["graph"]])
def test_a_broken_manifest_exits_2_without_a_traceback(
    tmp_path: Path, case: str, command: list[str]
) -> None:
    text, where = BROKEN[case]
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "stack.yaml").write_text(text)

    proc = run(*command, cwd=tmp_path, DOCKER_HOST="unix:///nonexistent.sock")

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("stackbuild: stack.yaml:"), proc.stderr
    if where:
        assert proc.stderr.startswith(f"stackbuild: stack.yaml:{where}"), proc.stderr


def test_a_missing_manifest_exits_2(tmp_path: Path) -> None:
    proc = run("plan", "--offline", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "stack.yaml" in proc.stderr


def test_force_of_an_unknown_image_exits_2(example: Path) -> None:
    # checked before the engine is asked anything
    proc = run("-f", str(example), "build", "--force", "nosuch", "--force", "base",
               DOCKER_HOST="unix:///nonexistent.sock")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "nosuch" in proc.stderr and "base" not in proc.stderr.replace("nosuch", "")


def test_an_unknown_target_exits_2(example: Path) -> None:
    proc = run("-f", str(example), "plan", "--offline", "nosuch")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "'nosuch'" in proc.stderr and "site-hello" in proc.stderr


@pytest.mark.parametrize("args", [["build", "-j", "0"], ["graph", "--format", "pdf"],
                                  ["nosuch-command"], ["build", "--bogus"],
                                  ["build", "-j", "99999999999999999999"],
                                  ["refresh", "-j", "1025"],
                                  ["build", "--push-jobs", "99999999999999999999"],
                                  ["build", "--promote", "all"],  # without --push
                                  ["refresh", "--promote", "nosuch", "--push"],
                                  ["plan", "--push", "--offline"],
                                  ["build", "--builder", "unix:///x.sock=99999999999999999999"],
                                  ["build", "--builder", "tcp://127.0.0.1:99999"],
                                  ["build", "--builder", "tcp://[::1"],
                                  ["build", "--builder", "unix:///x.sock=abc"],
                                  ["build", "--builder", "unix:///x.sock=-1"],
                                  ["build", "--builder", "unix:///x.sock=2=3"]])  # fmt: skip
def test_usage_errors_exit_2(example: Path, args: list[str]) -> None:
    proc = run("-f", str(example), *args, DOCKER_HOST="unix:///nonexistent.sock")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_refuses_what_is_not_an_image_reference(example: Path) -> None:
    proc = run("-f", str(example), "verify", "Not A Ref")
    assert proc.returncode == 2
    assert "not an image reference" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("no_test", [True, False], ids=["no-test", "tested"])
def test_push_without_checks_warns_that_others_take_the_images_as_tested(
    tmp_path: Path, no_test: bool
) -> None:
    shutil.copytree(REPO / "images", tmp_path / "images", symlinks=True)
    text = (REPO / "stack.yaml").read_text().replace("version: 1\n", "version: 1\n"
                                                      "registry: 127.0.0.1:9/acme\n", 1)
    (tmp_path / "stack.yaml").write_text(text)
    args = ["build", "--push", *(["--no-test"] if no_test else [])]
    proc = run(*args, cwd=tmp_path, DOCKER_HOST="unix:///nonexistent.sock")
    assert proc.returncode == 3, proc.stderr  # no engine here: the warning came first
    warned = "--push --no-test: the images pushed to 127.0.0.1:9/acme skip their checks"
    assert (warned in proc.stderr) is no_test, proc.stderr
