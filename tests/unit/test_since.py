"""``--since REF`` (stackbuild.since) on throwaway git repositories: what a change selects,
the reasons a user reads, and the errors; no engine, registry or .stackbuild/ needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stackbuild.manifest import load_stack
from stackbuild.since import changes_since

REPO = Path(__file__).resolve().parents[2]
PIN_A = "sha256:" + "a" * 64
PIN_B = "sha256:" + "b" * 64
PIN_C = "sha256:" + "c" * 64

STACK = """\
version: 1
defaults:
  labels:
    team: core
images:
  base:
    context: base
  app:
    context: app
  tool:
    context: tool
    dockerfile: ../dockerfiles/tool.Dockerfile
  lone:
    context: lone
"""


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def commit(root: Path, message: str = "change") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose stack lives in ``stack/``: base <- app, base <- tool, lone alone
    (built on an upstream pinned in stack.lock); the branch ``feature`` is checked out."""
    root = tmp_path / "repo"
    stack = root / "stack"
    for name in ("base", "app", "tool", "lone", "dockerfiles"):
        (stack / name).mkdir(parents=True)
    (stack / "base" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (stack / "base" / "x.txt").write_text("x\n")
    (stack / "app" / "Dockerfile").write_text("FROM base\nCOPY . /app\n")
    (stack / "app" / "main.py").write_text("print(1)\n")
    (stack / "app" / ".dockerignore").write_text("notes/\n*.md\n!KEEP.md\n")
    (stack / "app" / "notes").mkdir()
    (stack / "app" / "notes" / "todo.txt").write_text("later\n")
    (stack / "app" / "README.md").write_text("readme\n")
    (stack / "app" / "KEEP.md").write_text("kept\n")
    (stack / "dockerfiles" / "tool.Dockerfile").write_text("FROM base\n")
    (stack / "tool" / "t.sh").write_text("true\n")
    (stack / "lone" / "Dockerfile").write_text("FROM busybox:1.36\n")
    (stack / "stack.yaml").write_text(STACK)
    (stack / "stack.lock").write_text(f"version: 1\nupstream:\n  busybox:1.36: {PIN_A}\n")
    git(root.parent, "init", "-q", "-b", "main", str(root))
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    commit(root, "the stack")
    git(root, "checkout", "-q", "-b", "feature")
    return stack


def selected(stack: Path, ref: str = "main") -> dict[str, list[str]]:
    changes = changes_since(load_stack(stack / "stack.yaml"), ref)
    return {name: [r.detail for r in changes.reasons[name]] for name in changes.selected}


def run(stack: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stackbuild", "-f", str(stack / "stack.yaml"), *args],
        capture_output=True, text=True, timeout=60, cwd=stack,
        # no engine answers here: --since needs none
        env={**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": "unix:///nonexistent.sock"},
    )


def test_nothing_committed_since_selects_nothing(repo: Path) -> None:
    assert selected(repo) == {}


def test_a_context_file_selects_its_image_and_everything_built_on_it(repo: Path) -> None:
    (repo / "base" / "x.txt").write_text("y\n")
    commit(repo.parent)
    assert selected(repo) == {
        "base": ["context file changed since main: base/x.txt"],
        "app": ["built on base, which changed since main"],
        "tool": ["built on base, which changed since main"],
    }


def test_files_docker_would_not_send_select_nothing(repo: Path) -> None:
    (repo / "app" / "README.md").write_text("more\n")  # *.md is ignored
    (repo / "app" / "notes" / "todo.txt").write_text("sooner\n")  # notes/ is ignored
    (repo / "elsewhere.txt").write_text("not in any context\n")
    commit(repo.parent)
    assert selected(repo) == {}
    (repo / "app" / "KEEP.md").write_text("kept, changed\n")  # !KEEP.md: sent
    commit(repo.parent)
    assert selected(repo) == {"app": ["context file changed since main: app/KEEP.md"]}


def test_a_removed_file_counts_when_docker_would_have_sent_it(repo: Path) -> None:
    (repo / "app" / "main.py").unlink()
    (repo / "app" / "README.md").unlink()  # ignored: it was never sent
    commit(repo.parent)
    assert selected(repo) == {"app": ["context file removed since main: app/main.py"]}


def test_a_dockerfile_outside_its_context_selects_its_image(repo: Path) -> None:
    (repo / "dockerfiles" / "tool.Dockerfile").write_text("FROM base\nLABEL a=b\n")
    commit(repo.parent)
    assert selected(repo) == {
        "tool": ["Dockerfile changed since main: dockerfiles/tool.Dockerfile"]
    }


def test_stack_yaml_changes_select_the_images_they_touch(repo: Path) -> None:
    manifest = repo / "stack.yaml"
    manifest.write_text(STACK.replace("    context: lone\n",
                                      "    context: lone\n    build_args: {A: b}\n"))  # fmt: skip
    commit(repo.parent)
    assert selected(repo) == {"lone": ["stack.yaml: images.lone changed since main"]}
    # a comment or a new builder changes no image
    manifest.write_text("# a comment\n" + manifest.read_text())
    commit(repo.parent)
    assert selected(repo, "HEAD~1") == {}
    manifest.write_text(manifest.read_text().replace("team: core", "team: edge"))
    commit(repo.parent)
    assert set(selected(repo, "HEAD~1")) == {"base", "app", "tool", "lone"}
    assert selected(repo, "HEAD~1")["app"][0] == "stack.yaml: defaults changed since HEAD~1"


def test_a_new_image_or_a_new_stack_is_new_since_ref(repo: Path) -> None:
    (repo / "extra").mkdir()
    (repo / "extra" / "Dockerfile").write_text("FROM app\n")
    (repo / "stack.yaml").write_text(STACK + "  extra:\n    context: extra\n")
    commit(repo.parent)
    assert selected(repo) == {"extra": ["Dockerfile added since main: extra/Dockerfile",
                                        "stack.yaml: image extra is new since main"]}  # fmt: skip
    # the whole stack came after REF: every image is new (once, not "defaults changed" too)
    first = git(repo.parent, "rev-list", "--max-parents=0", "HEAD")
    git(repo.parent, "checkout", "-q", "--orphan", "empty", first)
    git(repo.parent, "rm", "-rq", "--cached", ".")
    git(repo.parent, "commit", "-q", "--allow-empty", "-m", "nothing yet")
    git(repo.parent, "checkout", "-q", "-f", "feature")
    git(repo.parent, "merge", "-q", "--allow-unrelated-histories", "-m", "m", "empty")
    found = selected(repo, "empty")
    assert "stack.yaml: image lone is new since empty" in found["lone"]
    assert not any("defaults" in reason for reason in found["lone"])
    assert set(found) == {"base", "app", "tool", "lone", "extra"}


def test_a_moved_pin_selects_the_images_built_on_that_upstream(repo: Path) -> None:
    (repo / "stack.lock").write_text(
        f"version: 1\nupstream:\n  busybox:1.36: {PIN_B}\n  debian:12: {PIN_C}\n"
    )
    commit(repo.parent)
    assert selected(repo) == {"lone": ["stack.lock: the pin of busybox:1.36 changed since main"]}


def test_a_moved_platform_pin_alone_selects_the_images_built_on_that_upstream(
    repo: Path,
) -> None:
    # refresh may move one platform's manifest (ref[linux/arm64]) while the index's stays
    (repo / "stack.lock").write_text(
        f"version: 1\nupstream:\n  busybox:1.36: {PIN_A}\n  busybox:1.36[linux/arm64]: {PIN_B}\n"
    )
    commit(repo.parent)
    assert selected(repo) == {"lone": ["stack.lock: the pin of busybox:1.36 changed since main"]}


def test_uncommitted_changes_are_not_counted(repo: Path) -> None:
    (repo / "base" / "x.txt").write_text("uncommitted\n")
    assert selected(repo) == {}


def test_changes_on_the_base_branch_after_the_fork_are_not_counted(repo: Path) -> None:
    # REF...HEAD: what HEAD changed since it forked from main, not what main did since
    git(repo.parent, "checkout", "-q", "main")
    (repo / "lone" / "Dockerfile").write_text("FROM busybox:1.36\nLABEL main=1\n")
    commit(repo.parent)
    git(repo.parent, "checkout", "-q", "feature")
    (repo / "tool" / "t.sh").write_text("false\n")
    commit(repo.parent)
    assert selected(repo) == {"tool": ["context file changed since main: tool/t.sh"]}


def test_plan_since_names_the_changed_files_offline(repo: Path) -> None:
    (repo / "app" / "main.py").write_text("print(2)\n")
    commit(repo.parent)
    proc = run(repo, "plan", "--offline", "--since", "main", "--json")
    assert proc.returncode == 0, proc.stderr
    steps = {step["image"]: step for step in json.loads(proc.stdout)["steps"]}
    assert set(steps) == {"base", "app"}  # app, and base which it is built on
    assert {"code": "changed-since-file", "detail": "context file changed since main: app/main.py"
            } in steps["app"]["reasons"]  # fmt: skip
    assert not any(r["code"].startswith("changed-since") for r in steps["base"]["reasons"])
    text = run(repo, "plan", "--offline", "--since", "main")
    assert "context file changed since main: app/main.py" in text.stdout
    assert not (repo / ".stackbuild" / "images").exists()  # nothing built, nothing recorded


def test_plan_since_with_targets_keeps_only_what_they_select(repo: Path) -> None:
    (repo / "base" / "x.txt").write_text("y\n")
    commit(repo.parent)
    proc = run(repo, "plan", "--offline", "--since", "main", "tool", "--json")
    assert [s["image"] for s in json.loads(proc.stdout)["steps"]] == ["base", "tool"]
    proc = run(repo, "plan", "--offline", "--since", "main", "lone")
    assert proc.returncode == 0 and "nothing changed since main" in proc.stdout


def test_nothing_changed_builds_nothing_without_an_engine(repo: Path) -> None:
    proc = run(repo, "build", "--since", "main", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"results": [], "interrupted": False}
    assert "changed since main: none" in proc.stderr


def test_matrix_since(repo: Path) -> None:
    (repo / "base" / "x.txt").write_text("y\n")
    commit(repo.parent)
    proc = run(repo, "plan", "--offline", "--since", "main", "--format", "matrix")
    assert json.loads(proc.stdout) == {
        "levels": 2, "level": [{"image": ["base"]}, {"image": ["app", "tool"]}]
    }


@pytest.mark.parametrize(
    "command", [["plan", "--offline"], ["build"], ["ci", "github", "--offline"]]
)
def test_an_unknown_ref_is_exit_2_with_what_to_do(repo: Path, command: list[str]) -> None:
    if command[0] == "ci":
        (repo / "stack.yaml").write_text("registry: 127.0.0.1:5000/acme\n" + STACK)
    proc = run(repo, *command, "--since", "no-such-branch")
    assert proc.returncode == 2, proc.stderr
    assert "git does not know the revision 'no-such-branch'" in proc.stderr
    assert "fetch-depth: 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_since_outside_a_git_repository_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "stack.yaml").write_text("version: 1\nimages:\n  a:\n    context: a\n")
    proc = run(tmp_path, "plan", "--offline", "--since", "main")
    assert proc.returncode == 2
    assert "is not in a git repository" in proc.stderr and "Traceback" not in proc.stderr


def test_ci_since_has_jobs_only_for_what_changed(repo: Path) -> None:
    (repo / "stack.yaml").write_text("registry: 127.0.0.1:5000/acme\n" + STACK)
    commit(repo.parent, "a registry")
    git(repo.parent, "checkout", "-q", "-b", "later")
    proc = run(repo, "ci", "gitlab", "--offline", "--since", "feature")
    assert proc.returncode == 0, proc.stderr
    jobs = [name for name in yaml.safe_load(proc.stdout) if name.startswith("build-")]
    assert jobs == [] and "0 job(s) for 0 image(s)" in proc.stderr  # nothing changed
    (repo / "tool" / "t.sh").write_text("false\n")
    commit(repo.parent)
    proc = run(repo, "ci", "github", "--offline", "--since", "feature")
    assert proc.returncode == 0, proc.stderr
    jobs = yaml.safe_load(proc.stdout)["jobs"]
    # tool changed, and base is its parent: offline, no registry says base is there
    assert {job["name"] for job in jobs.values()} == {"base", "tool"}
    assert jobs["build-tool"]["needs"] == ["build-base"]
