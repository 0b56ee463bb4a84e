"""``stackbuild build`` end to end: the CLI as a subprocess against a real Docker engine.

Every test writes its own stack into ``tmp_path`` whose images are named
``<unique>/<name>`` (so every image it builds is under the test's prefix; no
``registry:``, so no registry is asked) and runs ``python3 -m stackbuild -f
.../stack.yaml build --json``, reading the JSON results, the summary on
stderr, ``.stackbuild/`` and the engine itself. Images are ``FROM scratch`` +
busybox; ``cleanup_images`` removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from stackbuild.context import context_files
from stackbuild.state import StateDir
from tests.helpers import TEST_LABEL, containers_mentioning, wait_until, write_base_context

REPO = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
RESULT_KEYS = {"image", "status", "fingerprint", "duration_s", "tags", "log"}

docker = pytest.mark.docker


# -- helpers ---------------------------------------------------------------------------


def write_stack(
    root: Path,
    prefix: str,
    images: Mapping[str, str],
    files: Mapping[str, str] | None = None,
    manifest: Mapping[str, str] | None = None,
) -> Path:
    """A stack in ``root``: a busybox ``base`` plus ``images`` (name -> Dockerfile).

    Image ``x`` (context ``x/``) is named ``<prefix>/x`` in the stack; ``{r}`` in
    a Dockerfile is the prefix. ``files`` maps "dir/relative/path" to content;
    ``manifest`` maps a short name to extra YAML lines for its entry. Every image
    is labelled ``stackbuild.test`` for cleanup.
    """
    write_base_context(root / "base", extra="RUN echo base > /m-base\n")
    # a file of its own in the first layer: no layer of this test's images is shared,
    # through the build cache, with another test's (whose clean-up would prune it)
    (root / "base" / "rootfs" / "etc" / "stackbuild-test").write_text(f"{prefix}\n")
    lines = [
        "version: 1",
        "defaults:",
        f"  labels: {{{TEST_LABEL}: {prefix}}}",
        "images:",
        f"  {prefix}/base:",
        "    context: base",
    ]
    for name, dockerfile in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "Dockerfile").write_text(dockerfile.replace("{r}", prefix))
        lines += [f"  {prefix}/{name}:", f"    context: {name}"]
        lines += [f"    {extra}" for extra in (manifest or {}).get(name, "").splitlines()]
    for rel, content in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root


def child(parent: str, name: str, extra: str = "") -> str:
    """A Dockerfile on an in-stack parent that leaves a marker file /m-<name>."""
    return f"FROM {{r}}/{parent}\nRUN echo {name} > /m-{name}\n{extra}"


def cli_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "stackbuild", "-f", str(root / "stack.yaml"), *args]


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def run_cli(
    root: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(root, *args),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
    )


def start_cli(
    root: Path, *args: str, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE
) -> subprocess.Popen:
    """``stackbuild <args>`` started in the background (text streams)."""
    return subprocess.Popen(
        cli_command(root, *args), cwd=root, stdout=stdout, stderr=stderr, text=True, env=cli_env()
    )


@contextlib.contextmanager
def killed_at_exit(procs: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    """Kill and reap whichever of ``procs`` (a list the block may add to) still run at its end."""
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def short(image: str) -> str:
    """``<unique>/x`` -> ``x``."""
    return image.partition("/")[2] or image


def by_short_name(items: list[dict], key: str = "image") -> dict[str, dict]:
    return {short(item[key]): item for item in items}


def build(root: Path, *args: str, expect: int = 0) -> tuple[dict[str, dict], Any]:
    """``build --json``; the results by short image name, and the finished process."""
    proc = run_cli(root, "build", "--json", *args)
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stderr}\n{proc.stdout}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return by_short_name(json.loads(proc.stdout)["results"]), proc


def recorded(root: Path) -> list[str]:
    """Short names of the images with a record in .stackbuild/images/."""
    return sorted(short(unquote(p.stem)) for p in (root / ".stackbuild/images").glob("*.json"))


def log_path(root: Path, prefix: str, name: str) -> Path:
    return StateDir(root).log_path(f"{prefix}/{name}")


def statuses(results: Mapping[str, dict]) -> dict[str, str]:
    return {name: r["status"] for name, r in results.items()}


def run_log(root: Path) -> list[str]:
    path = root / ".stackbuild" / "logs" / "stackbuild.log"
    return path.read_text().splitlines() if path.exists() else []


def event_index(lines: list[str], event: str, image: str) -> int:
    """Index of the run log line ``<event> <image> ...`` (build = start, built = finish)."""
    pattern = re.compile(rf"^\S+ \S+ {re.escape(event)} {re.escape(image)}(\s|$)")
    found = [i for i, line in enumerate(lines) if pattern.match(line)]
    assert found, f"no '{event} {image}' in the run log:\n" + "\n".join(lines)
    return found[-1]


def cat_markers(client: Any, ref: str, unique: str, *names: str) -> list[str]:
    out = client.containers.run(
        ref,
        ["cat", *(f"/m-{n}" for n in names)],
        name=f"{unique}-check-{time.monotonic_ns()}",
        remove=True,
    )
    return out.decode().split()


# -- the tests -------------------------------------------------------------------------


@docker
def test_diamond_builds_in_dependency_order_on_its_parents(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path,
        unique,
        {
            "left": child("base", "left"),
            "right": child("base", "right"),
            "top": child("left", "top", "COPY --from={r}/right /m-right /m-right\n"),
        },
    )

    results, _ = build(tmp_path, "-j", "4")

    assert list(results) == ["base", "left", "right", "top"]
    assert set(statuses(results).values()) == {"built"}
    lines = run_log(tmp_path)
    for parent, kid in [("base", "left"), ("base", "right"), ("left", "top"), ("right", "top")]:
        built, started = f"{unique}/{parent}", f"{unique}/{kid}"
        assert event_index(lines, "built", built) < event_index(lines, "build", started), (
            f"{kid} started before {parent} finished:\n" + "\n".join(lines)
        )
    # each child really is built on (the fresh build of) its parents
    top = f"{unique}/top:latest"
    assert cat_markers(docker_client, top, unique, "base", "left", "right", "top") == [
        "base", "left", "right", "top"
    ]
    assert cat_markers(docker_client, f"{unique}/left:latest", unique, "base", "left") == [
        "base", "left"
    ]
    # and its layers start with theirs (BuildKit records no parent image ids, the
    # classic builder does: layers are what both builders share)
    def layers(name: str) -> list[str]:
        return docker_client.api.inspect_image(f"{unique}/{name}:latest")["RootFS"]["Layers"]

    for parent, kid in [("base", "left"), ("left", "top")]:
        assert layers(kid)[: len(layers(parent))] == layers(parent), (parent, kid)


FAILING = {
    "good": child("base", "good"),
    "good-kid": child("good", "good-kid"),
    "bad": "FROM {r}/base\nRUN echo bad-output-{r} && false\n",
    "bad-kid": child("bad", "bad-kid"),
    "bad-grandkid": child("bad-kid", "bad-grandkid"),
}


@docker
def test_failure_blocks_exactly_its_descendants(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(tmp_path, unique, FAILING)

    results, proc = build(tmp_path, "-j", "2", expect=1)

    assert statuses(results) == {
        "base": "built",
        "good": "built",
        "good-kid": "built",
        "bad": "failed",
        "bad-kid": "blocked",
        "bad-grandkid": "blocked",
    }
    assert "bad" in (results["bad-kid"]["error"] or "")
    # the classic builder's "returned a non-zero code: 1", BuildKit's "exit code: 1"
    assert re.search(r"non-zero code: 1|exit code: 1", results["bad"]["error"])
    log = Path(results["bad"]["log"])
    assert log == log_path(tmp_path, unique, "bad")
    assert f"bad-output-{unique}" in log.read_text()
    # the summary (stderr under --json): the failure, the tail of its log, the log's path
    summary = proc.stderr
    assert f"--- {unique}/bad failed:" in summary
    tail = summary[summary.index(f"--- {unique}/bad failed:") :]
    assert f"bad-output-{unique}" in tail
    assert f"full log: {log}" in tail
    # nothing of the failed branch was tagged, or recorded
    assert docker_client.api.images(name=f"{unique}/bad") == []
    assert recorded(tmp_path) == ["base", "good", "good-kid"]
    assert not containers_mentioning(docker_client, f"bad-output-{unique}")


@docker
def test_fail_fast_starts_nothing_after_a_failure(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(tmp_path, unique, FAILING)

    # -j 1: after base, "bad" (longest path below it) goes first and fails
    results, _ = build(tmp_path, "-j", "1", "--fail-fast", expect=1)

    assert statuses(results) == {
        "base": "built",
        "good": "cancelled",
        "good-kid": "cancelled",
        "bad": "failed",
        "bad-kid": "blocked",
        "bad-grandkid": "blocked",
    }
    assert docker_client.api.images(name=f"{unique}/good") == []


@docker
def test_second_run_builds_nothing(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(tmp_path, unique, {"app": child("base", "app"), "tool": child("base", "tool")})
    first, _ = build(tmp_path)
    assert set(statuses(first).values()) == {"built"}
    ids = {n: docker_client.api.inspect_image(f"{unique}/{n}:latest")["Id"] for n in first}
    records = {p.name: p.read_bytes() for p in (tmp_path / ".stackbuild/images").iterdir()}
    log_lines = len(run_log(tmp_path))

    second, proc = build(tmp_path)

    assert set(statuses(second).values()) == {"up-to-date"}
    assert all(r["duration_s"] == 0 for r in second.values())
    assert {n: r["fingerprint"] for n, r in second.items()} == {
        n: r["fingerprint"] for n, r in first.items()
    }
    assert {n: r["tags"] for n, r in second.items()} == {n: r["tags"] for n, r in first.items()}
    assert "0 to build, 3 up to date" in proc.stderr
    assert len(run_log(tmp_path)) == log_lines  # no build was even logged
    assert {p.name: p.read_bytes() for p in (tmp_path / ".stackbuild/images").iterdir()} == records
    assert ids == {n: docker_client.api.inspect_image(f"{unique}/{n}:latest")["Id"] for n in ids}


@docker
def test_mid_level_edit_rebuilds_exactly_it_and_its_descendants(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path,
        unique,
        {
            "mid": "FROM {r}/base\nCOPY data.txt /m-mid\n",
            "leaf": child("mid", "leaf"),
            "other": child("base", "other"),
            "other-leaf": child("other", "other-leaf"),
        },
        files={"mid/data.txt": "one\n"},
    )
    first, _ = build(tmp_path)
    old = {n: r["fingerprint"] for n, r in first.items()}
    (tmp_path / "mid" / "data.txt").write_text("two\n")

    plan = run_cli(tmp_path, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "context file changed: mid/data.txt" in plan.stdout
    plan_json = run_cli(tmp_path, "plan", "--json")
    steps = by_short_name(json.loads(plan_json.stdout)["steps"])
    assert {n: s["action"] for n, s in steps.items()} == {
        "base": "skip",
        "mid": "build",
        "leaf": "build",
        "other": "skip",
        "other-leaf": "skip",
    }
    assert {"code": "context-file-changed", "detail": "context file changed: mid/data.txt"} in (
        steps["mid"]["reasons"]
    )
    assert f"parent rebuilt: {unique}/mid" in [r["detail"] for r in steps["leaf"]["reasons"]]

    second, _ = build(tmp_path)

    assert statuses(second) == {
        "base": "up-to-date",
        "mid": "built",
        "leaf": "built",
        "other": "up-to-date",
        "other-leaf": "up-to-date",
    }
    changed = {n for n, r in second.items() if r["fingerprint"] != old[n]}
    assert changed == {"mid", "leaf"}
    assert cat_markers(docker_client, f"{unique}/leaf:latest", unique, "mid", "leaf") == [
        "two", "leaf"
    ]


@docker
def test_child_is_built_on_the_fresh_parent_not_a_stale_latest(
    tmp_path: Path,
    unique: str,
    docker_client: Any,
    docker_backend: Any,
    cleanup_images,
) -> None:
    import threading

    from tests.helpers import make_request

    # a stale image squats on every name the child could resolve its parent by
    stale_ctx = write_base_context(tmp_path / "stale", extra="RUN echo stale > /m-base\n")
    (stale_ctx / "rootfs" / "etc" / "stackbuild-test").write_text(f"{unique} stale\n")
    stale = docker_backend.build(
        make_request(
            stale_ctx, f"{unique}/base", unique=unique, tags=(f"{unique}/base:latest",)
        ),
        lambda line: None,
        threading.Event(),
    )
    assert stale.ok, stale.error
    write_stack(tmp_path, unique, {"app": "FROM {r}/base\nRUN cat /m-base > /m-app\n"})

    first, _ = build(tmp_path)
    assert statuses(first) == {"base": "built", "app": "built"}
    assert cat_markers(docker_client, f"{unique}/app:latest", unique, "base", "app") == [
        "base", "base"
    ]

    # again, with the parent up to date: the stale image takes `latest` back meanwhile
    docker_backend.tag(stale.image_id, f"{unique}/base:latest")
    Path(tmp_path / "app" / "Dockerfile").write_text(
        f"FROM {unique}/base\nRUN cat /m-base > /m-app && echo again\n"
    )
    second, _ = build(tmp_path)
    assert statuses(second) == {"base": "up-to-date", "app": "built"}
    assert cat_markers(docker_client, f"{unique}/app:latest", unique, "app") == ["base"]
    fresh = docker_client.api.inspect_image(f"{unique}/base:{first['base']['fingerprint'][7:19]}")
    assert docker_client.api.inspect_image(f"{unique}/base:latest")["Id"] == fresh["Id"]


@docker
def test_two_checkouts_with_the_same_names_build_on_their_own_parents(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    # issue 16.2: two checkouts of one stack (same image names, different content) build
    # at once on one engine, while a third party keeps moving `base:latest`; every child
    # must be built on exactly the parent its own checkout hashed
    kids = {f"kid{i}": "FROM {r}/base\nRUN cat /salt > /m-kid\n" for i in range(6)}
    roots = {}
    for salt in "AB":
        root = write_stack(tmp_path / salt, unique, kids)
        (root / "base" / "rootfs" / "salt").write_text(salt + "\n")
        roots[salt] = root
    stop = threading.Event()

    def move_latest() -> None:  # what a careless script or a third checkout does
        while not stop.is_set():
            for image in docker_client.api.images(name=f"{unique}/base"):
                with contextlib.suppress(Exception):
                    docker_client.api.tag(image["Id"], f"{unique}/base", "latest")
            stop.wait(0.01)

    mover = threading.Thread(target=move_latest, daemon=True)
    procs = [start_cli(root, "build", "--json", "-j", "3") for root in roots.values()]
    with killed_at_exit(procs):
        mover.start()
        outputs = [proc.communicate(timeout=180) for proc in procs]
        stop.set()
        mover.join()
    for proc, (_stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
    for (salt, root), (stdout, _) in zip(roots.items(), outputs, strict=True):
        results = by_short_name(json.loads(stdout)["results"])
        base_id = json.loads(StateDir(root).record_path(f"{unique}/base").read_text())["image_id"]
        base_layers = docker_client.api.inspect_image(base_id)["RootFS"]["Layers"]
        for kid in kids:
            record = json.loads(StateDir(root).record_path(f"{unique}/{kid}").read_text())
            layers = docker_client.api.inspect_image(record["image_id"])["RootFS"]["Layers"]
            assert layers[: len(base_layers)] == base_layers, f"{salt} {kid} not on its base"
            out = docker_client.containers.run(
                record["image_id"], ["cat", "/m-kid"], name=f"{unique}-{salt}-{kid}", remove=True
            )
            assert out == f"{salt}\n".encode(), (salt, kid, results[kid])


@docker
def test_sigint_keeps_finished_images_and_a_rerun_finishes_the_rest(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    marker = f"{unique}-slow"
    # sleeps only until `deadline`, so the rerun (same fingerprint) builds it quickly
    deadline = int(time.time()) + 12
    write_stack(
        tmp_path,
        unique,
        {
            "fast": child("base", "fast"),
            "slow": (
                f"FROM {{r}}/base\nRUN echo {marker} && "
                f'if [ "$(date +%s)" -lt {deadline} ]; then sleep 30; fi\n'
            ),
            "slow-kid": child("slow", "slow-kid"),
        },
    )
    slow_log = log_path(tmp_path, unique, "slow")
    # the classic builder: its RUN step is a container the test can see start and go
    # (BuildKit's are not the engine's containers; test_backends cancels both builders).
    # The rerun below builds with the default backend, on images the classic one built.
    proc = start_cli(tmp_path, "build", "--json", "-j", "4", "--backend", "docker")
    with killed_at_exit([proc]):
        assert wait_until(
            lambda: any(f" built {unique}/fast" in line for line in run_log(tmp_path))
            and slow_log.exists()
            and marker in slow_log.read_text(),
            30,
        ), "fast never finished, or slow never started:\n" + "\n".join(run_log(tmp_path))
        assert wait_until(lambda: containers_mentioning(docker_client, marker, True), 5)
        assert time.time() < deadline - 1, "too slow a machine: slow's RUN did not sleep"
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)

    assert proc.returncode == 130, stderr
    assert time.monotonic() - interrupted_at < 10
    assert "Traceback" not in stderr
    data = json.loads(stdout)
    assert data["interrupted"] is True
    results = by_short_name(data["results"])
    assert statuses(results) == {
        "base": "built",
        "fast": "built",
        "slow": "cancelled",
        "slow-kid": "cancelled",
    }
    assert recorded(tmp_path) == ["base", "fast"]
    for name in ("base", "fast"):
        record = json.loads(StateDir(tmp_path).record_path(f"{unique}/{name}").read_text())
        assert record["fingerprint"] == results[name]["fingerprint"]
    assert wait_until(lambda: not containers_mentioning(docker_client, marker), 10), (
        "the cancelled build left its container behind"
    )
    assert docker_client.api.images(name=f"{unique}/slow") == []

    time.sleep(max(0.0, deadline + 1 - time.time()))
    rerun, _ = build(tmp_path, "-j", "4")
    assert statuses(rerun) == {
        "base": "up-to-date",
        "fast": "up-to-date",
        "slow": "built",
        "slow-kid": "built",
    }
    assert rerun["slow"]["fingerprint"] == results["slow"]["fingerprint"]


@docker
def test_a_context_file_edited_during_the_run_fails_its_image_instead_of_shipping_it(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    # issue 16.1: the child's data.txt is edited while the base builds (the child's
    # fingerprint was taken before), then restored; the image must never hold BBBB
    # under the fingerprint of AAAA
    write_stack(
        tmp_path,
        unique,
        {"app": "FROM {r}/base\nCOPY data.txt /data.txt\n"},
        files={"app/data.txt": "AAAA"},
    )
    (tmp_path / "base" / "Dockerfile").write_text(
        (tmp_path / "base" / "Dockerfile").read_text() + f"RUN echo {unique}-slow && sleep 3\n"
    )
    base_log = log_path(tmp_path, unique, "base")
    proc = start_cli(tmp_path, "build", "--json")
    with killed_at_exit([proc]):
        assert wait_until(lambda: base_log.exists() and "slow" in base_log.read_text(), 30)
        (tmp_path / "app" / "data.txt").write_text("BBBB")
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    results = by_short_name(json.loads(stdout)["results"])
    assert statuses(results) == {"base": "built", "app": "failed"}
    assert "data.txt changed after it was hashed" in results["app"]["error"]
    assert "data.txt" in stderr
    assert docker_client.api.images(name=f"{unique}/app") == []
    assert recorded(tmp_path) == ["base"]

    (tmp_path / "app" / "data.txt").write_text("AAAA")
    plan = json.loads(run_cli(tmp_path, "plan", "--json").stdout)
    assert {short(s["image"]): s["action"] for s in plan["steps"]} == {
        "base": "skip", "app": "build"
    }
    rerun, _ = build(tmp_path)
    assert statuses(rerun) == {"base": "up-to-date", "app": "built"}
    out = docker_client.containers.run(
        f"{unique}/app:latest", ["cat", "/data.txt"], name=f"{unique}-check", remove=True
    )
    assert out == b"AAAA"


@docker
def test_sigterm_stops_a_run_like_ctrl_c(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    marker = f"{unique}-term"
    write_stack(tmp_path, unique, {"slow": f"FROM {{r}}/base\nRUN echo {marker} && sleep 30\n"})
    slow_log = log_path(tmp_path, unique, "slow")
    # the classic builder: its RUN step is a container the test can see start and go
    # (BuildKit's are not the engine's containers; test_backends cancels both builders)
    proc = start_cli(tmp_path, "build", "--json", "--backend", "docker")
    with killed_at_exit([proc]):
        assert wait_until(lambda: slow_log.exists() and marker in slow_log.read_text(), 30)
        assert wait_until(lambda: containers_mentioning(docker_client, marker, True), 5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert statuses(by_short_name(json.loads(stdout)["results"])) == {
        "base": "built",
        "slow": "cancelled",
    }
    assert recorded(tmp_path) == ["base"]
    assert wait_until(lambda: not containers_mentioning(docker_client, marker), 10)


@docker
def test_concurrent_runs_wait_or_refuse_and_keep_state_and_logs_whole(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path,
        unique,
        {
            "slow": "FROM {r}/base\nRUN sleep 3 && echo slow > /m-slow\n",
            "a": child("base", "a"),
            "b": child("a", "b"),
        },
    )
    lock = tmp_path / ".stackbuild" / "run.lock"
    first = start_cli(tmp_path, "build", "--json")
    procs = [first]
    with killed_at_exit(procs):
        assert wait_until(lambda: lock.exists() and lock.read_text() == str(first.pid), 20)
        second = start_cli(tmp_path, "build", "--json")
        procs.append(second)
        refused = run_cli(tmp_path, "build", "--json", "--no-wait", timeout=30)
        # Ctrl-C while waiting for the lock ends the wait at once
        waiter_err = tmp_path / "waiter.err"
        with open(waiter_err, "w") as err:
            waiter = start_cli(tmp_path, "build", stdout=subprocess.DEVNULL, stderr=err)
        procs.append(waiter)
        assert wait_until(lambda: "waiting" in waiter_err.read_text(), 20), waiter_err.read_text()
        assert first.poll() is None, "the first run ended too soon for this test"
        waiter.send_signal(signal.SIGINT)
        assert waiter.wait(timeout=5) == 130, waiter_err.read_text()
        out = [p.communicate(timeout=90) for p in procs[:2]]

    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    holders = {f"another stackbuild run (pid {p.pid}) is building this stack" for p in procs[:2]}
    assert any(holder in refused.stderr for holder in holders), refused.stderr
    assert refused.stdout == ""
    assert first.returncode == 0, out[0][1]
    assert second.returncode == 0, out[1][1]
    assert f"(pid {first.pid})" in out[1][1] and "waiting" in out[1][1]
    assert "Traceback" not in waiter_err.read_text()
    one = {r["image"]: r for r in json.loads(out[0][0])["results"]}
    two = {r["image"]: r for r in json.loads(out[1][0])["results"]}
    assert set(statuses(one).values()) == {"built"}
    # the second run planned under the lock, after the first had built everything
    assert set(statuses(two).values()) == {"up-to-date"}

    state = tmp_path / ".stackbuild"
    for path in [*state.glob("images/*.json"), state / "hashcache.json"]:
        json.loads(path.read_text())  # valid JSON, whole
    assert not [p for p in state.rglob("*.tmp")], "a temporary file was left behind"
    for path in state.glob("logs/*.log"):
        text = path.read_text()
        assert text.endswith("\n"), path
        bad = [line for line in text.splitlines() if not LOG_LINE.match(line)]
        assert not bad, f"{path.name}: {bad}"
    lines = run_log(tmp_path)
    assert sum(line.split(" ", 3)[2:3] == ["run:"] for line in lines) == 1


@docker
def test_json_results_tags_and_labels(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(
        tmp_path,
        unique,
        {"app": child("base", "app")},
        manifest={"app": 'tags: ["v-{fingerprint12}", "{date}", stable, latest]'},
    )
    before = time.strftime("%Y%m%d", time.gmtime())

    results, _ = build(tmp_path)

    after = time.strftime("%Y%m%d", time.gmtime())
    for name, result in results.items():
        assert set(result) >= RESULT_KEYS, result
        assert result["status"] == "built"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", result["fingerprint"])
        assert result["duration_s"] > 0
        assert Path(result["log"]) == log_path(tmp_path, unique, name)
        assert Path(result["log"]).is_file()
    fp12 = results["app"]["fingerprint"][7:19]
    repo = f"{unique}/app"
    tags = results["app"]["tags"]
    assert tags[:3] == [f"{repo}:{fp12}", f"{repo}:latest", f"{repo}:v-{fp12}"]
    assert tags[3] in (f"{repo}:{before}", f"{repo}:{after}")
    assert tags[4:] == [f"{repo}:stable"]  # "latest" only once
    assert results["base"]["tags"] == [
        f"{unique}/base:{results['base']['fingerprint'][7:19]}",
        f"{unique}/base:latest",
    ]
    image_id = docker_client.api.inspect_image(tags[0])["Id"]
    for tag in tags:
        assert docker_client.api.inspect_image(tag)["Id"] == image_id
    labels = docker_client.api.inspect_image(image_id)["Config"]["Labels"]
    assert labels["stackbuild.fingerprint"] == results["app"]["fingerprint"]
    assert labels["stackbuild.image"] == f"{unique}/app"
    created = labels["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)


@docker
def test_the_default_backend_falls_back_to_classic_saying_why_and_shares_its_fingerprints(
    tmp_path: Path, unique: str, docker_client: Any, buildkit_backend: Any, cleanup_images
) -> None:
    # buildkit_backend: skipped where no client here builds with BuildKit
    write_stack(tmp_path, unique, {"app": child("base", "app")})
    # built with the classic builder by choice: no warning
    results, proc = build(tmp_path, "--backend", "docker")
    assert {r["builder"] for r in results.values()} == {"docker"}
    assert "warning" not in proc.stderr
    assert "builder: docker (the classic builder)" in proc.stderr
    # the fingerprints do not depend on the builder: the default finds them up to date
    plan = json.loads(run_cli(tmp_path, "plan", "--json").stdout)
    assert {short(s["image"]): s["action"] for s in plan["steps"]} == {
        "base": "skip", "app": "skip"
    }

    # a docker client that cannot build with BuildKit: auto builds with the classic
    # builder, and says so once, naming why
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'fake-docker: no BuildKit in this client' >&2\nexit 1\n")
    fake.chmod(0o755)
    proc = run_cli(tmp_path, "build", "--json", "--force", f"{unique}/app",
                   STACKBUILD_DOCKER_CLI=str(fake))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = by_short_name(json.loads(proc.stdout)["results"])
    assert statuses(results) == {"base": "up-to-date", "app": "built"}
    assert results["app"]["builder"] == "docker"
    (warning,) = results["app"]["warnings"]
    assert "classic builder" in warning and "fake-docker: no BuildKit in this client" in warning
    assert proc.stderr.count(warning) == 1, proc.stderr
    assert any(warning in line for line in run_log(tmp_path))
    assert "builder: docker (the classic builder)" in proc.stderr

    # with a BuildKit-capable client (this machine's): BuildKit, on the classic-built base
    results, proc = build(tmp_path, "--force", f"{unique}/app")
    assert statuses(results) == {"base": "up-to-date", "app": "built"}
    assert (results["app"]["builder"], results["app"]["warnings"]) == ("buildkit", [])
    assert "builder: buildkit" in proc.stderr and "warning" not in proc.stderr
    assert cat_markers(docker_client, f"{unique}/app:latest", unique, "base", "app") == [
        "base", "app"
    ]


def test_unreachable_engine_exits_3_naming_docker_host(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "stack.yaml").write_text("version: 1\nimages:\n  app:\n    context: app\n")

    for command in (["build"], ["build", "--json"], ["plan"]):
        proc = run_cli(tmp_path, *command, timeout=60, DOCKER_HOST="unix:///nonexistent.sock")

        assert proc.returncode == 3, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""
        message = proc.stderr.strip()
        assert "\n" not in message, message
        assert "DOCKER_HOST=unix:///nonexistent.sock" in message
    assert not (tmp_path / ".stackbuild" / "images").exists()


def test_broken_manifest_exits_2_with_its_location(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "stack.yaml").write_text(
        "version: 1\nimages:\n  app:\n    context: app\n    contxt: typo\n"
    )

    for command in (["build"], ["build", "--json"], ["plan", "--offline"]):
        proc = run_cli(tmp_path, *command, timeout=60)

        assert proc.returncode == 2, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""
        assert "stack.yaml:5:5:" in proc.stderr, proc.stderr
        assert "contxt" in proc.stderr


# -- what is hashed is what Docker receives -----------------------------------------

DOCKERIGNORE = """\
# comments and blank lines are ignored

**/*.log
!keep/**/*.log
build/
!build/keep.txt
docs/**/secret*
*.tmp
/node_modules
**/cache/**
!**/cache/important
"""

FILES = {
    "app.py": "print('hi')\n",
    "data/a.log": "excluded by **/*.log\n",
    "data/b.txt": "kept\n",
    "data/deep/c.log": "excluded at depth\n",
    "root.log": "** matches no directory too\n",
    "keep/x/y.log": "re-included by !keep/**/*.log\n",
    "keep/z.log": "re-included, ** of zero directories\n",
    "build/out.bin": "excluded with its directory\n",
    "build/keep.txt": "re-included from an excluded directory\n",
    "build/sub/other.txt": "excluded\n",
    "docs/secret-top.txt": "excluded: ** matches zero directories\n",
    "docs/sub/secret.txt": "excluded\n",
    "docs/sub/public.txt": "kept\n",
    "x.tmp": "excluded at the root\n",
    "sub/x.tmp": "*.tmp only matches at the root\n",
    "node_modules/m.js": "excluded\n",
    "lib/node_modules/m.js": "kept: /node_modules is anchored\n",
    "lib/cache/blob": "excluded\n",
    "lib/cache/important": "re-included\n",
    "weird name [1].txt": "kept\n",
}


def _ctx(root: Path) -> Path:
    ctx = root / "ctx"
    for rel, content in FILES.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(content)
    (ctx / ".dockerignore").write_text(DOCKERIGNORE)
    (ctx / "empty").mkdir()
    (ctx / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(ctx / "run.sh", 0o755)
    os.chmod(ctx / "data/b.txt", 0o600)
    os.chmod(ctx / "docs", 0o750)
    os.symlink("app.py", ctx / "link-to-app")
    os.symlink("../nowhere", ctx / "keep/dangling")
    return ctx


def _expected(ctx: Path, dockerfile: Path) -> dict[str, str]:
    """path -> "<type> <mode>" for what /ctx should hold, from stackbuild's own listing."""
    expected: dict[str, str] = {}
    for f in context_files(ctx, dockerfile):
        st = os.lstat(f.source)
        kind = {"f": "file", "d": "dir", "l": "link"}[f.kind]
        mode = "777" if f.kind == "l" else f"{st.st_mode & 0o7777:o}"
        expected[f.path] = f"{kind} {mode}"
        # Docker creates (0755) the directories of a re-included file that stay excluded
        parts = f.path.split("/")[:-1]
        for i in range(len(parts)):
            expected.setdefault("/".join(parts[: i + 1]), "dir 755")
    return expected


def _listing(client: Any, ref: str, name: str) -> dict[str, str]:
    script = (
        "cd /ctx && find . -mindepth 1 | while read -r p; do "
        'if [ -L "$p" ]; then t=link; elif [ -d "$p" ]; then t=dir; else t=file; fi; '
        'echo "$t $(stat -c %a "$p") ${p#./}"; done'
    )
    out = client.containers.run(ref, ["sh", "-c", script], name=name, remove=True).decode()
    listing = {}
    for line in out.splitlines():
        kind, mode, path = line.split(" ", 2)
        listing[path] = f"{kind} {'777' if kind == 'link' else mode}"
    return listing


@docker
@pytest.mark.parametrize("dockerfile", ["Dockerfile", "../outside.Dockerfile"])
def test_context_docker_receives_is_the_context_stackbuild_hashes(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images, dockerfile: str
) -> None:
    write_stack(tmp_path, unique, {})
    ctx = _ctx(tmp_path)
    (ctx / dockerfile).write_text(f"FROM {unique}/base\nCOPY . /ctx\n")
    stack = tmp_path / "stack.yaml"
    entry = f"  {unique}/ctx:\n    context: ctx\n    dockerfile: {dockerfile}\n"
    stack.write_text(stack.read_text() + entry)

    results, _ = build(tmp_path)

    assert results["ctx"]["status"] == "built"
    expected = _expected(ctx, ctx / dockerfile)
    actual = _listing(docker_client, f"{unique}/ctx:latest", f"{unique}-find")
    assert actual == expected
    # and the checks above are not vacuous
    for path in ("app.py", "data/b.txt", "keep/x/y.log", "keep/z.log", "build/keep.txt",
                 "lib/cache/important", "lib/node_modules/m.js", "sub/x.tmp", "empty",
                 "link-to-app", "keep/dangling", "weird name [1].txt",
                 ".dockerignore"):  # fmt: skip
        assert path in actual, path
    assert ("Dockerfile" in actual) == (dockerfile == "Dockerfile")
    for path in ("data/a.log", "data/deep/c.log", "root.log", "build/out.bin",
                 "build/sub", "docs/secret-top.txt", "docs/sub/secret.txt", "x.tmp",
                 "node_modules", "lib/cache/blob"):  # fmt: skip
        assert path not in actual, path
    assert actual["data/b.txt"] == "file 600" and actual["run.sh"] == "file 755"
    assert actual["docs"] == "dir 750"
    # the fingerprint hashed that very listing
    record = json.loads(StateDir(tmp_path).record_path(f"{unique}/ctx").read_text())
    assert set(record["inputs"]["files"]) == {f.path for f in context_files(ctx, ctx / dockerfile)}


@docker
def test_a_context_holding_the_stack_root_leaves_out_stackbuild_state(
    tmp_path: Path, unique: str, docker_client: Any, cleanup_images
) -> None:
    write_stack(tmp_path, unique, {})
    (tmp_path / "whole.Dockerfile").write_text(f"FROM {unique}/base\nCOPY . /ctx\n")
    stack = tmp_path / "stack.yaml"
    entry = f"  {unique}/whole:\n    context: .\n    dockerfile: whole.Dockerfile\n"
    stack.write_text(stack.read_text() + entry)

    first, _ = build(tmp_path)
    second, _ = build(tmp_path)  # .stackbuild/ changed in between: logs, records

    assert statuses(first) == {"base": "built", "whole": "built"}
    assert statuses(second) == {"base": "up-to-date", "whole": "up-to-date"}
    out = docker_client.containers.run(
        f"{unique}/whole:latest", ["ls", "-a", "/ctx"], name=f"{unique}-ls", remove=True
    )
    assert set(out.decode().split()) == {".", "..", "base", "stack.yaml", "whole.Dockerfile"}
